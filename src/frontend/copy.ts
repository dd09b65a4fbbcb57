// COPY ... FROM STDIN into a sharded table: the client's data stream is cut into
// rows, each row's shard key column is read (text or CSV format) and the row is
// sent to the shard that owns the key. Every shard ran the same COPY statement.
import { F } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import { copyDataMessage, Writer } from '../protocol/messages';
import type { ServerConnection } from '../backend/server';
import type { KeyType } from '../config/types';
import type { CopySpec } from '../router/types';
import type { ShardMap } from './routing';

const NL = 0x0a, CR = 0x0d, BS = 0x5c;

export class CopySplitter {
  private readonly cutter: RowCutter;
  private headerPending: boolean;
  private ended = false;
  readonly rowsPerShard: number[];
  error: PgError | null = null;

  constructor(
    readonly spec: CopySpec,
    readonly keyIndex: number,
    readonly keyType: KeyType,
    readonly shards: ShardMap,
    readonly conns: ServerConnection[],
    /** the client's bytes as text (its client_encoding) */
    readonly decode: (b: Buffer) => string = (b) => b.toString('utf8'),
  ) {
    if (spec.format === 'binary') throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: COPY FROM STDIN in binary format into a sharded table is not supported; use text or csv');
    this.headerPending = spec.header;
    this.rowsPerShard = conns.map(() => 0);
    this.cutter = new RowCutter(spec);
  }

  /** Handles one client CopyData / CopyDone / CopyFail message. */
  clientMessage(type: number, msg: Buffer): void {
    if (type === F.CopyData) { if (!this.ended && !this.error) this.data(msg.subarray(5)); return; }
    if (type === F.CopyDone) {
      const last = this.cutter.end();
      if (last && !this.ended && !this.error) this.route([last]);
      if (this.error) { this.fail(this.error.message); return; }
      for (const c of this.conns) c.write(msg);
      return;
    }
    // CopyFail: every shard aborts its COPY.
    for (const c of this.conns) c.write(msg);
  }

  fail(reason: string): void {
    const m = new Writer().cstr(reason).msg(F.CopyFail);
    for (const c of this.conns) c.write(m);
  }

  private data(chunk: Buffer): void {
    const rows = this.cutter.push(chunk);
    if (rows.length) this.route(rows);
  }

  private route(rows: Buffer[]): void {
    const out: Buffer[][] = this.conns.map(() => []);
    for (const row of rows) {
      if (this.headerPending) { this.headerPending = false; for (const o of out) o.push(row); continue; }
      const line = stripEol(row);
      if (!csv(this.spec) && line.length === 2 && line[0] === BS && line[1] === 0x2e) { this.ended = true; break; } // \.
      let key: string | null;
      try { key = this.spec.format === 'csv' ? csvField(line, this.keyIndex, this.spec, this.decode) : textField(line, this.keyIndex, this.spec, this.decode); } catch (e) {
        this.error = e as PgError; return;
      }
      if (key === null) {
        this.error = new PgError('23502', `null value in shard key column of table "${this.spec.table}" cannot be routed`);
        return;
      }
      let shard: number;
      try { shard = this.shards.shardForKey(this.keyType, key); } catch (e) {
        this.error = e instanceof PgError ? e : new PgError(SQLSTATE.InvalidTextRepresentation, (e as Error).message);
        return;
      }
      out[shard]!.push(row);
      this.rowsPerShard[shard]!++;
    }
    for (let s = 0; s < out.length; s++) {
      const rs = out[s]!;
      if (!rs.length) continue;
this.conns[s]!.write(copyDataMessage(rs.length === 1 ? rs[0]! : Buffer.concat(rs)));
    }
  }
}

function csv(spec: CopySpec): boolean { return spec.format === 'csv'; }

/** A COPY row without its line end (\\n or \\r\\n). */
export function stripEol(row: Buffer): Buffer {
  let end = row.length;
  if (end && row[end - 1] === NL) end--;
  if (end && row[end - 1] === CR) end--;
  return row.subarray(0, end);
}

