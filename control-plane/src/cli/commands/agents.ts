// warden agents | gateways
import { CLIENT_OPTIONS, type Command } from '../context.js';
import { json, table } from '../output.js';

export const agentCommands: Command[] = [
  {
    name: 'agents list',
    summary: 'list the enrolled agents',
    usage: '[--json]',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const { agents } = await ctx.withAdmin((c) => c.call((x) => x.getSnapshot, {}));
      if (ctx.json) return ctx.print(json(agents));
      if (agents.length === 0) return ctx.print('No agents.');
      ctx.print(table(['NAME', 'STATUS', 'ENROLLED'], agents.map((a) => [a.name, a.revoked ? 'revoked' : 'active', a.createdAt])));
    },
  },
  {
    name: 'agents enroll',
    summary: 'enroll an agent and print its enrollment token',
    usage: 'NAME',
    details: 'Prints the enrollment token once; the control plane keeps only its hash. A revoked NAME can be enrolled again.',
    argument: { name: 'NAME', description: 'the agent' },
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const name = ctx.arg();
      const res = await ctx.withAdmin((c) => c.call((x) => x.enrollAgent, { name }));
      if (ctx.json) return ctx.print(json(res));
      // The advice goes to stderr so `warden agents enroll x > token-file` captures only the token.
      ctx.note(
        `Agent '${name}' enrolled. Store this token now (e.g. in the file named by the agent's enrollmentTokenFile, mode 0600); it is shown only once and the control plane keeps only its hash:`,
      );
      ctx.print(res.token);
    },
  },
  {
    name: 'agents revoke',
    summary: "revoke an agent's enrollment and close its streams",
    usage: 'NAME',
    argument: { name: 'NAME', description: 'the agent' },
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const name = ctx.arg();
      await ctx.withAdmin((c) => c.call((x) => x.revokeAgent, { name }));
      ctx.print(ctx.json ? json({ revoked: name }) : `Agent '${name}' revoked; its open streams are closed.`);
    },
  },
  {
    name: 'gateways list',
    summary: 'list the gateways that have reported to the control plane',
    usage: '[--json]',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const { gateways } = await ctx.withAdmin((c) => c.call((x) => x.getSnapshot, {}));
      if (ctx.json) return ctx.print(json(gateways));
      if (gateways.length === 0) return ctx.print('No gateways.');
      ctx.print(table(['ID', 'TUNNEL ADDRESS', 'LAST SEEN'], gateways.map((g) => [g.id, g.tunnelAddress, g.lastSeen])));
    },
  },
];
