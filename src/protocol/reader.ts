// Splits a TCP byte stream into protocol messages without copying where possible.
// Each message is handed out as a Buffer slice of the whole message (type byte +
// int32 length + body): the proxy forwards raw bytes and decodes lazily.

export class ProtocolViolation extends Error {
  /** PostgreSQL only logs it (COMMERROR) and closes, sending the client nothing. */
  silent = false;
}

/** Largest message we accept from a client or server (PostgreSQL's own limit is 1 GB). */
export const MAX_MESSAGE = 1 << 30;

/** Per-direction rules: the largest length a message type may declare (throws for an unknown
 *  type), checked before its bytes are buffered, and a layout check of each whole message. */
export interface FramingRules {
  limit(type: number): number;
  check(type: number, msg: Buffer): void;
}

export class MessageReader {
  private pending: Buffer | null = null;
  constructor(private readonly rules: FramingRules | null = null) {}

  /**
   * Feeds a chunk and calls `onMessage(type, msg)` for every complete message.
   * Throws ProtocolViolation on an impossible length.
   */
  feed(chunk: Buffer, onMessage: (type: number, msg: Buffer) => void): void {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let off = 0;
    const end = buf.length;
    const rules = this.rules;
    // Messages are views of the chunk's memory made directly (subarray looks up .buffer, a C++
    // call, per message).
    const ab = buf.buffer;
    const base = buf.byteOffset;
    while (end - off >= 5) {
      const len = buf.readInt32BE(off + 1);
      const type = buf[off]!;
      if (len < 4 || len > (rules ? rules.limit(type) : MAX_MESSAGE)) {
        throw new ProtocolViolation(rules ? 'invalid message length' : `invalid message length ${len} for message type 0x${type.toString(16)}`);
      }
      const total = len + 1;
      if (end - off < total) break;
      const msg = Buffer.from(ab, base + off, total);
      if (rules) rules.check(type, msg);
      onMessage(type, msg);
      off += total;
    }
    if (rules && off < end) rules.limit(buf[off]!); // an unknown type is refused at its first byte
    if (off < end) this.pending = Buffer.from(buf.subarray(off)); // own the bytes: the socket may reuse its buffer
  }

  /** Bytes received but not yet forming a whole message. */
  get buffered(): number { return this.pending ? this.pending.length : 0; }

  reset(): void { this.pending = null; }
}

/** Reads a length-prefixed startup-phase packet (no type byte). */
export class StartupReader {
  private pending: Buffer | null = null;
  feed(chunk: Buffer): { packet: Buffer; rest: Buffer } | null {
    const buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    if (buf.length < 4) { this.pending = Buffer.from(buf); return null; }
    const len = buf.readInt32BE(0);
    if (len < 8 || len > 10000) {
      const e = new ProtocolViolation(`invalid length of startup packet (${len})`);
      e.silent = true;
      throw e;
    }
    if (buf.length < len) { this.pending = Buffer.from(buf); return null; }
    return { packet: buf.subarray(0, len), rest: buf.subarray(len) };
  }
}
