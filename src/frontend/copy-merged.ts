// COPY (SELECT … ORDER BY / GROUP BY / LIMIT / DISTINCT / aggregates) TO STDOUT over several shards
// (`\copy (SELECT …) TO 'report.csv' CSV HEADER` in psql). Concatenating the shards' COPY streams
// cannot answer these (copy-out.ts), so the SELECT runs merged as a plain SELECT would, and pgring
// writes its rows in the COPY's text or CSV format, as PostgreSQL's CopyAttributeOutText /
// CopyAttributeOutCSV do (pure; the rows are collected before they are sent).
import { B } from '../protocol/codes';
import { commandComplete, copyDataMessage, decodeDataRowRaw } from '../protocol/messages';
import type { CopyMergedSpec } from '../router/types';
import { parseRowDescription } from '../router/merge';

const BS = 0x5c;

/** A value as a text-format COPY field: backslash escapes for \b \f \n \r \t \v, backslash and the delimiter. */
export function textField(v: Buffer, delim: number): Buffer {
  let needs = false;
  for (const c of v) if (c === BS || c === delim || c < 0x20) { needs = true; break; }
  if (!needs) return v;
  const out: number[] = [];
  for (const c of v) {
    switch (c) {
      case BS: out.push(BS, BS); break;
      case 0x08: out.push(BS, 0x62); break;
      case 0x0c: out.push(BS, 0x66); break;
      case 0x0a: out.push(BS, 0x6e); break;
      case 0x0d: out.push(BS, 0x72); break;
      case 0x09: out.push(BS, 0x74); break;
      case 0x0b: out.push(BS, 0x76); break;
      default: if (c === delim) out.push(BS, c); else out.push(c);
    }
  }
  return Buffer.from(out);
}

/** A value as a CSV field: quoted when forced, when it equals the NULL string, is `\.` alone in a
 *  one-column row, or holds the delimiter, the quote, CR or LF; quote and escape characters escaped. */
export function csvField(v: Buffer, spec: CopyMergedSpec, force: boolean, single: boolean): Buffer {
  const d = spec.delimiter.charCodeAt(0), q = spec.quote.charCodeAt(0), e = spec.escape.charCodeAt(0);
  let quote = force || v.toString('utf8') === spec.null || (single && v.length === 2 && v[0] === BS && v[1] === 0x2e);
  if (!quote) for (const c of v) if (c === d || c === q || c === 0x0a || c === 0x0d) { quote = true; break; }
  if (!quote) return v;
  const out: number[] = [q];
  for (const c of v) { if (c === q || c === e) out.push(e); out.push(c); }
  out.push(q);
  return Buffer.from(out);
}

/** One row (or the header) as a COPY line. */
export function copyLine(values: (Buffer | null)[], spec: CopyMergedSpec, forced: boolean[]): Buffer {
  const delim = Buffer.from(spec.delimiter, 'utf8');
  const parts: Buffer[] = [];
  values.forEach((v, i) => {
    if (i) parts.push(delim);
    if (v === null) parts.push(Buffer.from(spec.null, 'utf8'));
    else parts.push(spec.csv ? csvField(v, spec, forced[i] ?? false, values.length === 1) : textField(v, delim[0]!));
  });
  parts.push(Buffer.from('\n'));
  return Buffer.concat(parts);
}

/** The merged SELECT's answer (RowDescription, DataRows, CommandComplete) as a COPY TO STDOUT's
 *  (CopyOutResponse, a CopyData per line, CopyDone, `COPY n`); an error is passed on as it is. */
export function copyMergedMessages(msgs: Buffer[], spec: CopyMergedSpec): Buffer[] {
  if (msgs.some((m) => m[0] === B.ErrorResponse)) return msgs.filter((m) => m[0] !== B.ReadyForQuery);
  const rd = msgs.find((m) => m[0] === B.RowDescription);
  const fields = rd ? parseRowDescription(rd) : [];
  const forced = fields.map((f) => spec.forceQuote === true || (spec.forceQuote ?? []).includes(f.name));
  const head = Buffer.alloc(8 + 2 * fields.length);
  head[0] = B.CopyOutResponse; head.writeInt32BE(7 + 2 * fields.length, 1); head[5] = 0; head.writeUInt16BE(fields.length, 6);
  const out: Buffer[] = [head];
  if (spec.header) out.push(copyDataMessage(copyLine(fields.map((f) => Buffer.from(f.name, 'utf8')), spec, fields.map(() => false))));
  let rows = 0;
  for (const m of msgs) if (m[0] === B.DataRow) { out.push(copyDataMessage(copyLine(decodeDataRowRaw(m), spec, forced))); rows++; }
  out.push(Buffer.from([B.CopyDone, 0, 0, 0, 4]), commandComplete(`COPY ${rows}`));
  return out;
}
