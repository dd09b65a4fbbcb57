// What a proxy keeps in ZooKeeper and learns from it: it publishes the shards of its
// config (with their backends), bootstraps the ring once, watches the active ring
// and the backends' liveness, runs heartbeats for its own backends, and registers
// itself as an ephemeral proxy node.
import { pgSslOption, serverTlsFor } from '../backend/server-tls';
import * as os from 'node:os';
import type { Config, KeyType, ShardConfig } from '../config/types';
import type { Logger } from '../log';
import { ensureLayout, Layout } from './layout';
import { BackendHeartbeat } from './heartbeat';
import { EphemeralNode, getShard, listShards, MembershipWatcher, ProxyRecord, putShard, registerProxy } from './registry';
import { initRing, RingDocument, RingWatcher } from './ring-store';
import { ZkSession } from './session';
import { ConfigError } from '../config/load';
import { CancelPeers, advertisedHost } from './cancel-peers';
import { LockPeerRecord, LockPeers } from './lock-peers';
import { ClusterDefinition, configStatesDefinition, DefinitionBody, definitionConflicts, definitionFromConfig, renamed, withColumnChanges, withReference, withSharded, lookupTable, without } from './definition';
import { DefinitionWatcher, initDefinition, readActiveDefinition, updateDefinition } from './definition-store';
import { defaultSelfFenceMs, WriteFence } from './fence';
import { ShardPrimaryRecord, ShardRecordWatcher } from './shard-watch';
import type { BackendRecord } from './registry';

export interface CoordinatorHooks {
  onRing(ring: RingDocument, shards: ShardConfig[]): void;
  onMembership(all: ReturnType<MembershipWatcher['all']>): void;
  /** The active cluster definition (sharded / reference tables) changed, or was first read. */
  onDefinition?(def: ClusterDefinition): void;
  /** Result of this proxy's own check of a backend: trusted over ZooKeeper's view, which
   *  goes blank while our own session is being re-established. */
  onLocalHealth?(shard: string, host: string, port: number, healthy: boolean, error?: string): void;
  /** Every record of this proxy's own checks (role, WAL position, replay lag). */
  onLocalBeat?(rec: BackendRecord): void;
  /** A shard record's epoch or primary changed (failover, switchover): fence at once. */
  onShardPrimary?(p: ShardPrimaryRecord): void;
}

export function ringDocFromConfig(cfg: Config): Omit<RingDocument, 'version'> {
  return { shards: cfg.shards.map((s) => ({ name: s.name, weight: s.weight })), vnodes: cfg.ring.vnodes, seed: cfg.ring.seed, hash: 'pg-hashint8extended-v1' };
}

export class Coordinator {
  session!: ZkSession;
  layout: Layout;
  ringWatcher!: RingWatcher;
  membership!: MembershipWatcher;
  shardWatcher!: ShardRecordWatcher;
  heartbeats: BackendHeartbeat[] = [];
  proxyNode: EphemeralNode<ProxyRecord> | null = null;
  definitionWatcher!: DefinitionWatcher;
  cancelPeers!: CancelPeers;
  /** serves lock buckets this proxy owns to other proxies (null: locks off or not forwarded) */
  lockPeers: LockPeers | null = null;
  /** Closed while ZooKeeper is unreachable: the transaction layer refuses writes (fence.ts). */
  fence!: WriteFence;
  readonly id: string;

  constructor(readonly config: Config, readonly log: Logger, readonly hooks: CoordinatorHooks, readonly listenPort: () => number,
    readonly opts: { configFile?: string } = {}) {
    const zk = config.zookeeper!;
    this.layout = new Layout(zk.cluster);
    this.id = `${os.hostname()}-${process.pid}-${Date.now().toString(36)}`;
  }

