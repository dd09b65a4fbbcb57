// pgbench TPC-B through two pgring processes at once over 3 shards with ZooKeeper locks and
// two-phase commit: balances add up, history matches the processed transactions, nothing is
// left prepared or locked; then the same while one proxy is SIGKILLed mid-run (the survivor
// recovers the in-doubt transactions of the dead one).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, ChildProxy, createDatabase, dropDatabase, spawnProxy } from '../helpers/proxy';
import { pgbenchSummary, runTool } from '../helpers/tools';
import { demoConfig } from '../../src/cli/demo';
import { ClusterInfo } from '../../src/local/cluster';
import { sleep } from '../../src/local/proc';

const totals = () => ledger(ports, db);
const preparedLeft = () => prepared(ports, db);
const leakedLocks = () => unaccountedLocks(cluster.zk, zkName, [survivor.port]);
import { assertLedger, ledger, preparedLeft as prepared, unaccountedLocks, waitFor } from '../helpers/tpcb';

const SECONDS = Number(process.env.PGRING_TXN_BENCH_SECONDS ?? 15);
let cluster: ClusterInfo;
let db: string;
let zkName: string;
let ports: number[];
let survivor: ChildProxy;
let victim: ChildProxy | null = null;

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
    assertLedger(before, await totals(), s1.processed + s2.processed, 'two proxies');
    assert.deepEqual(await preparedLeft(), []);
    await victim.stop();
    victim = null;
    await waitFor('every lock znode to belong to the survivor', async () => (await leakedLocks()).length === 0, 10000);
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
    // The victim's clients saw some of their commits and not others: the survivor's are all there.
    assertLedger(before, after, s1.processed, 'kill run', true);
    const d = after.map((x, i) => x - before[i]!);
    await waitFor('every lock znode to belong to the survivor', async () => (await leakedLocks()).length === 0, 15000);
    console.log(`# kill run: survivor tps ${s1.tps} processed ${s1.processed} failed ${s1.failed}; history rows +${d[4]}`);
  });
});
