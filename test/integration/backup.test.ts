// Consistent backups with real PostgreSQL, ZooKeeper and pgBackRest: a cluster of its own with
// WAL archiving, two pgring processes running TPC-B, `pgring backup create` in the middle of it,
// restore to the cut as a new cluster: the restored shards add up exactly (a cut never splits a
// two-phase commit), hold a strict prefix of the history, nothing is left prepared, and a proxy
// on the restored cluster routes every key to the shard that holds it. Then the errors.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { killAtExit } from '../../src/local/exit-cleanup';
import pg from 'pg';
import { uniqueName } from '../helpers/env';
import { baseConfig, ChildProxy, spawnProxy } from '../helpers/proxy';
import { pgbenchSummary, runTool } from '../helpers/tools';
import { demoConfig } from '../../src/cli/demo';
import { ClusterInfo, LocalCluster } from '../../src/local/cluster';
import { chownPostgres, freePort, freePorts, pgBin, runAsPostgres, sleep } from '../../src/local/proc';
import { Zk } from '../../src/cluster/zk';
import { Layout } from '../../src/cluster/layout';
import type { Manifest } from '../../src/backup/manifest';
import { makeGid } from '../../src/cluster/txns';

const SECONDS = Number(process.env.PGRING_BACKUP_BENCH_SECONDS ?? 12);
const MAIN = path.resolve(__dirname, '../../src/cli/main.js');
let dir: string;
let local: LocalCluster;
let cluster: ClusterInfo;
let zkName: string;
let configFile: string;
let ports: number[];
const proxies: ChildProxy[] = [];
const restoredDirs: string[] = [];

function cli(args: string[], timeoutMs = 300000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = killAtExit(spawn(process.execPath, [MAIN, 'backup', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

async function onPort(port: number, sql: string, db = 'postgres'): Promise<pg.QueryResult> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: db });
  await c.connect();
  try { return await c.query(sql); } finally { await c.end(); }
}

/** Σabalance, Σtbalance, Σbbalance, Σdelta, history rows, prepared transactions over servers. */
async function totals(at: number[]): Promise<number[]> {
  const sql = `SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::int8 AS a, (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::int8 AS t,
    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::int8 AS b, (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8 AS d,
    (SELECT count(*) FROM pgbench_history)::int8 AS n, (SELECT count(*) FROM pg_prepared_xacts)::int8 AS p`;
  const out = [0, 0, 0, 0, 0, 0];
  for (const p of at) {
    const r = (await onPort(p, sql)).rows[0] as Record<string, string>;
    ['a', 't', 'b', 'd', 'n', 'p'].forEach((k, i) => { out[i]! += Number(r[k]); });
  }
  return out;
}

async function proxyConfig(extra: Record<string, unknown> = {}) {
  return baseConfig(cluster, 3, {
    zookeeper: { connect: cluster.zk, cluster: zkName, sessionTimeoutMs: 8000 },
    sharding: (demoConfig(cluster.zk, [], 0, 0) as { sharding: unknown }).sharding,
    locks: { mode: 'all', timeoutMs: 3000 },
    pool: { maxSize: 12 },
    backup: { maxPauseMs: 3000 },
    logLevel: 'warn',
    ...extra,
  });
}

async function manifestNames(): Promise<string[]> {
  const zk = await Zk.connect({ connect: cluster.zk });
  try { return await zk.children(`${new Layout(zkName).backups}/manifests`).catch(() => [] as string[]); } finally { await zk.close(); }
}

const bench = (port: number, extra: string[] = []) => runTool('pgbench', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-n', '-c', '4', '-j', '2', '-T', String(SECONDS), '--max-tries=10', ...extra, 'postgres'], { timeoutMs: (SECONDS + 90) * 1000 });

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-backup-'));
  chownPostgres(dir);
  local = new LocalCluster({ dir: path.join(dir, 'live'), shards: 3, archive: true });
  cluster = await local.start();
  ports = cluster.pg.map((p) => p.port);
  zkName = uniqueName('bk');
  const raw = await proxyConfig();
  proxies.push(await spawnProxy(raw));
  proxies.push(await spawnProxy(await proxyConfig({ health: { runChecks: false } })));
  configFile = path.join(dir, 'proxy.json');
  fs.writeFileSync(configFile, JSON.stringify(raw, null, 2));
  const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(proxies[0]!.port), '-U', 'postgres', '-i', '-s', '1', '-q', 'postgres']);
  assert.equal(init.code, 0, init.stderr + init.stdout);
});

