// The shards pgring routes to and the pools of server connections for each.
// Which shard owns a key is answered by the ring (src/ring); this module only
// knows shards, their backends, their health and their pools.
import type { Config, ShardConfig } from '../config/types';
import { PgError, SQLSTATE } from '../protocol/errors';
import { Pool, PoolOptions } from './pool';
import type { ServerCredentials } from './server';
import { serverTlsFor } from './server-tls';

export interface BackendState { host: string; port: number; role: 'primary' | 'replica'; healthy: boolean; checkedAt: number; error?: string }

export class Topology {
  private pools = new Map<string, Pool>();
  /** Liveness per shard index, from heartbeats (ZooKeeper) or the proxy's own checks. */
  backends: BackendState[][] = [];

  readonly shards: ShardConfig[] = [];
  /** Backends this proxy health-checks itself: their state comes from those checks only. */
  private readonly locallyChecked = new Set<string>();

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
  applyMembership(all: Map<string, { host: string; port: number; role: 'primary' | 'replica'; healthy: boolean; checkedAt: number; error?: string }[]>): void {
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
        if (this.locallyChecked.has(`${name}\u0000${b.host}:${b.port}`)) continue;
        const rec = live.find((r) => r.host === b.host && r.port === b.port);
        if (rec && b.role !== rec.role) { b.role = rec.role; this.invalidate(); }
        this.setHealth(i, b.host, b.port, rec ? rec.healthy : false, rec ? rec.error : 'no heartbeat in ZooKeeper');
      }
    }
  }

  get shardCount(): number { return this.shards.length; }
  shardIndex(name: string): number { return this.shards.findIndex((s) => s.name === name); }

  /** The primary backend a write for `shard` goes to, or an error naming the shard when it is down. */
  primary(shard: number): BackendState {
    const list = this.backends[shard];
    if (!list) throw new PgError(SQLSTATE.InternalError, `no shard with index ${shard}`);
    const live = list.find((b) => b.role === 'primary' && b.healthy);
    if (!live) {
      const name = this.shards[shard]!.name;
      const why = list.find((b) => b.role === 'primary')?.error;
      throw new PgError(SQLSTATE.CannotConnectNow, `shard "${name}" is unavailable: no live primary backend${why ? ` (${why})` : ''}`, { hint: 'keys on other shards keep working; retry when the shard is back' });
    }
    return live;
  }

  isUp(shard: number): boolean {
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
  poolFast(shard: number, credKey: string, cred: () => ServerCredentials, read = false): Pool {
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
    return this.backends[shard]?.find((b) => b.role === 'replica' && b.healthy);
  }

  /**
   * The pool of the live primary of `shard`. With `read`, a shard whose primary is down is
   * served by a live replica (a hot standby refuses writes itself, so a write that still
   * reaches it fails with PostgreSQL's 25006, never lands on the wrong server).
   */
  pool(shard: number, cred: ServerCredentials, read = false): Pool {
    let b: BackendState;
    try { b = this.primary(shard); } catch (e) {
      const r = read ? this.liveReplica(shard) : undefined;
      if (!r) throw e;
      b = r;
    }
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
