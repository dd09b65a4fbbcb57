// `pgring backup init|create|list|restore`: consistent backups of the whole cluster with
// pgBackRest (src/backup/). Progress goes to stderr; --json prints one JSON document on stdout.
import { loadConfig } from '../config/load';
import type { Config } from '../config/types';
import { ZkSession } from '../cluster/session';
import { DEFAULT_ROOT, Layout } from '../cluster/layout';
import { listManifests, manifestPath } from '../cluster/backups';
import type { Zk } from '../cluster/zk';
import { backupCreate, backupInit } from '../backup/cut';
import { backupRestore } from '../backup/restore';
import { Progress } from '../backup/progress';
import { BackupError } from '../backup/shards';

export interface BackupArgs {
  action: 'init' | 'create' | 'list' | 'restore';
  name?: string; config?: string; zk?: string; cluster?: string; from?: string;
  base?: boolean; dir?: string; ports?: string; json?: boolean; 'max-pause-ms'?: number;
}

const quiet = { warn: () => undefined, info: () => undefined };

async function withZk<T>(t: { connect: string; cluster?: string; config: Config | null }, fn: (zk: Zk) => Promise<T>): Promise<T> {
  // With ZooKeeper ACLs (zookeeper.auth) the command authenticates as the proxies do.
  const s = new ZkSession({ connect: t.connect, sessionTimeoutMs: 10000, logger: quiet, auth: t.config?.zookeeper?.auth, protectedRoot: t.cluster ? `/pgring/${t.cluster}` : undefined });
  await s.start(15000);
  try { return await fn(await s.waitConnected()); } finally { await s.close(); }
}

function target(a: BackupArgs, clusterFromArg: boolean): { connect: string; cluster: string | undefined; config: Config | null } {
  const config = a.config ? loadConfig(a.config) : null;
  const connect = a.zk ?? config?.zookeeper?.connect;
  if (!connect) throw new BackupError('no ZooKeeper address: pass --config FILE (with a zookeeper section) or --zk HOST:PORT --cluster NAME');
  const cluster = (clusterFromArg ? a.cluster : a.from) ?? config?.zookeeper?.cluster;
  return { connect, cluster, config };
}

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined || v === '') throw new BackupError(`missing ${what}`);
  return v;
}

export async function runBackup(a: BackupArgs): Promise<void> {
  const progress = new Progress(false);
  const out = (human: string, json: unknown) => console.log(a.json ? JSON.stringify(json, null, 2) : human);
  try {
    if (a.action === 'restore') return await restore(a, progress, out);
    const t = target(a, true);
    const layout = new Layout(need(t.cluster, 'cluster name: --config FILE or --zk HOST:PORT --cluster NAME'));
    await withZk(t, async (zk) => {
      if (a.action === 'init') {
        const r = await backupInit(zk, layout, progress);
        out(r.map((x) => `${x.shard}: stanza ${x.stanza} (${x.config}), full backup ${x.backupSet}`).join('\n'), { cluster: layout.cluster, shards: r });
      } else if (a.action === 'create') {
        const m = await backupCreate(zk, layout, {
          name: need(a.name, 'backup NAME'), base: !!a.base, progress,
          maxPauseMs: a['max-pause-ms'] ?? t.config?.backup.maxPauseMs ?? 2000,
          sharding: t.config?.sharding,
        });
        out([
          `backup "${m.name}" of cluster "${m.cluster}": restore point ${m.restorePoint}, ring version ${m.ringVersion}`,
          ...m.shards.map((s) => `  ${s.name}: LSN ${s.lsn}, base backup ${s.backupSet}`),
          `  ${m.decisions.length} two-phase-commit decision(s) at the cut; ${m.proxies.length} proxy(ies) acknowledged; commits held ${m.pauseMs} ms`,
        ].join('\n'), m);
      } else {
        const ms = await listManifests(zk, layout);
        out(ms.length ? ['name                 created (UTC)              ring  shards  decisions  pause_ms',
          ...ms.map((m) => `${m.name.padEnd(20)} ${new Date(m.createdAt).toISOString().padEnd(26)} ${String(m.ringVersion).padStart(4)}  ${String(m.shards.length).padStart(6)}  ${String(m.decisions.length).padStart(9)}  ${String(m.pauseMs).padStart(8)}`)].join('\n')
          : `cluster "${layout.cluster}": no backups yet (pgring backup create NAME)`,
        ms.map((m) => ({ name: m.name, createdAt: new Date(m.createdAt).toISOString(), restorePoint: m.restorePoint, ringVersion: m.ringVersion, shards: m.shards, decisions: m.decisions.length, pauseMs: m.pauseMs })));
      }
    });
  } catch (e) {
    if (e instanceof BackupError) { console.error(`pgring backup ${a.action}: ${e.message}`); process.exitCode = 1; return; }
    throw e;
  }
}

async function restore(a: BackupArgs, progress: Progress, out: (h: string, j: unknown) => void): Promise<void> {
  const t = target(a, false);
  const name = need(a.name, 'backup NAME');
  const ports = need(a.ports, '--ports P1,P2,...').split(',').map((p) => Number(p.trim()));
  const dir = need(a.dir, '--dir D');
  await withZk(t, async (zk) => {
    const source = t.cluster ?? await findCluster(zk, name);
    const r = await backupRestore(zk, new Layout(source), { name, dir, ports, newCluster: a.cluster, zkConnect: t.connect, progress });
    const commits = r.settled.filter((s) => s.action === 'commit').length, rollbacks = r.settled.filter((s) => s.action === 'rollback').length;
    out([
      `backup "${name}" of cluster "${source}" restored as cluster "${r.cluster}":`,
      ...r.shards.map((s) => `  ${s.name}: 127.0.0.1:${s.port}  data ${s.dir}`),
      `  prepared transactions settled: ${commits} committed, ${rollbacks} rolled back`,
      `proxy config (also in ${r.configFile}; choose the listen port):`,
      JSON.stringify(r.proxyConfig, null, 2),
      `run: pgring proxy --config ${r.configFile}`,
      `the restored servers keep running; stop them with: ${r.shards.map((s) => `pg_ctl -D ${s.dir} stop`).join('; ')} (as the postgres user)`,
    ].join('\n'), r);
  });
}

/** The cluster holding a backup of this name (restore without --config/--from). */
async function findCluster(zk: Zk, name: string): Promise<string> {
  const found: string[] = [];
  for (const c of await zk.children(DEFAULT_ROOT).catch(() => [] as string[])) {
    try { if (await zk.exists(manifestPath(new Layout(c), name))) found.push(c); } catch { /* not a cluster name */ }
  }
  if (found.length === 1) return found[0]!;
  if (!found.length) throw new BackupError(`no backup "${name}" in any cluster under ${DEFAULT_ROOT} (see pgring backup list)`);
  throw new BackupError(`backup "${name}" exists in clusters ${found.join(', ')}: pick one with --from CLUSTER`);
}
