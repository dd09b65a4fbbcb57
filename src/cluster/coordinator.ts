// What a proxy keeps in ZooKeeper and learns from it: it publishes the shards of its
// config (with their backends), bootstraps the ring once, watches the active ring
// and the backends' liveness, runs heartbeats for its own backends, and registers
// itself as an ephemeral proxy node.
import * as os from 'node:os';
import type { Config, ShardConfig } from '../config/types';
import type { Logger } from '../log';
import { ensureLayout, Layout } from './layout';
import { BackendHeartbeat } from './heartbeat';
import { EphemeralNode, getShard, listShards, MembershipWatcher, ProxyRecord, putShard, registerProxy } from './registry';
import { initRing, RingDocument, RingWatcher } from './ring-store';
import { ZkSession } from './session';
import { ShardPrimaryRecord, ShardRecordWatcher } from './shard-watch';
import type { BackendRecord } from './registry';

export interface CoordinatorHooks {
  onRing(ring: RingDocument, shards: ShardConfig[]): void;
  onMembership(all: ReturnType<MembershipWatcher['all']>): void;
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
  readonly id: string;

  constructor(readonly config: Config, readonly log: Logger, readonly hooks: CoordinatorHooks, readonly listenPort: () => number) {
    const zk = config.zookeeper!;
    this.layout = new Layout(zk.cluster);
    this.id = `${os.hostname()}-${process.pid}-${Date.now().toString(36)}`;
  }

  async start(): Promise<void> {
    const zkc = this.config.zookeeper!;
    const logger = { warn: (o: object, m: string) => this.log.warn(o, m), info: (o: object, m: string) => this.log.info(o, m) };
    this.session = new ZkSession({ connect: zkc.connect, sessionTimeoutMs: zkc.sessionTimeoutMs, logger });
    this.session.on('state', (s: string) => this.log.info({ zk: s }, `ZooKeeper session ${s}`));
    await this.session.start(30000);
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
    this.proxyNode = await registerProxy(this.session, this.layout, { id: this.id, host: this.config.listen.host, port: this.listenPort(), pid: process.pid, startedAt: Date.now() });
  }

  /** Resolves the shards of a ring (config first, else the shard records in ZooKeeper). */
  private async applyRing(ring: RingDocument): Promise<void> {
    const shards: ShardConfig[] = [];
    for (const rs of ring.shards) {
      const fromConfig = this.config.shards.find((s) => s.name === rs.name);
      if (fromConfig) { shards.push(fromConfig); continue; }
      const rec = await getShard(this.session, this.layout, rs.name);
      const backends = Array.isArray(rec?.backends) ? (rec!.backends as ShardConfig['backends']) : [];
      shards.push({ name: rs.name, weight: rs.weight, backends });
    }
    this.log.info({ version: ring.version, shards: shards.map((s) => s.name) }, 'ring loaded');
    this.hooks.onRing(ring, shards);
  }

  async shardRecords() { return listShards(this.session, this.layout); }

  async stop(): Promise<void> {
    this.ringWatcher?.stop();
    this.membership?.stop();
    this.shardWatcher?.stop();
    for (const h of this.heartbeats) await h.stop();
    this.heartbeats = [];
    await this.proxyNode?.stop();
    await this.session?.close();
  }
}
