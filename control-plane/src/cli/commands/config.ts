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
    summary: 'list the trusted token issuers',
    usage: '[--json]',
    options: CLIENT_OPTIONS,
    async run(ctx) {
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
    summary: 'trust the tokens of an issuer (replaces the issuer if NAME exists)',
    usage: 'NAME --issuer-url URL --audience A [--audience B] [--jwks-uri URL | --jwks-file F] [--alg RS256 ...]',
    argument: { name: 'NAME', description: 'the issuer, as identities name it' },
    options: [...CLIENT_OPTIONS, 'issuer-url', 'audience', 'jwks-uri', 'jwks-file', 'alg'],
    async run(ctx) {
      const name = ctx.arg();
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
    summary: 'stop trusting an issuer',
    usage: 'NAME',
    argument: { name: 'NAME', description: 'the issuer' },
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const name = ctx.arg();
      await ctx.withAdmin((c) => c.call((x) => x.deleteIssuer, { name }));
      done(ctx, `Issuer '${name}' removed.`, { removed: name });
    },
  },
  {
    name: 'identities list',
    summary: 'list the identities',
    usage: '[--json]',
    options: CLIENT_OPTIONS,
    async run(ctx) {
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
    summary: 'name the tokens whose claims match (replaces the identity if NAME exists)',
    usage: 'NAME --issuer ISSUER_NAME --match claim=value [--match ...] [--group G ...]',
    argument: { name: 'NAME', description: 'the identity' },
    options: [...CLIENT_OPTIONS, 'issuer', 'match', ['group', 'a group the identity belongs to']],
    async run(ctx) {
      const name = ctx.arg();
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
    summary: 'remove an identity',
    usage: 'NAME',
    argument: { name: 'NAME', description: 'the identity' },
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const name = ctx.arg();
      await ctx.withAdmin((c) => c.call((x) => x.deleteIdentity, { name }));
      done(ctx, `Identity '${name}' removed.`, { removed: name });
    },
  },
  {
    name: 'resources list',
    summary: 'list the resources',
    usage: '[--json]',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const { resources } = await snapshot(ctx);
      show(ctx, resources, 'resources', ['NAME', 'AGENT', 'DESCRIPTION'], (r) => [r.name, r.agent, cell(r.description)]);
    },
  },
  {
    name: 'resources add',
    summary: 'add a database served by an agent (replaces the resource if NAME exists)',
    usage: 'NAME --agent AGENT [--description TEXT]',
    argument: { name: 'NAME', description: 'the resource, the dbname clients connect to' },
    options: [...CLIENT_OPTIONS, 'agent', 'description'],
    async run(ctx) {
      const name = ctx.arg();
      const resource = await ctx.withAdmin((c) =>
        c.call((x) => x.putResource, { name, agent: ctx.opt('agent') ?? '', description: ctx.opt('description') ?? '' }),
      );
      done(ctx, `Resource '${resource.name}' saved (served by agent '${resource.agent}').`, resource);
    },
  },
  {
    name: 'resources remove',
    summary: 'remove a resource',
    usage: 'NAME',
    argument: { name: 'NAME', description: 'the resource' },
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const name = ctx.arg();
      await ctx.withAdmin((c) => c.call((x) => x.deleteResource, { name }));
      done(ctx, `Resource '${name}' removed.`, { removed: name });
    },
  },
  {
    name: 'grants list',
    summary: 'list the grants',
    usage: '[--json]',
    options: CLIENT_OPTIONS,
    async run(ctx) {
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
    summary: 'let an identity or a group use a resource',
    usage:
      '--resource R (--identity I | --group G) [--access read|write|ddl|admin]\n' +
      '                         [--allow-schema S ...] [--deny-schema S ...] [--allow-table T ...] [--deny-table T ...]\n' +
      '                         [--trust schema.name ...]',
    options: [
      ...CLIENT_OPTIONS,
      ['resource', 'the resource to grant'],
      ['identity', 'the identity that may use it'],
      ['group', 'the group whose identities may use it (one per grant)'],
      'access',
      'allow-schema',
      'deny-schema',
      'allow-table',
      'deny-table',
      'trust',
    ],
    async run(ctx) {
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
    summary: 'remove a grant',
    usage: 'ID',
    argument: { name: 'ID', description: 'the grant, as grants list shows it' },
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const id = ctx.arg();
      await ctx.withAdmin((c) => c.call((x) => x.deleteGrant, { id }));
      done(ctx, `Grant ${id} removed.`, { removed: id });
    },
  },
];