/** Field `idx` of a text-format row, unescaped; null for the NULL marker. */
export function textField(line: Buffer, idx: number, spec: Pick<CopySpec, 'delimiter' | 'null' | 'table'>, decode: (b: Buffer) => string = (b) => b.toString('utf8')): string | null {
  const delim = spec.delimiter.charCodeAt(0);
  let field = 0, start = 0;
  let i = 0;
  for (; i <= line.length; i++) {
    if (i === line.length || line[i] === delim) {
      if (field === idx) {
        const raw = line.subarray(start, i);
        const s = decode(raw);
        if (s === spec.null) return null;
        return unescapeText(s);
      }
      field++; start = i + 1;
    } else if (line[i] === BS) i++;
  }
  throw new PgError('22P04', `missing data for shard key column (field ${idx + 1}) in COPY to table "${spec.table}"`);
}

function unescapeText(s: string): string {
  if (!s.includes('\\')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\' || i + 1 >= s.length) { out += c; continue; }
    const n = s[++i]!;
    switch (n) {
      case 'b': out += '\b'; break; case 'f': out += '\f'; break; case 'n': out += '\n'; break;
      case 'r': out += '\r'; break; case 't': out += '\t'; break; case 'v': out += '\v'; break;
      case 'x': { const m = /^[0-9a-fA-F]{1,2}/.exec(s.slice(i + 1)); if (m) { out += String.fromCharCode(parseInt(m[0], 16)); i += m[0].length; } else out += 'x'; break; }
      default:
        if (n >= '0' && n <= '7') { const m = /^[0-7]{1,3}/.exec(s.slice(i))!; out += String.fromCharCode(parseInt(m[0], 8)); i += m[0].length - 1; }
        else out += n;
    }
  }
  return out;
}

/** Field `idx` of a CSV row; null for an unquoted NULL string. */
export function csvField(line: Buffer, idx: number, spec: Pick<CopySpec, 'delimiter' | 'null' | 'quote' | 'escape' | 'table'>, decode: (b: Buffer) => string = (b) => b.toString('utf8')): string | null {
  const s = decode(line);
  const d = spec.delimiter, q = spec.quote, e = spec.escape;
  let field = 0, i = 0;
  while (i <= s.length) {
    let val = '';
    let quoted = false;
    let raw = '';
    while (i < s.length && s[i] !== d) {
      if (s[i] === q) {
        quoted = true; i++;
        while (i < s.length) {
          if (s[i] === e && s[i + 1] === q) { val += q; i += 2; continue; }
          if (s[i] === q) { i++; break; }
          val += s[i++];
        }
      } else { val += s[i]; raw += s[i]; i++; }
    }
    if (field === idx) return !quoted && raw === spec.null ? null : val;
    field++; i++;
  }
  throw new PgError('22P04', `missing data for shard key column (field ${idx + 1}) in COPY to table "${spec.table}"`);
}

/** Cuts COPY data into whole rows (text: a newline not escaped; CSV: a newline outside quotes). */
export class RowCutter {
  private carry: Buffer | null = null;
  constructor(private readonly spec: Pick<CopySpec, 'format' | 'quote' | 'escape'>) {}

  push(chunk: Buffer): Buffer[] {
    const buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = null;
    const rows: Buffer[] = [];
    const csv = this.spec.format === 'csv';
    const quote = this.spec.quote.charCodeAt(0), escape = this.spec.escape.charCodeAt(0);
    let start = 0, inQuote = false;
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i]!;
      if (csv) {
        if (inQuote && c === escape && escape !== quote && buf[i + 1] === quote) i++;
        else if (c === quote) inQuote = !inQuote; // a doubled quote toggles twice
        else if (c === NL && !inQuote) { rows.push(buf.subarray(start, i + 1)); start = i + 1; }
      } else if (c === BS) i++;
      else if (c === NL) { rows.push(buf.subarray(start, i + 1)); start = i + 1; }
    }
    if (start < buf.length) this.carry = Buffer.from(buf.subarray(start));
    return rows;
  }

  /** The last row when the data did not end with a newline. */
  end(): Buffer | null { const c = this.carry; this.carry = null; return c && c.length ? c : null; }
}
