// The transaction layer: ZooKeeper write locks around write transactions and two-phase commit
// for transactions that wrote to several shards (TransactionHooks of the client sessions).
//
// Locks (config.locks.mode):
// - 'all' (default): every write statement first takes the lock buckets of its keys
//   (PostgreSQL's hash of the key, seed 0, mod config.locks.buckets: equal keys of different
//   tables share a bucket); held until the
//   transaction ended on every shard (afterTransaction) or, outside a transaction block, until
//   the statement finished (afterIdle).
// - 'multi_shard': a transaction's buckets are only noted; a transaction that wrote to several
//   shards takes them all at its COMMIT, in bucket order, before PREPARE (a multi-shard
//   autocommit write likewise, at its implicit commit). Single-shard transactions take none.
//   The writes themselves are therefore ordered by PostgreSQL's row locks only; the locks order
//   the distributed commits touching the same buckets. (Taking them lazily at the write that
//   touches a second shard was tried and rejected: a transaction then holds row locks taken
//   without bucket locks while it waits for a bucket, and another holds that bucket while it
//   waits for those rows — a deadlock across the two lock systems that only the lock timeout
//   ends. At commit all rows are already locked, and bucket-ordered acquisition cannot cycle.)
// - 'off': no locks (two-phase commit still runs).
// A write without a usable key locks what it names (src/router/lock-scope.ts): a key-less DML
// statement the table it writes, DDL the objects it names, temporary objects nothing; with one
// shard nothing is locked. A wait lasts until granted, the client's lock_timeout /
// statement_timeout, a cancel, or a deadlock found by src/txn/deadlock-detector.ts;
// locks.timeoutMs is only a safety net. docs/ARCHITECTURE.md has the table of what is locked.
//
// Lock loss: when the ZooKeeper session is suspended or lost while a transaction holds a lock,
// the transaction is doomed: its next write and its COMMIT fail (SQLSTATE 40001) and it is
// rolled back. COMMIT checks right before committing (single shard: the session must be
// connected and the same one that took the locks; several shards: the decision record is
// written in that same session, which ZooKeeper refuses once the session expired).
//
// Self-fence (src/cluster/fence.ts), in every lock mode including 'off': while the proxy cannot
// see ZooKeeper, beforeWrite refuses writes (also autocommit ones) and waiting lock requests
// end, and COMMIT of a transaction that wrote is refused and rolled back (57P03, naming
// ZooKeeper): also when the fence closed and opened again since the transaction's first write.
// Reads and read-only COMMITs go on.
//
// Distributed commit (COMMIT of a transaction with several shards in it):
//   participants without changes (src/txn/participants.ts) get a plain COMMIT; with at most one
//   participant that wrote, its plain COMMIT is the commit (one phase). Otherwise two-phase:
//   PREPARE TRANSACTION 'pgring_<cluster>_<proxy>_<txid>_<shard>' on each writing shard (in parallel);
//   any failure: ROLLBACK PREPARED the prepared ones, ROLLBACK the others, error to the client
//     (the shard's own SQLSTATE, e.g. 55000 "prepared transactions are disabled", shard named);
//   the decision: one write of this proxy's rolling record txns/<proxy>_log-<hex>, shared with
//     the commits decided at the same time (group commit, src/txn/decision-batch.ts) — the
//     commit point;
//   COMMIT PREPARED on each shard (retried); the client gets COMMIT;
//   the transaction leaves the record with the next write (or the idle delete).
// After the decision the transaction is committed whatever happens: a shard that cannot be
// reached for COMMIT PREPARED is finished in the background by this proxy (retrying every
// second over a plain connection) or, if this proxy dies, by recovery; the client still gets
// COMMIT (the outcome is decided and durable), and a warning is logged.
import { randomInt } from 'node:crypto';
import type { Config, KeyType } from '../config/types';
import type { Logger } from '../log';
import type { ClientSession, Link, ProxyContext, TransactionHooks, WriteKeys } from '../frontend/client';
import { PgError, SQLSTATE } from '../protocol/errors';
import { keyCoordinate, keyCoordinateBinary, hashTextExtended, toUnsigned } from '../ring/hash';
import type { Layout } from '../cluster/layout';
import type { ZkSession } from '../cluster/session';
import { isZkError, Zk, zkOpCounts } from '../cluster/zk';
import { ForwardingLocks } from '../cluster/forwarding-locks';
import type { LockPeers } from '../cluster/lock-peers';
import { encodeProxyForNode, LockCancelledError, LockDeadlockError, LockOwner, LockRow, LockTimeoutError, ZkLockService } from '../cluster/locks';
import type { WriteFence } from '../cluster/fence';
import type { WriteGate } from '../reshard/gate';
import { DecisionRecord, deleteDecision, makeGid, readDecision, recordDecides, recordTxids, writeDecisionLog } from '../cluster/txns';
import { finishPrepared, RecoveryHost, serviceCredentials, shardTargets } from './recovery';
import { parseDurationMs, waitLimit, WaitLimit, waitLimitError } from './wait-limit';
import { DeadlockDetector, DetectableTxn, DetectorHost } from './deadlock-detector';
import type { TxMetrics } from '../metrics';
import { BackupGate } from './backup-gate';
import { participantsThatWrote } from './participants';
import { DecisionBatcher, DecisionMember, DecisionOutcome } from './decision-batch';

