import { describe, expect, it } from 'vitest';
import { statementShape } from '../src/policy/index.js';

const M = '\u0000';

describe('statement shape', () => {
  it('replaces standalone integers', () => {
    expect(statementShape('SELECT abalance FROM pgbench_accounts WHERE aid = 4711;')).toBe(`SELECT abalance FROM pgbench_accounts WHERE aid = ${M};`);
    expect(statementShape('SELECT 1,2, (3)::int LIMIT 10')).toBe(`SELECT ${M},${M}, (${M})::int LIMIT ${M}`);
    expect(statementShape('SELECT x FROM t WHERE y=-5')).toBe(`SELECT x FROM t WHERE y=-${M}`);
  });

  it('returns null when there is nothing to replace', () => {
    expect(statementShape('SELECT * FROM t WHERE a = $1')).toBeNull();
    expect(statementShape('SELECT now()')).toBeNull();
    expect(statementShape('')).toBeNull();
  });

  it.each([
    ["SELECT '123'", 'a string'],
    ["SELECT 'it''s 5'", 'a string with a doubled quote'],
    ["SELECT E'\\' 5 '", 'an escape string with an escaped quote'],
    ['SELECT "col 5" FROM t', 'a quoted identifier'],
    ['SELECT t1.c2 FROM t1', 'identifiers with digits'],
    ['SELECT $1, $22', 'parameters'],
    ['SELECT 1.5, .5, 1e5, 2E-3', 'decimals and reals'],
    ['SELECT 0x1F, 1_000, 0o17, 0b101', 'other integer forms (trailing junk before Postgres 16)'],
    ['SELECT t.1', 'a number after a dot'],
    ['SELECT $$ 5 $$, $q$ 6 $q$', 'dollar quotes'],
    ['SELECT /* 5 /* nested 6 */ 7 */ a', 'nested block comments'],
    ['SELECT a -- 5\n', 'a line comment'],
    ["SELECT B'101', X'1F'", 'bit strings'],
    ['SELECT a$1 FROM t', 'an identifier with a dollar'],
  ])('leaves %s alone (%s)', (sql) => {
    expect(statementShape(sql)).toBeNull();
  });

  it("does not take a standard string's backslash as an escape", () => {
    // standard_conforming_strings is on, as libpg-query parses: 'a\' ends the string.
    expect(statementShape("SELECT 'a\\', 5")).toBe(`SELECT 'a\\', ${M}`);
  });

  it('gives up on text that ends inside a literal or comment', () => {
    expect(statementShape("SELECT 5, 'open")).toBeNull();
    expect(statementShape('SELECT 5 /* open')).toBeNull();
    expect(statementShape('SELECT 5, $a$ open')).toBeNull();
  });

  it('keeps the parts around numbers exactly, including non-ASCII identifiers', () => {
    expect(statementShape('SELECT größe5, 7 FROM täble')).toBe(`SELECT größe5, ${M} FROM täble`);
  });
});
