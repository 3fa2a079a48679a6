// Decodes the parameter values of a Bind message (the bytes after the portal
// and statement names) for the audit record. Only done for statements that
// are recorded, never on the forwarding path.

const MAX_SHOWN = 1024;

export function decodeParameters(bind: Buffer): Array<string | null> {
  let pos = 0;
  const nFormats = bind.readInt16BE(pos);
  pos += 2;
  const formats: number[] = [];
  for (let i = 0; i < nFormats; i++, pos += 2) formats.push(bind.readInt16BE(pos));
  const n = bind.readInt16BE(pos);
  pos += 2;
  const values: Array<string | null> = [];
  for (let i = 0; i < n; i++) {
    const len = bind.readInt32BE(pos);
    pos += 4;
    if (len < 0) {
      values.push(null);
      continue;
    }
    const binary = (nFormats === 1 ? formats[0] : formats[i]) === 1;
    const shown = Math.min(len, MAX_SHOWN);
    const text = binary ? `\\x${bind.toString('hex', pos, pos + shown)}` : bind.toString('utf8', pos, pos + shown);
    values.push(len > MAX_SHOWN ? `${text}… (${len} bytes)` : text);
    pos += len;
  }
  return values;
}
