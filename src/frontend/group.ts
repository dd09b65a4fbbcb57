// Combines the responses of one request sent to several shards into the single
// response PostgreSQL would give: one RowDescription, rows (merged when the
// statement has ORDER BY / LIMIT / aggregates), one CommandComplete with the
// total count, the first error instead of everything when any shard failed.
import { B } from '../protocol/codes';
import { commandComplete, commandTag } from '../protocol/messages';
import type { RoutedStatement } from '../router/router';
import type { ResultMerger } from '../router/merge';
import { PgError, SQLSTATE } from '../protocol/errors';
import { statementOrder } from './insert-split';
import { CopyOutMerge } from './copy-out';

export type GroupMode = 'first' | 'sum' | 'merge' | 'merge-ext' | 'copy' | 'copy-out';

/** Rows an ORDER BY merge queues from one shard before it stops reading that shard. */
const HOLD_ROWS = 2000;

export class Group {
  private remaining: number;
  private out: Buffer[] = [];
  private error: Buffer | null = null;
  private rowDesc = false;
  private tags: string[] = [];
  private merger: ResultMerger | null = null;
  /** CommandCompletes of member 0 forwarded ('first' mode) */
  private firstDone = 0;
  private copyInSeen = 0;
  private needsFields = false;
  private described: Buffer | null = null;
  private early: [number, Buffer][] = [];
  /** per member, its DataRows, when they must come back in statement order (split INSERT ... RETURNING) */
  private ordered: { rowsOf: Buffer[][]; parts: { rows: number[] }[] } | null = null;
  onFinish: (msgs: Buffer[]) => void = () => {};
  onCopyIn: ((first: Buffer | null) => void) | null = null;
  /** 'copy-out' mode: the merged COPY stream; with `onStream` set it (and a streamable merge's
   *  rows) goes out as it comes (a dump of a large table is not held in memory), else with the
   *  rest at the end. */
  private copyOut: CopyOutMerge | null = null;
  onStream: ((msgs: Buffer[]) => void) | null = null;
  /** An ORDER BY merge holds the reads of a member whose rows pile up while another shard is slow
   *  (true), and lets them go on once they are merged out (false): the proxy holds a bounded part
   *  of a large sorted result. */
  onHold: ((member: number, hold: boolean) => void) | null = null;
  private held = new Set<number>();

  /** Options: `shardSql`: the shards ran plan.merge.shardSql (not the client's text). Needed in
   *  'merge-ext' mode when the merge spec has a rewrite; the simple path always sends it.
   *  `rowDescription`: in 'merge-ext' mode, the shard RowDescription of the portal (from a Describe);
   *  it can also be given later with describe(), before the first DataRow arrives. */
  constructor(readonly mode: GroupMode, readonly size: number, readonly stmt: RoutedStatement, readonly shardNames: string[],
    params?: (Buffer | string | null)[] | null, opts: { shardSql?: boolean; rowDescription?: Buffer; paramFormats?: number[]; text?: ((a: Buffer, b: Buffer) => number) | null } = {}) {
    this.remaining = size;
    const plan = stmt.plan;
    const spec = plan.merge;
    const fail = (what: string): void => { if (!this.error) this.error = new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${what} is not supported`).toMessage(); };
    if (mode !== 'first' && mode !== 'copy' && size > 1 && (plan.scatterUnsupported ?? plan.finalize ?? plan.subqueries)) fail((plan.scatterUnsupported ?? plan.finalize ?? plan.subqueries)!);
    if (mode === 'copy-out') this.copyOut = new CopyOutMerge(plan.copyOut ?? { binary: false, header: false }, size);
    if ((mode === 'merge' || mode === 'merge-ext') && spec) {
      const texts = params ? params.map((v, i) => paramText(v, opts.paramFormats, i)) : undefined;
      if (mode === 'merge-ext') {
        const usesParam = (v: typeof spec.limit): boolean => v !== null && typeof v === 'object';
        if (spec.shardSql !== undefined && !opts.shardSql) fail('a query rewritten for shards (avg, OFFSET, hidden sort/group columns) in the extended protocol across shards');
        if ((usesParam(spec.limit) || usesParam(spec.offset)) && !texts) fail('LIMIT/OFFSET parameters without their values (extended protocol) across shards');
      }
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const { ResultMerger: M } = require('../router/merge') as typeof import('../router/merge');
      this.merger = new M(spec, size, texts, opts.text ?? null);
      // rows are decoded (or cut) unless they stream unchanged: they wait for the RowDescription
      this.needsFields = !this.merger.streams || spec.hiddenColumns > 0;
      if (opts.rowDescription) this.describe(opts.rowDescription);
    }
  }

  /** Members are the parts of a split multi-row INSERT: RETURNING rows go back in statement order. */
  inStatementOrder(parts: { rows: number[] }[]): void {
    this.ordered = { rowsOf: parts.map(() => []), parts };
  }

  /** Feeds a shard's RowDescription of the statement (extended protocol: it comes from Describe,
   *  not from Execute). Returns the RowDescription the client must see (hidden columns removed,
   *  avg retyped), or null when there is no merger. */
  describe(msg: Buffer): Buffer | null {
    if (!this.merger) return null;
    if (this.described) return this.described;
    const fwd = this.merger.rowDescription(0, msg);
    this.described = fwd ?? msg;
    if (this.merger.unsupported && !this.error) this.error = new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${this.merger.unsupported} is not supported`).toMessage();
    // rows that arrived before the RowDescription (other shards answer in any order)
    const early = this.early;
    this.early = [];
    for (const [m, row] of early) this.message(m, B.DataRow, row);
    return this.described;
  }

