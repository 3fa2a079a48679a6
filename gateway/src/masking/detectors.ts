// Masks by content: finds card numbers, e-mail addresses, phone numbers,
// IBANs, US SSNs and custom patterns in free text and replaces each match by
// its mask applied to the matched text. Compiled once per mask set; apply()
// runs per value, so a value that cannot hold a match (no digit, no '@') is
// skipped without being scanned.
import type { DetectorMask } from './types.js';
import { TEXT_OIDS, textMasker } from './values.js';

export interface Detectors {
  /** `text` with every match masked; the same string when nothing matched. */
  apply(text: string): string;
  /** Whether anything in `text` matches. */
  test(text: string): boolean;
}

interface Match {
  start: number;
  end: number;
  render: (matched: string) => string;
}

interface Compiled {
  /** What a value must contain for this detector to find anything. */
  needs: 'digit' | 'at' | 'nothing';
  scan(text: string, found: Match[]): void;
}

const DIGIT = /[0-9]/;
const isDigit = (c: number) => c >= 48 && c <= 57;

/** Characters that may separate the digits of a card, phone or IBAN: kept in place when the mask keeps the length. */
const isSeparator = (c: number) => c === 32 || c === 45 || c === 40 || c === 41 || c === 46;

/** Luhn check of digits[from, to). */
function luhn(digits: Uint8Array, from: number, to: number): boolean {
  let sum = 0;
  for (let i = to - 1, double = false; i >= from; i--, double = !double) {
    let d = digits[i]!;
    if (double && (d *= 2) > 9) d -= 9;
    sum += d;
  }
  return sum % 10 === 0;
}

/** mod-97 of an IBAN (upper case, no spaces) with its first four characters moved to the end. */
function ibanValid(iban: string): boolean {
  const s = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    rem = isDigit(c) ? (rem * 10 + c - 48) % 97 : (rem * 100 + c - 55) % 97;
  }
  return rem === 1;
}

function cardScanner(render: Match['render']): Compiled['scan'] {
  const RUN = /[0-9](?:[ -]?[0-9])+/g;
  return (text, found) => {
    RUN.lastIndex = 0;
    for (let m = RUN.exec(text); m; m = RUN.exec(text)) {
      const run = m[0];
      if (run.length < 13) continue;
      // Digit groups of the run; a card is a window of whole groups, so that
      // a number written next to a card ("… 6467 2024") does not hide it.
      const digits = new Uint8Array(run.length);
      const groups: Array<{ start: number; end: number; digit: number }> = [];
      let nd = 0;
      for (let i = 0; i < run.length; ) {
        const g = { start: i, end: i, digit: nd };
        while (g.end < run.length && isDigit(run.charCodeAt(g.end))) digits[nd++] = run.charCodeAt(g.end++) - 48;
        groups.push(g);
        i = g.end + 1;
      }
      const digitEnd = (j: number) => groups[j]!.digit + groups[j]!.end - groups[j]!.start;
      for (let i = 0; i < groups.length; ) {
        const from = groups[i]!.digit;
        let hit = -1;
        let last = i;
        while (last + 1 < groups.length && digitEnd(last + 1) - from <= 19) last++;
        for (let j = last; j >= i; j--) {
          const n = digitEnd(j) - from;
          if (n >= 13 && n <= 19 && luhn(digits, from, from + n)) {
            hit = j;
            break;
          }
        }
        if (hit < 0) {
          i++;
          continue;
        }
        found.push({ start: m.index + groups[i]!.start, end: m.index + groups[hit]!.end, render });
        i = hit + 1;
      }
    }
  };
}

const LOCAL = new Uint8Array(128);
const DOMAIN = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const alnum = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
  LOCAL[c] = alnum || ".!#$%&'*+/=?^_`{|}~-".includes(String.fromCharCode(c)) ? 1 : 0;
  DOMAIN[c] = alnum || c === 45 || c === 46 ? 1 : 0;
}

