// Names written inside strings: regclass literals, search_path lists.
import type { ObjectRef } from '../types.js';

/** Best-effort split of a regclass literal such as 'sch."My Seq"'. */
export function regclassRef(text: string): ObjectRef | undefined {
  const parts: string[] = [];
  let i = 0;
  const s = text.trim();
  while (i < s.length) {
    let part = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) return undefined;
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += s[i++];
      }
    } else {
      const m = /^[^."]+/.exec(s.slice(i));
      if (!m) return undefined;
      part = m[0].trim().toLowerCase();
      i += m[0].length;
    }
    parts.push(part);
    if (i < s.length) {
      if (s[i] !== '.') return undefined;
      i++;
    }
  }
  if (parts.length === 0 || parts.length > 3 || parts.some((p) => p === '')) return undefined;
  const ref: ObjectRef = { type: 'table', name: parts[parts.length - 1]! };
  if (parts.length >= 2) ref.schema = parts[parts.length - 2]!;
  return ref;
}
