// Automatic failover with real streaming replication and ZooKeeper: the primary postmaster of a
// shard is SIGKILLed during pgbench TPC-B through two proxies; the elected controller promotes
// the synchronous replica; writes resume (time measured and printed, not asserted); no
// transaction pgbench counted as committed is lost and the ledger adds up; the old primary
// rejoins as a replica (pg_rewind); a planned switchover moves the primary back without losing
// an acknowledged write; a controller killed in the middle of a failover is replaced by one
// that finishes it. Runs its own cluster and proxies (it kills servers and proxies).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { killAtExit } from '../../src/local/exit-cleanup';
import pg from 'pg';
import { LocalCluster, ClusterInfo } from '../../src/local/cluster';
import { LocalPostgres } from '../../src/local/postgres';
import { freePort, sleep } from '../../src/local/proc';
import { demoConfig } from '../../src/cli/demo';
import { Zk } from '../../src/cluster/zk';
import { Layout } from '../../src/cluster/layout';
import { readFailover } from '../../src/cluster/failover';
import type { FailoverState } from '../../src/cluster/failover-plan';
import { ChildProxy, spawnProxy } from '../helpers/proxy';
import { pgbenchSummary, runTool } from '../helpers/tools';

const CLUSTER = 'replica-failover';
const SECONDS = 16;
let lc: LocalCluster;
let info: ClusterInfo;
let p1: ChildProxy | null = null;   // started first: the controller; stalls after promoting s2 (test hook)
let p2: ChildProxy;
const db = 'postgres';
/** current primary of s1, s2 (LocalPostgres objects; after failover a replica's) */
const primaryOf: LocalPostgres[] = [];

async function onPort(port: number, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: db, connectionTimeoutMillis: 3000 });
  c.on('error', () => undefined);
  await c.connect();
  try { return await c.query(sql, params); } finally { await c.end(); }
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

async function totals(): Promise<number[]> {
  const sql = `SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::int8 AS a, (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::int8 AS t,
    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::int8 AS b, (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8 AS d, (SELECT count(*) FROM pgbench_history)::int8 AS n`;
  const out = [0, 0, 0, 0, 0];
  for (const p of primaryOf) {
    const r = (await onPort(p.port, sql)).rows[0] as Record<string, string>;
    ['a', 't', 'b', 'd', 'n'].forEach((k, i) => { out[i]! += Number(r[k]); });
  }
  return out;
}

async function preparedLeft(): Promise<string[]> {
  const out: string[] = [];
  for (const p of primaryOf) out.push(...(await onPort(p.port, 'SELECT gid FROM pg_prepared_xacts')).rows.map((r) => `${p.port}:${r.gid}`));
  return out;
}

async function failoverState(shard: string): Promise<FailoverState | null> {
  const zk = await Zk.connect({ connect: info.zk });
  try { return (await readFailover(zk, new Layout(CLUSTER), shard))?.state ?? null; } finally { await zk.close(); }
}

function cli(args: string[]): Promise<{ code: number | null; out: string }> {
  const main = path.resolve(__dirname, '../../src/cli/main.js');
  return new Promise((resolve) => {
    const child = killAtExit(spawn(process.execPath, [main, ...args, '--zk', info.zk, '--cluster', CLUSTER], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), 120000);
    child.on('close', (code) => { clearTimeout(t); resolve({ code, out }); });
  });
}

/** A key (aid) stored on shard `i` (read from its current primary). */
async function aidOn(i: number): Promise<number> {
  return Number((await onPort(primaryOf[i]!.port, 'SELECT aid FROM pgbench_accounts ORDER BY aid LIMIT 1')).rows[0].aid);
}

