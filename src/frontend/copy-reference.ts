// COPY FROM STDIN into a reference table whose column list leaves out a column with a volatile
// default (`id uuid DEFAULT gen_random_uuid()`, `created_at timestamptz DEFAULT now()`,
// clock_timestamp(), random(), a user function). Every shard copies every row, and each
// evaluated such a default itself: the copies of one row got different ids and times on each
// shard, without an error (INSERT evaluates them once, reference-defaults.ts; COPY did not).
// Here pgring answers the client's COPY itself and cuts its rows into chunks; for each chunk the
// first shard evaluates the left-out defaults once per row, in the client's transaction, and every
// shard runs `COPY t (listed…, left-out…) FROM STDIN` with the rows and those values appended.
// Sequence-only defaults (serial, identity) stay with the shards: their sequences are aligned
// before the COPY (copy-in.ts). Text and CSV formats; binary is refused rather than diverging.
import { B, F } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import { commandComplete, Writer } from '../protocol/messages';
import type { CopySpec } from '../router/types';
import { constantDefault, scanTo, type Col } from './reference-defaults';
import { RowCutter, stripEol } from './copy';
import { quoteIdent } from './session-util';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const pg: { parseSync(sql: string): { stmts?: { stmt: any }[] } } = require('libpg-query');

const BS = 0x5c;
/** Rows and bytes per chunk: one evaluation query and one COPY per shard each. */
export const CHUNK_ROWS = 5000;
export const CHUNK_BYTES = 1 << 20;

/** A default every shard evaluates alike, or one the shards keep in step (a sequence, aligned before the COPY). */
function sharedDefault(c: Col): boolean {
  if (c.identity !== '' || c.expr === null) return true;
  return /^nextval\('(?:[^']|'')+'::regclass\)$/i.test(c.expr.trim()) || constantDefault(c.expr);
}

/** The columns a COPY with this column list leaves to defaults the shards would not agree on. */
export function divergentDefaults(cols: Col[], listed: string[]): Col[] {
  return cols.filter((c) => !listed.includes(c.name) && !sharedDefault(c));
}

/** The COPY statement with `extra` appended to its column list, or null when it has none (or cannot be read). */
export function copyWithColumns(sql: string, extra: string[]): string | null {
  let stmt: any;
  try { stmt = pg.parseSync(sql).stmts?.[0]?.stmt?.CopyStmt; } catch { return null; }
  if (!stmt?.is_from || !stmt.relation || !stmt.attlist?.length) return null;
  const b = Buffer.from(sql, 'utf8');
  let i = stmt.relation.location as number;
  // past the (possibly qualified, possibly quoted) table name to the column list's '('
  while (i < b.length && b[i] !== 0x28) {
    if (b[i] === 0x22) { i++; while (i < b.length && !(b[i] === 0x22 && b[i + 1] !== 0x22)) { if (b[i] === 0x22) i++; i++; } }
    i++;
  }
  const close = i < b.length ? scanTo(b, i + 1, 0x29) : -1;
  if (close < 0) return null;
  return b.toString('utf8', 0, close) + extra.map((n) => `, ${quoteIdent(n)}`).join('') + b.toString('utf8', close);
}

/** A value as one field of a text or CSV COPY row (NULL as the COPY's NULL string). */
export function copyField(v: string | null, spec: Pick<CopySpec, 'format' | 'delimiter' | 'null' | 'quote' | 'escape'>): string {
  if (v === null) return spec.null;
  if (spec.format === 'csv') {
    const q = spec.quote, e = spec.escape;
    let out = q;
    for (const ch of v) out += ch === q ? e + q : (ch === e && e !== q ? e + e : ch);
    return out + q;
  }
  let out = '';
  for (const ch of v) {
    if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === spec.delimiter) out += '\\' + ch;
    else out += ch;
  }
  return out;
}

/** The row with `fields` (already encoded) appended before its line end. */
export function appendFields(row: Buffer, fields: Buffer): Buffer {
  const body = stripEol(row);
  const eol = body.length < row.length ? row.subarray(body.length) : Buffer.from('\n');
  return Buffer.concat([body, fields, eol]);
}

/** Whether a row is the end-of-data marker `\\.`. */
export function isEndMarker(row: Buffer): boolean {
  const body = stripEol(row);
  return body.length === 2 && body[0] === BS && body[1] === 0x2e;
}

/** What the chunked COPY needs from the session (kept narrow so the logic is testable). */
export interface ChunkRunner {
  /** Evaluates the left-out defaults on the first shard: `n` rows of text values. */
  evaluate(n: number): Promise<(string | null)[][]>;
  /** Runs the COPY on every shard with `data` (CopyData bodies); resolves with the rows copied, or the first shard error (raw ErrorResponse). */
  copy(data: Buffer[]): Promise<{ count: number } | { error: Buffer }>;
  /** Aborts the COPY on every shard with CopyFail (their transactions fail, as PostgreSQL's does). */
  fail(reason: string): Promise<void>;
  /** Client text → bytes in the client's encoding. */
  encode(s: string): Buffer;
}

/**
 * The client side of the COPY: rows in, chunks out, one result at the end. Chunks run one after
 * another; while one runs the next fills, and a third waits (`backlog()` is the work the
 * session's pump waits for before reading on, so memory stays at about two chunks).
 */