after(async () => {
  for (const p of proxies) await p.stop('SIGKILL').catch(() => undefined);
  for (const d of restoredDirs) { try { runAsPostgres(pgBin('pg_ctl'), ['-D', d, '-m', 'immediate', '-w', 'stop']); } catch { /* not running */ } }
  await local?.stop();
  // This test's ZooKeeper has been seen to stop answering new sessions after the "shard down"
  // case in a few CI runs (cause unknown, passes on retry): its last warnings go to the test log
  // before the directory goes.
  if (dir) {
    try {
      const zkLog = path.join(dir, 'live', 'zookeeper', 'zookeeper.log');
      const lines = fs.existsSync(zkLog) ? fs.readFileSync(zkLog, 'utf8').split('\n').filter((l) => /WARN|ERROR/.test(l)) : [];
      if (lines.length) console.log(`last ZooKeeper warnings (${zkLog}):\n${lines.slice(-25).join('\n')}`);
    } catch { /* only a diagnostic */ }
    if (!process.env.PGRING_TEST_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe('pgring backup (pgBackRest)', () => {
  let manifest: Manifest;
  let liveHistory = 0;

  it('the barrier holds only new multi-shard decisions; both proxies acknowledge; single-shard commits go on', async () => {
    // A teller on another shard than branch 1: their update together is a two-phase commit.
    const where = async (sql: string) => { for (const [i, p] of ports.entries()) if ((await onPort(p, sql)).rows.length) return i; return -1; };
    const bShard = await where('SELECT 1 FROM pgbench_branches WHERE bid = 1');
    let tid = 0;
    for (let t = 1; t <= 10 && !tid; t++) if ((await where(`SELECT 1 FROM pgbench_tellers WHERE tid = ${t}`)) !== bShard) tid = t;
    assert.ok(tid > 0, 'no teller on another shard than branch 1');
    const layout = new Layout(zkName);
    const zk = await Zk.connect({ connect: cluster.zk });
    const c = new pg.Client({ host: '127.0.0.1', port: proxies[0]!.port, user: 'postgres', database: 'postgres' });
    await c.connect();
    try {
      await zk.mkdirp(layout.backups);
      await zk.create(`${layout.backups}/barrier`, JSON.stringify({ cutId: 'probe1', name: 'probe', maxPauseMs: 20000, createdAt: Date.now() }), 'ephemeral');
      let acks: string[] = [];
      for (let i = 0; i < 100 && acks.length < 2; i++) { await sleep(50); acks = await zk.children(`${layout.backups}/acks/probe1`).catch(() => []); }
      assert.equal(acks.length, 2, 'both proxies acknowledge the barrier');
      await c.query('BEGIN');
      await c.query('UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1');
      await c.query('UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = $1', [tid]);
      let committed = false;
      const commit = c.query('COMMIT').then(() => { committed = true; });
      // Single-shard commits and reads through the other proxy go on meanwhile.
      await onPort(proxies[1]!.port, 'UPDATE pgbench_accounts SET abalance = abalance + 0 WHERE aid = 77777');
      await onPort(proxies[1]!.port, 'SELECT abalance FROM pgbench_accounts WHERE aid = 77778');
      await sleep(300);
      assert.equal(committed, false, 'the multi-shard COMMIT went through the barrier');
      await zk.delete(`${layout.backups}/barrier`, -1);
      await commit;
      assert.equal(committed, true);
      // Past the barrier's bound a held commit rolls back (40001), it is never split.
      await zk.create(`${layout.backups}/barrier`, JSON.stringify({ cutId: 'probe2', name: 'probe', maxPauseMs: 200, createdAt: Date.now() }), 'ephemeral');
      for (let i = 0; i < 100 && !(await zk.exists(`${layout.backups}/acks/probe2/${acks[0]}`)); i++) await sleep(20);
      await c.query('BEGIN');
      await c.query('UPDATE pgbench_branches SET bbalance = bbalance - 1 WHERE bid = 1');
      await c.query('UPDATE pgbench_tellers SET tbalance = tbalance - 1 WHERE tid = $1', [tid]);
      await assert.rejects(c.query('COMMIT'), (e: { code?: string; message: string }) => e.code === '40001' && /backup cut held/.test(e.message));
      await zk.delete(`${layout.backups}/barrier`, -1);
      const t = await totals(ports);
      assert.equal(t[5], 0, 'prepared transactions left');
      assert.equal(t[1]! - t[0]!, 1, 'the first transaction committed on both shards, the second on none');
      assert.equal(t[2]! - t[0]!, 1);
      // Put the balances back so that TPC-B's sums agree again.
      await c.query('BEGIN');
      await c.query('UPDATE pgbench_branches SET bbalance = bbalance - 1 WHERE bid = 1');
      await c.query('UPDATE pgbench_tellers SET tbalance = tbalance - 1 WHERE tid = $1', [tid]);
      await c.query('COMMIT');
    } finally {
      await c.end().catch(() => undefined);
      await zk.delete(`${layout.backups}/barrier`, -1).catch(() => undefined);
      await zk.close();
    }
  });

  it('init: one stanza per shard, archiving checked, a full backup each', async () => {
    const r = await cli(['init', '--config', configFile, '--json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const out = JSON.parse(r.stdout) as { shards: { shard: string; stanza: string; backupSet: string }[] };
    assert.deepEqual(out.shards.map((s) => s.shard).sort(), ['s1', 's2', 's3']);
    for (const s of out.shards) assert.match(s.backupSet, /F$/);
    assert.match(r.stderr, /full base backup: done/);
  });

  it('create in the middle of TPC-B through two proxies; TPC-B goes on', async () => {
    const runs = Promise.all([bench(proxies[0]!.port), bench(proxies[1]!.port, ['-M', 'prepared'])]);
    await sleep(SECONDS * 400);
    const r = await cli(['create', 'cut1', '--config', configFile, '--json']);
    const [b1, b2] = await runs;
    assert.equal(r.code, 0, r.stderr + r.stdout);
    manifest = JSON.parse(r.stdout) as Manifest;
    assert.equal(b1.code, 0, b1.stderr.slice(-2000) + b1.stdout);
    assert.equal(b2.code, 0, b2.stderr.slice(-2000) + b2.stdout);
    const s1 = pgbenchSummary(b1.stdout), s2 = pgbenchSummary(b2.stdout);
    assert.ok(s1.processed > 0 && s2.processed > 0);
    assert.equal(manifest.name, 'cut1');
    assert.equal(manifest.cluster, zkName);
    assert.equal(manifest.shards.length, 3);
    assert.equal(manifest.proxies.length, 2, 'both live proxies acknowledged the barrier');
    assert.equal(manifest.ringVersion, 1);
    // The copy in the pgBackRest repository.
    const copy = path.join(path.dirname(cluster.pgbackrestConfig!), 'repo', 'pgring', zkName, 'cut1.json');
    assert.deepEqual(JSON.parse(fs.readFileSync(copy, 'utf8')), manifest);
    const live = await totals(ports);
    assert.equal(new Set(live.slice(0, 4)).size, 1, `live sums differ: ${live.join(', ')}`);
    liveHistory = live[4]!;
    console.log(`# cut held commits ${manifest.pauseMs} ms; ${manifest.decisions.length} decisions at the cut; tps ${s1.tps} + ${s2.tps}, retried/failed ${s1.failed} + ${s2.failed}`);
  });

  it('list and SHOW BACKUPS show it', async () => {
    const r = await cli(['list', '--zk', cluster.zk, '--cluster', zkName, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as { name: string }[]).map((x) => x.name), ['cut1']);
    const show = await onPort(proxies[1]!.port, 'SHOW BACKUPS', 'pgring');
    assert.equal(show.rows.length, 1);
    assert.equal(show.rows[0].name, 'cut1');
    assert.equal(show.rows[0].state, 'complete');
    assert.equal(show.rows[0].restore_point, manifest.restorePoint);
  });

  it('restore to the cut: sums agree, a strict prefix of the history, nothing prepared, a proxy routes every key', async () => {
    const rports = await freePorts(3);
    const target = path.join(dir, 'restored');
    const newName = `${zkName}_r`;
    const r = await cli(['restore', 'cut1', '--config', configFile, '--dir', target, '--ports', rports.join(','), '--cluster', newName, '--json']);
    for (const s of ['s1', 's2', 's3']) restoredDirs.push(path.join(target, s));
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const res = JSON.parse(r.stdout) as { cluster: string; proxyConfig: Record<string, unknown>; settled: { action: string }[] };
    assert.equal(res.cluster, newName);
    console.log(`# restore settled ${res.settled.filter((x) => x.action === 'commit').length} prepared transaction(s) by commit, ${res.settled.filter((x) => x.action === 'rollback').length} by rollback`);
    const t = await totals(rports);
    assert.equal(new Set(t.slice(0, 4)).size, 1, `restored Σabalance, Σtbalance, Σbbalance, Σdelta differ: ${t.join(', ')}`);
    assert.ok(t[4]! > 0 && t[4]! < liveHistory, `restored history rows ${t[4]} not strictly between 0 and live ${liveHistory}`);
    assert.equal(t[5], 0, 'prepared transactions left on the restored shards');
    // A proxy on the restored cluster: every key lives on exactly one shard and is found through the proxy.
    const cfg = { ...res.proxyConfig, listen: { host: '127.0.0.1', port: await freePort() }, metrics: { enabled: false }, logLevel: 'warn' };
    const rp = await spawnProxy(cfg);
    proxies.push(rp);
    const c = new pg.Client({ host: '127.0.0.1', port: rp.port, user: 'postgres', database: 'postgres' });
    await c.connect();
    try {
      const direct = new Map<number, number>();
      for (const p of rports) for (const row of (await onPort(p, 'SELECT bid, bbalance FROM pgbench_branches UNION ALL SELECT 1000 + tid, tbalance FROM pgbench_tellers')).rows) direct.set(Number(row.bid), Number(row.bbalance));
      for (const [k, v] of direct) {
        const q = k >= 1000 ? await c.query('SELECT tbalance AS v FROM pgbench_tellers WHERE tid = $1', [k - 1000]) : await c.query('SELECT bbalance AS v FROM pgbench_branches WHERE bid = $1', [k]);
        assert.equal(q.rows.length, 1, `key ${k} not found through the restored proxy`);
        assert.equal(Number(q.rows[0].v), v);
      }
      for (let aid = 1; aid <= 100000; aid += 997) {
        const q = await c.query('SELECT abalance FROM pgbench_accounts WHERE aid = $1', [aid]);
        assert.equal(q.rows.length, 1, `aid ${aid} not found through the restored proxy`);
      }
      const sum = await c.query('SELECT sum(abalance) AS s FROM pgbench_accounts');
      assert.equal(Number(sum.rows[0].s), t[0]);
    } finally { await c.end(); }
  });

  it('refuses a used name, an existing target directory, ports in use; nothing half-made', async () => {
    const used = await cli(['create', 'cut1', '--config', configFile]);
    assert.equal(used.code, 1);
    assert.match(used.stderr, /backup name "cut1" is already used/);
    const exists = await cli(['restore', 'cut1', '--config', configFile, '--dir', path.join(dir, 'restored'), '--ports', (await freePorts(3)).join(','), '--cluster', `${zkName}_x`]);
    assert.equal(exists.code, 1);
    assert.match(exists.stderr, /restore target directory .*s1 exists/);
    const busy = await cli(['restore', 'cut1', '--config', configFile, '--dir', path.join(dir, 'r2'), '--ports', `${ports[0]},${(await freePorts(2)).join(',')}`, '--cluster', `${zkName}_y`]);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, new RegExp(`port ${ports[0]} is in use`));
    const live = await cli(['restore', 'cut1', '--config', configFile, '--dir', path.join(dir, 'r2'), '--ports', (await freePorts(3)).join(','), '--cluster', zkName]);
    assert.match(live.stderr, /must name a new cluster/);
    assert.ok(!fs.existsSync(path.join(dir, 'r2', 's1')));
  });

  it('archiving not configured on a shard: the shard is named, no backup recorded', async () => {
    const p = local.pgs[1]!;
    const saved = p.psql('SHOW archive_command').trim();
    p.psql("ALTER SYSTEM SET archive_command = 'true'");
    p.psql('SELECT pg_reload_conf()');
    try {
      const r = await cli(['create', 'noarch', '--config', configFile]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /shard "s2".*does not push to pgBackRest/);
      // Archiving into a stanza pgBackRest does not know: the shard and pgBackRest's words.
      p.psql(`ALTER SYSTEM SET archive_command = 'pgbackrest --config=${cluster.pgbackrestConfig} --stanza=nosuch archive-push %p'`);
      p.psql('SELECT pg_reload_conf()');
      const r2 = await cli(['create', 'noarch', '--config', configFile]);
      assert.equal(r2.code, 1);
      assert.match(r2.stderr, /shard "s2": stanza "nosuch" .*pgBackRest: missing stanza path/);
      const r3 = await cli(['init', '--config', configFile]);
      assert.equal(r3.code, 1);
      assert.match(r3.stderr, /shard "s2".*stanza "nosuch".*ERROR: \[037\]: stanza-create command requires option: pg1-path/);
      assert.doesNotMatch(r3.stderr, /full base backup/, 'no backup starts while a shard fails its check');
    } finally {
      p.psql(`ALTER SYSTEM SET archive_command = '${saved.replace(/'/g, "''")}'`);
      p.psql('SELECT pg_reload_conf()');
    }
    assert.ok(!(await manifestNames()).includes('noarch'));
  });

  it('a proxy that does not acknowledge in time aborts the cut (no backup recorded)', async () => {
    const stuck = proxies[1]!;
    stuck.child.kill('SIGSTOP');
    try {
      const r = await cli(['create', 'stuck', '--config', configFile, '--max-pause-ms', '300']);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, /did not acknowledge the backup barrier within 300 ms/);
    } finally { stuck.child.kill('SIGCONT'); }
    assert.ok(!(await manifestNames()).includes('stuck'));
  });

  it('a shard down during create: clear error, no backup recorded', async () => {
    local.pgs[2]!.stop('fast');
    try {
      const r = await cli(['create', 'down', '--config', configFile]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /shard "s3" .* is down/);
    } finally { local.pgs[2]!.start(); }
    assert.ok(!(await manifestNames()).includes('down'));
  });

  it('a dead proxy (ephemeral node gone) is not waited for', async () => {
    const doomed = await spawnProxy(await proxyConfig({ zookeeper: { connect: cluster.zk, cluster: zkName, sessionTimeoutMs: 4000 }, health: { runChecks: false } }));
    proxies.push(doomed);
    const zk = await Zk.connect({ connect: cluster.zk });
    try {
      // It registers once its ZooKeeper coordination is up (after it listens).
      for (let i = 0; i < 100 && (await zk.children(new Layout(zkName).proxies)).length < 3; i++) await sleep(100);
      assert.equal((await zk.children(new Layout(zkName).proxies)).length, 3);
      await doomed.stop('SIGKILL');
      for (let i = 0; i < 100 && (await zk.children(new Layout(zkName).proxies)).length > 2; i++) await sleep(200);
      assert.equal((await zk.children(new Layout(zkName).proxies)).length, 2, 'the node of the killed proxy did not expire');
    } finally { await zk.close(); }
    const r = await cli(['create', 'cut2', '--config', configFile, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as Manifest).proxies.length, 2);
  });

  it('a transaction committed on one shard and prepared on another at the cut is committed by restore; one without decision rolled back', async () => {
    // A proxy of our own making ("fake"): registered, it acknowledges the barrier, and it left
    // one distributed transaction half through phase two (decision written, COMMIT PREPARED on
    // one shard only) and another prepared without a decision. Recovery leaves both alone
    // while its node exists.
    const layout = new Layout(zkName);
    const zk = await Zk.connect({ connect: cluster.zk });
    const shardOf = async (sql: string) => { for (const [i, p] of ports.entries()) if ((await onPort(p, sql)).rows.length) return i; throw new Error(`no shard holds ${sql}`); };
    // The decided one is a whole TPC-B transaction; the undecided one touches other rows (the
    // decided one's prepared parts hold their row locks).
    const plan = async (aid: number, tid: number, bid: number | null, d: number) => {
      const a = await shardOf(`SELECT 1 FROM pgbench_accounts WHERE aid = ${aid}`), t = await shardOf(`SELECT 1 FROM pgbench_tellers WHERE tid = ${tid}`);
      const b = bid === null ? -1 : await shardOf(`SELECT 1 FROM pgbench_branches WHERE bid = ${bid}`);
      const by = new Map<number, string[]>();
      const add = (sh: number, sql: string) => { by.set(sh, [...(by.get(sh) ?? []), sql]); };
      add(a, `UPDATE pgbench_accounts SET abalance = abalance + ${d} WHERE aid = ${aid}`);
      if (bid !== null) add(a, `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime, filler) VALUES (${tid}, ${bid}, ${aid}, ${d}, now(), 'backup-test-${d}')`);
      add(t, `UPDATE pgbench_tellers SET tbalance = tbalance + ${d} WHERE tid = ${tid}`);
      if (bid !== null) add(b, `UPDATE pgbench_branches SET bbalance = bbalance + ${d} WHERE bid = ${bid}`);
      return by;
    };
    const names = ['s1', 's2', 's3'];
    const prepare = async (txid: string, by: Map<number, string[]>) => {
      const gids = [];
      for (const [sh, sqls] of by) {
        const gid = makeGid(zkName, 'fake', txid, names[sh]!);
        await onPort(ports[sh]!, `BEGIN; ${sqls.join('; ')}; PREPARE TRANSACTION '${gid}'`);
        gids.push({ shard: names[sh]!, gid });
      }
      return gids;
    };
    const finish = async (gids: { shard: string; gid: string }[], how: 'COMMIT' | 'ROLLBACK') => {
      for (const g of gids) {
        const p = ports[names.indexOf(g.shard)]!;
        if ((await onPort(p, `SELECT 1 FROM pg_prepared_xacts WHERE gid = '${g.gid}'`)).rows.length) await onPort(p, `${how} PREPARED '${g.gid}'`);
      }
    };
    await zk.create(layout.proxy('fake'), '{}', 'ephemeral');
    let stopAcking = false;
    const acker = (async () => {
      while (!stopAcking) {
        try {
          const b = JSON.parse((await zk.get(`${layout.backups}/barrier`)).data.toString()) as { cutId: string };
          await zk.mkdirp(`${layout.backups}/acks/${b.cutId}`);
          await zk.create(`${layout.backups}/acks/${b.cutId}/fake`, '{}', 'ephemeral').catch(() => undefined);
        } catch { /* no barrier */ }
        await sleep(5);
      }
    })();
    const decided = await prepare('zz1', await plan(4242, 3, 1, 5));
    const undecided = await prepare('zz2', await plan(4243, 4, null, 7));
    const split = decided.length > 1;
    try {
      await zk.create(`${layout.txns}/fake_zz1`, JSON.stringify({ proxy: 'fake', txid: 'zz1', gids: decided, at: Date.now() }), 'persistent');
      if (split) await finish(decided.slice(0, 1), 'COMMIT');   // phase two done on one shard only
      const r = await cli(['create', 'cut3', '--config', configFile, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const m = JSON.parse(r.stdout) as Manifest;
      assert.ok(m.decisions.some((d) => d.proxy === 'fake' && d.txid === 'zz1'), 'the decision in force is in the manifest');
      assert.ok(m.proxies.includes('fake'));
    } finally {
      stopAcking = true;
      await acker;
      await finish(decided, 'COMMIT');
      await finish(undecided, 'ROLLBACK');
      await zk.delete(`${layout.txns}/fake_zz1`, -1).catch(() => undefined);
      await zk.delete(layout.proxy('fake'), -1).catch(() => undefined);
      await zk.close();
    }
    const rports = await freePorts(3);
    const target = path.join(dir, 'restored3');
    const r = await cli(['restore', 'cut3', '--config', configFile, '--dir', target, '--ports', rports.join(','), '--cluster', `${zkName}_r3`, '--json']);
    for (const s2 of names) restoredDirs.push(path.join(target, s2));
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const res = JSON.parse(r.stdout) as { settled: { gid: string; action: string }[] };
    for (const g of decided.slice(split ? 1 : 0)) assert.ok(res.settled.some((x) => x.gid === g.gid && x.action === 'commit'), `${g.gid} committed by restore`);
    for (const g of undecided) assert.ok(res.settled.some((x) => x.gid === g.gid && x.action === 'rollback'), `${g.gid} rolled back by restore`);
    const t = await totals(rports);
    assert.equal(new Set(t.slice(0, 4)).size, 1, `restored sums differ: ${t.join(', ')}`);
    assert.equal(t[5], 0);
    const mine = await Promise.all(rports.map((p) => onPort(p, "SELECT count(*)::int AS n FROM pgbench_history WHERE filler = 'backup-test-5'")));
    assert.equal(mine.reduce((x, q) => x + Number(q.rows[0].n), 0), 1, 'the decided transaction is in the restored cluster');
  });
});
