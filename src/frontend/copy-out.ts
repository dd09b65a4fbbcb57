// COPY ... TO STDOUT run on several shards, answered as one server would (pure: messages in,
// messages out). Each shard sends CopyOutResponse, one CopyData per row, CopyDone and
// CommandComplete "COPY n"; the client must see one CopyOutResponse, the rows of every shard,
// one CopyDone and "COPY <sum>". Per format:
// - text: rows are concatenated as they arrive;
// - csv with HEADER: every shard sends the header line as its first CopyData; it goes out once;
// - binary: every shard's stream starts with the 19-byte header (signature, flags, extension
//   length + extension) in its first CopyData and ends with the trailer (int16 -1) in its last:
//   the header goes out once, before the first row (in the same message, as PostgreSQL sends
//   it), and one trailer at the end.
// PostgreSQL sends every row in its own CopyData message (copyto.c: CopySendEndOfRow), which is
// what makes interleaving the shards' rows safe.
import { B } from '../protocol/codes';
import { copyData, copyDoneMsg } from '../protocol/messages';

export interface CopyOutFormat { binary: boolean; header: boolean }

const BINARY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

export class CopyOutMerge {
  private responseSent = false;
  /** per shard: its first CopyData (the header line / binary header) is still to come */
  private readonly first: boolean[];
  /** binary: the header, kept until the first row goes out (or the trailer) */
  private binaryHeader: Buffer | null = null;
  private headerSent = false;
  private done = 0;
  /** a shard's stream did not have the shape described above: the merged stream is unsafe */
  bad: string | null = null;

  constructor(readonly format: CopyOutFormat, readonly shards: number) {
    this.first = new Array<boolean>(shards).fill(true);
  }

  /** One shard's CopyOutResponse, CopyData or CopyDone; returns what the client gets now. */
  message(member: number, type: number, msg: Buffer): Buffer[] {
    switch (type) {
      case B.CopyOutResponse:
        if (this.responseSent) return [];
        this.responseSent = true;
        return [msg];
      case B.CopyData: return this.data(member, msg);
      case B.CopyDone: return ++this.done === this.shards ? this.finish() : [];
      default: return [];
    }
  }

  private data(member: number, msg: Buffer): Buffer[] {
    let payload = msg.subarray(5);
    const first = this.first[member]!;
    this.first[member] = false;
    if (!this.format.binary) {
      if (first && this.format.header) {
        if (this.headerSent) return [];
        this.headerSent = true;
      }
      return [msg];
    }
    if (first) {
      if (payload.length < 19 || !payload.subarray(0, 11).equals(BINARY_SIGNATURE)) { this.bad = 'a binary COPY stream without its header'; return []; }
      const len = 19 + payload.readUInt32BE(15);
      if (payload.length < len) { this.bad = 'a binary COPY header split over messages'; return []; }
      this.binaryHeader ??= Buffer.from(payload.subarray(0, len));
      payload = payload.subarray(len);
      if (payload.length === 0) return [];
    }
    if (payload.length === 2 && payload.readInt16BE(0) === -1) return [];   // this shard's trailer
    if (!this.headerSent && this.binaryHeader) {
      this.headerSent = true;
      return [copyData(Buffer.concat([this.binaryHeader, payload]))];
    }
    return [first ? copyData(payload) : msg];
  }

  private finish(): Buffer[] {
    const out: Buffer[] = [];
    if (this.format.binary) {
      const trailer = Buffer.from([0xff, 0xff]);
      out.push(copyData(!this.headerSent && this.binaryHeader ? Buffer.concat([this.binaryHeader, trailer]) : trailer));
      this.headerSent = true;
    }
    out.push(copyDoneMsg);
    return out;
  }
}
