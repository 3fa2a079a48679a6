// rulesFor: the rules an identity gets from the control plane's grants, with
// each grant's trust list carried over, so the gate counts trusted views and
// functions as themselves.
import type { Grant } from '@warden/proto';
import { describe, expect, it } from 'vitest';
import type { ResourceCatalog } from '../src/catalog/types.js';
import { ClassificationCache, StatementGate, rulesFor } from '../src/policy/index.js';

const grant = (over: Partial<Grant>): Grant => ({
  id: 'g_1',
  resource: 'db',
  identity: 'job',
  group: '',
  access: 'read',
  rule: 'r',
  allowSchemas: ['public'],
  denySchemas: [],
  allowTables: [],
  denyTables: [],
  trust: [],
  ...over,
});

describe('rulesFor', () => {
  it('carries each grant\'s trust list into its rule', () => {
    const grants = [
      grant({ id: 'g_1', rule: 'by-identity', trust: ['public.v_secret', 'public.definer'] }),
      grant({ id: 'g_2', rule: 'by-group', identity: '', group: 'ci', trust: ['public.definer'] }),
      grant({ id: 'g_3', rule: 'plain' }),
      grant({ id: 'g_4', rule: 'elsewhere', resource: 'other', trust: ['public.elsewhere'] }),
    ];
    expect(rulesFor(grants, 'db', 'job', ['ci']).map((r) => [r.name, r.trust])).toEqual([
      ['by-identity', ['public.v_secret', 'public.definer']],
      ['by-group', ['public.definer']],
      ['plain', []],
    ]);
  });

  it('lets the gate count a trusted view and SECURITY DEFINER function as themselves', () => {
    const fn = (name: string, over: Partial<ResourceCatalog['functions'][string][number]> = {}) => ({
      schema: 'public',
      name,
      kind: 'f',
      volatility: 's' as const,
      language: 'sql',
      securityDefiner: false,
      owner: 'postgres',
      body: 'SELECT 1',
      ...over,
    });
    const catalog: ResourceCatalog = {
      fetchedAt: 0,
      sessionUser: 'app',
      searchPath: 'public',
      schemas: ['public', 'p', 'pg_catalog', 'information_schema'],
      catalogRelations: ['pg_class'],
      relations: {
        'public.v_secret': { schema: 'public', name: 'v_secret', kind: 'v' },
        'p.secret': { schema: 'p', name: 'secret', kind: 'r' },
      },
      viewReads: { 'public.v_secret': ['p.secret'] },
      viewCalls: {},
      children: {},
      foreignKeys: [],
      triggers: [],
      rules: [],
      functions: { 'public.definer': [fn('definer', { securityDefiner: true })] },
    };
    const refusal = (trust: string[], sql: string) => {
      const rules = rulesFor([grant({ trust })], 'db', 'job', []);
      const gate = new StatementGate({ identity: 'job', resource: 'db', rules, catalog: () => catalog }, new ClassificationCache());
      return gate.check(sql).refusal?.message;
    };
    expect(refusal([], 'select * from public.v_secret')).toContain('p.secret');
    expect(refusal(['public.v_secret'], 'select * from public.v_secret')).toBeUndefined();
    expect(refusal([], 'select public.definer()')).toContain('public.definer');
    expect(refusal(['public.definer'], 'select public.definer()')).toBeUndefined();
    // Trusting one object does not trust another.
    expect(refusal(['public.definer'], 'select * from public.v_secret')).toContain('p.secret');
  });
});
