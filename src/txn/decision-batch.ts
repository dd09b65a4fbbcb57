// Group commit of two-phase-commit decisions into one rolling record per proxy process.
//
// The record txns/<proxy>_log-<incarnation> lists (`txids`, and every gid in `gids`) each
// transaction of this proxy that is decided and has not finished phase two. A decision is one
// ZooKeeper write of that record: decisions that arrive while a write is in flight wait for it
// and go together in the next write (group commit), and a write also drops the transactions
// that finished since the last one, so finished decisions cost no ZooKeeper request of their
// own (removed in batches, by the next write). The record is deleted once nothing is in phase
// two for IDLE_DELETE_MS. One write at a time, so the record only grows by whole batches.
//
// Recovery and backup restore decide a gid by the records of its proxy whose `txids` name its
// txid (recordDecides in src/cluster/txns.ts): the commit of a transaction is decided exactly
// when the write that first listed it succeeded, and it stays listed until its COMMIT PREPARED
// finished everywhere. Recovery deletes a gone proxy's record only at the version it read, so a
// write of a live proxy is never lost to a concurrent clean-up.
//
// Members are grouped by the ZooKeeper handle they prepared in: a record is written in the
// session that checked its members' locks.
import { randomBytes } from 'node:crypto';
import type { Zk } from '../cluster/zk';
import type { DecisionRecord } from '../cluster/txns';

export type DecisionOutcome = 'yes' | 'no' | 'unknown';

/** One distributed commit's part of a decision. */
export interface DecisionMember { txid: string; gids: { shard: string; gid: string }[] }

/** How the log reaches ZooKeeper (src/txn/manager.ts). */
export interface DecisionStore {
  /** Writes the whole record (create or replace); settles an ambiguous answer ('unknown' only when it cannot). */
  write(zk: Zk, rec: DecisionRecord, exists: boolean): Promise<DecisionOutcome>;
  /** Deletes the record (nothing in it is in phase two any more). */
  remove(rec: DecisionRecord): Promise<void>;
}

export const IDLE_DELETE_MS = 300;

/** The record listing `members` (pure). */
export function logRecord(proxy: string, name: string, members: Iterable<DecisionMember>, at: number): DecisionRecord {
  const txids: string[] = [];
  const gids: DecisionMember['gids'] = [];
  for (const m of members) { txids.push(m.txid); for (const g of m.gids) gids.push(g); }
  return { proxy, txid: name, gids, at, txids };
}

function newName(): string { return `log-${randomBytes(6).toString('hex')}`; }

interface Waiter { m: DecisionMember; resolve: (o: DecisionOutcome) => void }

export class DecisionBatcher {
  /** the record's name part after the proxy: `log-` and a random incarnation (never a txid: those are [0-9a-z]) */
  private name = newName();
  private readonly queued = new Map<Zk, Waiter[]>();
  private live = new Map<string, DecisionMember>();
  private writing = false;
  /** whether the record exists (null: unknown after a failed write) */
  private exists: boolean | null = false;
  private idleDue = false;
  private idleTimer: NodeJS.Timeout | null = null;
  readonly stats = { writes: 0, members: 0, maxBatch: 0, deletes: 0 };

  constructor(
    private readonly proxy: () => string,
    private readonly store: DecisionStore,
    private readonly maxMembers = 200,
    private readonly idleMs = IDLE_DELETE_MS,
  ) {}

  /** Decided transactions whose phase two has not finished (what the record lists). */
  get inPhaseTwo(): number { return this.live.size; }

  /** Resolves with the outcome of the write that first listed `m`. */
  decide(zk: Zk, m: DecisionMember): Promise<DecisionOutcome> {
    return new Promise((resolve) => {
      let q = this.queued.get(zk);
      if (!q) this.queued.set(zk, (q = []));
      q.push({ m, resolve });
      this.next();
    });
  }

  /** `txid` finished phase two on every shard: the next write (or the idle delete) drops it. */
  done(txid: string): void {
    if (!this.live.delete(txid) || this.live.size) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => { this.idleTimer = null; this.idleDue = true; this.next(); }, this.idleMs);
    this.idleTimer.unref();
  }

  private next(): void {
    if (this.writing) return;
    const head = this.queued.entries().next();
    if (head.done) { this.removeIfIdle(); return; }
    this.idleDue = false;
    const [zk, q] = head.value;
    const take = q.splice(0, this.maxMembers);
    if (!q.length) this.queued.delete(zk);
    this.writing = true;
    const rec = logRecord(this.proxy(), this.name, [...this.live.values(), ...take.map((w) => w.m)], Date.now());
    this.stats.writes++; this.stats.members += take.length;
    if (take.length > this.stats.maxBatch) this.stats.maxBatch = take.length;
    this.store.write(zk, rec, this.exists !== false).catch((): DecisionOutcome => 'unknown').then((outcome) => {
      this.writing = false;
      if (outcome === 'yes') {
        this.exists = true;
        for (const w of take) this.live.set(w.m.txid, w.m);
      } else if (outcome === 'no') {
        this.exists = null;   // not applied; the record keeps what it had
      } else {
        // Maybe applied: the record may now decide these members, and recovery may have begun
        // committing them by it. It is never rewritten: later decisions go to a new record, and
        // recovery removes this one once none of its transactions is prepared or in flight.
        this.name = newName();
        this.live = new Map();
        this.exists = false;
      }
      for (const w of take) w.resolve(outcome);
      this.next();
    });
  }

  private removeIfIdle(): void {
    if (!this.idleDue || this.live.size || this.exists === false) return;
    this.idleDue = false;
    this.writing = true;
    this.stats.deletes++;
    const rec = logRecord(this.proxy(), this.name, [], Date.now());
    this.store.remove(rec).then(() => { this.exists = false; }, () => { this.exists = null; }).finally(() => {
      this.writing = false;
      this.next();
    });
  }
}
