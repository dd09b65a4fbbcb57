// Structural checks of client (frontend) messages, with PostgreSQL's limits and wording
// (src/backend/tcop/postgres.c SocketBackend, src/backend/libpq/pqformat.c pq_getmsg*).
// Every message is checked once, as it is framed, before any handler decodes it: a field
// that runs past the message, a negative or impossible count or length, trailing bytes or
// an unknown type is a ProtocolViolation, which the client session answers with FATAL 08P01
// and closes that connection only. Decoders further on can then trust the layout.
import { F } from './codes';
import { FramingRules, ProtocolViolation } from './reader';

/** PostgreSQL's PQ_SMALL_MESSAGE_LIMIT: messages with no user data (Sync, Describe, ...). */
export const SMALL_MESSAGE_LIMIT = 10000;
/** PostgreSQL's PQ_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1): Query, Parse, Bind, CopyData, FunctionCall. */
export const LARGE_MESSAGE_LIMIT = 0x3fffffff - 1;
/** PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH: PasswordMessage / SASL responses. */
export const AUTH_MESSAGE_LIMIT = 65535;

const limits = new Int32Array(256);
for (const t of [F.Query, F.FunctionCall, F.Parse, F.Bind, F.CopyData]) limits[t] = LARGE_MESSAGE_LIMIT;
for (const t of [F.Terminate, F.Close, F.Describe, F.Execute, F.Flush, F.Sync, F.CopyDone, F.CopyFail]) limits[t] = SMALL_MESSAGE_LIMIT;
limits[F.Password] = AUTH_MESSAGE_LIMIT;

/**
 * Largest length field (which counts itself) a frontend message of `type` may carry; throws
 * for a type no client may send, as PostgreSQL does as soon as it has read the type byte.
 */
export function frontendMessageLimit(type: number): number {
  const l = limits[type]!;
  if (l === 0) throw new ProtocolViolation(`invalid frontend message type ${type}`);
  return l;
}

/** Reads a message body as pq_getmsg* does: every read past the end is a ProtocolViolation. */
export class MsgCursor {
  off = 5;
  constructor(readonly msg: Buffer) {}
  private need(n: number): void {
    if (n < 0 || n > this.msg.length - this.off) throw new ProtocolViolation('insufficient data left in message');
  }
  byte(): number { this.need(1); return this.msg[this.off++]!; }
  /** pq_getmsgint(msg, 2): unsigned, as PostgreSQL reads counts. */
  uint16(): number { this.need(2); const v = this.msg.readUInt16BE(this.off); this.off += 2; return v; }
  int16(): number { this.need(2); const v = this.msg.readInt16BE(this.off); this.off += 2; return v; }
  int32(): number { this.need(4); const v = this.msg.readInt32BE(this.off); this.off += 4; return v; }
  /** pq_getmsgbytes: a negative length or one past the end is "insufficient data". */
  skip(n: number): void { this.need(n); this.off += n; }
  /** pq_getmsgstring: NUL-terminated within the message. */
  cstring(): string {
    const end = this.msg.indexOf(0, this.off);
    if (end < 0) throw new ProtocolViolation('invalid string in message');
    const s = this.msg.toString('utf8', this.off, end);
    this.off = end + 1;
    return s;
  }
  /** Like cstring() without decoding it. */
  skipCString(): void {
    const end = this.msg.indexOf(0, this.off);
    if (end < 0) throw new ProtocolViolation('invalid string in message');
    this.off = end + 1;
  }
  /** pq_getmsgend: nothing may follow the last field. */
  end(): void {
    if (this.off !== this.msg.length) throw new ProtocolViolation('invalid message format');
  }
}

/** Checks the layout of one whole frontend message (type byte and length included). */
export function checkFrontendMessage(type: number, msg: Buffer): void {
  switch (type) {
    case F.Sync: case F.Flush:
      if (msg.length !== 5) throw new ProtocolViolation('invalid message format');
      return;
    case F.Query: case F.CopyFail: {
      // one string and nothing after it (a NUL inside the text is trailing data)
      const nul = msg.indexOf(0, 5);
      if (nul < 0) throw new ProtocolViolation('invalid string in message');
      if (nul !== msg.length - 1) throw new ProtocolViolation('invalid message format');
      return;
    }
    case F.Execute: {
      const c = new MsgCursor(msg);
      c.skipCString(); c.int32(); c.end();
      return;
    }
    case F.Describe: case F.Close: {
      const c = new MsgCursor(msg);
      const kind = c.byte();
      c.skipCString(); c.end();
      if (kind !== 0x53 && kind !== 0x50) {
        throw new ProtocolViolation(`invalid ${type === F.Describe ? 'DESCRIBE' : 'CLOSE'} message subtype ${kind}`);
      }
      return;
    }
    case F.Parse: {
      const c = new MsgCursor(msg);
      c.skipCString(); c.skipCString();
      c.skip(c.uint16() * 4);
      c.end();
      return;
    }
    case F.Bind: return checkBind(msg);
    case F.FunctionCall: return checkFunctionCall(msg);
    default:
      return; // CopyData, CopyDone, Terminate, PasswordMessage (checked by the auth exchange)
  }
}

function checkBind(msg: Buffer): void {
  const c = new MsgCursor(msg);
  c.skipCString(); c.skipCString();
  const nf = c.uint16();
  c.skip(nf * 2);
  const np = c.uint16();
  if (nf > 1 && nf !== np) throw new ProtocolViolation(`bind message has ${nf} parameter formats but ${np} parameters`);
  for (let i = 0; i < np; i++) {
    const len = c.int32();
    if (len !== -1) c.skip(len);
  }
  c.skip(c.uint16() * 2);
  c.end();
}

function checkFunctionCall(msg: Buffer): void {
  const c = new MsgCursor(msg);
  c.int32(); // function oid
  const nf = c.uint16();
  c.skip(nf * 2);
  const na = c.uint16();
  if (nf > 1 && nf !== na) throw new ProtocolViolation(`function call message contains ${nf} argument formats but ${na} arguments`);
  for (let i = 0; i < na; i++) {
    const len = c.int32();
    if (len !== -1) c.skip(len);
  }
  c.int16(); // result format
  c.end();
}

/** MessageReader options for a client connection: PostgreSQL's per-type limits and these checks. */
export const FRONTEND: FramingRules = { limit: frontendMessageLimit, check: checkFrontendMessage };
