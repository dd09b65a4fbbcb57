// Shards (persistent), backends' liveness (ephemeral, refreshed by heartbeats) and proxies
// (ephemeral) in ZooKeeper, plus a watcher keeping shard -> live backends in memory.
import { EventEmitter } from 'node:events';
import { ensureLayout, hostPort, Layout } from './layout';
import { ClusterLogger, ZkLike, ZkSession, zkOf } from './session';
import { SyncLoop, WatchSet, watchedRead } from './sync';
import { decodeJson, encodeJson, isZkError, Zk } from './zk';

export interface ShardRecord {
  name: string;
  weight?: number;
  [key: string]: unknown;
}

export type BackendRole = 'primary' | 'replica';

export interface BackendRecord {
  host: string;
  port: number;
  shard: string;
  role: BackendRole;
  healthy: boolean;
  /** ms since epoch of the check that produced this record */
  checkedAt: number;
  error?: string;
  /** WAL position: pg_current_wal_lsn() on a primary, pg_last_wal_replay_lsn() on a replica */
  lsn?: string;
  /** a replica's pg_last_wal_receive_lsn() (what it has, replayed or not: failover picks by it) */
  receiveLsn?: string;
  /** a replica's replay delay: 0 when it has replayed all it received, else now - last replayed commit */
  lagMs?: number | null;
  /** ms since epoch just before the check's query ran (a commit before it is at or before `lsn`) */
  sampledAt?: number;
}

export interface ProxyRecord {
  id: string;
  host: string;
  port: number;
  pid: number;
  startedAt: number;
  /** the number this proxy encodes in its cancel keys (proxy-numbers/<n>) */
  proxyNumber?: number;
  /** the cluster definition version this proxy routes by (acknowledgement for `pgring table`) */
  definitionVersion?: number;
  /** the ring version this proxy routes by (acknowledgement for resharding) */
  ringVersion?: number;
  /** the token of the resharding fence this proxy holds writes for (src/reshard/gate.ts) */
  reshardAck?: string | null;
  /** the migration for which this proxy filters reads spanning shards to owned rows (src/reshard/read-filter.ts) */
  reshardFilter?: string | null;
  /** where this proxy serves lock requests of other proxies (src/cluster/lock-peers.ts) */
  lockPeer?: { host: string; port: number; token: string; path?: string; machine?: string };
}

// ---------------------------------------------------------------- shards (persistent)

/** Creates or replaces the shard's record. */
export async function putShard(s: ZkLike, layout: Layout, rec: ShardRecord): Promise<void> {
  const zk = await zkOf(s);
  await ensureLayout(zk, layout);
  const path = layout.shard(rec.name);
  for (let attempt = 0; ; attempt++) {
    try { await zk.create(path, encodeJson(rec), 'persistent'); return; } catch (e) { if (!isZkError(e, 'NODEEXISTS')) throw e; }
    // The failover fields (epoch: the fencing token, primary) are the controller's: a record
    // re-published from a config keeps them, or a restart would unfence a former primary.
    try {
      const { data: cur, stat } = await zk.get(path);
      let keep: Record<string, unknown> = {};
      try { const o = decodeJson<ShardRecord>(cur, path); if (typeof o.epoch === 'number' && rec.epoch === undefined) keep = { epoch: o.epoch, primary: o.primary ?? null }; } catch { /* replaced */ }
      await zk.set(path, encodeJson({ ...rec, ...keep }), stat.version);
      return;
    } catch (e) { if (!isZkError(e, 'BADVERSION', 'NONODE') || attempt >= 5) throw e; }
  }
}

export async function getShard(s: ZkLike, layout: Layout, name: string): Promise<ShardRecord | null> {
  const zk = await zkOf(s);
  try { return decodeJson<ShardRecord>((await zk.get(layout.shard(name))).data, layout.shard(name)); } catch (e) {
    if (isZkError(e, 'NONODE')) return null;
    throw e;
  }
}

export async function listShards(s: ZkLike, layout: Layout): Promise<ShardRecord[]> {
  const zk = await zkOf(s);
  let names: string[];
  try { names = await zk.children(layout.shards); } catch (e) { if (isZkError(e, 'NONODE')) return []; throw e; }
  const out: ShardRecord[] = [];
  for (const n of names.sort()) { const r = await getShard(zk, layout, n); if (r) out.push(r); }
  return out;
}