/** Repeats a write to `aid` through `port` until one succeeds; ms from `t0` to that success. */
const probeErrors: string[] = [];
async function firstWrite(port: number, aid: number, t0: number, ms = 60000): Promise<number> {
  probeErrors.length = 0;
  for (;;) {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: db, connectionTimeoutMillis: 2000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('SET statement_timeout = 2000');
      await c.query('UPDATE pgbench_accounts SET abalance = abalance WHERE aid = $1', [aid]);
      return Date.now() - t0;
    } catch (e) { // 57P03 while failing over, or a connection the kill ended
      const m = `${(e as { code?: string }).code ?? ''} ${(e as Error).message}`.slice(0, 160);
      if (probeErrors[probeErrors.length - 1]?.endsWith(m) !== true) probeErrors.push(`+${Date.now() - t0}ms ${m}`);
    } finally { await c.end().catch(() => undefined); }
    if (Date.now() - t0 > ms) throw new Error(`no successful write within ${ms} ms`);
    await sleep(100);
  }
}

async function proxyConfig(holdWritesMs = 0): Promise<Record<string, unknown>> {
  return {
    listen: { host: '127.0.0.1', port: await freePort() },
    metrics: { enabled: false },
    logLevel: 'warn',
    users: [{ name: 'postgres', auth: 'trust', admin: true }],
    zookeeper: { connect: info.zk, cluster: CLUSTER, sessionTimeoutMs: 4000 },
    shards: info.pg.map((p, i) => ({ name: p.name, backends: [{ port: p.port }, { port: info.replicas![i]!.port, role: 'replica' }] })),
    sharding: (demoConfig(info.zk, [], 0, 0) as { sharding: unknown }).sharding,
    locks: { mode: 'all', timeoutMs: 3000 },
    pool: { maxSize: 12, connectTimeoutMs: 1000 },
    health: { intervalMs: 250, timeoutMs: 1000 },
    failover: { enabled: true, graceMs: 1000, holdWritesMs },
  };
}

