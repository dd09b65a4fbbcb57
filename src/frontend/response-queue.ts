// The ordered response queue of one client, without I/O: every request (sent to a server or
// answered by pgring itself) gets a Pending entry, in the order the client sent it. Output of
// the entry at the head streams to the client; later entries buffer until they reach the
// head, so the client sees responses in exactly the order PostgreSQL would send them. After
// an extended-protocol error the rest of the unit's output is dropped up to ReadyForQuery, as
// PostgreSQL skips those messages.
//
// Each entry is also on its server link's queue (which response belongs to what); complete()
// takes it off both. Subclasses (responses.ts) supply the ReadyForQuery, the statistics and
// whether the client is gone; the defaults make the class usable alone (unit tests).
import { B } from '../protocol/codes';
import { readyForQuery } from '../protocol/messages';
import { Fifo } from './fifo';
import { K } from './session-types';
import type { Link, Pending } from './session-types';
import { isFatal } from './session-util';

export class ResponseQueue {
  /** Every request in response order (the client side of the two queues). */
  readonly pendings = new Fifo<Pending>();
  /** An extended-protocol request failed since the last ReadyForQuery: later extended output is dropped. */
  extError = false;
  /** Waiting (afterInFlight, waitIdle) until a condition on the request queues holds; checked
   *  when a request completes, a link goes away or the client closes. */
  waiters: { until: () => boolean; resolve: () => void }[] | null = null;

  /** `out`: the client's write queue (messages appended in the order the client must see them). */
  constructor(protected readonly wq: Buffer[]) {}

  /** A ReadyForQuery entry reached the head of the queue. */
  protected ready(): void { this.wq.push(readyForQuery('I')); }
  /** A request with a start time completed (statistics). */
  protected timed(_p: Pending): void { /* statistics: responses.ts */ }
  /** The client is gone: waiters resolve at once. */
  protected closed(): boolean { return false; }

  push(kind: K, link: Link | null, ext: boolean): Pending {
    // Every field exists from the start: one object shape for all kinds keeps property access monomorphic.
    const p: Pending = {
      kind, link, out: null, done: false, ext, plans: undefined, planIdx: undefined, group: undefined, member: undefined,
      onError: undefined, cs: undefined, onDone: undefined, rows: undefined, onRow: undefined, onCommand: undefined, t0: undefined,
    };
    this.pendings.push(p);
    if (link) link.queue.push(p);
    return p;
  }

  /** Messages pgring answers itself, in their place in the order. */
  synth(msgs: Buffer[], ext: boolean): void {
    const p = this.push(K.Synth, null, ext);
    p.out = msgs;
    p.done = true;
    if (this.pendings.length === 1) this.drain();
  }

  /** A ReadyForQuery in its place in the order (its status is decided when it is sent). */
  rfq(): void {
    this.push(K.Rfq, null, false).done = true;
    if (this.pendings.length === 1) this.drain();
  }

  /** Sends `msg` to the client on behalf of `p` (streams if p is at the head). */
  out(p: Pending, msg: Buffer): void {
    if (msg[0] === B.ErrorResponse && p.link && isFatal(msg)) p.link.conn.fatalRelayed = true;
    if (this.pendings.first() === p) this.emit(p, msg);
    else (p.out ??= []).push(msg);
  }

  emit(p: Pending, msg: Buffer): void {
    if (this.extError && p.ext) return; // PostgreSQL would not have run it
    this.wq.push(msg);
    if (p.ext && msg[0] === B.ErrorResponse) this.extError = true;
  }

  complete(p: Pending): void {
    if (p.done) return;
    p.done = true;
    p.onDone?.();
    if (p.t0 !== undefined && p.link) this.timed(p);
    if (p.link) {
      const q = p.link.queue;
      if (q.first() === p) q.shift(); else { const i = q.indexOf(p); if (i >= 0) q.removeAt(i); }
    }
    if (this.pendings.first() === p) this.drain();
    if (this.waiters !== null) this.wake();
  }

  /** Sends what the head entries have, up to the first one not done. */
  drain(): void {
    const ps = this.pendings;
    while (ps.length) {
      const p = ps.first()!;
      if (p.out) { const o = p.out; p.out = null; for (const m of o) this.emit(p, m); }
      if (!p.done) return;
      ps.shift();
      if (p.kind === K.Rfq) {
        this.extError = false;
        this.ready();
      }
    }
  }

  /** Moves `p` to the end of the queue (a result entry answered after its members). */
  moveToEnd(p: Pending): void {
    this.pendings.removeAt(this.pendings.indexOf(p));
    this.pendings.push(p);
  }

  /** Whether every request has been answered (ReadyForQuery entries aside). */
  idle(): boolean {
    return this.pendings.every((p: Pending) => p.done || p.kind === K.Rfq);
  }

  /** Resolves once every request of this client has been answered. */
  waitIdle(): Promise<void> {
    return this.waitUntil(() => this.idle());
  }

  /** Resolves when `until()` holds (or the client is gone); re-checked by wake(). */
  waitUntil(until: () => boolean): Promise<void> {
    if (this.closed() || until()) return Promise.resolve();
    return new Promise((resolve) => { (this.waiters ??= []).push({ until, resolve }); });
  }

  wake(): void {
    const ws = this.waiters;
    if (ws === null) return;
    const closed = this.closed();
    const still: typeof ws = [];
    for (const w of ws) {
      if (closed || w.until()) w.resolve();
      else still.push(w);
    }
    this.waiters = still.length ? still : null;
  }
}