export class ReferenceCopy {
  private readonly cutter: RowCutter;
  private rows: Buffer[] = [];
  private bytes = 0;
  private headerPending: boolean;
  private ended = false;
  private chain: Promise<void> = Promise.resolve();
  private running = 0;
  private copied = 0;
  private rowsSent = 0;
  /** The first failure: a shard's ErrorResponse (raw) or pgring's own. */
  error: Buffer | null = null;

  constructor(readonly spec: CopySpec, readonly extra: Col[], private readonly run: ChunkRunner) {
    this.cutter = new RowCutter(spec);
    this.headerPending = spec.header;
  }

  /** The CopyInResponse the client gets (pgring answers the COPY itself). */
  static copyInResponse(columns: number): Buffer {
    const w = new Writer().int8(0).int16(columns);
    for (let i = 0; i < columns; i++) w.int16(0);
    return w.msg(B.CopyInResponse);
  }

  /** A client CopyData body. Returns work the session must wait for before reading on, or null. */
  data(body: Buffer): Promise<void> | null {
    if (this.ended || this.error) return null;
    for (const row of this.cutter.push(body)) this.add(row);
    if (this.rows.length >= CHUNK_ROWS || this.bytes >= CHUNK_BYTES) return this.flushChunk();
    return null;
  }

  /** CopyDone: the last rows, then the result message (CommandComplete or ErrorResponse). */
  async done(): Promise<Buffer> {
    const last = this.cutter.end();
    if (last && !this.ended && !this.error) this.add(last);
    if (this.rows.length && !this.error) void this.flushChunk();
    await this.chain;
    return this.error ?? commandComplete(`COPY ${this.copied}`);
  }

  /** CopyFail: every shard's COPY fails with the client's reason (57014, as PostgreSQL answers). */
  async failed(reason: string): Promise<Buffer> {
    this.rows = [];
    await this.chain;
    if (!this.error) await this.run.fail(reason);
    return this.error ?? new PgError(SQLSTATE.QueryCanceled, `COPY from stdin failed: ${reason}`).toMessage();
  }

  private add(row: Buffer): void {
    if (this.ended) return;
    if (this.headerPending) {
      // HEADER (and HEADER MATCH): the left-out columns' names join the header line
      this.headerPending = false;
      const names = this.extra.map((c) => this.spec.delimiter + copyField(c.name, this.spec)).join('');
      this.rows.push(appendFields(row, this.run.encode(names)));
      this.headerRow = true;
      return;
    }
    if (isEndMarker(row)) { this.ended = true; return; }
    this.rows.push(row);
    this.bytes += row.length;
  }
  private headerRow = false;

  private flushChunk(): Promise<void> {
    const rows = this.rows, header = this.headerRow;
    this.rows = []; this.bytes = 0; this.headerRow = false;
    this.running++;
    this.chain = this.chain.then(() => this.runChunk(rows, header)).finally(() => { this.running--; });
    // one chunk may run while the next fills; beyond that the client waits
    return this.running > 1 ? this.chain : Promise.resolve();
  }

  private async runChunk(rows: Buffer[], header: boolean): Promise<void> {
    if (this.error) return;
    const dataRows = header ? rows.length - 1 : rows.length;
    const values = dataRows > 0 ? await this.run.evaluate(dataRows).catch((e: unknown) => { this.error = toError(e); return null; }) : [];
    if (!values) return;
    const out: Buffer[] = header ? [rows[0]!] : [];
    for (let r = 0; r < dataRows; r++) {
      const vals = values[r] ?? [];
      const fields = this.extra.map((_, k) => this.spec.delimiter + copyField(vals[k] ?? null, this.spec)).join('');
      out.push(appendFields(rows[header ? r + 1 : r]!, this.run.encode(fields)));
    }
    const res = await this.run.copy(out);
    if ('error' in res) { this.error = shiftCopyLine(res.error, this.rowsSent); return; }
    this.copied += res.count;
    this.rowsSent += dataRows;
  }
}

function toError(e: unknown): Buffer {
  return (e instanceof PgError ? e : new PgError(SQLSTATE.InternalError, (e as Error).message)).toMessage();
}

/** A shard's COPY error names the line within its chunk: make it the line within the client's data. */
export function shiftCopyLine(err: Buffer, before: number): Buffer {
  if (before === 0 || err[0] !== B.ErrorResponse) return err;
  const parts: Buffer[] = [];
  let i = 5, changed = false;
  while (i < err.length && err[i] !== 0) {
    const end = err.indexOf(0, i + 1);
    if (end < 0) return err;
    let field = err.subarray(i, end);
    if (field[0] === 0x57) { // W: context
      const s = field.toString('utf8', 1);
      const t = s.replace(/^(COPY .*?, line )(\d+)/m, (_, p: string, n: string) => `${p}${Number(n) + before}`);
      if (t !== s) { field = Buffer.concat([Buffer.from('W'), Buffer.from(t, 'utf8')]); changed = true; }
    }
    parts.push(field, Buffer.from([0]));
    i = end + 1;
  }
  if (!changed) return err;
  const body = Buffer.concat([...parts, Buffer.from([0])]);
  const m = Buffer.allocUnsafe(5 + body.length);
  m[0] = err[0]!; m.writeInt32BE(4 + body.length, 1); body.copy(m, 5);
  return m;
}

/** The CopyDone and CopyFail messages pgring sends the shards. */
export const COPY_DONE = Buffer.from([F.CopyDone, 0, 0, 0, 4]);
export function copyFail(reason: string): Buffer { return new Writer().cstr(reason).msg(F.CopyFail); }
