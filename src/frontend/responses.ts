// Server messages back to the client, in PostgreSQL's order: every request sent has a Pending
// entry in the ordered queue (response-queue.ts); this routes each server message to the entry
// it answers and does the book-keeping its completion implies.
import { B } from '../protocol/codes';
import { PgError, SQLSTATE, parseErrorFields } from '../protocol/errors';
import { commandTag, decodeDataRow, readyForQuery } from '../protocol/messages';
import type { ServerConnection } from '../backend/server';
import { clientRowDescription } from './group';
import { buildRowDescription, parseRowDescription } from '../router/merge';
import { ResponseQueue } from './response-queue';
import { readTime } from '../clock';
import type { ClientSession } from './client';
import { K } from './session-types';
import type { Pending, Link } from './session-types';
import { msg_flush, notifierAsClient, isResultTypeChange } from './session-util';
import { noteShape } from './revalidate';

export class Responses extends ResponseQueue {
  /** The server's last ReadyForQuery of a request: sent instead of pgring's own when the status
   *  byte is the same, so that a response forwarded from one server read stays one slice of it
   *  (flush writes it without copying). */
  private serverRfq: Buffer | null = null;

  constructor(private readonly s: ClientSession) { super(s.wq); }

  protected override ready(): void {
    const s = this.s;
    const status = s.txStatus;
    const z = this.serverRfq;
    this.serverRfq = null;
    s.write(z !== null && z.length === 6 && z[5] === status.charCodeAt(0) ? z : readyForQuery(status));
    if (status === 'I') {
      s.ctx.tx?.afterIdle?.(s);
      if (s.cursors.size) s.cursors.transactionEnded();
    }
    s.servers.afterReady();
  }

  protected override timed(p: Pending): void {
    const link = p.link!;
    const us = (readTime() - p.t0!) * 1000;
    const st = link.pool.stats;
    st.totalQuery++;
    st.totalQueryTimeUs += us;
    this.s.ctx.metrics?.query(link.shard, us);
  }

  protected override closed(): boolean { return this.s.phase === 'closed'; }

