// pgbench TPC-B through two pgring processes at once over 3 shards with ZooKeeper locks and
// two-phase commit: balances add up, history matches the processed transactions, nothing is
// left prepared or locked; then the same while one proxy is SIGKILLed mid-run (the survivor
// recovers the in-doubt transactions of the dead one).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, ChildProxy, createDatabase, dropDatabase, spawnProxy } from '../helpers/proxy';
import { pgbenchSummary, runTool } from '../helpers/tools';
import { demoConfig } from '../../src/cli/demo';
import { ClusterInfo } from '../../src/local/cluster';
import { sleep } from '../../src/local/proc';
import { Zk } from '../../src/cluster/zk';
import { Layout } from '../../src/cluster/layout';

const SECONDS = Number(process.env.PGRING_TXN_BENCH_SECONDS ?? 15);
let cluster: ClusterInfo;
let db: string;
let zkName: string;
let ports: number[];
let survivor: ChildProxy;
let victim: ChildProxy | null = null;

async function onShard(port: number, sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: db });
  await c.connect();
  try { return await c.query(sql); } finally { await c.end(); }
}

/** Sums over all shards: accounts, tellers, branches, history delta, history rows. */
async function totals(): Promise<number[]> {
  const sql = `SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::int8 AS a, (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::int8 AS t,
    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::int8 AS b, (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8 AS d, (SELECT count(*) FROM pgbench_history)::int8 AS n`;
  const out = [0, 0, 0, 0, 0];
  for (const p of ports) {
    const r = (await onShard(p, sql)).rows[0] as Record<string, string>;
    ['a', 't', 'b', 'd', 'n'].forEach((k, i) => { out[i]! += Number(r[k]); });
  }
  return out;
}

async function preparedLeft(): Promise<string[]> {
  const all = await Promise.all(ports.map(async (p) => (await onShard(p, `SELECT gid FROM pg_prepared_xacts WHERE database = '${db}'`)).rows.map((r) => r.gid as string)));
  return all.flat();
}

async function lockNodes(): Promise<string[]> {
  const zk = await Zk.connect({ connect: cluster.zk });
  try {
    const dir = new Layout(zkName).locks;
    const out: string[] = [];
    for (const b of await zk.children(dir).catch(() => [] as string[])) {
      for (const n of await zk.children(`${dir}/${b}`).catch(() => [] as string[])) out.push(`${b}/${n}`);
    }
    return out;
  } finally { await zk.close(); }
}

async function waitFor(what: string, cond: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

async function proxyConfig(runChecks: boolean) {
  return baseConfig(cluster, 3, {
    zookeeper: { connect: cluster.zk, cluster: zkName, sessionTimeoutMs: 8000 },
    sharding: (demoConfig(cluster.zk, [], 0, 0) as { sharding: unknown }).sharding,
    locks: { mode: 'all', timeoutMs: 3000 },
    pool: { maxSize: 12 },
    health: { runChecks },
    logLevel: 'warn',
  });
}

const bench = (port: number, extra: string[] = []) => runTool('pgbench', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-n', '-c', '8', '-j', '2', '-T', String(SECONDS), '--max-tries=10', ...extra, db], { timeoutMs: (SECONDS + 90) * 1000 });

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 3).map((p) => p.port);
  db = uniqueName('txnbench');
  zkName = uniqueName('txnbench');
  createDatabase(ports, db);
  // The survivor runs the backends' health checks; the victim relies on them (so that killing it
  // does not take the backends' liveness nodes away).
  survivor = await spawnProxy(await proxyConfig(true));
  const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(survivor.port), '-U', 'postgres', '-i', '-s', '2', '-q', db]);
  assert.equal(init.code, 0, init.stderr + init.stdout);
});

after(async () => {
  await victim?.stop('SIGKILL').catch(() => undefined);
  await survivor?.stop().catch(() => undefined);
  dropDatabase(ports, db);
  await stopOwnCluster();
});

describe('pgbench TPC-B through two proxies', () => {
  it(`two proxies x 8 clients, ${SECONDS} s: balances add up, history = processed, nothing left`, async () => {
    victim = await spawnProxy(await proxyConfig(false));
    const before = await totals();
    const [r1, r2] = await Promise.all([bench(survivor.port), bench(victim.port, ['-M', 'prepared'])]);
    assert.equal(r1.code, 0, r1.stderr.slice(-2000) + r1.stdout);
    assert.equal(r2.code, 0, r2.stderr.slice(-2000) + r2.stdout);
    const s1 = pgbenchSummary(r1.stdout), s2 = pgbenchSummary(r2.stdout);
    assert.ok(s1.processed > 0 && s2.processed > 0, r1.stdout + r2.stdout);
    const after = await totals();
    const d = after.map((v, i) => v - before[i]!);
    assert.equal(new Set(d.slice(0, 4)).size, 1, `abalance/tbalance/bbalance/delta changes differ: ${d.join(', ')}`);
    assert.equal(d[4], s1.processed + s2.processed, `history rows ${d[4]} vs processed ${s1.processed} + ${s2.processed}`);
    assert.deepEqual(await preparedLeft(), []);
    await victim.stop();
    victim = null;
    await waitFor('lock nodes to go', async () => (await lockNodes()).length === 0, 10000);
    console.log(`# two proxies: tps ${s1.tps} + ${s2.tps}, processed ${s1.processed} + ${s2.processed}, failed ${s1.failed} + ${s2.failed}`);
  });

  it('one of the two proxies is SIGKILLed mid-run: after recovery the balances add up', async () => {
    victim = await spawnProxy(await proxyConfig(false));
    const before = await totals();
    const v = victim;
    const runs = Promise.all([bench(survivor.port), bench(v.port)]);
    await sleep(Math.min(5000, SECONDS * 400));
    await v.stop('SIGKILL');
    victim = null;
    const [r1, r2] = await runs;
    // The survivor's clients may meet lock timeouts (retried) while the dead proxy's session
    // expires and its in-doubt transactions are recovered.
    const s1 = pgbenchSummary(r1.stdout);
    assert.ok(s1.processed > 0, r1.stderr.slice(-2000) + r1.stdout);
    void r2;
    await waitFor('in-doubt transactions to be recovered', async () => (await preparedLeft()).length === 0, 45000);
    const after = await totals();
    const d = after.map((x, i) => x - before[i]!);
    assert.equal(new Set(d.slice(0, 4)).size, 1, `abalance/tbalance/bbalance/delta changes differ: ${d.join(', ')}`);
    assert.ok(d[4]! >= s1.processed, `history rows ${d[4]} < processed by the survivor ${s1.processed}`);
    await waitFor('lock nodes to go', async () => (await lockNodes()).length === 0, 15000);
    console.log(`# kill run: survivor tps ${s1.tps} processed ${s1.processed} failed ${s1.failed}; history rows +${d[4]}`);
  });
});