function emailScanner(render: Match['render']): Compiled['scan'] {
  return (text, found) => {
    // From each '@' outwards; '@' is not a local-part character, so no
    // character is looked at more than twice.
    let floor = 0;
    for (let at = text.indexOf('@'); at >= 0; at = text.indexOf('@', at + 1)) {
      let s = at;
      while (s > floor && LOCAL[text.charCodeAt(s - 1)] === 1) s--;
      while (s < at && text.charCodeAt(s) === 46) s++;
      let e = at + 1;
      while (e < text.length && DOMAIN[text.charCodeAt(e)] === 1) e++;
      while (e > at + 1 && (text.charCodeAt(e - 1) === 46 || text.charCodeAt(e - 1) === 45)) e--;
      if (s === at) continue;
      const domain = text.slice(at + 1, e);
      const dot = domain.lastIndexOf('.');
      if (dot <= 0 || domain.length - dot < 3 || domain.includes('..') || domain.charCodeAt(0) === 45) continue;
      found.push({ start: s, end: e, render });
      floor = e;
    }
  };
}

function phoneScanner(render: Match['render']): Compiled['scan'] {
  const E164 = /\+[0-9](?:[ -]?[0-9])*/g;
  const NANP = /(?<![0-9])(?:\([0-9]{3}\) ?|[0-9]{3}-)[0-9]{3}-[0-9]{4}(?![0-9])/g;
  return (text, found) => {
    E164.lastIndex = 0;
    for (let m = E164.exec(text); m; m = E164.exec(text)) {
      let n = 0;
      for (let i = 1; i < m[0].length; i++) if (isDigit(m[0].charCodeAt(i))) n++;
      if (n >= 8 && n <= 15) found.push({ start: m.index, end: m.index + m[0].length, render });
    }
    NANP.lastIndex = 0;
    for (let m = NANP.exec(text); m; m = NANP.exec(text)) found.push({ start: m.index, end: m.index + m[0].length, render });
  };
}

function ssnScanner(render: Match['render']): Compiled['scan'] {
  const SSN = /(?<![0-9])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![0-9])/g;
  return (text, found) => {
    SSN.lastIndex = 0;
    for (let m = SSN.exec(text); m; m = SSN.exec(text)) {
      const [, area, group, serial] = m;
      if (area === '000' || area === '666' || area![0] === '9' || group === '00' || serial === '0000') continue;
      found.push({ start: m.index, end: m.index + 11, render });
    }
  };
}

function ibanScanner(render: Match['render']): Compiled['scan'] {
  // Country, check digits, then the account part written whole or in groups of four.
  const IBAN = /(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[A-Za-z0-9]{11,30}(?![A-Za-z0-9])|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)/g;
  return (text, found) => {
    IBAN.lastIndex = 0;
    for (let m = IBAN.exec(text); m; m = IBAN.exec(text)) {
      const groups = m[0].split(' ');
      // A word written after a spaced IBAN looks like one more group: try shorter.
      for (let k = groups.length; k >= 1; k--) {
        const compact = groups.slice(0, k).join('').toUpperCase();
        if (compact.length < 15) break;
        if (compact.length <= 34 && ibanValid(compact)) {
          found.push({ start: m.index, end: m.index + groups.slice(0, k).join(' ').length, render });
          break;
        }
      }
    }
  };
}

function regexScanner(d: DetectorMask, render: Match['render']): Compiled['scan'] {
  let re: RegExp;
  try {
    re = new RegExp(d.pattern ?? '', 'g');
  } catch (e) {
    throw new Error(`mask rule ${d.rule}: invalid regular expression /${d.pattern}/: ${(e as Error).message}`);
  }
  if (!d.pattern || new RegExp(d.pattern).test('')) {
    throw new Error(`mask rule ${d.rule}: the regular expression /${d.pattern ?? ''}/ matches the empty string; it must match at least one character`);
  }
  return (text, found) => {
    re.lastIndex = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      // A pattern that matches empty only in some contexts (\b, ^) must not stall.
      if (m[0].length === 0) {
        re.lastIndex++;
        continue;
      }
      found.push({ start: m.index, end: m.index + m[0].length, render });
    }
  };
}

