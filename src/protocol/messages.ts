// Builders for the messages pgring itself writes (to clients and to servers) and
// small lazy decoders for the few it must read. Forwarded messages are never rebuilt.
import { B, F } from './codes';
import type { Codec } from './encoding';

/** Grows a buffer as fields are appended; one allocation per message in the common case. */
export class Writer {
  private buf: Buffer;
  private off = 5;
  constructor(size = 256) { this.buf = Buffer.allocUnsafe(size); }
  private ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }
  int8(v: number): this { this.ensure(1); this.buf[this.off++] = v; return this; }
  /** A signed value (-32768..32767) or a count (0..65535: PostgreSQL reads parameter and column counts unsigned). */
  int16(v: number): this { this.ensure(2); if (v > 0x7fff) this.buf.writeUInt16BE(v, this.off); else this.buf.writeInt16BE(v, this.off); this.off += 2; return this; }
  int32(v: number): this { this.ensure(4); this.buf.writeInt32BE(v, this.off); this.off += 4; return this; }
  cstr(s: string): this {
    const n = Buffer.byteLength(s);
    this.ensure(n + 1);
    this.buf.write(s, this.off, 'utf8'); this.off += n;
    this.buf[this.off++] = 0;
    return this;
  }
  bytes(b: Buffer): this { this.ensure(b.length); b.copy(this.buf, this.off); this.off += b.length; return this; }
  /** A string already encoded (a client encoding other than UTF8), NUL-terminated. */
  cbytes(b: Buffer): this { this.bytes(b); this.ensure(1); this.buf[this.off++] = 0; return this; }
  /** Finishes a typed message (type byte + length). */
  msg(type: number): Buffer {
    this.buf[0] = type;
    this.buf.writeInt32BE(this.off - 1, 1);
    return this.buf.subarray(0, this.off);
  }
  /** Finishes an untyped startup-phase packet (length only). */
  packet(): Buffer {
    const out = this.buf.subarray(1, this.off);
    out.writeInt32BE(this.off - 1, 0);
    return out;
  }
}

const RFQ = { I: fixed(B.ReadyForQuery, Buffer.from('I')), T: fixed(B.ReadyForQuery, Buffer.from('T')), E: fixed(B.ReadyForQuery, Buffer.from('E')) };
export type TxStatus = 'I' | 'T' | 'E';

function fixed(type: number, body: Buffer): Buffer {
  const b = Buffer.allocUnsafe(5 + body.length);
  b[0] = type; b.writeInt32BE(4 + body.length, 1); body.copy(b, 5);
  return b;
}

export const readyForQuery = (s: TxStatus): Buffer => RFQ[s];
export const parseComplete = fixed(B.ParseComplete, Buffer.alloc(0));
export const bindComplete = fixed(B.BindComplete, Buffer.alloc(0));
export const closeComplete = fixed(B.CloseComplete, Buffer.alloc(0));
export const noData = fixed(B.NoData, Buffer.alloc(0));
export const emptyQueryResponse = fixed(B.EmptyQueryResponse, Buffer.alloc(0));
export const authOk = fixed(B.Authentication, Buffer.from([0, 0, 0, 0]));
export const syncMsg = fixed(F.Sync, Buffer.alloc(0));
export const flushMsg = fixed(F.Flush, Buffer.alloc(0));
export const terminateMsg = fixed(F.Terminate, Buffer.alloc(0));
export const copyDoneMsg = fixed(F.CopyDone, Buffer.alloc(0));   // the same byte in both directions
export const copyData = (payload: Buffer): Buffer => fixed(B.CopyData, payload);

export function authRequest(code: number, extra?: Buffer): Buffer {
  const w = new Writer(16 + (extra?.length ?? 0)).int32(code);
  if (extra) w.bytes(extra);
  return w.msg(B.Authentication);
}
export function authSasl(mechanisms: string[]): Buffer {
  const w = new Writer().int32(10);
  for (const m of mechanisms) w.cstr(m);
  return w.int8(0).msg(B.Authentication);
}
export function parameterStatus(name: string, value: string): Buffer {
  return new Writer().cstr(name).cstr(value).msg(B.ParameterStatus);
}
export function backendKeyData(pid: number, secret: number): Buffer {
  return new Writer(16).int32(pid).int32(secret).msg(B.BackendKeyData);
}
export function commandComplete(tag: string): Buffer {
  return new Writer(32).cstr(tag).msg(B.CommandComplete);
}
/** A Query message; `codec`: the client's encoding when it is not UTF8 (protocol/encoding.ts). */
export function query(sql: string, codec?: Codec | null): Buffer {
  if (codec) { const b = codec.encode(sql); return new Writer(b.length + 8).cbytes(b).msg(F.Query); }
  return new Writer(Buffer.byteLength(sql) + 8).cstr(sql).msg(F.Query);
}

