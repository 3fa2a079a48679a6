// Which mask entries of the snapshot a session is under, and how they merge.
import { Mask } from '@warden/proto';
import { describe, expect, it } from 'vitest';
import { masksFor } from '../src/masking/config.js';

const fn = (f: Partial<{ fn: string; keep: number; text: string; char: string }>) => ({ fn: '', keep: 0, text: '', char: '', ...f });
const mask = (m: Partial<Mask>): Mask => Mask.fromPartial({ resource: 'shop', predicates: 'refuse', onInvalid: 'null', ...m });
const KEY = new Uint8Array(32).fill(7);

const pii = mask({
  name: 'pii',
  identities: ['ci-reader'],
  groups: ['readers'],
  exemptIdentities: ['demo-admin'],
  exemptGroups: ['dba'],
  columns: [
    { pattern: 'public.customers.card_number', mask: fn({ fn: 'partial', keep: 4 }) },
    { pattern: '*.*.ssn', mask: fn({ fn: 'redact', text: 'XXX-XX-XXXX' }) },
  ],
  detectors: [{ detector: 'regex', pattern: 'EMP-[0-9]{6}', mask: fn({ fn: 'redact' }) }],
});
const everyone = mask({
  name: 'everyone',
  columns: [{ pattern: 'public.customers.email', mask: fn({ fn: 'email' }) }],
  detectors: [{ detector: 'card', pattern: '', mask: fn({ fn: 'partial', keep: 2, char: '#' }) }],
  predicates: 'allow',
});

describe('masksFor', () => {
  it('merges the entries that name the identity or a group, in order, each mask naming its entry', () => {
    const set = masksFor([pii, everyone], KEY, 'shop', 'ci-reader', [])!;
    expect(set.columns).toEqual([
      { pattern: 'public.customers.card_number', mask: { fn: 'partial', keep: 4 }, rule: 'pii' },
      { pattern: '*.*.ssn', mask: { fn: 'redact', text: 'XXX-XX-XXXX' }, rule: 'pii' },
      { pattern: 'public.customers.email', mask: { fn: 'email' }, rule: 'everyone' },
    ]);
    expect(set.detectors).toEqual([
      { detector: 'regex', pattern: 'EMP-[0-9]{6}', mask: { fn: 'redact' }, rule: 'pii' },
      { detector: 'card', mask: { fn: 'partial', keep: 2, char: '#' }, rule: 'everyone' },
    ]);
    expect(set.key).toEqual(Buffer.from(KEY));
    // By group rather than identity: the same entries.
    expect(masksFor([pii, everyone], KEY, 'shop', 'someone', ['readers'])!.columns.map((c) => c.rule)).toEqual(['pii', 'pii', 'everyone']);
  });

  it('applies an entry that names nobody to everyone on its resource, and no entry of another resource', () => {
    expect(masksFor([pii, everyone], KEY, 'shop', 'someone', ['others'])!.columns.map((c) => c.rule)).toEqual(['everyone']);
    expect(masksFor([pii, everyone], KEY, 'billing', 'ci-reader', ['readers'])).toBeUndefined();
    expect(masksFor([], KEY, 'shop', 'ci-reader', [])).toBeUndefined();
  });

  it('leaves out an entry whose exemption names the identity or one of its groups, even when it also names them', () => {
    expect(masksFor([pii], KEY, 'shop', 'demo-admin', ['readers'])).toBeUndefined();
    expect(masksFor([pii], KEY, 'shop', 'ci-reader', ['dba'])).toBeUndefined();
    const exemptEveryone = mask({ ...everyone, exemptIdentities: ['demo-admin'] });
    expect(masksFor([pii, exemptEveryone], KEY, 'shop', 'demo-admin', [])).toBeUndefined();
  });

  it('refuses predicates unless every entry allows them, and refuses invalid values if any entry says so', () => {
    expect(masksFor([everyone], KEY, 'shop', 'x', [])).toMatchObject({ predicates: 'allow', onInvalid: 'null' });
    expect(masksFor([pii, everyone], KEY, 'shop', 'ci-reader', [])).toMatchObject({ predicates: 'refuse', onInvalid: 'null' });
    const strict = mask({ ...everyone, name: 'strict', onInvalid: 'refuse' });
    expect(masksFor([everyone, strict], KEY, 'shop', 'x', [])).toMatchObject({ predicates: 'allow', onInvalid: 'refuse' });
    // Empty fields are the defaults.
    expect(masksFor([mask({ ...everyone, predicates: '', onInvalid: '' })], KEY, 'shop', 'x', [])).toMatchObject({ predicates: 'refuse', onInvalid: 'null' });
  });

  it('fills in partial\'s keep when missing, and masks a function it does not know with NULL', () => {
    const odd = mask({
      name: 'odd',
      columns: [
        { pattern: 'a.b.c', mask: fn({ fn: 'partial' }) },
        { pattern: 'a.b.d', mask: fn({ fn: 'scramble' }) },
        { pattern: 'a.b.e', mask: undefined },
      ],
    });
    expect(masksFor([odd], KEY, 'shop', 'x', [])!.columns.map((c) => c.mask)).toEqual([{ fn: 'partial', keep: 4 }, { fn: 'null' }, { fn: 'null' }]);
  });
});