  async start(): Promise<void> {
    const zkc = this.config.zookeeper!;
    const logger = { warn: (o: object, m: string) => this.log.warn(o, m), info: (o: object, m: string) => this.log.info(o, m) };
    this.session = new ZkSession({ connect: zkc.connect, sessionTimeoutMs: zkc.sessionTimeoutMs, logger, auth: zkc.auth, protectedRoot: this.layout.base });
    this.session.on('state', (s: string) => this.log.info({ zk: s }, `ZooKeeper session ${s}`));
    await this.session.start(30000);
    this.fence = new WriteFence(this.session, { selfFenceMs: zkc.selfFenceMs ?? defaultSelfFenceMs(zkc.sessionTimeoutMs), logger });
    this.fence.addResync(() => this.resync());
    await ensureLayout(await this.session.waitConnected(), this.layout);
    // Shards of the config are published (persistent); an existing record keeps its failover
    // fields (epoch, primary: see putShard): the config only seeds what the controller has not changed.
    for (const s of this.config.shards) {
      await putShard(this.session, this.layout, { name: s.name, weight: s.weight, backends: s.backends });
    }
    if (this.config.shards.length) await initRing(this.session, this.layout, ringDocFromConfig(this.config));
    // Heartbeats for our own backends (the agent's job when pgring runs one per server).
    if (this.config.health.runChecks) {
      for (const s of this.config.shards) {
        for (const b of s.backends) {
          const hb = new BackendHeartbeat({
            session: this.session, layout: this.layout, shard: s.name, host: b.host, port: b.port, role: b.role,
            intervalMs: this.config.health.intervalMs, timeoutMs: this.config.health.timeoutMs, logger,
            ssl: pgSslOption(serverTlsFor(this.config, b.host, b.port)),
          });
          hb.on('down', (r: { error?: string }) => {
            this.log.warn({ shard: s.name, backend: `${b.host}:${b.port}`, error: r?.error }, 'backend down');
            this.hooks.onLocalHealth?.(s.name, b.host, b.port, false, r?.error);
          });
          hb.on('beat', (r: BackendRecord) => this.hooks.onLocalBeat?.(r));
          hb.on('up', () => {
            this.log.info({ shard: s.name, backend: `${b.host}:${b.port}` }, 'backend up');
            this.hooks.onLocalHealth?.(s.name, b.host, b.port, true);
          });
          this.heartbeats.push(hb);
        }
      }
      await Promise.all(this.heartbeats.map((h) => h.start()));
    }
    this.membership = new MembershipWatcher(this.session, this.layout, { logger });
    this.membership.on('change', () => this.hooks.onMembership(this.membership.all()));
    await this.membership.start();
    this.shardWatcher = new ShardRecordWatcher(this.session, this.layout, { logger });
    this.shardWatcher.on('primary', (p: ShardPrimaryRecord) => {
      this.log.warn({ shard: p.shard, epoch: p.epoch, primary: p.primary }, 'shard primary changed (fencing epoch)');
      this.hooks.onShardPrimary?.(p);
    });
    await this.shardWatcher.start();
    this.ringWatcher = new RingWatcher(this.session, this.layout, { logger });
    this.ringWatcher.on('ring', (ring: RingDocument) => { void this.applyRing(ring); });
    await this.ringWatcher.start();
    const cur = this.ringWatcher.current();
    if (!cur) throw new Error(`no ring in ZooKeeper for cluster "${this.config.zookeeper!.cluster}": run \`pgring ring init\` or start a proxy whose config lists the shards`);
    await this.applyRing(cur);
    this.hooks.onMembership(this.membership.all());
    for (const p of this.shardWatcher.current.values()) this.hooks.onShardPrimary?.(p);
    await this.startDefinition(logger);
    const host = advertisedHost(this.config.listen.host);
    this.cancelPeers = new CancelPeers(this.session, this.layout, logger);
    const proxyNumber = await this.cancelPeers.start({ id: this.id, host, port: this.listenPort() });
    const lk = this.config.locks;
    let lockPeer: LockPeerRecord | undefined;
    if (lk.mode !== 'off' && lk.forward) {
      this.lockPeers = new LockPeers(this.session, this.layout, {
        proxyId: this.id, host: this.config.listen.host, advertise: host, port: lk.peerPort,
        staleMs: this.fence.opts.selfFenceMs, idleOwnerMs: lk.idleOwnerMs, logger: { ...logger, debug: (o: object, m: string) => this.log.debug(o, m) },
      });
      lockPeer = await this.lockPeers.listen();
    }
    this.proxyNode = await registerProxy(this.session, this.layout, {
      id: this.id, host, port: this.listenPort(), pid: process.pid, startedAt: Date.now(), proxyNumber, lockPeer,
      definitionVersion: this.definitionWatcher.current()?.version,
      ringVersion: this.ringWatcher.current()?.version,
    });
  }