/**
 * The lock bucket of a key: PostgreSQL's hash of the key (seed 0, as the ring hashes it;
 * binary Bind parameters arrive as \x<hex> and hash like their text form), mixed with the
 * hash of its lock group, mod buckets. The group is the table's key column: tables keyed by
 * the same column (pgbench_accounts and pgbench_history by aid; orders and order_items by
 * order_id) share one lock per key, which one transaction usually takes once (a per-table salt
 * was measured: TPC-B then takes a fourth, cold lock for the history row while holding the hot
 * branch lock, and lost 30% throughput). Keys of different groups get unrelated buckets: without
 * the salt, teller 1 and branch 1 shared a bucket, so two TPC-B transactions (teller 1, branch 2)
 * and (teller 2, branch 1) waited for each other — a lock cycle PostgreSQL's row locks do not
 * have, which through two proxies lasted until the lock timeout.
 */
export function lockBucket(type: KeyType, value: string, group: string | undefined, buckets: number): number {
  let c: bigint;
  if (/^\\x[0-9a-fA-F]*$/.test(value) && value.length > 2 && (type !== 'text' && type !== 'varchar')) {
    c = keyCoordinateBinary(type, Buffer.from(value.slice(2), 'hex'));
  } else if (/^\\x([0-9a-fA-F]{2})+$/.test(value) && (type === 'text' || type === 'varchar')) {
    c = keyCoordinate(type, Buffer.from(value.slice(2), 'hex').toString('utf8'));
  } else {
    c = keyCoordinate(type, value);
  }
  return Number((toUnsigned(c) ^ groupSalt(group)) % BigInt(buckets));
}

const salts = new Map<string, bigint>();
/** 64-bit salt of a lock group (0 for none), memoised: a handful of key columns per cluster. */
function groupSalt(group: string | undefined): bigint {
  if (!group) return 0n;
  let s = salts.get(group);
  if (s === undefined) {
    s = toUnsigned(hashTextExtended(`lockgroup:${group}`, 0n));
    if (salts.size < 10000) salts.set(group, s);
  }
  return s;
}

/** Per-transaction state (session.txData). */
export class Txn implements LockOwner {
  doomed: string | null = null;
  /** when its current lock wait began (0: not waiting) and for which bucket (-1: none) */
  waitingSince = 0;
  waitingFor = -1;
  readonly writeShards = new Set<number>();
  readonly pending = new Set<number>();
  locking = false;
  committing = false;
  /** fence epoch at the first write (-1: no write yet) */
  fenceEpoch = -1;
  /** the client session closed while its commit ran (its server links will not answer) */
  gone = false;
  private goneWaiters: (() => void)[] = [];
  ended = false;
  /** gone from the live set (locks released): the resharding gate waits for this */
  released = false;
  readonly startedAt = Date.now();
  constructor(readonly session: ClientSession, readonly label: string, readonly id: string) {}
  lost(bucket: number, reason: string): void {
    this.doomed ??= `${reason} while holding lock bucket ${bucket}`;
  }
  markGone(): void {
    if (this.gone) return;
    this.gone = true;
    for (const f of this.goneWaiters.splice(0)) f();
  }
  /** `p`, or a rejection as soon as the client session is gone (a closed session's requests never finish). */
  unlessGone<T>(p: Promise<T>): Promise<T> {
    if (this.gone) { p.catch(() => undefined); return Promise.reject(new PgError(SQLSTATE.ConnectionFailure, 'pgring: the client connection closed during the commit')); }
    return new Promise<T>((resolve, reject) => {
      const onGone = () => reject(new PgError(SQLSTATE.ConnectionFailure, 'pgring: the client connection closed during the commit'));
      this.goneWaiters.push(onGone);
      p.then(resolve, reject).finally(() => { const i = this.goneWaiters.indexOf(onGone); if (i >= 0) this.goneWaiters.splice(i, 1); });
    });
  }
}

/** A row of SHOW LOCKS. */
export interface LockInfo { bucket: number; proxy: string; state: string; holder: string | null; waiting: number; remote_waiting: number; held_ms: number; owner_ms: number }
/** A row of SHOW TRANSACTIONS (distributed commits in progress or being finished). */
export interface TxnInfo { txid: string; proxy: string; state: string; shards: string; age_ms: number }

