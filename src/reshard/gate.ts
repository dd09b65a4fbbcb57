// The proxy's side of a resharding cut-over (the "fence" znode of src/reshard/store.ts).
//
// While migrations/fence names ring versions from -> to and this proxy still routes by `from`:
// - a transaction's first write to a moving key (its owner differs between the two rings), or a
//   write without a key, waits here (it holds no lock yet, so waiting can block nobody);
// - a later write to a moving key of a transaction that already wrote after the fence appeared
//   is refused with 40001 (it may hold locks a pre-fence transaction waits for);
// - transactions that wrote before the fence appeared go on; once all of them have ended and
//   the next ring's shards are ready here, the proxy acknowledges the fence's token in its
//   proxy znode. The controller flips ring/active only after every live proxy acknowledged.
// A waiting write ends when the fence is removed without a flip (it then runs as routed) or
// when this proxy switched to the new ring: it was routed by the old one, so it is refused with
// 40001 (serialization_failure: clients and pgbench --max-tries retry the transaction).
import type { KeyType } from '../config/types';
import type { Layout } from '../cluster/layout';
import { readRingVersion } from '../cluster/ring-store';
import type { ClusterLogger, ZkSession } from '../cluster/session';
import { SyncLoop, WatchSet, watchedRead } from '../cluster/sync';
import { decodeJson, isZkError, Zk } from '../cluster/zk';
import { PgError, SQLSTATE } from '../protocol/errors';
import type { RingDefinition } from '../ring/ring';
import { MovingKeys } from './plan';
import { fencePath, FenceDoc, filterPath, FilterDoc } from './store';

/** How long a moving write of a post-fence writer waits before its 40001 (ms). */
const REFUSE_AFTER_MS = 100;

export interface GateTxn { released: boolean; writeShards: Set<number> }

export interface GateHost {
  ringVersion(): number;
  /** transactions of this proxy that have written and not ended */
  writers(): GateTxn[];
  /** makes the shards of the next ring routable here (records read, health checked) */
  prepare(next: RingDefinition): Promise<void>;
  ack(token: string | null): void;
  /** records in the proxy znode that reads spanning shards are filtered for this migration */
  ackFilter(migration: string | null): void;
}

interface Active { doc: FenceDoc; moving: MovingKeys; pre: WeakSet<object>; waiters: (() => void)[] }

export class WriteGate {
  private active: Active | null = null;
  private loop: SyncLoop;
  private ws = new WatchSet();
  private ackTimer: NodeJS.Timeout | null = null;
  held = 0;
  refused = 0;

  constructor(readonly session: ZkSession, readonly layout: Layout, readonly host: GateHost, readonly logger: ClusterLogger) {
    this.loop = new SyncLoop(session, (zk) => this.sync(zk), { name: 'resharding fence watcher', logger });
  }

  async start(): Promise<void> { const first = this.loop.synced(); this.loop.start(); await first; }
  stop(): void { this.loop.stop(); this.release(); }

  /** While set, reads spanning shards see only the rows each shard owns (read-filter.ts). */
  filter: FilterDoc | null = null;

  /** The fence this proxy honours now (for SHOW MIGRATIONS), or null. */
  get fence(): FenceDoc | null { return this.active?.doc ?? null; }

  /** Called by the ring hook: a proxy on the new ring stops holding. */
  ringChanged(): void {
    if (this.active && this.host.ringVersion() >= this.active.doc.toVersion) this.release();
  }