  onServerMessage(conn: ServerConnection, type: number, msg: Buffer): void {
    const link = conn.tag as Link;
    if (type === B.NotificationResponse) msg = notifierAsClient(link.shard, msg);
    if (type === B.ReadyForQuery && link.skipping) this.skippedUntilSync(link);
    const p = link.queue.first();
    if (p === undefined) {
      // Asynchronous messages between requests: notifications, notices, parameter changes.
      if (type === B.NotificationResponse || type === B.NoticeResponse || type === B.ParameterStatus) {
        this.s.write(msg); // asynchronous messages may arrive at any time (libpq and drivers accept them)
      } else if (type === B.ErrorResponse) {
        const f = parseErrorFields(msg);
        conn.noteError(new PgError(f.C ?? SQLSTATE.AdminShutdown, f.M ?? 'server error', { severity: (f.S as 'FATAL') ?? 'FATAL' }));
      }
      return;
    }
    if (p.group) { this.s.scatter.groupMessage(p, type, msg); return; }
    switch (p.kind) {
      case K.Query:
        if (type === B.ReadyForQuery) { this.serverRfq = msg; this.complete(p); return; }
        if (type === B.CommandComplete) this.afterCommandOf(p, msg);
        else if (type === B.ErrorResponse) this.afterErrorOf(p, msg);
        else if (type === B.CopyInResponse) this.s.copyLinks = [link];
        else if (type === B.RowDescription) { const own = p.plans?.[p.planIdx ?? 0]?.rowDescription; if (own) msg = sameColumns(own, msg); }
        this.out(p, msg);
        return;
      case K.ExecSimple:
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.CommandComplete) this.afterCommandOf(p, msg);
        else if (type === B.ErrorResponse) { p.onError?.(msg); this.afterErrorOf(p, msg); } // a string's statement failed: the rest is not run
        this.out(p, msg);
        return;
      case K.InternalRows:
        if (type === B.DataRow) { p.rows!.push(decodeDataRow(msg)); return; }
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.ErrorResponse) p.onError?.(msg);
        else if (type === B.CommandComplete) p.onCommand?.(msg);
        return;
      case K.InternalRaw:
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        p.onRow!(msg);
        // inside a client's extended-protocol unit there is no Sync of pgring's own: the Execute's end ends it
        if (p.ext && type === B.ErrorResponse) this.extendedError(p);
        else if (p.ext && (type === B.CommandComplete || type === B.EmptyQueryResponse)) this.complete(p);
        return;
      case K.Internal:
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.ErrorResponse) { p.onError?.(); this.out(p, msg); }
        return;
      case K.Sync:
        if (type === B.ReadyForQuery) { this.serverRfq = msg; this.complete(p); return; }
        this.out(p, msg); // e.g. an error raised at commit of the implicit transaction
        return;
      default:
        this.onExtendedMessage(p, link, type, msg);
    }
  }

  /** A server message answering an extended-protocol request (or pgring's own Parse/Close/BEGIN). */
  private onExtendedMessage(p: Pending, link: Link, type: number, msg: Buffer): void {
    switch (p.kind) {
      case K.InternalParse:
        if (type === B.ParseComplete) { this.complete(p); return; }
        break;
      case K.InternalClose:
        if (type === B.CloseComplete) { this.complete(p); return; }
        break;
      case K.InternalBegin:
        if (type === B.BindComplete) return;
        if (type === B.CommandComplete) { this.complete(p); return; }
        break;
      case K.InternalExtRows:
        if (type === B.BindComplete) return;
        if (type === B.DataRow) { p.rows!.push(decodeDataRow(msg)); return; }
        if (type === B.CommandComplete) { p.onRow?.(msg); this.complete(p); return; }
        break; // an error is the client's: the unit failed
      case K.Parse:
        if (type === B.ParseComplete) { this.out(p, msg); this.complete(p); return; }
        break;
      case K.Bind:
        if (type === B.BindComplete) { this.out(p, msg); this.complete(p); return; }
        break;
      case K.Close:
        if (type === B.CloseComplete) { this.out(p, msg); this.complete(p); return; }
        break;
      case K.InternalDescribe:
        if (type === B.RowDescription) { p.onRow?.(msg); this.complete(p); return; }
        if (type === B.NoData) { this.complete(p); return; }
        if (type === B.ErrorResponse) { this.out(p, msg); this.extendedError(p, msg); }
        return;
      case K.Describe:
        if (p.cs !== undefined) noteShape(p.cs, type, msg);
        if (type === B.RowDescription && p.onRow) { this.out(p, clientRowDescription(p.plans![0]!, msg)); this.complete(p); return; }
        this.out(p, msg);
        if (type === B.RowDescription || type === B.NoData) { this.complete(p); return; }
        if (type === B.ErrorResponse) { this.extendedError(p, msg); }
        return;
      case K.Execute:
        if (type === B.CommandComplete) { this.afterCommandOf(p, msg); this.out(p, msg); this.complete(p); return; }
        if (type === B.EmptyQueryResponse || type === B.PortalSuspended) { this.out(p, msg); this.complete(p); return; }
        if (type === B.CopyInResponse) this.s.copyLinks = [link];
        this.out(p, msg);
        if (type === B.ErrorResponse) this.extendedError(p, msg);
        return;
      default:
        break;
    }
    // Parse / Bind / Close / InternalParse: anything else (ErrorResponse, notices)
    if (type === B.ErrorResponse) {
      p.onError?.(msg);
      if (p.cs !== undefined && isResultTypeChange(msg)) this.s.prepared.stalePrepared(p.link!, p.cs);
      this.out(p, msg);
      this.extendedError(p, msg);
      return;
    }
    this.out(p, msg);
  }

  /** The Sync after a failed request answered: requests sent after the failure was handled got
   *  no answer from the server (it skipped them) and none is coming. */
  skippedUntilSync(link: Link): void {
    link.skipping = false;
    for (let q = link.queue.first(); q !== undefined && q.kind !== K.Sync; q = link.queue.first()) {
      if (q.group) this.s.scatter.groupMemberDone(q);
      this.complete(q);
    }
  }

  /** An extended-protocol request failed: the server skips everything up to Sync on that link. */
  extendedError(p: Pending, msg?: Buffer): void {
    const link = p.link!;
    link.skipping = true;
    if (msg) this.s.ctx.metrics?.error(parseErrorFields(msg).C ?? 'XX000');
    this.complete(p);
    while (link.queue.length && link.queue.first()!.kind !== K.Sync) {
      const q = link.queue.first()!;
      if (q.group) this.s.scatter.groupMemberDone(q);
      this.complete(q);
    }
  }

  afterCommandOf(p: Pending, msg: Buffer): void {
    const plans = p.plans;
    if (!plans) return;
    const i = p.planIdx ?? 0;
    p.planIdx = i + 1;
    const stmt = plans[i];
    if (stmt) this.s.transaction.afterCommand(stmt, commandTag(msg), p.link);
  }

  afterErrorOf(p: Pending, msg: Buffer): void {
    const f = parseErrorFields(msg);
    this.s.ctx.metrics?.error(f.C ?? 'XX000');
    if (f.S === 'FATAL' || f.S === 'PANIC') p.link?.conn.noteError(new PgError(f.C ?? SQLSTATE.AdminShutdown, f.M ?? '', { severity: 'FATAL' }));
    // A COMMIT that fails (a deferred constraint) or a PREPARE TRANSACTION that fails (gid in use,
    // temporary objects, ...) still ends the block: the server has rolled the transaction back.
    const cmd = p.plans?.[p.planIdx ?? 0]?.plan.command;
    if (cmd === 'prepare_transaction' || cmd === 'commit') this.s.transaction.endTransaction(false);
  }

  /** Requests sent to a server and not answered yet. A server that failed the current unit
   *  (skipping, its Sync not sent yet) answers nothing more before that Sync: waiting for it
   *  would wait for the client's Sync, which waits behind the waiter (a pipeline hung so). */
  inFlight(): boolean {
    for (const l of this.s.links) if (l && l.queue.length > 0 && !skippingUnit(l)) return true;
    return false;
  }

  /** Resolves once every server has answered what was sent to it. */
  afterInFlight(): Promise<void> {
    // PostgreSQL holds extended-protocol output until Sync or Flush (errors go out at once).
    for (const l of this.s.attachedLinks) if (l.queue.length > 0) l.conn.write(msg_flush);
    return this.waitUntil(() => !this.inFlight());
  }
}

/** `link`'s server failed the unit the client is still sending: no Sync queued after the error. */
export function skippingUnit(link: Link): boolean {
  return link.skipping && link.queue.every((q) => q.kind !== K.Sync);
}

/** `own` (the RowDescription of the client's statement) when it describes the same columns as `got`
 *  (count and types), with `got`'s format codes; else `got`. */
export function sameColumns(own: Buffer, got: Buffer): Buffer {
  const a = parseRowDescription(own), b = parseRowDescription(got);
  if (a.length !== b.length || a.some((f, i) => f.typeOid !== b[i]!.typeOid)) return got;
  return buildRowDescription(a.map((f, i) => ({ ...f, format: b[i]!.format })));
}