  /** Rows can go to the client as they come (`onStream`): a merge that needs no sort, grouping or
   *  decoding, so a large scatter read is not collected whole in the proxy. */
  get streamable(): boolean {
    return (this.mode === 'merge' || this.mode === 'merge-ext') && this.merger !== null && ((this.merger.streams && !this.needsFields) || this.merger.sortedStreams) && this.ordered === null && this.error === null;
  }

  /** Rows an ORDER BY merge can send now; reads held or let go by how many rows each member has queued. */
  private drainSorted(member: number): void {
    const m = this.merger!;
    if (!m.sortedStreams) return;
    const rows = m.drain();
    if (rows.length) this.emit(...rows);
    if (!this.onHold) return;
    if (m.queued(member) > HOLD_ROWS && !this.held.has(member)) { this.held.add(member); this.onHold(member, true); }
    for (const h of this.held) if (m.queued(h) <= HOLD_ROWS / 2) { this.held.delete(h); this.onHold(h, false); }
  }

  private releaseHolds(): void {
    for (const h of this.held) this.onHold?.(h, false);
    this.held.clear();
  }

  private emit(...msgs: Buffer[]): void {
    if (this.onStream) this.onStream(msgs); else this.out.push(...msgs);
  }

  message(member: number, type: number, msg: Buffer): void {
    switch (type) {
      case B.ErrorResponse:
        if (!this.error) this.error = msg;
        this.releaseHolds();   // rows of the others are no longer merged: let them finish
        return;
      case B.ReadyForQuery:
        return;
      case B.RowDescription:
        if (this.merger) {
          const first = this.described === null;
          const fwd = this.describe(msg);
          if (first && fwd && this.mode === 'merge') { this.rowDesc = true; this.emit(fwd); }
          return;
        }
        if (!this.rowDesc) { this.rowDesc = true; this.emit(msg); }
        return;
      case B.DataRow:
        if (this.merger) {
          if (this.error) return;
          if (this.needsFields && this.described === null) { this.early.push([member, msg]); return; }
          const fwd = this.merger.dataRow(member, msg);
          if (fwd) this.emit(fwd);
          else this.drainSorted(member);
        } else if (this.ordered) this.ordered.rowsOf[member]!.push(msg);
        else if (this.mode !== 'first' || member === 0) this.emit(msg);
        return;
      case B.CommandComplete:
        if (this.merger) { this.merger.commandComplete(member, commandTag(msg)); if (!this.error) this.drainSorted(member); }
        // (DDL creating sequences: the shards also ran pgring's range DO after it, not the client's)
        else if (this.mode === 'first') { if (member === 0 && !(this.stmt.plan.createsSequence && this.firstDone++ > 0)) this.out.push(msg); }
        else this.tags.push(commandTag(msg));
        return;
      case B.CopyInResponse:
        if (this.copyInSeen++ === 0) this.onCopyIn?.(msg);
        return;
      case B.CopyOutResponse: case B.CopyData: case B.CopyDone:
        if (this.copyOut) {
          if (this.error) return;   // the stream ends at the first error, as on one server
          const fwd = this.copyOut.message(member, type, msg);
          if (this.copyOut.bad) { this.error = new PgError(SQLSTATE.InternalError, `pgring: ${this.copyOut.bad} from a shard`).toMessage(); return; }
          if (fwd.length) this.emit(...fwd);
          return;
        }
        if (member === 0) this.emit(msg);
        return;
      default:
        // Notices, ParseComplete, BindComplete, NoData, ...: once, from the first shard.
        if (member === 0) this.emit(msg);
    }
  }