  /**
   * The cluster definition: seeded from the file when ZooKeeper has none; a file that states
   * sharding rules contradicting the active definition stops the start with the difference.
   */
  private async startDefinition(logger: { warn(o: object, m: string): void; info(o: object, m: string): void }): Promise<void> {
    const stated = configStatesDefinition(this.config);
    const fileDef = definitionFromConfig(this.config);
    const active = (stated ? null : await readActiveDefinition(this.session, this.layout)) ?? await initDefinition(this.session, this.layout, fileDef);
    if (stated) {
      const conflicts = definitionConflicts(fileDef, active.def, this.config.sharding.unknownTables !== undefined);
      if (conflicts.length) {
        throw new ConfigError(this.opts.configFile ?? '<config>', [
          `sharding differs from the cluster definition (version ${active.def.version} in ZooKeeper, cluster "${this.layout.cluster}"): ${conflicts.join('; ')}`
          + ' (remove tables/referenceTables/unknownTables from sharding to take the cluster\'s, or change the cluster with `pgring table ...`)',
        ]);
      }
    }
    this.definitionWatcher = new DefinitionWatcher(this.session, this.layout, { logger });
    this.definitionWatcher.on('definition', (def: ClusterDefinition) => {
      this.log.info({ version: def.version, sharded: def.sharded.map((t) => t.name), reference: def.reference.length }, 'cluster definition loaded');
      this.hooks.onDefinition?.(def);
      // Acknowledged in our proxy znode: `pgring table shard` deletes rows only after every proxy routes by it.
      if (this.proxyNode) this.proxyNode.update({ ...this.proxyNode.data, definitionVersion: def.version });
    });
    await this.definitionWatcher.start();
  }

  private readonly pendingRefs = new Set<string>();
  private refWaiters: (() => void)[] = [];
  private refRunning = false;

  /** A table (or a column of one) renamed through this proxy: a new definition version that follows
   *  it, applied here before the client hears of the rename (other proxies follow their watch). */
  async followInDefinition(f: { table: string; to?: string; column?: string; add?: string[]; drop?: string[]; sharded?: { column: string; type: KeyType }; view?: true; forget?: true }): Promise<void> {
    // A view is registered anew by each CREATE [OR REPLACE] VIEW (its key column may change) and forgotten by DROP VIEW.
    const unlessAbsent = (d: DefinitionBody): DefinitionBody => (lookupTable(d, f.table) ? without(d, f.table) : d);
    try {
      const { def, changed } = await updateDefinition(this.session, this.layout, (cur) => (f.forget
        ? unlessAbsent(cur as DefinitionBody)
        : f.sharded !== undefined
        ? withSharded(f.view ? unlessAbsent(cur as DefinitionBody) : cur as DefinitionBody, { name: f.table, column: f.sharded.column, type: f.sharded.type })
        : f.to !== undefined
          ? renamed(cur as DefinitionBody, f.table, f.to, f.column)
          : withColumnChanges(cur as DefinitionBody, f.table, f.add ?? [], f.drop ?? [])));
      if (!changed) return;
      this.log.info({ ...f, version: def.version }, 'cluster definition follows a DDL change');
      this.hooks.onDefinition?.(def);
    } catch (e) {
      this.log.warn({ ...f, err: (e as Error).message }, 'could not record a DDL change in the cluster definition');
    }
  }

  /** Registers a table created through this proxy as a reference table (a new definition version). */
  registerReference(name: string): Promise<void> {
    return new Promise<void>((resolve) => {
      this.pendingRefs.add(name);
      this.refWaiters.push(resolve);
      if (!this.refRunning) void this.flushRefs();
    });
  }

