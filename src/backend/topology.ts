// The shards pgring routes to and the pools of server connections for each.
// Which shard owns a key is answered by the ring (src/ring); this module only
// knows shards, their backends, their health and their pools.
import type { Config, ShardConfig } from '../config/types';
import { PgError, SQLSTATE } from '../protocol/errors';
import { Pool, PoolOptions } from './pool';
import type { ServerCredentials } from './server';
import { serverTlsFor } from './server-tls';
import { parseLsn } from './lsn';
import { chooseReader, lagBytes, ReadsPolicy } from './replica-choice';

export interface BackendState {
  host: string; port: number; role: 'primary' | 'replica'; healthy: boolean; checkedAt: number; error?: string;
  /** WAL position (bytes): current on a primary, replayed on a replica; from heartbeats */
  lsn?: number | null;
  receiveLsn?: number | null;
  lagMs?: number | null;
  sampledAt?: number;
}

/** WAL fields of a heartbeat record (from ZooKeeper or this proxy's own checks). */
export interface WalSample { lsn?: string; receiveLsn?: string; lagMs?: number | null; sampledAt?: number }

/** The shard record's say on the primary (failover): epoch is the fencing token. */
export interface ShardPrimary { epoch: number; primary: string | null }

/** A read that may go to a replica: the policy and, for read-your-writes, the time of the
 *  session's last commit on this shard (0: none). */
export interface ReplicaRead { policy: ReadsPolicy; lastWriteAt: number }

export const addrOf = (b: { host: string; port: number }): string => `${b.host}:${b.port}`;

export class Topology {
  private pools = new Map<string, Pool>();
  /** Liveness per shard index, from heartbeats (ZooKeeper) or the proxy's own checks. */
  backends: BackendState[][] = [];

  readonly shards: ShardConfig[] = [];
  /** Backends this proxy health-checks itself: their state comes from those checks only. */
  private readonly locallyChecked = new Set<string>();
  /** Per shard index: the primary named by the shard record once a failover has run (epoch > 0). */
  readonly designated: (ShardPrimary | undefined)[] = [];
  /** Per shard index: recent samples of the primary's WAL position, oldest first (read-your-writes). */
  private readonly primarySamples: { at: number; lsn: number }[][] = [];

  /** A result of this proxy's own health check. */
  setLocalHealth(shardName: string, host: string, port: number, healthy: boolean, error?: string): void {
    this.locallyChecked.add(`${shardName}\u0000${host}:${port}`);
    const i = this.shardIndex(shardName);
    if (i >= 0) this.setHealth(i, host, port, healthy, error);
  }

  constructor(shards: ShardConfig[], public config: Config) {
    for (const s of shards) this.addShard(s);
  }

  /** Adds a shard (append-only: indexes stay stable for the life of the proxy). */
  addShard(s: ShardConfig, healthy = true): number {
    const i = this.shardIndex(s.name);
    if (i >= 0) return i;
    this.invalidate();
    this.shards.push({ ...s, backends: [...s.backends] });
    this.backends.push(s.backends.map((b) => ({ ...b, healthy, checkedAt: 0 })));
    return this.shards.length - 1;
  }

  /**
   * Applies liveness from ZooKeeper: shard name -> backends with a liveness znode.
   * Configured backends without a znode are down; unknown backends with one are added.
   */
  applyMembership(all: Map<string, ({ host: string; port: number; role: 'primary' | 'replica'; healthy: boolean; checkedAt: number; error?: string } & WalSample)[]>): void {
    for (let i = 0; i < this.shards.length; i++) {
      const name = this.shards[i]!.name;
      const live = all.get(name) ?? [];
      const list = this.backends[i]!;
      for (const rec of live) {
        if (!list.some((b) => b.host === rec.host && b.port === rec.port)) {
          list.push({ host: rec.host, port: rec.port, role: rec.role, healthy: rec.healthy, checkedAt: rec.checkedAt, error: rec.error });
          this.invalidate();
        }
      }
      for (const b of list) {
        const rec = live.find((r) => r.host === b.host && r.port === b.port);
        if (rec) this.applyWal(i, b, rec);
        if (this.locallyChecked.has(`${name}\u0000${b.host}:${b.port}`)) continue;
        if (rec && b.role !== rec.role) { b.role = rec.role; this.invalidate(); }
        this.setHealth(i, b.host, b.port, rec ? rec.healthy : false, rec ? rec.error : 'no heartbeat in ZooKeeper');
      }
    }
  }