const bench = (port: number, extra: string[] = []) => runTool('pgbench', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-n', '-c', '4', '-j', '2', '-T', String(SECONDS), '--max-tries=10', ...extra, db], { timeoutMs: (SECONDS + 90) * 1000 });

before(async () => {
  lc = new LocalCluster({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-failover-')), shards: 2, replicas: 1 });
  info = await lc.start();
  primaryOf.push(lc.pgs[0]!, lc.pgs[1]!);
  process.env.PGRING_TEST_FAILOVER_STALL_AFTER = 's2:promote';
  try { p1 = await spawnProxy(await proxyConfig()); } finally { delete process.env.PGRING_TEST_FAILOVER_STALL_AFTER; }
  await sleep(500); // p1 leads the election
  p2 = await spawnProxy(await proxyConfig(30000));   // p2 holds statements for a shard that is failing over
  const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(p2.port), '-U', 'postgres', '-i', '-s', '2', '-q', db]);
  assert.equal(init.code, 0, init.stderr + init.stdout);
});

after(async () => {
  await p1?.stop('SIGKILL').catch(() => undefined);
  await p2?.stop().catch(() => undefined);
  // immediate: a primary whose synchronous standby is gone must not hold the test up
  for (const pgs of lc ? [...lc.pgs, ...lc.replicas.flat()] : []) { try { pgs.stop('immediate'); } catch { /* gone */ } }
  await lc?.stop();
  if (lc) fs.rmSync(lc.opts.dir, { recursive: true, force: true });
});

describe('failover of a shard primary', () => {
  it('SIGKILL of s1\'s primary during TPC-B through two proxies: the replica is promoted, writes resume, nothing committed is lost', async () => {
    const before = await totals();
    const aid = await aidOn(0);
    const runs = Promise.all([bench(p1!.port), bench(p2.port, ['-M', 'prepared'])]);
    await sleep(4000);
    const t0 = Date.now();
    process.kill(lc.pgs[0]!.pid()!, 'SIGKILL');
    const resumedMs = await firstWrite(p2.port, aid, t0);
    const [r1, r2] = await runs;
    const s1 = pgbenchSummary(r1.stdout), s2 = pgbenchSummary(r2.stdout);
    const committed = (s1.processed || 0) + (s2.processed || 0);
    if (process.env.PGRING_TEST_VERBOSE) console.log(r1.stdout, r1.stderr.slice(-3000), r2.stdout, r2.stderr.slice(-3000));
    assert.ok(committed > 0, r1.stdout + r1.stderr.slice(-1000) + r2.stdout);
    primaryOf[0] = lc.replicas[0]![0]!;
    assert.equal((await onPort(primaryOf[0].port, 'SELECT pg_is_in_recovery() AS r')).rows[0].r, false);
    const st = await failoverState('s1');
    assert.equal(st?.step, 'done');
    assert.equal(st?.candidate, `127.0.0.1:${lc.replicas[0]![0]!.port}`);
    assert.deepEqual(st?.log.map((l) => l.step), ['fence', 'fence', 'choose', 'promote', 'repoint', 'recover', 'record']);
    // in-doubt transactions of the dead primary's 2PC are settled on the new primary
    try { await waitFor('no prepared transaction left', async () => (await preparedLeft()).length === 0, 45000); } catch (e) {
      console.log(`# left: ${(await preparedLeft()).join(' ')}\n# p1: ${p1!.output().slice(-3000)}\n# p2: ${p2.output().slice(-3000)}`);
      throw e;
    }
    const after = await totals();
    const d = after.map((v, i) => v - before[i]!);
    assert.equal(new Set(d.slice(0, 4)).size, 1, `abalance/tbalance/bbalance/delta changes differ: ${d.join(', ')}`);
    assert.ok(d[4]! >= committed, `history rows ${d[4]} < transactions pgbench counted as committed ${committed}`);
    const a = new pg.Client({ host: '127.0.0.1', port: p2.port, user: 'postgres', database: 'pgring' });
    await a.connect();
    const rows = (await a.query('SHOW BACKENDS')).rows.filter((r) => r.shard === 's1');
    await a.end();
    const newP = rows.find((r) => Number(r.port) === primaryOf[0]!.port)!;
    assert.equal(newP.role, 'primary'); assert.equal(newP.state, 'up'); assert.equal(newP.epoch, '1');
    assert.equal(rows.find((r) => Number(r.port) === lc.pgs[0]!.port)!.state, 'down');
    console.log(`# probe errors: ${probeErrors.join(' | ')}`);
    if (resumedMs > 15000) console.log(`# slow resume; proxy logs:\n${(p1!.output() + p2.output()).split('\n').filter((l) => /warn|error|lock|two-phase|failover/i.test(l)).slice(-40).join('\n')}`);
    console.log(`# failover: writes to s1 resumed ${resumedMs} ms after SIGKILL; pgbench committed ${committed} (tps ${s1.tps} + ${s2.tps}, clients may abort on 57P03 during the gap), history rows +${d[4]}`);
  });

  it('the old primary rejoins as a synchronous replica of the new one (pg_rewind)', async () => {
    const old = lc.pgs[0]!;
    const r = await cli(['shard', 'rejoin', 's1', '--host', '127.0.0.1', '--port', String(old.port), '--data-dir', old.dataDir]);
    assert.equal(r.code, 0, r.out);
    assert.equal(old.psql('SELECT pg_is_in_recovery()').trim(), 't');
    const rep = primaryOf[0]!.psql(`SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pgring_s1_${old.port}'`).trim();
    assert.equal(rep, 'sync');
    const aid = await aidOn(0);
    await onPort(p2.port, 'UPDATE pgbench_accounts SET filler = $2 WHERE aid = $1', [aid, 'rejoined']);
    await waitFor('the rejoined server replays a new write', async () => old.psql(`SELECT filler FROM pgbench_accounts WHERE aid = ${aid}`).trim().startsWith('rejoined'), 10000);
  });

  it('switchover back to the rejoined server: no acknowledged write is lost, the pause is short', async () => {
    const target = lc.pgs[0]!;
    const aid = await aidOn(0);
    const before = Number((await onPort(primaryOf[0]!.port, 'SELECT count(*) AS n FROM pgbench_history WHERE aid = $1', [aid])).rows[0].n);
    let acked = 0, stop = false, maxGap = 0, last = Date.now();
    const writer = (async () => {
      while (!stop) {
        const c = new pg.Client({ host: '127.0.0.1', port: p2.port, user: 'postgres', database: db, connectionTimeoutMillis: 2000 });
        c.on('error', () => undefined);   // the fence ends sessions on the old primary
        try {
          await c.connect();
          while (!stop) {
            await c.query('INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, $1, 0, now())', [aid]);
            acked++;
            const now = Date.now(); maxGap = Math.max(maxGap, now - last); last = now;
          }
        } catch { await sleep(50); } finally { await c.end().catch(() => undefined); }
      }
    })();
    await sleep(1000);
    const r = await cli(['shard', 'switchover', 's1', '--to', `127.0.0.1:${target.port}`]);
    await sleep(1000);
    stop = true;
    await writer;
    assert.equal(r.code, 0, r.out);
    primaryOf[0] = target;
    assert.equal(target.psql('SELECT pg_is_in_recovery()').trim(), 'f');
    const afterN = Number((await onPort(target.port, 'SELECT count(*) AS n FROM pgbench_history WHERE aid = $1', [aid])).rows[0].n);
    assert.ok(afterN - before >= acked, `rows ${afterN - before} < acknowledged inserts ${acked}`);
    assert.ok(acked > 0);
    console.log(`# switchover: ${acked} acknowledged inserts all present; longest gap between acknowledged writes ${maxGap} ms`);
  });

  it('the controller killed in the middle of a failover: another proxy finishes it', async () => {
    const aid = await aidOn(1);
    const t0 = Date.now();
    process.kill(lc.pgs[1]!.pid()!, 'SIGKILL');
    // p1 (the controller) fences, chooses and promotes, then stops advancing (test hook) ...
    const mid = await waitFor('the failover to stop after promote', async () => { const s = await failoverState('s2'); return s?.step === 'repoint' ? s : undefined; }, 30000);
    const by = mid.by;
    // The shard has no recorded primary now: p2 (failover.holdWritesMs 30 s) holds a write
    // instead of answering 57P03, and finishes it once the failover is done.
    const held = onPort(p2.port, 'UPDATE pgbench_accounts SET abalance = abalance WHERE aid = $1 RETURNING aid', [aid]);
    await sleep(500);
    await p1!.stop('SIGKILL');  // ... and dies there
    p1 = null;
    const st = await waitFor('another controller to finish it', async () => { const s = await failoverState('s2'); return s?.step === 'done' ? s : undefined; }, 40000);
    assert.notEqual(st.by, by);
    assert.deepEqual(st.log.map((l) => l.step), ['fence', 'fence', 'choose', 'promote', 'repoint', 'recover', 'record']);
    primaryOf[1] = lc.replicas[1]![0]!;
    assert.equal((await held).rows[0].aid, aid, 'the held write ran on the new primary');
    const resumedMs = await firstWrite(p2.port, aid, t0);
    assert.equal((await onPort(primaryOf[1].port, 'SELECT pg_is_in_recovery() AS r')).rows[0].r, false);
    // A proxy started now from the same config (which still names the first primaries) follows
    // the shard records: the epochs and primaries survive its publishing of the config's shards.
    p1 = await spawnProxy(await proxyConfig());
    const a = new pg.Client({ host: '127.0.0.1', port: p1.port, user: 'postgres', database: 'pgring' });
    await a.connect();
    const expect = [`s1:${lc.pgs[0]!.port}:2`, `s2:${lc.replicas[1]![0]!.port}:1`];
    const primaries = async () => (await a.query('SHOW BACKENDS')).rows.filter((x) => x.state === 'up' && x.role === 'primary' && x.epoch !== '0').map((x) => `${x.shard}:${x.port}:${x.epoch}`).sort();
    await waitFor('the new proxy to follow the shard records', async () => JSON.stringify(await primaries()) === JSON.stringify(expect), 15000).catch(async (e) => {
      assert.deepEqual(await primaries(), expect); throw e;
    });
    await a.end();
    await onPort(p1.port, 'UPDATE pgbench_accounts SET abalance = abalance WHERE aid = $1', [aid]);
    console.log(`# controller killed mid-failover: writes to s2 resumed ${resumedMs} ms after SIGKILL of its primary (includes the dead controller's session timeout)`);
  });
});