/** Deletes the shard record; false if it did not exist. */
export async function removeShard(s: ZkLike, layout: Layout, name: string): Promise<boolean> {
  const zk = await zkOf(s);
  try { await zk.delete(layout.shard(name), -1); return true; } catch (e) {
    if (isZkError(e, 'NONODE')) return false;
    throw e;
  }
}

export async function listProxies(s: ZkLike, layout: Layout): Promise<ProxyRecord[]> {
  const zk = await zkOf(s);
  let names: string[];
  try { names = await zk.children(layout.proxies); } catch (e) { if (isZkError(e, 'NONODE')) return []; throw e; }
  const out: ProxyRecord[] = [];
  for (const n of names.sort()) {
    try { out.push(decodeJson<ProxyRecord>((await zk.get(layout.proxy(n))).data, layout.proxy(n))); } catch (e) { if (!isZkError(e, 'NONODE')) throw e; }
  }
  return out;
}

// ---------------------------------------------------------------- ephemerals

/**
 * An ephemeral znode owned by a session supervisor: created on start, re-created in every new
 * session (after 'lost'), and set (version -1) on update(). If a node of the same path is
 * owned by an older session of ours it is deleted; if owned by someone else we warn and wait
 * for it to go. Events: 'created' (sessionId), 'written' (data).
 */
export class EphemeralNode<T> extends EventEmitter {
  private seq = 1;
  private written = 0;
  private writtenSession = '';
  /** version of the node after our last write in writtenSession (-1: unknown) */
  private knownVersion = -1;
  private loop: SyncLoop;
  private ws = new WatchSet();
  private readonly logger: ClusterLogger;
  private warnedOwner = '';

  constructor(readonly session: ZkSession, readonly path: string, private value: T, opts: { logger?: ClusterLogger } = {}) {
    super();
    this.logger = opts.logger ?? session.logger;
    this.loop = new SyncLoop(session, (zk) => this.sync(zk), { name: `ephemeral ${path}`, logger: this.logger });
  }

  get data(): T { return this.value; }

  /** Starts keeping the node; resolves once it exists in the current session. */
  async start(): Promise<void> {
    const first = this.loop.synced();
    this.loop.start();
    await first;
  }

  /** New data; written at once when connected, else after reconnecting. */
  update(value: T): void {
    this.value = value;
    this.seq++;
    this.loop.trigger();
  }

  /** Resolves once the latest data is in ZooKeeper (in the current session). */
  flushed(): Promise<void> { return this.loop.synced(); }

  /** Stops and deletes the node (best effort). */
  async stop(): Promise<void> {
    this.loop.stop();
    const zk = this.session.handle();
    if (zk && zk.connected) {
      try {
        const st = await zk.exists(this.path);
        if (st && st.ephemeralOwner === zk.sessionId) await zk.delete(this.path, -1);
      } catch { /* gone with the session anyway */ }
    }
  }

  private async sync(zk: Zk): Promise<void> {
    // Our node, last written by us in this session at a known version: a versioned set needs no
    // exists first (a heartbeat rewrites its backend's node every second). Anything else going
    // on (node gone, changed by someone else) fails it and takes the full path below.
    if (this.writtenSession === zk.sessionId && this.knownVersion > 0 && this.written !== this.seq) {
      const seq = this.seq;
      try {
        const st = await zk.set(this.path, encodeJson(this.value), this.knownVersion);
        this.knownVersion = st.version;
        this.written = seq;
        this.emit('written', this.value);
        return;
      } catch (e) {
        if (!isZkError(e, 'NONODE', 'BADVERSION')) throw e;
        this.knownVersion = -1;
      }
    }
    for (let i = 0; i < 10; i++) {
      const st = await zk.exists(this.path);
      const data = encodeJson(this.value);
      const seq = this.seq;
      if (!st) {
        const parent = this.path.slice(0, this.path.lastIndexOf('/'));
        if (parent) await zk.mkdirp(parent);
        try {
          await zk.create(this.path, data, 'ephemeral');
        } catch (e) {
          if (isZkError(e, 'NODEEXISTS')) continue;
          throw e;
        }
        this.written = seq; this.writtenSession = zk.sessionId; this.knownVersion = 0;
        this.emit('created', zk.sessionId);
        this.emit('written', this.value);
        return;
      }
      if (st.ephemeralOwner !== zk.sessionId) {
        if (this.session.sessionIds.includes(st.ephemeralOwner)) {
          // Left by an older session of ours that the server has not expired yet.
          try { await zk.delete(this.path, st.version); } catch (e) { if (!isZkError(e, 'NONODE', 'BADVERSION')) throw e; }
          continue;
        }
        if (this.warnedOwner !== st.ephemeralOwner) {
          this.warnedOwner = st.ephemeralOwner;
          this.logger.warn({ path: this.path, owner: st.ephemeralOwner, session: zk.sessionId }, 'ephemeral node is held by another session; waiting for it to go');
        }
        const again = await watchedRead(this.ws, zk, 'gone', () => this.loop.trigger(), (w) => zk.exists(this.path, w));
        if (!again) continue;
        return;
      }
      if (this.written !== seq || this.writtenSession !== zk.sessionId) {
        try { this.knownVersion = (await zk.set(this.path, data, -1)).version; } catch (e) {
          if (isZkError(e, 'NONODE')) continue;
          throw e;
        }
        this.written = seq; this.writtenSession = zk.sessionId;
        this.emit('written', this.value);
      }
      return;
    }
    throw new Error(`could not settle ephemeral node ${this.path}`);
  }
}