  /** WAL position and role from a heartbeat record (the newest sample wins). */
  private applyWal(shard: number, b: BackendState, rec: WalSample): void {
    if (rec.sampledAt === undefined || (b.sampledAt !== undefined && rec.sampledAt <= b.sampledAt)) return;
    b.sampledAt = rec.sampledAt;
    b.lsn = parseLsn(rec.lsn);
    b.receiveLsn = parseLsn(rec.receiveLsn);
    b.lagMs = rec.lagMs ?? (b.role === 'primary' ? 0 : null);
    if (b.lsn !== null && this.isPrimaryBackend(shard, b)) {
      const list = this.primarySamples[shard] ?? (this.primarySamples[shard] = []);
      list.push({ at: rec.sampledAt, lsn: b.lsn });
      if (list.length > 16) list.shift();
    }
  }

  /** A record of this proxy's own health check (role and WAL position included). */
  applyLocalBeat(shardName: string, rec: { host: string; port: number; role: 'primary' | 'replica'; healthy: boolean } & WalSample): void {
    const i = this.shardIndex(shardName);
    const b = this.backends[i]?.find((x) => x.host === rec.host && x.port === rec.port);
    if (!b || !rec.healthy) return;
    if (b.role !== rec.role) { b.role = rec.role; this.invalidate(); }
    this.applyWal(i, b, rec);
  }

  private isPrimaryBackend(shard: number, b: BackendState): boolean {
    const d = this.designated[shard];
    return d ? d.primary === addrOf(b) : b.role === 'primary';
  }

  /**
   * The shard record's primary (after a failover or switchover). A higher epoch fences: pools
   * to servers that may no longer take writes (the former primary, anything claiming to be a
   * primary) are ended at once, connections in use included.
   */
  applyShardPrimary(shardName: string, p: ShardPrimary): void {
    const i = this.shardIndex(shardName);
    if (i < 0) return;
    const cur = this.designated[i];
    if (cur && (p.epoch < cur.epoch || (p.epoch === cur.epoch && p.primary === cur.primary))) return;
    const rolePrimary = this.backends[i]!.find((b) => b.role === 'primary');
    const before = cur ? cur.primary : rolePrimary ? addrOf(rolePrimary) : null;
    this.designated[i] = { ...p };
    this.primarySamples[i] = [];
    this.invalidate();
    if (p.primary) for (const w of this.primaryWaiters.splice(0)) w();
    if (p.primary) {
      const [host, port] = [p.primary.slice(0, p.primary.lastIndexOf(':')), Number(p.primary.slice(p.primary.lastIndexOf(':') + 1))];
      if (!this.backends[i]!.some((b) => b.host === host && b.port === port)) this.backends[i]!.push({ host, port, role: 'primary', healthy: true, checkedAt: 0 });
    }
    for (const [key, pool] of this.pools) {
      if (pool.target.shard !== i) continue;
      const addr = addrOf(pool.target);
      if (addr === p.primary) continue;
      const b = this.backends[i]!.find((x) => addrOf(x) === addr);
      if (addr === before || !b || b.role === 'primary') { pool.terminateAll(); this.pools.delete(key); }
    }
  }

  /** The shard is failing over (no recorded primary) and statements wait for it (failover.holdWritesMs). */
  holding(shard: number): boolean {
    return this.config.failover.holdWritesMs > 0 && this.designated[shard]?.primary === null;
  }

  private readonly holdPools: Pool[] = [];
  private readonly primaryWaiters: (() => void)[] = [];

  /** A pool without connections (never hands one out without waiting): the fast path then
   *  takes the slow one, which waits in holdWrites(). */
  private holdPool(shard: number): Pool {
    let p = this.holdPools[shard];
    if (!p) {
      p = new Pool({ host: '(failover)', port: 0, shard, shardName: this.shards[shard]!.name }, { user: '', database: '' }, { maxSize: 1, minSize: 0, queueTimeoutMs: 1, connectTimeoutMs: 1, idleTimeoutMs: 0 });
      p.close();
      this.holdPools[shard] = p;
    }
    return p;
  }

