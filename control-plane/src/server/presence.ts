// Which agents hold a WatchGateways stream to this control plane, and when
// each was last seen: for the console's agents page. Kept in memory, so it
// speaks for this replica only, since it started.
export interface AgentContact {
  connected: boolean;
  /** ISO time the stream opened, or ended when not connected. */
  lastContact: string;
}

export class AgentPresence {
  private readonly streams = new Map<string, number>();
  private readonly last = new Map<string, string>();

  connected(agent: string): void {
    this.streams.set(agent, (this.streams.get(agent) ?? 0) + 1);
    this.last.set(agent, new Date().toISOString());
  }

  disconnected(agent: string): void {
    const n = (this.streams.get(agent) ?? 1) - 1;
    if (n <= 0) this.streams.delete(agent);
    else this.streams.set(agent, n);
    this.last.set(agent, new Date().toISOString());
  }

  of(agent: string): AgentContact | undefined {
    const lastContact = this.last.get(agent);
    return lastContact ? { connected: this.streams.has(agent), lastContact } : undefined;
  }
}