  /**
   * Before a write: null to go on now; else a promise that settles when it may go on (or
   * rejects with 40001; for a moving write of a post-fence writer after at most REFUSE_AFTER_MS).
   */
  check(t: GateTxn, keys: { type: KeyType; values: (string | null)[] } | null): Promise<void> | null {
    const a = this.active;
    if (!a || this.host.ringVersion() >= a.doc.toVersion || a.pre.has(t)) return null;
    const moving = !keys || keys.values.length === 0 || keys.values.some((v) => v === null || safeMoves(a.moving, keys.type, v));
    if (!moving) return null;
    if (t.writeShards.size > 0) {
      // Refused, but only after a short wait (or the fence's end): an immediate 40001 makes the
      // client's retries spin for the whole cut-over. The wait is short because this transaction
      // may hold lock buckets that a pre-fence writer needs.
      this.refused++;
      const routed = this.host.ringVersion();
      return new Promise<void>((resolve, reject) => {
        let done = false;
        const wake = () => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          if (this.active === a || this.host.ringVersion() !== routed) reject(retryError(`the transaction writes a key that moves to another shard during resharding migration ${a.doc.migration}`));
          else resolve();
        };
        const timer = setTimeout(wake, REFUSE_AFTER_MS);
        a.waiters.push(wake);
      });
    }
    this.held++;
    const routedBy = this.host.ringVersion();
    return new Promise<void>((resolve, reject) => {
      a.waiters.push(() => {
        if (this.host.ringVersion() !== routedBy) reject(retryError(`the ring changed to version ${this.host.ringVersion()} (migration ${a.doc.migration}) while this write waited`));
        else resolve();
      });
    });
  }

  private release(): void {
    const a = this.active;
    this.active = null;
    if (this.ackTimer) { clearInterval(this.ackTimer); this.ackTimer = null; }
    if (a) for (const w of a.waiters.splice(0)) w();
  }

  private async sync(zk: Zk): Promise<void> {
    await this.syncFilter(zk);
    await this.syncFence(zk);
  }

  private async syncFilter(zk: Zk): Promise<void> {
    let doc: FilterDoc | null = null;
    try {
      const { data } = await watchedRead(this.ws, zk, 'filter', () => this.loop.trigger(), (w) => zk.get(filterPath(this.layout), w));
      doc = decodeJson<FilterDoc>(data, filterPath(this.layout));
    } catch (e) {
      if (!isZkError(e, 'NONODE')) throw e;
      await watchedRead(this.ws, zk, 'filter-exists', () => this.loop.trigger(), (w) => zk.exists(filterPath(this.layout), w));
    }
    // In effect for every later statement before the acknowledgement says so.
    this.filter = doc;
    this.host.ackFilter(doc?.migration ?? null);
  }

  private async syncFence(zk: Zk): Promise<void> {
    let doc: FenceDoc | null = null;
    try {
      const { data } = await watchedRead(this.ws, zk, 'fence', () => this.loop.trigger(), (w) => zk.get(fencePath(this.layout), w));
      doc = decodeJson<FenceDoc>(data, fencePath(this.layout));
    } catch (e) {
      if (!isZkError(e, 'NONODE')) throw e;
      await watchedRead(this.ws, zk, 'fence-exists', () => this.loop.trigger(), (w) => zk.exists(fencePath(this.layout), w));
    }
    if (!doc || this.host.ringVersion() >= doc.toVersion) {
      if (this.active) this.release();
      this.host.ack(null);
      return;
    }
    if (this.active?.doc.token === doc.token) return;
    if (this.host.ringVersion() !== doc.fromVersion) {
      this.logger.warn({ fence: doc, ring: this.host.ringVersion() }, 'resharding fence for another ring version; not acknowledged');
      return;
    }
    const from = await readRingVersion(this.session, this.layout, doc.fromVersion);
    const to = await readRingVersion(this.session, this.layout, doc.toVersion);
    this.release();
    const a: Active = { doc, moving: new MovingKeys(from as RingDefinition, to as RingDefinition), pre: new WeakSet(), waiters: [] };
    // Same tick as every later check: a writer not in `pre` sees the fence.
    const pre = this.host.writers().filter((t) => !t.released);
    for (const t of pre) a.pre.add(t);
    this.active = a;
    this.logger.info?.({ migration: doc.migration, from: doc.fromVersion, to: doc.toVersion, preFence: pre.length }, 'resharding fence: holding writes to moving keys');
    await this.host.prepare(to as RingDefinition);
    const tick = () => {
      if (this.active !== a) return;
      if (pre.some((t) => !t.released)) return;
      if (this.ackTimer) { clearInterval(this.ackTimer); this.ackTimer = null; }
      this.host.ack(doc!.token);
    };
    this.ackTimer = setInterval(tick, 10);
    this.ackTimer.unref();
    tick();
  }
}

function safeMoves(m: MovingKeys, type: KeyType, v: string): boolean {
  try { return m.moves(type, v); } catch { return true; }
}

function retryError(why: string): PgError {
  return new PgError(SQLSTATE.SerializationFailure, `pgring: ${why}; retry the transaction`, { hint: 'Resharding cut-over: the transaction can be retried at once.' });
}