/** Registers this proxy: ephemeral proxies/<id>, kept across lost sessions. */
export async function registerProxy(session: ZkSession, layout: Layout, rec: ProxyRecord): Promise<EphemeralNode<ProxyRecord>> {
  const node = new EphemeralNode(session, layout.proxy(rec.id), rec);
  await node.start();
  return node;
}

/** The liveness node of one backend (not started). */
export function backendNode(session: ZkSession, layout: Layout, rec: BackendRecord): EphemeralNode<BackendRecord> {
  return new EphemeralNode(session, layout.backend(rec.shard, hostPort(rec.host, rec.port)), rec);
}

// ---------------------------------------------------------------- membership watcher

export interface BackendState extends BackendRecord {
  /** znode name: host:port */
  addr: string;
}

/**
 * Keeps shard -> backends in memory from shards/ and backends/<shard>/<host:port>, watching
 * children and data. A backend is live when its znode exists and `healthy` is true. Emits
 * 'change' (snapshot of live backends) whenever the picture changed.
 */
export class MembershipWatcher extends EventEmitter {
  private loop: SyncLoop;
  private ws = new WatchSet();
  private shardNames = new Set<string>();
  private backendDirs = new Map<string, Map<string, BackendState | null>>();
  private dirtyDirs = new Set<string>();
  private dirtyNodes = new Set<string>();   // "shard\0addr"
  private shardsDirty = true;
  private rootDirty = true;
  private lastJson = '';
  private readonly logger: ClusterLogger;

  constructor(readonly session: ZkSession, readonly layout: Layout, opts: { logger?: ClusterLogger } = {}) {
    super();
    this.logger = opts.logger ?? session.logger;
    this.loop = new SyncLoop(session, (zk, full) => this.sync(zk, full), { name: `membership ${layout.base}`, logger: this.logger });
  }

  async start(): Promise<void> {
    const zk = await this.session.waitConnected();
    await ensureLayout(zk, this.layout);
    const first = this.loop.synced();
    this.loop.start();
    await first;
  }

  stop(): void { this.loop.stop(); }

  /** Resolves after a complete re-read that started after this call. */
  refreshed(): Promise<void> { const p = this.loop.synced(); this.loop.trigger(true); return p; }

  /** Every known backend (up or down) per shard; shards from shards/ appear even with none. */
  all(): Map<string, BackendState[]> {
    const out = new Map<string, BackendState[]>();
    for (const s of [...this.shardNames].sort()) out.set(s, []);
    for (const [shard, m] of [...this.backendDirs].sort((a, b) => a[0].localeCompare(b[0]))) {
      const list = out.get(shard) ?? [];
      for (const [, b] of [...m].sort((a, c) => a[0].localeCompare(c[0]))) if (b) list.push(b);
      out.set(shard, list);
    }
    return out;
  }

  /** shard -> live backends (znode present and healthy). */
  snapshot(): Map<string, BackendState[]> {
    const out = new Map<string, BackendState[]>();
    for (const [s, list] of this.all()) out.set(s, list.filter((b) => b.healthy));
    return out;
  }

  live(shard: string): BackendState[] { return this.snapshot().get(shard) ?? []; }
  /** True when the shard has at least one live backend (optionally of this role). */
  isUp(shard: string, role?: BackendRole): boolean { return this.live(shard).some((b) => !role || b.role === role); }