export interface ErrorLike { severity?: string; code: string; message: string; detail?: string; hint?: string; position?: string; file?: string; routine?: string }
function errorBody(w: Writer, e: ErrorLike): Writer {
  const sev = e.severity ?? 'ERROR';
  w.int8(0x53).cstr(sev).int8(0x56).cstr(sev).int8(0x43).cstr(e.code).int8(0x4d).cstr(e.message);
  if (e.detail) w.int8(0x44).cstr(e.detail);
  if (e.hint) w.int8(0x48).cstr(e.hint);
  if (e.position) w.int8(0x50).cstr(e.position);
  if (e.file) w.int8(0x46).cstr(e.file);
  if (e.routine) w.int8(0x52).cstr(e.routine);
  return w.int8(0);
}
export function buildError(e: ErrorLike): Buffer { return errorBody(new Writer(), e).msg(B.ErrorResponse); }
export function buildNotice(e: ErrorLike): Buffer { return errorBody(new Writer(), { severity: 'NOTICE', ...e }).msg(B.NoticeResponse); }

/** Column description for result sets pgring produces itself (admin console, merges). */
export interface Column { name: string; typeOid?: number; typeSize?: number }
export const OID = { bool: 16, int8: 20, int2: 21, int4: 23, text: 25, oid: 26, float4: 700, float8: 701, varchar: 1043, numeric: 1700, uuid: 2950 } as const;

export function rowDescription(cols: Column[]): Buffer {
  const w = new Writer(16 + cols.length * 32).int16(cols.length);
  for (const c of cols) {
    w.cstr(c.name).int32(0).int16(0).int32(c.typeOid ?? OID.text).int16(c.typeSize ?? -1).int32(-1).int16(0);
  }
  return w.msg(B.RowDescription);
}
export function dataRow(values: (string | null | Buffer)[]): Buffer {
  const w = new Writer(16 + values.length * 16).int16(values.length);
  for (const v of values) {
    if (v === null) { w.int32(-1); continue; }
    const b = typeof v === 'string' ? Buffer.from(v) : v;
    w.int32(b.length).bytes(b);
  }
  return w.msg(B.DataRow);
}

// ---- lazy decoders ------------------------------------------------------------

/** Reads a NUL-terminated string at `off`; returns [value, offset after NUL]. */
export function readCString(buf: Buffer, off: number): [string, number] {
  const end = buf.indexOf(0, off);
  if (end < 0) throw new RangeError('unterminated string');
  return [buf.toString('utf8', off, end), end + 1];
}

export function readyStatus(msg: Buffer): TxStatus { return String.fromCharCode(msg[5]!) as TxStatus; }
export function commandTag(msg: Buffer): string { return msg.toString('utf8', 5, msg.length - 1); }

/** Parse: statement name, query text, parameter type OIDs. */
export function decodeParse(msg: Buffer, codec?: Codec | null): { name: string; sql: string; types: number[] } {
  let [name, off] = readCString(msg, 5);
  let sql: string;
  const start = off;
  [sql, off] = readCString(msg, off);
  if (codec) sql = codec.decode(msg, start, off - 1);
  const n = msg.readUInt16BE(off); off += 2; // counts are unsigned, as PostgreSQL reads them
  const types: number[] = [];
  for (let i = 0; i < n; i++) { types.push(msg.readUInt32BE(off)); off += 4; }
  return { name, sql, types };
}

/** Bind: portal and statement names at once; formats and parameter values (slices of the
 *  message, no copies) only when asked for, since a one-shard route never looks at them. */
export class BindInfo {
  readonly portal: string;
  readonly statement: string;
  /** Offsets of the statement name and of the byte after its NUL (renameBind splices there). */
  readonly stmtStart: number;
  readonly stmtEnd: number;
  private decoded: { paramFormats: number[]; params: (Buffer | null)[]; resultOffset: number } | null = null;

  constructor(private readonly msg: Buffer) {
    const p = cstrEnd(msg, 5);
    this.portal = p === 5 ? '' : msg.toString('utf8', 5, p);
    this.stmtStart = p + 1;
    const e = cstrEnd(msg, this.stmtStart);
    this.statement = e === this.stmtStart ? '' : msg.toString('utf8', this.stmtStart, e);
    this.stmtEnd = e + 1;
  }

  get paramFormats(): number[] { return (this.decoded ??= this.decode()).paramFormats; }
  get params(): (Buffer | null)[] { return (this.decoded ??= this.decode()).params; }
  get resultOffset(): number { return (this.decoded ??= this.decode()).resultOffset; }

  private decode(): { paramFormats: number[]; params: (Buffer | null)[]; resultOffset: number } {
    const msg = this.msg;
    let off = this.stmtEnd;
    const nf = msg.readUInt16BE(off); off += 2;
    const paramFormats: number[] = [];
    for (let i = 0; i < nf; i++) { paramFormats.push(msg.readInt16BE(off)); off += 2; }
    const np = msg.readUInt16BE(off); off += 2;
    const params: (Buffer | null)[] = [];
    for (let i = 0; i < np; i++) {
      const len = msg.readInt32BE(off); off += 4;
      if (len < 0) params.push(null);
      else { params.push(msg.subarray(off, off + len)); off += len; }
    }
    return { paramFormats, params, resultOffset: off };
  }
}

function cstrEnd(buf: Buffer, off: number): number {
  const end = buf.indexOf(0, off);
  if (end < 0) throw new RangeError('unterminated string');
  return end;
}