  memberDone(_member: number): void {
    if (--this.remaining > 0) return;
    this.releaseHolds();
    if (!this.error && this.early.length) {
      this.error = new PgError(SQLSTATE.FeatureNotSupported, 'pgring: merging rows from several shards without their RowDescription (extended protocol: the portal was not described) is not supported').toMessage();
    }
    if (this.error) { this.onFinish([this.error]); return; }
    if (this.merger) {
      let merged: Buffer[];
      // a merged value PostgreSQL would refuse (count(*)::int over 2^31 rows: 22003) fails the statement
      try { merged = this.merger.finish(); } catch (e) { if (!(e instanceof PgError)) throw e; this.onFinish([e.toMessage()]); return; }
      this.onFinish([...this.out, ...merged]);
      return;
    }
    if (this.ordered) this.out.push(...statementOrder(this.ordered.rowsOf, this.ordered.parts));
    if (this.tags.length) this.out.push(commandComplete(sumTags(this.tags)));
    this.onFinish(this.out);
  }
}

/** Adds up command tags of the same command from several shards ("UPDATE 3" + "UPDATE 4" = "UPDATE 7"). */
export function sumTags(tags: string[]): string {
  const first = tags[0]!;
  const m = /^(INSERT 0|SELECT|UPDATE|DELETE|COPY|MERGE|MOVE|FETCH) (\d+)$/.exec(first);
  if (!m) return first;
  let total = 0;
  for (const t of tags) {
    const n = /(\d+)$/.exec(t);
    if (n) total += Number(n[1]);
  }
  return `${m[1]} ${total}`;
}

/** A Bind parameter as text: binary int2/int4/int8 decoded (LIMIT/OFFSET values). */
function paramText(v: Buffer | string | null, formats: number[] | undefined, i: number): string | null {
  if (v === null || typeof v === 'string') return v;
  const fmt = formats && formats.length ? (formats.length === 1 ? formats[0] : formats[i]) : 0;
  if (fmt === 1) {
    if (v.length === 8) return v.readBigInt64BE(0).toString();
    if (v.length === 4) return String(v.readInt32BE(0));
    if (v.length === 2) return String(v.readInt16BE(0));
  }
  return v.toString('utf8');
}

/** The RowDescription a client must see for a statement whose shards ran plan.merge.shardSql
 *  (hidden columns removed, avg columns retyped), given a shard's RowDescription of that portal.
 *  Returns the message unchanged when the statement has no merge spec. */
export function clientRowDescription(stmt: RoutedStatement, shardRowDescription: Buffer): Buffer {
  const spec = stmt.plan.merge;
  if (!spec) return shardRowDescription;
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { ResultMerger: M } = require('../router/merge') as typeof import('../router/merge');
  return new M(spec, 1).rowDescription(0, shardRowDescription) ?? shardRowDescription;
}