/** Masks the characters of a match other than its separators, keeping those in place when the mask keeps the length. */
function separatedRender(mask: (v: string) => string | null): Match['render'] {
  return (matched) => {
    let compact = '';
    for (let i = 0; i < matched.length; i++) if (!isSeparator(matched.charCodeAt(i))) compact += matched[i];
    const masked = Array.from(mask(compact) ?? '');
    if (masked.length !== compact.length) return masked.join('');
    let out = '';
    for (let i = 0, k = 0; i < matched.length; i++) out += isSeparator(matched.charCodeAt(i)) ? matched[i] : masked[k++];
    return out;
  };
}

/**
 * Compiles the detectors of a mask set. A `null` mask removes the match
 * (free text has no NULL). Throws on a regex that does not compile or that
 * matches the empty string.
 */
export function compileDetectors(list: DetectorMask[], key: Buffer): Detectors {
  const compiled: Compiled[] = list.map((d) => {
    const mask = textMasker(d.mask, key);
    const whole: Match['render'] = (matched) => mask(matched) ?? '';
    switch (d.detector) {
      case 'card':
        return { needs: 'digit', scan: cardScanner(separatedRender(mask)) };
      case 'email':
        return { needs: 'at', scan: emailScanner(whole) };
      case 'phone':
        return { needs: 'digit', scan: phoneScanner(separatedRender(mask)) };
      case 'iban':
        return { needs: 'digit', scan: ibanScanner(separatedRender(mask)) };
      case 'ssn':
        return { needs: 'digit', scan: ssnScanner(separatedRender(mask)) };
      case 'regex':
        return { needs: 'nothing', scan: regexScanner(d, whole) };
      default:
        throw new Error(`mask rule ${d.rule}: unknown detector ${String(d.detector)}`);
    }
  });

  const find = (text: string): Match[] => {
    const found: Match[] = [];
    if (text.length === 0) return found;
    let digit: boolean | undefined;
    let at: boolean | undefined;
    for (const c of compiled) {
      if (c.needs === 'digit' && !(digit ??= DIGIT.test(text))) continue;
      if (c.needs === 'at' && !(at ??= text.includes('@'))) continue;
      c.scan(text, found);
    }
    return found;
  };

  return {
    apply(text) {
      const found = find(text);
      if (found.length === 0) return text;
      // Earliest first, the longer of two starting together; overlaps go to the first.
      found.sort((a, b) => a.start - b.start || b.end - a.end);
      let out = '';
      let pos = 0;
      for (const m of found) {
        if (m.start < pos) continue;
        out += text.slice(pos, m.start) + m.render(text.slice(m.start, m.end));
        pos = m.end;
      }
      return out + text.slice(pos);
    },
    test: (text) => find(text).length > 0,
  };
}

/**
 * Runs the detectors over a value's bytes (UTF-8 text after `skip` bytes,
 * e.g. jsonb's version byte): the new bytes, or null when nothing matched.
 */
export function detectValue(detectors: Detectors, value: Buffer, skip = 0): Buffer | null {
  const text = value.toString('utf8', skip);
  const masked = detectors.apply(text);
  if (masked === text) return null;
  return skip === 0 ? Buffer.from(masked) : Buffer.concat([value.subarray(0, skip), Buffer.from(masked)]);
}

/**
 * Bytes a binary value of this type skips before its text, or -1 when its
 * binary form is not text. A type not known (no RowDescription for the
 * statement) is read as text: its bytes may be text, and a non-text value
 * only changes if it happens to hold a match.
 */
export function textOffset(type: number | undefined): number {
  if (type === undefined) return 0;
  if (TEXT_OIDS.has(type) || type === 114) return 0;
  return type === 3802 ? 1 : -1;
}
