// warden issuers | identities | resources | grants
import { readFileSync } from 'node:fs';
import type { Grant } from '@warden/proto';
import { CliError } from '../errors.js';
import { CLIENT_OPTIONS, type Command, type Context } from '../context.js';
import { cell, json, table } from '../output.js';

const snapshot = (ctx: Context) => ctx.withAdmin((c) => c.call((x) => x.getSnapshot, {}));

function show<T>(ctx: Context, items: T[], what: string, headers: string[], row: (item: T) => string[]): void {
  if (ctx.json) ctx.print(json(items));
  else if (items.length === 0) ctx.print(`No ${what}.`);
  else ctx.print(table(headers, items.map(row)));
}

function done(ctx: Context, message: string, value: unknown): void {
  ctx.print(ctx.json ? json(value) : message);
}

function readJwksFile(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new CliError(`cannot read JWKS file ${path}: ${(err as Error).message}`);
  }
}

function parseMatch(text: string): { claim: string; value: string } {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new CliError(`--match '${text}' must be claim=value, e.g. --match sub=repo:acme/app:ref:refs/heads/main`);
  return { claim: text.slice(0, eq), value: text.slice(eq + 1) };
}

const describeGrant = (g: Grant) => (g.identity ? `identity '${g.identity}'` : `group '${g.group}'`);

/** "allow-schema=public deny-table=public.secrets", or '-' for none. */
export function describeScopes(g: Grant): string {
  const parts = [
    ...g.allowSchemas.map((s) => `allow-schema=${s}`),
    ...g.denySchemas.map((s) => `deny-schema=${s}`),
    ...g.allowTables.map((t) => `allow-table=${t}`),
    ...g.denyTables.map((t) => `deny-table=${t}`),
  ];
  return parts.length ? parts.join(' ') : '-';
}

/** The views and functions the grant trusts, "public.v,billing.f", or '-' for none. */
const describeTrust = (g: Grant) => (g.trust?.length ? g.trust.join(',') : '-');