  private async sync(zk: Zk, full: boolean): Promise<void> {
    if (full) {
      this.shardsDirty = true; this.rootDirty = true;
      for (const d of this.backendDirs.keys()) this.dirtyDirs.add(d);
      for (const [d, m] of this.backendDirs) for (const a of m.keys()) this.dirtyNodes.add(`${d}\0${a}`);
    }
    if (this.shardsDirty) {
      this.shardsDirty = false;
      try {
        const names = await watchedRead(this.ws, zk, 'shards', () => { this.shardsDirty = true; this.loop.trigger(); }, (w) => zk.children(this.layout.shards, w));
        this.shardNames = new Set(names);
      } catch (e) { this.shardsDirty = true; if (!isZkError(e, 'NONODE')) throw e; this.shardNames = new Set(); }
    }
    if (this.rootDirty) {
      this.rootDirty = false;
      let dirs: string[];
      try {
        dirs = await watchedRead(this.ws, zk, 'backends', () => { this.rootDirty = true; this.loop.trigger(); }, (w) => zk.children(this.layout.backends, w));
      } catch (e) { this.rootDirty = true; throw e; }
      for (const d of dirs) if (!this.backendDirs.has(d)) { this.backendDirs.set(d, new Map()); this.dirtyDirs.add(d); }
      for (const d of [...this.backendDirs.keys()]) if (!dirs.includes(d)) { this.backendDirs.delete(d); this.dirtyDirs.delete(d); }
    }
    for (const d of [...this.dirtyDirs]) {
      this.dirtyDirs.delete(d);
      const m = this.backendDirs.get(d);
      if (!m) continue;
      let names: string[];
      try {
        names = await watchedRead(this.ws, zk, `dir:${d}`, () => { this.dirtyDirs.add(d); this.loop.trigger(); }, (w) => zk.children(this.layout.backendShard(d), w));
      } catch (e) {
        if (isZkError(e, 'NONODE')) { this.backendDirs.delete(d); continue; }
        this.dirtyDirs.add(d); throw e;
      }
      for (const a of names) if (!m.has(a)) { m.set(a, null); this.dirtyNodes.add(`${d}\0${a}`); }
      for (const a of [...m.keys()]) if (!names.includes(a)) m.delete(a);
    }
    for (const key of [...this.dirtyNodes]) {
      this.dirtyNodes.delete(key);
      const [d, a] = key.split('\0') as [string, string];
      const m = this.backendDirs.get(d);
      if (!m || !m.has(a)) continue;
      const path = this.layout.backend(d, a);
      try {
        const { data } = await watchedRead(this.ws, zk, `node:${key}`, () => { this.dirtyNodes.add(key); this.loop.trigger(); }, (w) => zk.get(path, w));
        m.set(a, parseBackend(data, d, a, path));
      } catch (e) {
        if (isZkError(e, 'NONODE')) { m.delete(a); continue; }
        this.dirtyNodes.add(key); throw e;
      }
    }
    const snap = this.all();
    // WAL positions are part of the picture: read routing and lag bounds follow them.
    const json = JSON.stringify([...snap].map(([s, l]) => [s, l.map((b) => [b.addr, b.role, b.healthy, b.error ?? null, b.lsn ?? null, b.receiveLsn ?? null, b.lagMs ?? null])]));
    if (json !== this.lastJson) {
      this.lastJson = json;
      this.emit('change', this.snapshot());
    }
  }
}

function parseBackend(data: Buffer, shard: string, addr: string, path: string): BackendState {
  try {
    const r = decodeJson<Partial<BackendRecord>>(data, path);
    const i = addr.lastIndexOf(':');
    return {
      addr,
      host: typeof r.host === 'string' ? r.host : addr.slice(0, i),
      port: typeof r.port === 'number' ? r.port : Number(addr.slice(i + 1)),
      shard,
      role: r.role === 'replica' ? 'replica' : 'primary',
      healthy: r.healthy === true,
      checkedAt: typeof r.checkedAt === 'number' ? r.checkedAt : 0,
      ...(typeof r.error === 'string' ? { error: r.error } : {}),
      ...(typeof r.lsn === 'string' ? { lsn: r.lsn } : {}),
      ...(typeof r.receiveLsn === 'string' ? { receiveLsn: r.receiveLsn } : {}),
      ...(typeof r.lagMs === 'number' ? { lagMs: r.lagMs } : {}),
      ...(typeof r.sampledAt === 'number' ? { sampledAt: r.sampledAt } : {}),
    };
  } catch (e) {
    const i = addr.lastIndexOf(':');
    return { addr, host: addr.slice(0, i), port: Number(addr.slice(i + 1)), shard, role: 'primary', healthy: false, checkedAt: 0, error: (e as Error).message };
  }
}
