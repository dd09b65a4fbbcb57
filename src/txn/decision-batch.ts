// Group commit of two-phase-commit decisions: distributed commits of one proxy that reach
// their decision while another decision write is in flight share the next ZooKeeper write,
// one record txns/<proxy>_<first txid> listing every member (`txids`) and every member's gids;
// the record is deleted once every member finished phase two (one delete per batch).
//
// A batch of one is exactly the record of one transaction (no `txids`), so a proxy of this
// version and an older one read each other's records. Recovery and backup restore decide a
// gid by the records of its proxy that name its txid (recordTxids), never by a path alone.
//
// Only one batch write is in flight at a time: the first decision is written at once, those
// arriving during its round trip wait for it and go together in the next write (at most one
// ZooKeeper round trip more for them, against one create and one delete per transaction).
// Members are grouped by the ZooKeeper handle they prepared in: a record is written in the
// session that checked its members' locks.
import type { Zk } from '../cluster/zk';
import type { DecisionRecord } from '../cluster/txns';

export type DecisionOutcome = 'yes' | 'no' | 'unknown';

/** One distributed commit's part of a decision. */
export interface DecisionMember { txid: string; gids: { shard: string; gid: string }[] }

/** A written (or attempted) record and how many members have not finished phase two yet. */
export interface DecisionBatch { rec: DecisionRecord; left: number }

/** The record of a batch (pure): a single member's is the plain per-transaction record. */
export function batchRecord(proxy: string, members: DecisionMember[], at: number): DecisionRecord {
  const first = members[0]!;
  if (members.length === 1) return { proxy, txid: first.txid, gids: first.gids, at };
  return { proxy, txid: first.txid, gids: members.flatMap((m) => m.gids), at, txids: members.map((m) => m.txid) };
}

interface Waiter { m: DecisionMember; resolve: (r: { outcome: DecisionOutcome; batch: DecisionBatch }) => void }

export class DecisionBatcher {
  private readonly queued = new Map<Zk, Waiter[]>();
  private writing = false;
  readonly stats = { batches: 0, members: 0, maxBatch: 0 };

  /** `write` records a decision and settles an ambiguous answer ('unknown' only when it cannot). */
  constructor(
    private readonly proxy: () => string,
    private readonly write: (zk: Zk, rec: DecisionRecord) => Promise<DecisionOutcome>,
    private readonly maxMembers = 200,
  ) {}

  /** Resolves with the outcome of the write that carried `m`, and its batch (for the delete). */
  decide(zk: Zk, m: DecisionMember): Promise<{ outcome: DecisionOutcome; batch: DecisionBatch }> {
    return new Promise((resolve) => {
      let q = this.queued.get(zk);
      if (!q) this.queued.set(zk, (q = []));
      q.push({ m, resolve });
      this.next();
    });
  }

  private next(): void {
    if (this.writing) return;
    const head = this.queued.entries().next();
    if (head.done) return;
    const [zk, q] = head.value;
    const take = q.splice(0, this.maxMembers);
    if (!q.length) this.queued.delete(zk);
    this.writing = true;
    const batch: DecisionBatch = { rec: batchRecord(this.proxy(), take.map((w) => w.m), Date.now()), left: take.length };
    this.stats.batches++; this.stats.members += take.length;
    if (take.length > this.stats.maxBatch) this.stats.maxBatch = take.length;
    this.write(zk, batch.rec).catch((): DecisionOutcome => 'unknown').then((outcome) => {
      this.writing = false;
      for (const w of take) w.resolve({ outcome, batch });
      this.next();
    });
  }
}
