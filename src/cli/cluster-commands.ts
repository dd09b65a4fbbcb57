// `pgring ring init|status` and `pgring agent`: ZooKeeper-side operations.
import { loadConfig } from '../config/load';
import type { Config } from '../config/types';
import { ZkSession } from '../cluster/session';
import type { ZkAuth } from '../cluster/zk';
import { ensureLayout, Layout } from '../cluster/layout';
import { initRing, readActiveRing } from '../cluster/ring-store';
import { listShards, MembershipWatcher, putShard } from '../cluster/registry';
import { BackendHeartbeat } from '../cluster/heartbeat';
import { ringDocFromConfig } from '../cluster/coordinator';
import { Ring } from '../ring/ring';

export interface ZkArgs { config?: string; zk?: string; cluster?: string }

export function zkTarget(a: ZkArgs): { connect: string; cluster: string; config: Config | null } {
  const config = a.config ? loadConfig(a.config) : null;
  const connect = a.zk ?? config?.zookeeper?.connect;
  const cluster = a.cluster ?? config?.zookeeper?.cluster ?? 'default';
  if (!connect) throw new Error('no ZooKeeper address: pass --zk HOST:PORT or --config with a zookeeper section');
  return { connect, cluster, config };
}

const quiet = { warn: () => undefined, info: () => undefined };

export async function withSession<T>(connect: string, fn: (s: ZkSession) => Promise<T>, zkOpts: { auth?: ZkAuth; protectedRoot?: string } = {}): Promise<T> {
  const s = new ZkSession({ connect, sessionTimeoutMs: 10000, logger: quiet, ...zkOpts });
  await s.start(15000);
  try { return await fn(s); } finally { await s.close(); }
}

export async function ringInit(a: ZkArgs): Promise<void> {
  const { connect, cluster, config } = zkTarget(a);
  if (!config || config.shards.length === 0) throw new Error('ring init needs --config with the shards');
  const layout = new Layout(cluster);
  await withSession(connect, async (s) => {
    await ensureLayout(await s.waitConnected(), layout);
    for (const sh of config.shards) await putShard(s, layout, { name: sh.name, weight: sh.weight, backends: sh.backends });
    const r = await initRing(s, layout, ringDocFromConfig(config));
    console.log(`ring version ${r.version} is active for cluster "${cluster}" (${r.ring.shards.map((x) => x.name).join(', ')})`);
    const { initDefinitionFromConfig } = await import('./table-commands');
    const d = await initDefinitionFromConfig(s, layout, config);
    console.log(`cluster definition version ${d.version} is active (${d.sharded.length} sharded, ${d.reference.length} reference tables; unknown tables: ${d.unknownTables})`);
  }, { auth: config.zookeeper?.auth, protectedRoot: layout.base });
}

export async function ringStatus(a: ZkArgs & { json?: boolean }): Promise<void> {
  const { connect, cluster, config } = zkTarget(a);
  const layout = new Layout(cluster);
  await withSession(connect, async (s) => {
    const active = await readActiveRing(s, layout);
    if (!active) { console.log(`cluster "${cluster}": no ring yet (run \`pgring ring init --config FILE\`)`); process.exitCode = 1; return; }
    const ring = new Ring(active.ring);
    const shares = ring.shares();
    const m = new MembershipWatcher(s, layout, { logger: quiet });
    await m.start();
    const all = m.all();
    m.stop();
    const records = await listShards(s, layout);
    const rows = active.ring.shards.map((sh, i) => {
      const backends = all.get(sh.name) ?? [];
      const live = backends.filter((b) => b.healthy);
      return {
        shard: sh.name, weight: sh.weight, share: shares[i]!.percent,
        live: live.map((b) => `${b.host}:${b.port} (${b.role})`),
        down: backends.filter((b) => !b.healthy).map((b) => `${b.host}:${b.port}${b.error ? ` ${b.error}` : ''}`),
        configured: (records.find((r) => r.name === sh.name)?.backends as { host: string; port: number }[] | undefined)?.map((b) => `${b.host}:${b.port}`) ?? [],
      };
    });
    if (a.json) { console.log(JSON.stringify({ cluster, version: active.version, vnodes: active.ring.vnodes, seed: active.ring.seed, shards: rows }, null, 2)); return; }
    console.log(`cluster "${cluster}"  ring version ${active.version}  vnodes ${active.ring.vnodes}  seed ${active.ring.seed}`);
    console.log('shard     weight   share    live backends');
    for (const r of rows) {
      console.log(`${r.shard.padEnd(9)} ${String(r.weight).padEnd(8)} ${r.share.toFixed(2).padStart(6)} %  ${r.live.length ? r.live.join(', ') : 'NONE (unavailable)'}${r.down.length ? `  down: ${r.down.join(', ')}` : ''}`);
    }
  }, { auth: config?.zookeeper?.auth, protectedRoot: layout.base });
}

export async function runAgent(a: ZkArgs & { shard: string; host: string; port: number; role: 'primary' | 'replica'; interval: number; user: string; password?: string }): Promise<void> {
  const { connect, cluster, config } = zkTarget(a);
  const layout = new Layout(cluster);
  const logger = { warn: (o: object, m: string) => console.error(JSON.stringify({ level: 'warn', msg: m, ...o })), info: (o: object, m: string) => console.log(JSON.stringify({ level: 'info', msg: m, ...o })) };
  const s = new ZkSession({ connect, sessionTimeoutMs: 10000, logger, auth: config?.zookeeper?.auth, protectedRoot: layout.base });
  await s.start(30000);
  const hb = new BackendHeartbeat({ session: s, layout, shard: a.shard, host: a.host, port: a.port, role: a.role, intervalMs: a.interval, user: a.user, password: a.password, logger });
  hb.on('up', () => logger.info({ shard: a.shard, backend: `${a.host}:${a.port}` }, 'backend up'));
  hb.on('down', (r: { error?: string }) => logger.warn({ shard: a.shard, backend: `${a.host}:${a.port}`, error: r?.error }, 'backend down'));
  await hb.start();
  logger.info({ cluster, shard: a.shard, backend: `${a.host}:${a.port}` }, 'pgring agent running');
  const stop = async () => { await hb.stop(); await s.close(); process.exit(0); };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}
