// Resources, agents and gateways, with their state and last contact.
import { ago, when } from '../format.js';
import { useApi } from '../hooks.js';
import { Badge, Empty, Failure, Loading, Table } from '../ui.js';

interface Inventory {
  resources: { name: string; agent: string; description: string }[];
  identities: { name: string; issuer: string; groups: string[] }[];
  agents: { name: string; revoked: boolean; enrolledAt: string; connected: boolean; lastContact: string }[];
  gateways: { id: string; tunnelAddress: string; lastSeen: string }[];
}

/** A gateway refreshes its last_seen when it (re)connects and as it serves; older than this reads as quiet. */
const GATEWAY_QUIET_MS = 5 * 60_000;

export function InventoryPage() {
  const inv = useApi<Inventory>('/api/inventory', 10_000);
  if (inv.error && !inv.data) return <Failure error={inv.error} retry={inv.reload} />;
  if (!inv.data) return <Loading />;
  const { resources, agents, gateways, identities } = inv.data;
  const agentOf = (name: string) => agents.find((a) => a.name === name);
  return (
    <section>
      <h1>Resources, agents and gateways</h1>
      <h2>Resources</h2>
      {resources.length === 0 ? (
        <Empty title="No resources">
          <p>
            Add one with <code>npx warden resources add NAME --agent AGENT</code> or in the policy file.
          </p>
        </Empty>
      ) : (
        <Table heads={['Resource', 'Agent', 'State', 'Description']} testid="resources">
            {resources.map((r) => {
              const a = agentOf(r.agent);
              return (
                <tr>
                  <td>{r.name}</td>
                  <td>{r.agent}</td>
                  <td>{!a ? <Badge kind="error">agent not enrolled</Badge> : a.revoked ? <Badge kind="refused">agent revoked</Badge> : a.connected ? <Badge kind="ok">reachable</Badge> : <Badge kind="error">agent offline</Badge>}</td>
                  <td>{r.description || '—'}</td>
                </tr>
              );
            })}
        </Table>
      )}
      <h2>Agents</h2>
      {agents.length === 0 ? (
        <Empty title="No agents enrolled">
          <p>
            Enroll one with <code>npx warden agents enroll NAME</code> and start it inside the private network.
          </p>
        </Empty>
      ) : (
        <Table heads={['Agent', 'State', 'Last contact', 'Enrolled']} testid="agents">
            {agents.map((a) => (
              <tr>
                <td>{a.name}</td>
                <td>{a.revoked ? <Badge kind="refused">revoked</Badge> : a.connected ? <Badge kind="ok">connected</Badge> : <Badge kind="error">not connected</Badge>}</td>
                <td title={when(a.lastContact)}>{a.lastContact ? (a.connected ? `connected ${ago(a.lastContact)}` : ago(a.lastContact)) : 'not since this control plane started'}</td>
                <td>{when(a.enrolledAt)}</td>
              </tr>
            ))}
        </Table>
      )}
      <h2>Gateways</h2>
      {gateways.length === 0 ? (
        <Empty title="No gateway has registered">
          <p>Start a gateway with this control plane's address and the gateway token; it registers itself.</p>
        </Empty>
      ) : (
        <Table heads={['Gateway', 'Tunnel', 'State', 'Last contact']} testid="gateways">
            {gateways.map((g) => (
              <tr>
                <td>{g.id}</td>
                <td>{g.tunnelAddress}</td>
                <td>{Date.now() - Date.parse(g.lastSeen) < GATEWAY_QUIET_MS ? <Badge kind="ok">active</Badge> : <Badge kind="error">quiet</Badge>}</td>
                <td title={when(g.lastSeen)}>{ago(g.lastSeen)}</td>
              </tr>
            ))}
        </Table>
      )}
      <h2>Identities</h2>
      <Table heads={['Identity', 'Issuer', 'Groups']}>
          {identities.map((i) => (
            <tr>
              <td>
                <a href={`/sessions?identity=${encodeURIComponent(i.name)}`}>{i.name}</a>
              </td>
              <td>{i.issuer}</td>
              <td>{i.groups.join(', ') || '—'}</td>
            </tr>
          ))}
      </Table>
    </section>
  );
}
