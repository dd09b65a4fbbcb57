// TPC-B through two and through three pgring processes at once, in each lock mode (all,
// multi_shard, off), over 3 shards with ZooKeeper: the whole ledger holds after every run
// (Σabalance = Σtbalance = Σbbalance = Σhistory.delta, history rows = the transactions pgbench
// reported committed), nothing is left prepared and no lock znode outlives the run.
//
// The pgbench processes of one run differ: simple and prepared protocol, with and without
// --max-tries, through proxies in transaction and in session pooling; over the six runs every
// combination occurs. Every run uses -n: without it each pgbench truncates pgbench_history when
// it starts, and a second pgbench starting while the first already commits deletes those
// committed history rows (the same happens against one PostgreSQL server: docs/ARCHITECTURE.md,
// "Several proxies").
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, ChildProxy, createDatabase, dropDatabase, spawnProxy } from '../helpers/proxy';
import { pgbenchSummary, runTool } from '../helpers/tools';
import { assertLedger, ledger, lockNodes, preparedLeft, unaccountedLocks, waitFor } from '../helpers/tpcb';
import { demoConfig } from '../../src/cli/demo';
import { ClusterInfo } from '../../src/local/cluster';

const SECONDS = Number(process.env.PGRING_LEDGER_SECONDS ?? 4);
type LockMode = 'all' | 'multi_shard' | 'off';
type Pooling = 'transaction' | 'session';
interface Client { pool: Pooling; protocol: 'simple' | 'prepared'; retries: boolean }

// Every (pooling, protocol, retries) combination, handed out in turn to the 15 pgbench processes
// of the six runs.
const COMBOS: Client[] = [];
for (const pool of ['transaction', 'session'] as const) {
  for (const protocol of ['simple', 'prepared'] as const) {
    for (const retries of [true, false]) COMBOS.push({ pool, protocol, retries });
  }
}
let next = 0;
function takeClients(n: number): Client[] {
  return Array.from({ length: n }, () => COMBOS[next++ % COMBOS.length]!);
}

let cluster: ClusterInfo;
let ports: number[];
let db: string;
const running: ChildProxy[] = [];

async function startProxy(zkName: string, locks: LockMode, pool: Pooling): Promise<ChildProxy> {
  const p = await spawnProxy(await baseConfig(cluster, 3, {
    zookeeper: { connect: cluster.zk, cluster: zkName, sessionTimeoutMs: 8000 },
    sharding: (demoConfig(cluster.zk, [], 0, 0) as { sharding: unknown }).sharding,
    locks: { mode: locks },
    pool: { mode: pool, maxSize: 8 },
    logLevel: 'warn',
  }));
  running.push(p);
  return p;
}

function pgbench(port: number, c: Client) {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-n', '-M', c.protocol, '-c', '2', '-j', '1', '-T', String(SECONDS)];
  if (c.retries) args.push('--max-tries=10');
  return runTool('pgbench', [...args, db], { timeoutMs: (SECONDS + 60) * 1000 });
}

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 3).map((p) => p.port);
  db = uniqueName('ledger');
  createDatabase(ports, db);
  const init = await startProxy(uniqueName('ledgerinit'), 'off', 'transaction');
  const r = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(init.port), '-U', 'postgres', '-i', '-s', '2', '-q', db]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  await init.stop();
});

after(async () => {
  for (const p of running) await p.stop('SIGKILL').catch(() => undefined);
  dropDatabase(ports, db);
  await stopOwnCluster();
});

describe('the TPC-B ledger through several proxies', () => {
  for (const locks of ['all', 'multi_shard', 'off'] as const) {
    for (const n of [2, 3]) {
      const clients = takeClients(n);
      const label = clients.map((c) => `${c.pool}/${c.protocol}/${c.retries ? 'retries' : 'no retries'}`).join(' + ');
      it(`locks ${locks}, ${n} proxies (${label})`, async () => {
        const zkName = uniqueName(`ledger_${locks}`);
        const proxies: ChildProxy[] = [];
        for (const c of clients) proxies.push(await startProxy(zkName, locks, c.pool));
        const before = await ledger(ports, db);
        const results = await Promise.all(proxies.map((p, i) => pgbench(p.port, clients[i]!)));
        let committed = 0;
        results.forEach((r, i) => {
          // Without --max-tries a lock or serialization failure ends the client's transaction as
          // failed (pgbench still exits 0 and reports it); anything else is a test failure.
          assert.equal(r.code, 0, `pgbench through proxy ${i + 1}: ${r.stderr.slice(-2000)}${r.stdout}`);
          const s = pgbenchSummary(r.stdout);
          assert.ok(s.processed > 0, r.stdout);
          committed += s.processed;
        });
        assertLedger(before, await ledger(ports, db), committed, `locks ${locks}, ${n} proxies`);
        assert.deepEqual(await preparedLeft(ports, db), []);
        // While the proxies still run (their sessions would take ephemeral nodes along): a proxy
        // keeps idle buckets, but every lock znode must be one a proxy lists in SHOW LOCKS.
        await waitFor('every lock znode to belong to a proxy', async () => (await unaccountedLocks(cluster.zk, zkName, proxies.map((p) => p.port))).length === 0, 10000);
        for (const p of proxies) await p.stop();
        await waitFor('lock znodes to go with the proxies', async () => (await lockNodes(cluster.zk, zkName)).length === 0, 10000);
        const tps = results.map((r) => pgbenchSummary(r.stdout).tps.toFixed(0)).join(' + ');
        console.log(`# locks ${locks}, ${n} proxies: committed ${committed}, tps ${tps}`);
      });
    }
  }
});