export const configCommands: Command[] = [
  {
    name: 'issuers list',
    usage: 'warden issuers list [--json]',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      ctx.noArgs();
      const { issuers } = await snapshot(ctx);
      show(ctx, issuers, 'issuers', ['NAME', 'ISSUER URL', 'AUDIENCES', 'KEYS', 'ALGORITHMS'], (i) => [
        i.name,
        i.issuerUrl,
        i.audiences.join(','),
        i.jwksUri || (i.jwksJson ? 'inline JWKS' : 'OIDC discovery'),
        i.algorithms.join(',') || 'RS256,ES256 (default)',
      ]);
    },
  },
  {
    name: 'issuers add',
    usage:
      'warden issuers add NAME --issuer-url URL --audience A [--audience B] [--jwks-uri URL | --jwks-file F] [--alg RS256 ...]\n  (replaces the issuer if NAME exists)',
    options: [...CLIENT_OPTIONS, 'issuer-url', 'audience', 'jwks-uri', 'jwks-file', 'alg'],
    async run(ctx) {
      const name = ctx.arg('NAME');
      const file = ctx.opt('jwks-file');
      if (file && ctx.opt('jwks-uri')) throw new CliError('give either --jwks-uri or --jwks-file, not both');
      const issuer = await ctx.withAdmin((c) =>
        c.call((x) => x.putIssuer, {
          name,
          issuerUrl: ctx.opt('issuer-url') ?? '',
          audiences: ctx.many('audience'),
          jwksUri: ctx.opt('jwks-uri') ?? '',
          jwksJson: file ? readJwksFile(file) : '',
          algorithms: ctx.many('alg'),
        }),
      );
      done(ctx, `Issuer '${issuer.name}' saved.`, issuer);
    },
  },
  {
    name: 'issuers remove',
    usage: 'warden issuers remove NAME',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const name = ctx.arg('NAME');
      await ctx.withAdmin((c) => c.call((x) => x.deleteIssuer, { name }));
      done(ctx, `Issuer '${name}' removed.`, { removed: name });
    },
  },
  {
    name: 'identities list',
    usage: 'warden identities list [--json]',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      ctx.noArgs();
      const { identities } = await snapshot(ctx);
      show(ctx, identities, 'identities', ['NAME', 'ISSUER', 'MATCH', 'GROUPS'], (i) => [
        i.name,
        i.issuer,
        i.match.map((m) => `${m.claim}=${m.value}`).join(' '),
        cell(i.groups.join(',')),
      ]);
    },
  },
  {
    name: 'identities add',
    usage:
      'warden identities add NAME --issuer ISSUER_NAME --match claim=value [--match ...] [--group G ...]\n  (replaces the identity if NAME exists; a value ending in * matches by prefix)',
    options: [...CLIENT_OPTIONS, 'issuer', 'match', 'group'],
    async run(ctx) {
      const name = ctx.arg('NAME');
      const identity = await ctx.withAdmin((c) =>
        c.call((x) => x.putIdentity, {
          name,
          issuer: ctx.opt('issuer') ?? '',
          match: ctx.many('match').map(parseMatch),
          groups: ctx.many('group'),
        }),
      );
      done(ctx, `Identity '${identity.name}' saved.`, identity);
    },
  },
  {
    name: 'identities remove',
    usage: 'warden identities remove NAME',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const name = ctx.arg('NAME');
      await ctx.withAdmin((c) => c.call((x) => x.deleteIdentity, { name }));
      done(ctx, `Identity '${name}' removed.`, { removed: name });
    },
  },
  {
    name: 'resources list',
    usage: 'warden resources list [--json]',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      ctx.noArgs();
      const { resources } = await snapshot(ctx);
      show(ctx, resources, 'resources', ['NAME', 'AGENT', 'DESCRIPTION'], (r) => [r.name, r.agent, cell(r.description)]);
    },
  },
  {
    name: 'resources add',
    usage: 'warden resources add NAME --agent AGENT [--description TEXT]\n  (replaces the resource if NAME exists)',
    options: [...CLIENT_OPTIONS, 'agent', 'description'],
    async run(ctx) {
      const name = ctx.arg('NAME');
      const resource = await ctx.withAdmin((c) =>
        c.call((x) => x.putResource, { name, agent: ctx.opt('agent') ?? '', description: ctx.opt('description') ?? '' }),
      );
      done(ctx, `Resource '${resource.name}' saved (served by agent '${resource.agent}').`, resource);
    },
  },
  {
    name: 'resources remove',
    usage: 'warden resources remove NAME',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const name = ctx.arg('NAME');
      await ctx.withAdmin((c) => c.call((x) => x.deleteResource, { name }));
      done(ctx, `Resource '${name}' removed.`, { removed: name });
    },
  },
  {
    name: 'grants list',
    usage: 'warden grants list [--json]',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      ctx.noArgs();
      const { grants } = await snapshot(ctx);
      show(ctx, grants, 'grants', ['ID', 'RESOURCE', 'IDENTITY', 'GROUP', 'ACCESS', 'RULE', 'SCOPES', 'TRUST'], (g) => [
        g.id,
        g.resource,
        cell(g.identity),
        cell(g.group),
        g.access || 'read',
        cell(g.rule),
        describeScopes(g),
        describeTrust(g),
      ]);
    },
  },
  {
    name: 'grants add',
    usage:
      'warden grants add --resource R (--identity I | --group G) [--access read|write|ddl|admin]\n' +
      '                  [--allow-schema S ...] [--deny-schema S ...] [--allow-table T ...] [--deny-table T ...]\n' +
      '                  [--trust schema.name ...]\n' +
      '  (access defaults to read; tables are schema.table, or table for that name in any schema;\n' +
      '   --trust names a view or function to count as itself rather than what it reaches)',
    options: [...CLIENT_OPTIONS, 'resource', 'identity', 'group', 'access', 'allow-schema', 'deny-schema', 'allow-table', 'deny-table', 'trust'],
    async run(ctx) {
      ctx.noArgs();
      const groups = ctx.many('group');
      if (groups.length > 1) throw new CliError('a grant names one group; add one grant per group');
      const grant = await ctx.withAdmin((c) =>
        c.call((x) => x.createGrant, {
          id: '',
          resource: ctx.opt('resource') ?? '',
          identity: ctx.opt('identity') ?? '',
          group: groups[0] ?? '',
          access: ctx.opt('access') ?? 'read',
          rule: '',
          allowSchemas: ctx.many('allow-schema'),
          denySchemas: ctx.many('deny-schema'),
          allowTables: ctx.many('allow-table'),
          denyTables: ctx.many('deny-table'),
          trust: ctx.many('trust'),
        }),
      );
      const scopes = describeScopes(grant);
      // Read without scopes is the default and needs no mention.
      const what = [
        grant.access !== 'read' ? `with ${grant.access} access` : '',
        scopes !== '-' ? `(${scopes})` : '',
        grant.trust.length ? `trusting ${grant.trust.join(', ')}` : '',
      ].filter(Boolean);
      done(ctx, `Grant ${grant.id} created: ${describeGrant(grant)} may use resource '${grant.resource}'${what.length ? ` ${what.join(' ')}` : ''}.`, grant);
    },
  },
  {
    name: 'grants remove',
    usage: 'warden grants remove ID',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const id = ctx.arg('ID');
      await ctx.withAdmin((c) => c.call((x) => x.deleteGrant, { id }));
      done(ctx, `Grant ${id} removed.`, { removed: id });
    },
  },
];