const PHASE_TIMEOUT_MS = 30000;
const COMMIT_TIMEOUT_MS = 10000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => { t = setTimeout(() => reject(new PgError(SQLSTATE.ConnectionFailure, `pgring: ${what} did not finish within ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(t));
}

function asPgError(e: unknown): PgError {
  return e instanceof PgError ? e : new PgError(SQLSTATE.InternalError, `pgring: ${(e as Error).message}`);
}

export class TxnManager implements TransactionHooks, RecoveryHost, DetectorHost {
  private locks: ForwardingLocks | null = null;
  /** transactions that took locks or wrote, until they end (for deadlock detection) */
  private readonly live = new Set<Txn>();
  private txnSeq = 0;
  /** temporary relations each session created (they take no lock) */
  private readonly tempRels = new WeakMap<ClientSession, Set<string>>();
  private detector: DeadlockDetector | null = null;
  private session: ZkSession | null = null;
  private layout: Layout | null = null;
  private fence: WriteFence | null = null;
  /** the resharding write gate (set by the proxy when it runs with ZooKeeper) */
  gate: WriteGate | null = null;
  proxyId = '';
  private started = false;
  private readyWaiters: (() => void)[] = [];
  private seq = randomInt(1, 1000);
  readonly inflight = new Set<string>();
  private readonly active = new Map<string, { state: string; shards: string[]; since: number }>();
  needsSweep = false;
  private stopped = false;
  /** Holds new decisions while a backup cut is taken (src/txn/backup-gate.ts). */
  backupGate: BackupGate | null = null;
  /** group commit of decision records */
  private readonly decisions = new DecisionBatcher(() => this.proxyId, {
    write: (zk, rec, exists) => this.recordDecision(zk, rec, exists),
    remove: async (rec) => {
      // One attempt (decisions wait behind it): a record left now goes with the next idle delete or recovery.
      const zk = this.session?.handle();
      if (!zk || this.session!.state !== 'connected') throw new Error('ZooKeeper not connected');
      await deleteDecision(zk, this.layout!, rec.proxy, rec.txid);
    },
  });
  readonly stats = { commits2pc: 0, commits1pc: 0, readOnlyParticipants: 0, aborts2pc: 0, lockTimeouts: 0, lockLost: 0, lockWaits: 0, lockWaitUs: 0, commitUs: 0, decisionUs: 0 };

  constructor(readonly ctx: ProxyContext, readonly log: Logger) {}

  get cfg(): Config['locks'] { return this.ctx.config.locks; }
  get lockService(): ForwardingLocks | null { return this.locks; }

  /** Called once the coordinator is up (session connected, proxy node registered). */
  start(session: ZkSession, layout: Layout, proxyId: string, fence?: WriteFence, lockPeers?: LockPeers | null): void {
    this.session = session;
    this.layout = layout;
    this.proxyId = proxyId;
    if (fence) {
      this.fence = fence;
      fence.addResync((zk) => this.verifyLocks(zk));
    }
    if (this.cfg.mode !== 'off') {
      this.locks = new ForwardingLocks(new ZkLockService(session, layout, {
        proxyId, buckets: this.cfg.buckets, leaseMs: this.cfg.leaseMs,
        logger: { warn: (o, m) => this.log.warn(o, m), info: (o, m) => this.log.info(o, m), debug: (o, m) => this.log.debug(o, m) },
      }), lockPeers ?? null);
      this.detector = new DeadlockDetector(session, layout, proxyId, this, this.ctx.config, this.ctx.topology, this.log);
      this.detector.start();
    }
    this.backupGate = new BackupGate(session, layout, proxyId, this.log);
    this.backupGate.start();
    this.started = true;
    if (process.env.PGRING_TXN_STATS) setInterval(() => this.printStats(), Number(process.env.PGRING_TXN_STATS) || 5000).unref();
    const w = this.readyWaiters; this.readyWaiters = [];
    for (const f of w) f();
  }

  /** PGRING_TXN_STATS (a period in ms; for benchmarks): counters on stderr. */
  private printStats(): void {
    console.error('pgring txn stats', JSON.stringify({ ...this.stats, decisions: this.decisions.stats, locks: this.locks?.stats, zkOps: zkOpCounts }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.backupGate?.stop();
    if (process.env.PGRING_TXN_STATS) this.printStats();
    await this.detector?.stop();
    await this.locks?.close();
  }

  // DetectorHost
  liveTxns(): Iterable<DetectableTxn> { return this.live; }
  held(t: DetectableTxn): number[] { return this.locks?.held(t as Txn) ?? []; }
  abortWait(t: DetectableTxn, err: PgError): boolean { return this.locks?.abortWait(t as Txn, err) ?? false; }
  get deadlockStats() { return this.detector?.stats ?? null; }

  sweepDone(): void { this.needsSweep = false; }
  sweepAgain(): void { this.needsSweep = true; }

  private whenReady(): Promise<void> {
    if (this.started) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new PgError(SQLSTATE.CannotConnectNow, 'pgring is starting: ZooKeeper coordination is not ready yet')), 30000);
      this.readyWaiters.push(() => { clearTimeout(t); resolve(); });
    });
  }

  // ---------------------------------------------------------------- buckets

  tableBucket(table: string | undefined): number {
    return Number(toUnsigned(hashTextExtended(`table:${(table ?? '').toLowerCase()}`, 0n)) % BigInt(this.cfg.buckets));
  }

  keyBucket(type: KeyType, value: string, group?: string): number {
    return lockBucket(type, value, group, this.cfg.buckets);
  }

  /** The bucket of a lock object of router/lock-scope.ts (`rel:<schema.>name` is its table's bucket). */
  objectBucket(object: string): number {
    if (object.startsWith('rel:')) return this.tableBucket(object.slice(object.lastIndexOf('.') + 1).replace(/^rel:/, ''));
    return Number(toUnsigned(hashTextExtended(`object:${object}`, 0n)) % BigInt(this.cfg.buckets));
  }

  /**
   * Buckets of a write: its keys' buckets; without keys (or for a NULL key) the buckets of the
   * objects it names (`objects`, from the planner; [] = temporary objects only: nothing), else
   * the table's.
   */
  bucketsFor(keys: WriteKeys | null, table: string | undefined, objects?: string[]): number[] {
    const out = new Set<number>();
    const keyless = () => {
      if (objects) for (const o of objects) out.add(this.objectBucket(o));
      else out.add(this.tableBucket(table));
    };
    if (!keys || keys.values.length === 0) keyless();
    else {
      for (const v of keys.values) {
        if (v === null) { if (table) out.add(this.tableBucket(table)); else keyless(); continue; }
        try { out.add(this.keyBucket(keys.type, v, keys.group)); } catch { out.add(this.tableBucket(table)); }
      }
    }
    return [...out].sort((a, b) => a - b);
  }

  // ---------------------------------------------------------------- hooks

  private txnOf(session: ClientSession): Txn {
    let t = session.txData as Txn | null;
    if (!(t instanceof Txn)) {
      t = new Txn(session, `pid ${session.pid} ${session.user}@${session.database}`, `${this.proxyId}/${session.pid}/${(this.txnSeq++).toString(36)}`);
      session.txData = t;
      this.live.add(t);
    }
    return t;
  }

  beforeWrite(session: ClientSession, shards: number[], keys: WriteKeys | null, _inBlock: boolean, table?: string, objects?: string[]): Promise<void> | void {
    if (!this.started) return this.whenReady().then(() => this.beforeWrite(session, shards, keys, _inBlock, table, objects));
    const t = this.txnOf(session);
    const fenced = this.fenceVeto(t);
    if (fenced) throw fenced;
    if (t.doomed) throw this.doomedError(t.doomed);
    // Resharding cut-over (src/reshard/gate.ts): a first write to a moving key waits here.
    const held = this.gate?.check(t, keys);
    if (held) {
      return held.then(() => {
        // The session ended (or its transaction did) while the write waited: it must not run on
        // its own (it would commit alone on a pooled connection).
        if (t.released || session.txData !== t) throw new PgError(SQLSTATE.ConnectionFailure, 'pgring: the transaction ended while its write waited for a resharding cut-over');
        return this.beforeWrite(session, shards, keys, _inBlock, table, objects);
      });
    }
    if (t.fenceEpoch < 0) t.fenceEpoch = this.fence?.epoch ?? 0;
    for (const s of shards) t.writeShards.add(s);
    // With one shard PostgreSQL alone orders every write: a ZooKeeper lock would add nothing
    // (locks.singleShard takes them anyway, to exercise the lock path).
    if (!this.locks || (this.ctx.topology.shards.length === 1 && !this.cfg.singleShard)) return;
    const buckets = this.bucketsFor(keys, table, objects && this.lockable(session, objects));
    if (buckets.length === 0) return;
    if (this.cfg.mode === 'multi_shard') {
      // Noted only: taken at the multi-shard COMMIT, all at once in bucket order, before PREPARE.
      for (const b of buckets) t.pending.add(b);
      return;
    }
    return this.acquireAll(t, buckets, 0);
  }

  /** Lock objects without the session's temporary relations (remembered from `temp:` entries). */
  private lockable(session: ClientSession, objects: string[]): string[] {
    let temps = this.tempRels.get(session);
    for (const o of objects) if (o.startsWith('temp:')) (temps ??= this.tempRels.set(session, new Set()).get(session)!).add(o.slice(5));
    return objects.filter((o) => !o.startsWith('temp:') && !(temps && o.startsWith('rel:') && temps.has(o.slice(o.lastIndexOf('.') + 1).replace(/^rel:/, ''))));
  }

  /** The limit of a lock wait of this session (read only when a wait begins: off the hot path). */
  private limitFor(session: ClientSession): WaitLimit | null {
    const ms = (name: string) => { const v = session.setting(name); return v === null ? null : parseDurationMs(v); };
    return waitLimit(ms('lock_timeout'), ms('statement_timeout'), this.cfg.timeoutMs);
  }

  private acquireAll(t: Txn, buckets: number[], from: number): Promise<void> | void {
    const locks = this.locks!;
    for (let i = from; i < buckets.length; i++) {
      const bucket = buckets[i]!;
      let p: Promise<void> | null;
      try { p = locks.acquire(t, bucket, 0); } catch (e) { throw this.lockError(e); }
      if (p) {
        p = this.unlessFenced(p, t);
        const t0 = process.hrtime.bigint();
        const limit = this.limitFor(t.session);
        const timer = limit ? setTimeout(() => { if (locks.abortWait(t, waitLimitError(limit, bucket))) this.stats.lockTimeouts++; }, limit.ms) : null;
        t.waitingSince = Date.now();
        t.waitingFor = bucket;
        const waited = () => {
          if (timer) clearTimeout(timer);
          t.waitingSince = 0;
          t.waitingFor = -1;
          const us = Number(process.hrtime.bigint() - t0) / 1000;
          this.stats.lockWaits++; this.stats.lockWaitUs += us;
          (this.ctx.metrics as Partial<TxMetrics> | undefined)?.lockWait?.(us);
        };
        return p.then(() => {
          waited();
          if (t.doomed) throw this.doomedError(t.doomed);
          return this.acquireAll(t, buckets, i + 1);
        }, (e) => { waited(); throw this.lockError(e); });
      }
    }
  }

  /** A CancelRequest for the session ends its lock wait as PostgreSQL ends a lock wait. */
  cancelWait(session: ClientSession): void {
    const t = session.txData;
    if (t instanceof Txn && this.locks) this.locks.abortWait(t, new PgError(SQLSTATE.QueryCanceled, 'canceling statement due to user request'));
  }

  private lockError(e: unknown): PgError {
    if (e instanceof PgError) {
      if (e.code === SQLSTATE.LockNotAvailable) (this.ctx.metrics as Partial<TxMetrics> | undefined)?.lockTimeout?.();
      return e;
    }
    if (e instanceof LockTimeoutError) {
      this.stats.lockTimeouts++;
      (this.ctx.metrics as Partial<TxMetrics> | undefined)?.lockTimeout?.();
      return new PgError(SQLSTATE.DeadlockDetected, e.message, { hint: 'Another transaction holds the lock bucket (possibly through another pgring proxy); retry the transaction.' });
    }
    // PostgreSQL's own wording, so clients matching on the message see one text for every deadlock
    if (e instanceof LockDeadlockError) return new PgError(SQLSTATE.DeadlockDetected, 'deadlock detected', { detail: `Transactions wait for pgring lock buckets held by each other (this one waited for bucket ${e.bucket}).`, hint: 'Retry the transaction.' });
    if (e instanceof LockCancelledError) return new PgError(SQLSTATE.QueryCanceled, e.message);
    return asPgError(e);
  }

  /** 57P03 when writes must not happen now: fenced, or fenced since this transaction's first write. */
  private fenceVeto(t: Txn): PgError | null {
    const f = this.fence;
    if (!f) return null;
    const why = f.why ?? (t.fenceEpoch >= 0 && t.fenceEpoch !== f.epoch ? 'the proxy was cut off from ZooKeeper (self-fenced) after this transaction started writing' : null);
    if (!why) return null;
    return new PgError(SQLSTATE.CannotConnectNow, `pgring: writes are refused: ${why}; the transaction is rolled back`, {
      hint: 'Reads still work. Writes resume once the proxy is connected to ZooKeeper again and has re-read the ring, shard records and its locks; retry then.',
    });
  }

  /**
   * A lock wait ends with 57P03 when the fence closes (ZooKeeper gone: it would only time out).
   * The transaction can never commit now (fenced, or fenced since its first write), so its
   * wait is withdrawn and its buckets released at once instead of at its ROLLBACK.
   */
  private unlessFenced(p: Promise<void>, t: Txn): Promise<void> {
    const f = this.fence;
    if (!f) return p;
    return new Promise<void>((resolve, reject) => {
      const onClosed = () => {
        const why = f.why ?? 'self-fenced';
        t.doomed ??= `the proxy self-fenced (${why})`;
        reject(new PgError(SQLSTATE.CannotConnectNow, `pgring: writes are refused: ${why} (while waiting for a lock)`, {
          hint: 'Reads still work. Writes resume once the proxy is connected to ZooKeeper again; retry then.',
        }));
        this.locks?.releaseAll(t);
      };
      f.once('closed', onClosed);
      p.then(resolve, reject).finally(() => f.off('closed', onClosed));
    });
  }

  /** Fence resync step: every bucket this proxy holds still has its node in ZooKeeper. */
  private async verifyLocks(zk: Zk): Promise<void> {
    const locks = this.locks;
    if (!locks) return;
    const mine = encodeProxyForNode(this.proxyId);
    for (const row of locks.localSnapshot()) {
      if (row.state !== 'held') continue;
      const nodes = await zk.children(locks.bucketDir(row.bucket)).catch((e: unknown) => { if (isZkError(e, 'NONODE')) return [] as string[]; throw e; });
      if (!nodes.some((n) => n.startsWith(mine))) {
        // Held here but gone in ZooKeeper: released by the lease or the session soon; stay fenced until then.
        throw new Error(`lock bucket ${row.bucket} is held here but its node is gone from ZooKeeper`);
      }
    }
  }

  private doomedError(reason: string): PgError {
    return new PgError(SQLSTATE.SerializationFailure, `pgring: transaction rolled back: ${reason}`, { hint: 'The lock could have been taken by another proxy; retry the transaction.' });
  }

  /** Right before a COMMIT is forwarded (one server) or the distributed commit starts:
   *  an error means "roll back instead". Locks stay until the COMMIT has finished (DESIGN.md). */
  beforeCommit(session: ClientSession): PgError | null {
    const t = session.txData;
    if (!(t instanceof Txn)) return null;
    const fenced = t.writeShards.size ? this.fenceVeto(t) : null;
    if (fenced) { t.doomed ??= fenced.message; return fenced; }
    const reason = t.doomed ?? this.locks?.check(t) ?? null;
    if (reason) { this.stats.lockLost++; t.doomed ??= reason; return this.doomedError(reason); }
    return null;
  }

  afterTransaction(session: ClientSession, _committed: boolean): void {
    const t = session.txData;
    if (!(t instanceof Txn)) return;
    // During a commit this only happens when the client session closes (client.ts close()).
    if (t.committing) { t.ended = true; t.markGone(); return; }
    this.release(session, t);
  }

  afterIdle(session: ClientSession): void {
    const t = session.txData;
    if (!(t instanceof Txn) || t.committing) return;
    this.release(session, t);
  }

  /** Transactions that wrote and have not ended (the resharding gate waits for those before acknowledging). */
  writers(): Txn[] { return [...this.live].filter((t) => t.writeShards.size > 0); }

  private release(session: ClientSession, t: Txn): void {
    if (session.txData === t) session.txData = null;
    t.released = true;
    this.live.delete(t);
    this.locks?.releaseAll(t);
  }

  // ---------------------------------------------------------------- two-phase commit

  private shardName(shard: number): string { return this.ctx.topology.shards[shard]?.name ?? `#${shard}`; }

  async commitMulti(session: ClientSession, links: Link[]): Promise<void> {
    if (!this.started) await this.whenReady();
    const t = this.txnOf(session);
    t.committing = true;
    const t0 = process.hrtime.bigint();
    const m = this.ctx.metrics as Partial<TxMetrics> | undefined;
    try {
      await this.commitParticipants(session, t, links);
      m?.twoPhaseCommit?.('committed');
    } catch (e) {
      m?.twoPhaseCommit?.('aborted');
      throw e;
    } finally {
      this.stats.commitUs += Number(process.hrtime.bigint() - t0) / 1000;
      t.committing = false;
      if (t.ended) this.release(session, t);
    }
  }

  private async rollbackAll(session: ClientSession, links: Link[], prepared: boolean[], gids: string[]): Promise<void> {
    const t = session.txData;
    if (t instanceof Txn && t.gone) {
      // The session closed: its links went back to the pool (rolled back) or were destroyed;
      // what was prepared is rolled back by this proxy's own sweep.
      this.needsSweep = true;
      return;
    }
    const res = await Promise.allSettled(links.map((l, i) => withTimeout(session.runOnLinks([l], prepared[i] ? `ROLLBACK PREPARED '${gids[i]}'` : 'ROLLBACK'), PHASE_TIMEOUT_MS, 'ROLLBACK')));
    // A prepared one that did not roll back, or a link that failed (its PREPARE may have run
    // without the answer reaching us): this proxy's own sweep rolls back what is left.
    if (res.some((r) => r.status === 'rejected')) this.needsSweep = true;
  }

  /**
   * Participants without changes commit with a plain COMMIT (src/txn/participants.ts); one that
   * wrote alone commits with its own plain COMMIT (one phase: no PREPARE, no decision record:
   * also while ZooKeeper is away for read-only transactions); two or more go through two-phase
   * commit, the others committing next to their PREPARE.
   */
  private async commitParticipants(session: ClientSession, t: Txn, links: Link[]): Promise<void> {
    let split: { writers: Link[]; readers: Link[] };
    try {
      split = await participantsThatWrote(session, links, t.writeShards, (p) => withTimeout(t.unlessGone(p), PHASE_TIMEOUT_MS, 'the read-only check of a distributed commit'));
    } catch (e) {
      await this.rollbackAll(session, links, links.map(() => false), []);
      throw asPgError(e);
    }
    const { writers, readers } = split;
    if (readers.length) this.stats.readOnlyParticipants += readers.length;
    if (writers.length <= 1) return this.commitOnePhase(session, t, writers, readers);
    const rd = readers.length ? t.unlessGone(session.runOnLinks(readers, 'COMMIT')).catch(() => undefined) : null;
    try { await this.twoPhase(session, t, writers); } finally { await rd; }
  }

  /** COMMIT on every link at once; `writers` (at most one) decides the outcome. */
  private async commitOnePhase(session: ClientSession, t: Txn, writers: Link[], readers: Link[]): Promise<void> {
    const all = [...writers, ...readers];
    const reason = writers.length ? t.doomed ?? this.locks?.check(t) ?? null : null;
    const veto = (t.writeShards.size ? this.fenceVeto(t) : null) ?? (reason ? this.doomedError(reason) : null);
    if (veto) {
      if (reason) { t.doomed ??= reason; this.stats.lockLost++; }
      await this.rollbackAll(session, all, all.map(() => false), []);
      throw veto;
    }
    const res = await Promise.allSettled(all.map((l) => t.unlessGone(session.runOnLinks([l], 'COMMIT'))));
    this.stats.commits1pc++;
    // A read-only participant that failed to commit had nothing to commit.
    if (writers.length && res[0]!.status === 'rejected') throw asPgError(res[0].reason);
  }

  private async twoPhase(session: ClientSession, t: Txn, links: Link[]): Promise<void> {
    const zk0 = await this.beforePrepare(session, t, links);
    const txid = (this.seq++).toString(36);
    const shards = links.map((l) => this.shardName(l.shard));
    const gids = shards.map((s) => makeGid(this.layout!.cluster, this.proxyId, txid, s));
    const info = { state: 'preparing', shards, since: Date.now() };
    this.inflight.add(txid);
    this.active.set(txid, info);
    let keepInflight = false;
    try {
      const prepared = await this.phaseOne(session, t, links, gids, shards, info, txid);
      const gate = await this.beforeDecision(session, t, links, prepared, gids, info, zk0);
      // The decision (commit point), written together with those of concurrent commits.
      info.state = 'deciding';
      const member: DecisionMember = { txid, gids: gids.map((gid, i) => ({ shard: shards[i]!, gid })) };
      const td = process.hrtime.bigint();
      let decided: DecisionOutcome;
      try { decided = await this.decisions.decide(zk0, member); } finally { gate?.leave(); }
      this.stats.decisionUs += Number(process.hrtime.bigint() - td) / 1000;
      if (decided === 'unknown') {
        // Neither we nor the client can know now: recovery finishes it by the record.
        this.needsSweep = true;
        throw new PgError('08007', 'pgring: the outcome of the distributed commit is unknown: ZooKeeper was unreachable while recording the decision; recovery will commit or roll it back', { hint: `global transaction ids: ${gids.join(', ')}` });
      }
      if (decided === 'no') {
        this.stats.aborts2pc++;
        info.state = 'rolling back';
        await this.rollbackAll(session, links, prepared, gids);
        throw new PgError(SQLSTATE.SerializationFailure, 'pgring: could not record the commit decision in ZooKeeper (session lost); transaction rolled back');
      }
      keepInflight = await this.phaseTwo(session, t, links, gids, shards, member, info, txid);
    } finally {
      if (!keepInflight) { this.inflight.delete(txid); this.active.delete(txid); }
    }
  }

  /** Before PREPARE: multi_shard locks, the fence, lost locks, a connected session (its handle returned). */
  private async beforePrepare(session: ClientSession, t: Txn, links: Link[]): Promise<Zk> {
    const none = links.map(() => false);
    if (this.locks && this.cfg.mode === 'multi_shard' && t.pending.size && !t.locking) {
      t.locking = true;
      try {
        await this.acquireAll(t, [...t.pending].sort((a, b) => a - b), 0);
      } catch (e) {
        await this.rollbackAll(session, links, none, []);
        throw asPgError(e);
      }
    }
    const fenced = t.writeShards.size ? this.fenceVeto(t) : null;
    if (fenced) {
      await this.rollbackAll(session, links, none, []);
      throw fenced;
    }
    const veto = t.doomed ?? this.locks?.check(t) ?? null;
    if (veto) {
      t.doomed ??= veto;
      this.stats.lockLost++;
      await this.rollbackAll(session, links, none, []);
      throw this.doomedError(veto);
    }
    const zs = this.session!;
    const zk0 = zs.handle();
    if (zs.state !== 'connected' || !zk0) {
      await this.rollbackAll(session, links, none, []);
      throw new PgError(SQLSTATE.ConnectionFailure, `pgring: ZooKeeper is ${zs.state}: cannot record a distributed commit; transaction rolled back`);
    }
    return zk0;
  }

  /** PREPARE TRANSACTION on every shard at once; any failure rolls every shard back. */
  private async phaseOne(session: ClientSession, t: Txn, links: Link[], gids: string[], shards: string[], info: { state: string }, txid: string): Promise<boolean[]> {
    const res = await Promise.allSettled(links.map((l, i) => withTimeout(t.unlessGone(session.runOnLinks([l], `PREPARE TRANSACTION '${gids[i]}'`)), PHASE_TIMEOUT_MS, `PREPARE TRANSACTION on shard "${shards[i]}"`)));
    const prepared = res.map((r) => r.status === 'fulfilled');
    const failed = res.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      this.stats.aborts2pc++;
      info.state = 'rolling back';
      await this.rollbackAll(session, links, prepared, gids);
      const e = asPgError((res[failed] as PromiseRejectedResult).reason);
      this.log.debug({ txid, shard: shards[failed], err: e.message }, 'two-phase commit: PREPARE failed; rolled back');
      throw new PgError(e.code, `pgring: could not prepare the transaction for two-phase commit: ${e.message}`, { hint: e.opts.hint, detail: e.opts.detail });
    }
    return prepared;
  }

  /**
   * Right before the decision: not fenced, locks still ours, the same session connected, and a
   * backup cut in progress waited for (bounded). Returns the backup gate to leave after the
   * decision is written.
   */
  private async beforeDecision(session: ClientSession, t: Txn, links: Link[], prepared: boolean[], gids: string[], info: { state: string }, zk0: Zk): Promise<TxnManager['backupGate']> {
    const zs = this.session!;
    // Right before committing: not fenced, locks still ours, the same session still connected.
    const fenced2 = (t.writeShards.size ? this.fenceVeto(t) : null)
      ?? (t.gone ? new PgError(SQLSTATE.ConnectionFailure, 'pgring: the client connection closed before the commit decision') : null);
    if (fenced2) {
      this.stats.aborts2pc++;
      info.state = 'rolling back';
      await this.rollbackAll(session, links, prepared, gids);
      throw fenced2;
    }
    const veto2 = t.doomed ?? this.locks?.check(t) ?? (zs.handle() !== zk0 || zs.state !== 'connected' ? `ZooKeeper session ${zs.state}` : null);
    if (veto2) {
      t.doomed ??= veto2;
      this.stats.lockLost++;
      info.state = 'rolling back';
      await this.rollbackAll(session, links, prepared, gids);
      throw this.doomedError(veto2);
    }
    // A backup cut in progress holds new decisions (bounded); past the bound: roll back.
    const gate = this.backupGate;
    const entered = gate?.enter(zk0) ?? null;
    if (entered) {
      info.state = 'held by backup cut';
      const held = await entered;
      // Held for a while: the locks and the session must still be ours, as checked above.
      const veto3 = held ? null : t.doomed ?? this.locks?.check(t) ?? (zs.handle() !== zk0 || zs.state !== 'connected' ? `ZooKeeper session ${zs.state}` : null);
      if (held || veto3) {
        if (veto3) { gate!.leave(); t.doomed ??= veto3; }
        this.stats.aborts2pc++;
        info.state = 'rolling back';
        await this.rollbackAll(session, links, prepared, gids);
        throw held ?? this.doomedError(veto3!);
      }
    }
    return gate;
  }

  /** COMMIT PREPARED on every shard (retried); shards that still fail are finished in the
   *  background. True when the transaction stays in flight for that. */
  private async phaseTwo(session: ClientSession, t: Txn, links: Link[], gids: string[], shards: string[], member: DecisionMember, info: { state: string }, txid: string): Promise<boolean> {
    info.state = 'committing';
    let left = links.map((_, i) => i);
    for (let attempt = 0; attempt < 3 && left.length; attempt++) {
      if (t.gone) break;   // the session's links are gone: finished over plain connections below
      const r2 = await Promise.allSettled(left.map((i) => withTimeout(t.unlessGone(session.runOnLinks([links[i]!], `COMMIT PREPARED '${gids[i]}'`)), COMMIT_TIMEOUT_MS, `COMMIT PREPARED on shard "${shards[i]}"`)));
      left = left.filter((_, j) => r2[j]!.status === 'rejected');
      if (left.length) await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
    }
    this.stats.commits2pc++;
    if (left.length) {
      info.state = 'finishing';
      this.log.warn({ txid, shards: left.map((i) => shards[i]) }, 'two-phase commit: COMMIT PREPARED failed on some shards after the decision; finishing in the background');
      this.finishLater(member, session.database, left.map((i) => i));
      return true;
    }
    this.decisions.done(txid);
    return false;
  }

  /** Writes the decision; resolves an ambiguous create by reading it back. */
  private async recordDecision(zk0: Zk, rec: DecisionRecord, exists: boolean): Promise<DecisionOutcome> {
    try {
      await writeDecisionLog(zk0, this.layout!, rec, exists);
      return 'yes';
    } catch (e) {
      if (!isZkError(e, 'CONNECTIONLOSS', 'OPERATIONTIMEOUT', 'SESSIONEXPIRED')) {
        this.log.warn({ err: (e as Error).message, txid: rec.txid }, 'two-phase commit: decision write failed');
        return 'no';
      }
      // The write may or may not have been applied. In the same session, or in a new one (a
      // request of an expired session is never applied later), reading it back settles it: it
      // was applied when the record lists every transaction this write listed.
      const deadline = Date.now() + 2 * (zk0.sessionTimeoutMs || 10000) + 5000;
      while (Date.now() < deadline && !this.stopped) {
        try {
          const zk = await this.session!.waitConnected(Math.max(100, deadline - Date.now()));
          const now = await readDecision(zk, this.layout!, rec.proxy, rec.txid);
          if (now) return recordTxids(rec).every((x) => recordDecides(now, rec.proxy, x)) ? 'yes' : 'no';
          // No record, read in a new session: ours expired, so this proxy counted as gone, and the
          // controller's recovery may have committed these transactions by the record (the write
          // was applied, its answer lost) and then deleted it. Absence proves nothing then; in the
          // same session (this proxy never looked gone) it means the create was not applied.
          return zk === zk0 ? 'no' : 'unknown';
        } catch (e2) {
          if (!isZkError(e2, 'CONNECTIONLOSS', 'OPERATIONTIMEOUT', 'SESSIONEXPIRED')) return 'unknown';
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      return 'unknown';
    }
  }

  /** COMMIT PREPARED over plain connections until every shard did it, then drops the decision. */
  private finishLater(rec: DecisionMember, database: string, idx: number[]): void {
    const cred = serviceCredentials(this.ctx.config);
    let left = idx.map((i) => rec.gids[i]!);
    const tick = async (): Promise<void> => {
      const targets = shardTargets(this.ctx.topology);
      const still: typeof left = [];
      for (const g of left) {
        const t = targets.find((x) => x.name === g.shard);
        try {
          if (!t || !(await finishPrepared(t, cred, database, g.gid, true))) still.push(g);
        } catch { still.push(g); }
      }
      left = still;
      if (left.length && !this.stopped) { setTimeout(() => void tick(), 1000).unref(); return; }
      if (!left.length) {
        this.log.info({ txid: rec.txid }, 'two-phase commit finished in the background');
        this.inflight.delete(rec.txid);
        this.active.delete(rec.txid);
        this.decisions.done(rec.txid);
      }
    };
    setTimeout(() => void tick(), 200).unref();
  }

  // ---------------------------------------------------------------- admin

  /** Rows for SHOW LOCKS: buckets this proxy holds or waits for. */
  snapshot(): LockInfo[] {
    if (!this.locks) return [];
    return this.locks.snapshot().map((r: LockRow) => ({
      bucket: r.bucket, proxy: r.proxy, state: r.state, holder: r.holder, waiting: r.waiting,
      remote_waiting: r.remoteWaiting, held_ms: r.heldMs, owner_ms: r.ownerMs,
    }));
  }

  /** Rows for SHOW TRANSACTIONS: distributed commits of this proxy in progress. */
  transactions(): TxnInfo[] {
    const now = Date.now();
    return [...this.active].map(([txid, a]) => ({ txid, proxy: this.proxyId, state: a.state, shards: a.shards.join(','), age_ms: now - a.since }));
  }
}