  /**
   * One definition update at a time per proxy, carrying every table registered meanwhile: a
   * schema script creating tables from many sessions (pg_regress: 20) made each registration
   * race the others' compare-and-set until some gave up (BADVERSION for 30 s).
   */
  private async flushRefs(): Promise<void> {
    this.refRunning = true;
    try {
      while (this.pendingRefs.size) {
        const names = [...this.pendingRefs];
        this.pendingRefs.clear();
        const waiters = this.refWaiters;
        this.refWaiters = [];
        try {
          const { def, changed } = await updateDefinition(this.session, this.layout, (cur) => names.reduce((d, n) => {
            try { return withReference(d, n); } catch { return d; } // sharded meanwhile: stays sharded
          }, cur as DefinitionBody));
          if (changed) this.log.info({ tables: names, version: def.version }, 'tables registered as reference tables');
        } catch (e) {
          this.log.warn({ tables: names, err: (e as Error).message }, 'could not register tables in the cluster definition');
        }
        for (const w of waiters) w();
      }
    } finally {
      this.refRunning = false;
    }
  }

  /** The shards of a ring (config first, else the shard records in ZooKeeper). */
  async resolveShards(ring: RingDocument): Promise<ShardConfig[]> {
    const shards: ShardConfig[] = [];
    for (const rs of ring.shards) {
      const fromConfig = this.config.shards.find((s) => s.name === rs.name);
      if (fromConfig) { shards.push(fromConfig); continue; }
      const rec = await getShard(this.session, this.layout, rs.name);
      const backends = Array.isArray(rec?.backends) ? (rec!.backends as ShardConfig['backends']) : [];
      shards.push({ name: rs.name, weight: rs.weight, backends });
    }
    return shards;
  }

  private async applyRing(ring: RingDocument): Promise<void> {
    const shards = await this.resolveShards(ring);
    await this.checkShards(shards);
    this.log.info({ version: ring.version, shards: shards.map((s) => s.name) }, 'ring loaded');
    this.hooks.onRing(ring, shards);
    // Acknowledged in our proxy znode: resharding deletes moved rows only after every proxy routes by it.
    if (this.proxyNode) this.proxyNode.update({ ...this.proxyNode.data, ringVersion: ring.version });
  }

  /**
   * Shards learnt from ZooKeeper (added by `pgring shard add`) are health-checked by this proxy
   * like its configured ones, when it runs checks; resolves after each one's first check.
   */
  async checkShards(shards: ShardConfig[]): Promise<void> {
    if (!this.config.health.runChecks || !this.session) return;
    const logger = { warn: (o: object, m: string) => this.log.warn(o, m), info: (o: object, m: string) => this.log.info(o, m) };
    const started: Promise<void>[] = [];
    for (const s of shards) {
      if (this.config.shards.some((c) => c.name === s.name)) continue;
      for (const b of s.backends) {
        if (this.heartbeats.some((h) => h.opts.shard === s.name && h.opts.host === b.host && h.opts.port === b.port)) continue;
        const hb = new BackendHeartbeat({
          session: this.session, layout: this.layout, shard: s.name, host: b.host, port: b.port, role: b.role,
          intervalMs: this.config.health.intervalMs, timeoutMs: this.config.health.timeoutMs, logger,
          ssl: pgSslOption(serverTlsFor(this.config, b.host, b.port)),
        });
        hb.on('down', (r: { error?: string }) => this.hooks.onLocalHealth?.(s.name, b.host, b.port, false, r?.error));
        hb.on('up', () => this.hooks.onLocalHealth?.(s.name, b.host, b.port, true));
        this.heartbeats.push(hb);
        started.push(hb.start());
      }
    }
    await Promise.all(started);
  }

  /** Before writes resume after a fence: the active ring, the shard records and liveness, read again. */
  private async resync(): Promise<void> {
    await this.ringWatcher?.refreshed();
    const cur = this.ringWatcher?.current();
    if (cur) await this.applyRing(cur);
    await this.shardRecords();
    await this.membership?.refreshed();
  }

  async shardRecords() { return listShards(this.session, this.layout); }

  async stop(): Promise<void> {
    this.fence?.stop();
    this.ringWatcher?.stop();
    this.definitionWatcher?.stop();
    await this.cancelPeers?.stop();
    await this.lockPeers?.stop();
    this.membership?.stop();
    this.shardWatcher?.stop();
    for (const h of this.heartbeats) await h.stop();
    this.heartbeats = [];
    await this.proxyNode?.stop();
    await this.session?.close();
  }
}
