// Server messages back to the client, in PostgreSQL's order: every request sent has a Pending
// entry in the ordered queue (response-queue.ts); this routes each server message to the entry
// it answers and does the book-keeping its completion implies.
import { B } from '../protocol/codes';
import { PgError, SQLSTATE, parseErrorFields } from '../protocol/errors';
import { commandTag, decodeDataRow, readyForQuery } from '../protocol/messages';
import type { ServerConnection } from '../backend/server';
import { clientRowDescription } from './group';
import type { ClientSession } from './client';
import { K } from './session-types';
import type { Pending, Link } from './session-types';
import { msg_flush, notifierAsClient, isFatal, isResultTypeChange } from './session-util';

export class Responses {
  constructor(private readonly s: ClientSession) {}

  push(kind: K, link: Link | null, ext: boolean): Pending {
    // Every field exists from the start: one object shape for all kinds keeps property access monomorphic.
    const p: Pending = {
      kind, link, out: null, done: false, ext, plans: undefined, planIdx: undefined, group: undefined, member: undefined,
      onError: undefined, cs: undefined, onDone: undefined, rows: undefined, onRow: undefined, t0: undefined,
    };
    this.s.pendings.push(p);
    if (link) link.queue.push(p);
    return p;
  }

  synth(msgs: Buffer[], ext: boolean): void {
    const p = this.push(K.Synth, null, ext);
    p.out = msgs;
    p.done = true;
    if (this.s.pendings.length === 1) this.drain();
  }

  rfq(): void {
    this.push(K.Rfq, null, false).done = true;
    if (this.s.pendings.length === 1) this.drain();
  }

  /** Sends `msg` to the client on behalf of `p` (streams if p is at the head). */
  out(p: Pending, msg: Buffer): void {
    if (msg[0] === B.ErrorResponse && p.link && isFatal(msg)) p.link.conn.fatalRelayed = true;
    if (this.s.pendings.first() === p) this.emit(p, msg);
    else (p.out ??= []).push(msg);
  }

  emit(p: Pending, msg: Buffer): void {
    if (this.s.extError && p.ext) return; // PostgreSQL would not have run it
    this.s.write(msg);
    if (p.ext && msg[0] === B.ErrorResponse) this.s.extError = true;
  }

  complete(p: Pending): void {
    if (p.done) return;
    p.done = true;
    p.onDone?.();
    if (p.t0 !== undefined && p.link) {
      const us = (Date.now() - p.t0) * 1000;
      const st = p.link.pool.stats;
      st.totalQuery++;
      st.totalQueryTimeUs += us;
      this.s.ctx.metrics?.query(p.link.shard, us);
    }
    if (p.link) {
      const q = p.link.queue;
      if (q.first() === p) q.shift(); else { const i = q.indexOf(p); if (i >= 0) q.removeAt(i); }
    }
    if (this.s.pendings.first() === p) this.drain();
    if (this.s.waiters !== null) this.wake();
  }

  drain(): void {
    const ps = this.s.pendings;
    while (ps.length) {
      const p = ps.first()!;
      if (p.out) { const o = p.out; p.out = null; for (const m of o) this.emit(p, m); }
      if (!p.done) return;
      ps.shift();
      if (p.kind === K.Rfq) {
        this.s.extError = false;
        const status = this.s.txStatus;
        this.s.write(readyForQuery(status));
        if (status === 'I') this.s.ctx.tx?.afterIdle?.(this.s);
        this.s.servers.afterReady();
      }
    }
  }

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
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.CommandComplete) this.afterCommandOf(p, msg);
        else if (type === B.ErrorResponse) this.afterErrorOf(p, msg);
        else if (type === B.CopyInResponse) this.s.copyLinks = [link];
        this.out(p, msg);
        return;
      case K.ExecSimple:
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.CommandComplete) this.afterCommandOf(p, msg);
        else if (type === B.ErrorResponse) this.afterErrorOf(p, msg);
        this.out(p, msg);
        return;
      case K.InternalRows:
        if (type === B.DataRow) { p.rows!.push(decodeDataRow(msg)); return; }
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.ErrorResponse) p.onError?.(msg);
        return;
      case K.Internal:
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.ErrorResponse) { p.onError?.(); this.out(p, msg); }
        return;
      case K.Sync:
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        this.out(p, msg); // e.g. an error raised at commit of the implicit transaction
        return;
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
    if (stmt) this.s.tx.afterCommand(stmt, commandTag(msg), p.link);
  }

  afterErrorOf(p: Pending, msg: Buffer): void {
    const f = parseErrorFields(msg);
    this.s.ctx.metrics?.error(f.C ?? 'XX000');
    if (f.S === 'FATAL' || f.S === 'PANIC') p.link?.conn.noteError(new PgError(f.C ?? SQLSTATE.AdminShutdown, f.M ?? '', { severity: 'FATAL' }));
    // A COMMIT that fails (a deferred constraint) or a PREPARE TRANSACTION that fails (gid in use,
    // temporary objects, ...) still ends the block: the server has rolled the transaction back.
    const cmd = p.plans?.[p.planIdx ?? 0]?.plan.command;
    if (cmd === 'prepare_transaction' || cmd === 'commit') this.s.tx.endTransaction(false);
  }

  /** Resolves once every request of this client has been answered. */
  waitIdle(): Promise<void> {
    return this.waitUntil(() => this.s.pendings.every((p: Pending) => p.done || p.kind === K.Rfq));
  }

  /** Resolves when `until()` holds (or the client is gone); re-checked by wake(). */
  waitUntil(until: () => boolean): Promise<void> {
    if (this.s.phase === 'closed' || until()) return Promise.resolve();
    return new Promise((resolve) => { (this.s.waiters ??= []).push({ until, resolve }); });
  }

  wake(): void {
    const ws = this.s.waiters;
    if (ws === null) return;
    const closed = this.s.phase === 'closed';
    const still: typeof ws = [];
    for (const w of ws) {
      if (closed || w.until()) w.resolve();
      else still.push(w);
    }
    this.s.waiters = still.length ? still : null;
  }

  /** Requests sent to a server and not answered yet. */
  inFlight(): boolean {
    for (const l of this.s.links) if (l && l.queue.length > 0) return true;
    return false;
  }

  /** Resolves once every server has answered what was sent to it. */
  afterInFlight(): Promise<void> {
    // PostgreSQL holds extended-protocol output until Sync or Flush (errors go out at once).
    for (const l of this.s.attachedLinks) if (l.queue.length > 0) l.conn.write(msg_flush);
    return this.waitUntil(() => !this.inFlight());
  }
}