/** Bind: see BindInfo (the message's layout was checked by frontend-check.ts as it arrived;
 *  names are checked here, so an unchecked message still fails at once). */
export function decodeBind(msg: Buffer): BindInfo {
  const info = new BindInfo(msg);
  if (msg.length < info.stmtEnd + 4) throw new RangeError('short Bind message');
  return info;
}

/** Rebuilds a Bind with another statement name, keeping every other byte. */
export function renameBind(msg: Buffer, statement: string, info?: BindInfo): Buffer {
  const afterPortal = info ? info.stmtStart : cstrEnd(msg, 5) + 1;
  const afterStmt = info ? info.stmtEnd : cstrEnd(msg, afterPortal) + 1;
  const nameLen = Buffer.byteLength(statement);
  const out = Buffer.allocUnsafe(afterPortal + nameLen + 1 + (msg.length - afterStmt));
  msg.copy(out, 0, 0, afterPortal);
  out.write(statement, afterPortal, 'utf8');
  out[afterPortal + nameLen] = 0;
  msg.copy(out, afterPortal + nameLen + 1, afterStmt);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

/** Rebuilds a Parse with another statement name. */
export function renameParse(msg: Buffer, statement: string): Buffer {
  const [, afterName] = readCString(msg, 5);
  const nameLen = Buffer.byteLength(statement);
  const out = Buffer.allocUnsafe(5 + nameLen + 1 + (msg.length - afterName));
  out[0] = msg[0]!;
  out.write(statement, 5, 'utf8');
  out[5 + nameLen] = 0;
  msg.copy(out, 6 + nameLen, afterName);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

/** Describe / Close: kind ('S' statement or 'P' portal) and name. */
export function decodeTargeted(msg: Buffer): { kind: 'S' | 'P'; name: string } {
  const end = cstrEnd(msg, 6);
  return { kind: msg[5] === 0x53 ? 'S' : msg[5] === 0x50 ? 'P' : String.fromCharCode(msg[5]!) as 'S' | 'P', name: end === 6 ? '' : msg.toString('utf8', 6, end) };
}
export function targeted(type: number, kind: 'S' | 'P', name: string): Buffer {
  return new Writer(16 + name.length).int8(kind.charCodeAt(0)).cstr(name).msg(type);
}
export function parseMsg(name: string, sql: string, types: number[], codec?: Codec | null): Buffer {
  const enc = codec ? codec.encode(sql) : null;
  const w = new Writer((enc ? enc.length : Buffer.byteLength(sql)) + 32).cstr(name);
  if (enc) w.cbytes(enc); else w.cstr(sql);
  w.int16(types.length);
  for (const t of types) w.int32(t | 0);
  return w.msg(F.Parse);
}
/** Bind of `statement` to `portal`: one format code for every parameter, the values (null: SQL
 *  NULL), one format code for every result column (none: text). */
export function bindMsg(portal: string, statement: string, paramFormat: number, values: (Buffer | null)[], resultFormats: number[]): Buffer {
  let size = 32 + portal.length + statement.length + 2 * resultFormats.length;
  for (const v of values) size += 4 + (v ? v.length : 0);
  const w = new Writer(size).cstr(portal).cstr(statement).int16(1).int16(paramFormat).int16(values.length);
  for (const v of values) { if (v === null) w.int32(-1); else w.int32(v.length).bytes(v); }
  w.int16(resultFormats.length);
  for (const f of resultFormats) w.int16(f);
  return w.msg(F.Bind);
}
export function executeMsg(portal: string, maxRows: number): Buffer {
  return new Writer(16).cstr(portal).int32(maxRows).msg(F.Execute);
}
export function decodeExecute(msg: Buffer): { portal: string; maxRows: number } {
  const end = cstrEnd(msg, 5);
  return { portal: end === 5 ? '' : msg.toString('utf8', 5, end), maxRows: msg.readInt32BE(end + 1) };
}
export function queryText(msg: Buffer): string { return msg.toString('utf8', 5, msg.length - 1); }

/** A CopyData message carrying `body` (either direction: the type byte is the same). */
export function copyDataMessage(body: Buffer): Buffer {
  const m = Buffer.allocUnsafe(5 + body.length);
  m[0] = 0x64; m.writeInt32BE(4 + body.length, 1); body.copy(m, 5);
  return m;
}

/** Text values of a DataRow (pgring's own catalog queries only; forwarded rows are never decoded). */
export function decodeDataRow(msg: Buffer): (string | null)[] {
  return decodeDataRowRaw(msg).map((v) => (v === null ? null : v.toString('utf8')));
}

/** The column values of a DataRow as slices of it (NULL as null). */
export function decodeDataRowRaw(msg: Buffer): (Buffer | null)[] {
  const n = msg.readUInt16BE(5);
  const out: (Buffer | null)[] = [];
  let off = 7;
  for (let i = 0; i < n; i++) {
    const len = msg.readInt32BE(off); off += 4;
    if (len < 0) { out.push(null); continue; }
    out.push(msg.subarray(off, off + len)); off += len;
  }
  return out;
}
