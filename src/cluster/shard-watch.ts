// Watches the shard records (shards/<name>) for their failover fields: `epoch` (the fencing
// token, bumped by the controller before it touches a shard's servers) and `primary`
// ("host:port", null while a failover runs). Every proxy applies them at once: see
// Topology.applyShardPrimary.
import { EventEmitter } from 'node:events';
import { Layout } from './layout';
import { ClusterLogger, ZkSession } from './session';
import { SyncLoop, WatchSet, watchedRead } from './sync';
import { decodeJson, isZkError, Zk } from './zk';

export interface ShardPrimaryRecord { shard: string; epoch: number; primary: string | null }

/** The failover fields of a shard record, or null when no failover ever ran (epoch absent). */
export function primaryOf(shard: string, rec: Record<string, unknown> | null): ShardPrimaryRecord | null {
  if (!rec || typeof rec.epoch !== 'number' || rec.epoch <= 0) return null;
  const p = rec.primary;
  return { shard, epoch: rec.epoch, primary: typeof p === 'string' ? p : null };
}

/** Events: 'primary' (ShardPrimaryRecord) whenever a shard's epoch or primary changed. */
export class ShardRecordWatcher extends EventEmitter {
  private loop: SyncLoop;
  private ws = new WatchSet();
  private seen = new Map<string, string>();
  readonly current = new Map<string, ShardPrimaryRecord>();

  constructor(readonly session: ZkSession, readonly layout: Layout, opts: { logger?: ClusterLogger } = {}) {
    super();
    this.loop = new SyncLoop(session, (zk) => this.sync(zk), { name: `shard records ${layout.base}`, logger: opts.logger ?? session.logger });
  }

  async start(): Promise<void> { const first = this.loop.synced(); this.loop.start(); await first; }
  stop(): void { this.loop.stop(); }
  /** Resolves after a re-read that started after this call. */
  refreshed(): Promise<void> { const p = this.loop.synced(); this.loop.trigger(true); return p; }

  private async sync(zk: Zk): Promise<void> {
    let names: string[];
    try {
      names = await watchedRead(this.ws, zk, 'children', () => this.loop.trigger(), (w) => zk.children(this.layout.shards, w));
    } catch (e) { if (isZkError(e, 'NONODE')) return; throw e; }
    for (const n of names) {
      let data: Buffer;
      try {
        data = (await watchedRead(this.ws, zk, `shard:${n}`, () => this.loop.trigger(), (w) => zk.get(this.layout.shard(n), w))).data;
      } catch (e) { if (isZkError(e, 'NONODE')) continue; throw e; }
      let rec: Record<string, unknown> | null = null;
      try { rec = decodeJson<Record<string, unknown>>(data, this.layout.shard(n)); } catch { rec = null; }
      const p = primaryOf(n, rec);
      if (!p) continue;
      const key = `${p.epoch}\u0000${p.primary}`;
      if (this.seen.get(n) === key) continue;
      this.seen.set(n, key);
      this.current.set(n, p);
      this.emit('primary', p);
    }
  }
}
