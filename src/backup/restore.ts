// `pgring backup restore NAME --dir D --ports P1,... [--cluster NEW]`: every shard is restored
// by pgBackRest to the cut's restore point into D/<shard> (archiving off), started on its port
// (log D/<shard>.log, socket in D) and promoted; the pgring prepared transactions it holds are
// settled by the manifest (commit when the decision was in force at the cut, else roll back);
// then the manifest's ring is installed under the new cluster name, never the live one.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { ensureLayout, Layout, checkSegment } from '../cluster/layout';
import { readManifest } from '../cluster/backups';
import { putShard } from '../cluster/registry';
import { encodeJson, isZkError, Zk } from '../cluster/zk';
import { chownPostgres, pgBin, runAsPostgres } from '../local/proc';
import { Manifest, settle, Settlement } from './manifest';
import { run } from './pgbackrest';
import type { Progress } from './progress';
import { BackupError, connect } from './shards';

export interface RestoreOptions { name: string; dir: string; ports: number[]; newCluster?: string; zkConnect: string; progress: Progress }
export interface RestoreResult { manifest: string; cluster: string; shards: { name: string; port: number; dir: string }[]; settled: Settlement[]; proxyConfig: Record<string, unknown>; configFile: string }

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function preflight(zk: Zk, m: Manifest, o: RestoreOptions, target: Layout): Promise<void> {
  if (o.ports.length !== m.shards.length) throw new BackupError(`backup "${m.name}" has ${m.shards.length} shards (${m.shards.map((s) => s.name).join(', ')}): give as many --ports (got ${o.ports.length})`);
  if (new Set(o.ports).size !== o.ports.length || o.ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw new BackupError(`--ports must be distinct TCP ports: ${o.ports.join(',')}`);
  if (target.cluster === m.cluster) throw new BackupError(`--cluster must name a new cluster, not the live "${m.cluster}"`);
  if (await zk.exists(target.base)) throw new BackupError(`cluster "${target.cluster}" already exists in ZooKeeper (${target.base}); choose another --cluster`);
  for (const s of m.shards) {
    const d = path.join(o.dir, s.name);
    if (fs.existsSync(d)) throw new BackupError(`restore target directory ${d} exists; give a --dir without it`);
  }
  for (const p of o.ports) if (!(await portFree(p))) throw new BackupError(`port ${p} is in use on 127.0.0.1`);
}

export async function backupRestore(zk: Zk, source: Layout, o: RestoreOptions): Promise<RestoreResult> {
  const m = await readManifest(zk, source, o.name);
  if (!m) throw new BackupError(`no backup "${o.name}" in cluster "${source.cluster}" (see pgring backup list)`);
  const target = new Layout(checkSegment('cluster', o.newCluster ?? `${m.cluster}-${m.name}`.replace(/[^A-Za-z0-9_.-]/g, '_')));
  await preflight(zk, m, o, target);
  fs.mkdirSync(o.dir, { recursive: true });
  chownPostgres(o.dir);
  const created: string[] = [];
  const started: string[] = [];
  try {
    await Promise.all(m.shards.map(async (s, i) => {
      const d = path.join(o.dir, s.name);
      fs.mkdirSync(d, { mode: 0o700 });
      created.push(d);
      chownPostgres(d);
      await o.progress.step(`${s.name}: pgbackrest restore (set ${s.backupSet}, restore point ${m.restorePoint})`, () => run({ config: s.config, stanza: s.stanza }, 'restore', [
        `--pg1-path=${d}`, `--set=${s.backupSet}`, '--type=name', `--target=${m.restorePoint}`, '--target-action=promote', '--archive-mode=off',
      ])).catch((e) => { throw new BackupError(`shard "${s.name}": ${(e as Error).message}`); });
      // Later lines win: this server listens on its own port, its socket in D.
      fs.appendFileSync(path.join(d, 'postgresql.auto.conf'), [
        '', '# pgring backup restore', `port = ${o.ports[i]}`, `listen_addresses = '127.0.0.1'`, `unix_socket_directories = '${o.dir}'`, 'archive_mode = off', '',
      ].join('\n'));
      chownPostgres(d);
    }));
    const shards = m.shards.map((s, i) => ({ name: s.name, port: o.ports[i]!, dir: path.join(o.dir, s.name) }));
    for (const s of shards) {
      await o.progress.step(`${s.name}: recovery to the restore point on port ${s.port}`, async () => {
        const log = path.join(o.dir, `${s.name}.log`);
        try {
          runAsPostgres(pgBin('pg_ctl'), ['-D', s.dir, '-l', log, '-w', '-t', '600', 'start']);
          started.push(s.dir);
          await waitPromoted(s.name, s.port);
        } catch (e) {
          let tail = '';
          try { tail = fs.readFileSync(log, 'utf8').split('\n').filter((l) => /FATAL|ERROR|PANIC/.test(l)).slice(-3).join(' | '); } catch { /* none */ }
          throw new BackupError(`shard "${s.name}": the restored server did not reach the restore point and promote: ${tail || (e as Error).message}`);
        }
      });
    }
    const settled: Settlement[] = [];
    for (const s of shards) settled.push(...await settlePrepared(m, s.name, s.port, o.progress));
    await installCluster(zk, target, m, shards);
    const proxyConfig = proxyConfigFor(m, target.cluster, o.zkConnect, shards, await freeListenPort());
    const configFile = path.join(o.dir, 'proxy.json');
    fs.writeFileSync(configFile, JSON.stringify(proxyConfig, null, 2));
    return { manifest: m.name, cluster: target.cluster, shards, settled, proxyConfig, configFile };
  } catch (e) {
    // Nothing half-made: stop what we started and remove what we restored.
    for (const d of started) { try { runAsPostgres(pgBin('pg_ctl'), ['-D', d, '-m', 'immediate', '-w', 'stop']); } catch { /* gone */ } }
    for (const d of created) fs.rmSync(d, { recursive: true, force: true });
    throw e;
  }
}

async function waitPromoted(name: string, port: number): Promise<void> {
  const deadline = Date.now() + 600000;
  for (;;) {
    let c = null;
    try {
      c = await connect({ name, host: '127.0.0.1', port });
      if (!(await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r) return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
    } finally { await c?.end().catch(() => undefined); }
    if (Date.now() > deadline) throw new Error('still in recovery after 600 s');
    await sleep(200);
  }
}

/** Commits or rolls back every prepared transaction of the restored shard by the manifest. */
async function settlePrepared(m: Manifest, shard: string, port: number, progress: Progress): Promise<Settlement[]> {
  const c = await connect({ name: shard, host: '127.0.0.1', port });
  let rows: { gid: string; database: string }[];
  try { rows = (await c.query('SELECT gid, database FROM pg_prepared_xacts ORDER BY prepared')).rows; } finally { await c.end().catch(() => undefined); }
  const out: Settlement[] = [];
  for (const r of rows) {
    const st = settle(m, r.gid, r.database);
    out.push(st);
    if (st.action === 'foreign') { progress.note(`${shard}: left prepared transaction ${r.gid} alone (${st.why})`); continue; }
    const dc = await connect({ name: shard, host: '127.0.0.1', port }, r.database);
    try { await dc.query(`${st.action === 'commit' ? 'COMMIT' : 'ROLLBACK'} PREPARED '${r.gid.replace(/'/g, "''")}'`); } finally { await dc.end().catch(() => undefined); }
    progress.note(`${shard}: ${st.action === 'commit' ? 'committed' : 'rolled back'} ${r.gid} (${st.why})`);
  }
  return out;
}

/** The manifest's ring (same version number) and shard records pointing at the restored servers. */
async function installCluster(zk: Zk, target: Layout, m: Manifest, shards: { name: string; port: number }[]): Promise<void> {
  try { await zk.create(target.base, '', 'persistent'); } catch (e) {
    if (isZkError(e, 'NODEEXISTS')) throw new BackupError(`cluster "${target.cluster}" already exists in ZooKeeper; choose another --cluster`);
    if (!isZkError(e, 'NONODE')) throw e;
    await zk.mkdirp(target.base.slice(0, target.base.lastIndexOf('/')));
    await zk.create(target.base, '', 'persistent');
  }
  await ensureLayout(zk, target);
  for (const s of shards) {
    const weight = m.ring.shards.find((x) => x.name === s.name)?.weight;
    await putShard(zk, target, { name: s.name, weight, backends: [{ host: '127.0.0.1', port: s.port, role: 'primary' }], restoredFrom: { cluster: m.cluster, backup: m.name } });
  }
  await zk.create(target.ringVersion(m.ringVersion), encodeJson(m.ring), 'persistent');
  await zk.create(target.ringActive, encodeJson({ version: m.ringVersion, switchedAt: Date.now() }), 'persistent');
}

/** A port free now for the printed proxy config (6432 is usually the live proxy's). */
function freeListenPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(6432));
    srv.listen(0, '127.0.0.1', () => { const a = srv.address() as net.AddressInfo; srv.close(() => resolve(a.port)); });
  });
}

function proxyConfigFor(m: Manifest, cluster: string, zkConnect: string, shards: { name: string; port: number }[], port: number): Record<string, unknown> {
  return {
    listen: { host: '127.0.0.1', port },
    metrics: { enabled: false },
    zookeeper: { connect: zkConnect, cluster },
    users: [{ name: 'postgres', auth: 'trust', admin: true }],
    ring: { vnodes: m.ring.vnodes, seed: m.ring.seed },
    shards: shards.map((s) => ({ name: s.name, weight: m.ring.shards.find((x) => x.name === s.name)?.weight ?? 1, backends: [{ host: '127.0.0.1', port: s.port, role: 'primary' }] })),
    ...(m.sharding ? { sharding: m.sharding } : {}),
  };
}