  /**
   * Waits while the shard is failing over, at most failover.holdWritesMs; afterwards pool()
   * uses the new primary, or (still none) answers 57P03 naming the shard.
   */
  async holdWrites(shard: number): Promise<void> {
    const deadline = Date.now() + this.config.failover.holdWritesMs;
    while (this.holding(shard) && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.max(1, deadline - Date.now()));
        function done(): void { clearTimeout(t); resolve(); }
        this.primaryWaiters.push(done);
      });
    }
  }

  /** The primary's WAL position from the first sample taken after `t` (ms), or null. */
  primaryLsnAfter(shard: number, t: number): number | null {
    for (const s of this.primarySamples[shard] ?? []) if (s.at > t) return s.lsn;
    return null;
  }

  /** The primary's latest known WAL position. */
  primaryLsn(shard: number): number | null {
    const list = this.primarySamples[shard];
    return list && list.length ? list[list.length - 1]!.lsn : null;
  }

  /** Replay lag of a backend in bytes (null for a primary or when unknown). */
  lagBytesOf(shard: number, b: BackendState): number | null {
    if (this.isPrimaryBackend(shard, b)) return null;
    return lagBytes(this.primaryLsn(shard), b.lsn ?? null);
  }

  /** Why a backend takes no traffic although it says it is a primary: the record names another. */
  isFenced(shard: number, b: BackendState): boolean {
    const d = this.designated[shard];
    return !!d && b.role === 'primary' && d.primary !== addrOf(b);
  }

  get shardCount(): number { return this.shards.length; }
  shardIndex(name: string): number { return this.shards.findIndex((s) => s.name === name); }

  /** The primary backend a write for `shard` goes to, or an error naming the shard when it is down. */
  primary(shard: number): BackendState {
    const list = this.backends[shard];
    if (!list) throw new PgError(SQLSTATE.InternalError, `no shard with index ${shard}`);
    const d = this.designated[shard];
    if (d && d.primary === null) {
      const name = this.shards[shard]!.name;
      throw new PgError(SQLSTATE.CannotConnectNow, `shard "${name}" is unavailable: failover in progress (epoch ${d.epoch})`, { hint: 'keys on other shards keep working; retry in a few seconds' });
    }
    const live = d ? list.find((b) => addrOf(b) === d.primary && b.healthy) : list.find((b) => b.role === 'primary' && b.healthy);
    if (!live) {
      const name = this.shards[shard]!.name;
      const why = list.find((b) => b.role === 'primary')?.error;
      throw new PgError(SQLSTATE.CannotConnectNow, `shard "${name}" is unavailable: no live primary backend${why ? ` (${why})` : ''}`, { hint: 'keys on other shards keep working; retry when the shard is back' });
    }
    return live;
  }

  isUp(shard: number): boolean {
    const d = this.designated[shard];
    if (d) return d.primary !== null && (this.backends[shard] ?? []).some((b) => addrOf(b) === d.primary && b.healthy);
    return (this.backends[shard] ?? []).some((b) => b.role === 'primary' && b.healthy);
  }

  /** A live shard for statements that touch no sharded table (prefer `preferred`). */
  anyLiveShard(preferred = 0): number {
    if (this.isUp(preferred)) return preferred;
    for (let i = 0; i < this.shardCount; i++) if (this.isUp(i)) return i;
    return preferred;
  }

  /**
   * The pool for `shard` by a caller-held key (user and database): one map lookup on the
   * hot path. Cleared whenever a backend's health or role may have changed. `read`: the
   * statement only reads, so when the shard has no live primary a live replica may serve it.
   */
  poolFast(shard: number, credKey: string, cred: () => ServerCredentials, read: boolean | ReplicaRead = false): Pool {
    if (this.holding(shard)) return this.holdPool(shard);
    if (typeof read === 'object') return this.pool(shard, cred(), read);
    let byShard = this.poolCache.get(credKey);
    if (!byShard) { byShard = []; this.poolCache.set(credKey, byShard); }
    const cached = byShard[shard];
    if (cached) return cached;
    if (read && !this.isUp(shard)) return this.pool(shard, cred(), true); // rare: not cached
    return byShard[shard] = this.pool(shard, cred());
  }

  private readonly poolCache = new Map<string, Pool[]>();
  private invalidate(): void { this.poolCache.clear(); }

  /** A live replica of `shard`, or undefined. */
  liveReplica(shard: number): BackendState | undefined {
    const d = this.designated[shard];
    return this.backends[shard]?.find((b) => b.role === 'replica' && b.healthy && addrOf(b) !== d?.primary);
  }

  /** Live replicas of a shard (not the designated primary). */
  replicas(shard: number): BackendState[] {
    const d = this.designated[shard];
    return (this.backends[shard] ?? []).filter((b) => b.role === 'replica' && b.healthy && addrOf(b) !== d?.primary);
  }

  /** The replica a read may use (per policy, lag bounds, read-your-writes), or null for the primary. */
  private readReplica(shard: number, cred: ServerCredentials, r: ReplicaRead): BackendState | null {
    const reps = this.replicas(shard);
    if (!reps.length) return null;
    const c = this.config;
    let minLsn: number | null = null;
    if (r.lastWriteAt > 0) {
      minLsn = this.primaryLsnAfter(shard, r.lastWriteAt);
      if (minLsn === null) return null; // no sample of the primary since the commit yet
    }
    const up = this.isUp(shard);
    const cands = reps.map((b) => ({ id: addrOf(b), lsn: b.lsn ?? null, lagMs: b.lagMs ?? null, outstanding: this.poolFor(shard, b, cred).outstanding }));
    const primaryOut = up && r.policy === 'any' ? this.poolFor(shard, this.primary(shard), cred).outstanding : null;
    const pick = chooseReader(r.policy, cands, primaryOut, { primaryLsn: this.primaryLsn(shard), maxLagBytes: c.replicaMaxLagBytes, maxLagMs: c.replicaMaxLagMs, minLsn });
    return pick === 'primary' ? null : reps.find((b) => addrOf(b) === pick) ?? null;
  }

  /**
   * The pool of the live primary of `shard`. With `read`, a shard whose primary is down is
   * served by a live replica (a hot standby refuses writes itself, so a write that still
   * reaches it fails with PostgreSQL's 25006, never lands on the wrong server).
   */
  pool(shard: number, cred: ServerCredentials, read: boolean | ReplicaRead = false): Pool {
    if (typeof read === 'object') {
      const r = this.readReplica(shard, cred, read);
      if (r) return this.poolFor(shard, r, cred);
    }
    let b: BackendState;
    try { b = this.primary(shard); } catch (e) {
      const r = read ? this.liveReplica(shard) : undefined;
      if (!r) throw e;
      b = r;
    }
    return this.poolFor(shard, b, cred);
  }

  private poolFor(shard: number, b: { host: string; port: number }, cred: ServerCredentials): Pool {
    const key = `${this.shards[shard]!.name}\u0000${b.host}:${b.port}\u0000${cred.user}\u0000${cred.database}`;
    let p = this.pools.get(key);
    if (!p) {
      const user = this.config.users.find((u) => (u.serverUser ?? u.name) === cred.user);
      const opts: PoolOptions = {
        maxSize: user?.poolSize ?? this.config.pool.maxSize,
        minSize: this.config.pool.minSize,
        queueTimeoutMs: this.config.pool.queueTimeoutMs,
        connectTimeoutMs: this.config.pool.connectTimeoutMs,
        idleTimeoutMs: this.config.pool.idleTimeoutMs,
      };
      p = new Pool({ host: b.host, port: b.port, shard, shardName: this.shards[shard]!.name, tls: serverTlsFor(this.config, b.host, b.port) }, cred, opts);
      this.pools.set(key, p);
    }
    return p;
  }

  allPools(): Pool[] { return [...this.pools.values()]; }

  /** Marks a backend up or down (from a heartbeat); a backend going down drops its idle connections. */
  setHealth(shard: number, host: string, port: number, healthy: boolean, error?: string): void {
    const b = this.backends[shard]?.find((x) => x.host === host && x.port === port);
    if (!b) return;
    const was = b.healthy;
    if (was !== healthy) this.invalidate();
    b.healthy = healthy; b.checkedAt = Date.now(); b.error = error;
    if (was && !healthy) for (const p of this.pools.values()) if (p.target.shard === shard && p.target.port === port && p.target.host === host) p.dropIdle();
  }

  close(): void { for (const p of this.pools.values()) p.close(); this.pools.clear(); this.invalidate(); }
}
