// Fault suite, ZooKeeper side: pgbench TPC-B through two proxies (--max-tries) while
// (1) a 3-node ZooKeeper ensemble loses a member (killed and restarted) and then its leader;
// (2) one proxy's ZooKeeper traffic is cut (TCP relay) for longer than the session timeout
//     while it holds locks: its session expires, it fences itself, then comes back.
// (3) the write of a commit decision reaches ZooKeeper but its answer is lost, and the proxy's
//     session expires before it can read the record back: the controller commits the
//     transaction by the record, so the client must not be told that it was rolled back.
// After each: the ledger invariant (sums equal, history rows = committed), no prepared
// transactions, no lock znodes, and both proxies serve reads and writes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { ChildProxy, createDatabase, dropDatabase, RawConfig, spawnProxy } from '../helpers/proxy';
import { runTool } from '../helpers/tools';
import { livePorts } from '../helpers/fault';
import { assertLedger, ledgerTotals } from '../helpers/ledger';
import { abortReasons, assertServing, tpcb, withProxyLogs } from '../helpers/fault';
import { TcpRelay } from '../helpers/relay';
import { demoConfig } from '../../src/cli/demo';
import { ClusterInfo } from '../../src/local/cluster';
import { LocalZooKeeperEnsemble } from '../../src/local/zookeeper';
import { freePort, sleep } from '../../src/local/proc';
import pg from 'pg';
import { Zk } from '../../src/cluster/zk';
import { Layout } from '../../src/cluster/layout';

const LOCKS = (process.env.PGRING_FAULT_LOCKS ?? 'all') as 'all' | 'multi_shard' | 'off';
const SECONDS = 12;
let cluster: ClusterInfo;
let db: string;
let ports: number[];
const proxies: ChildProxy[] = [];
let ensemble: LocalZooKeeperEnsemble | null = null;
const relays: TcpRelay[] = [];

async function proxyConfig(zk: string, zkName: string, runChecks: boolean, sessionTimeoutMs: number): Promise<RawConfig> {
  return {
    listen: { host: '127.0.0.1', port: await freePort() },
    metrics: { enabled: false },
    logLevel: 'warn',
    users: [{ name: 'postgres', auth: 'trust', admin: true }],
    shards: ports.map((port, i) => ({ name: `s${i + 1}`, backends: [{ host: '127.0.0.1', port }] })),
    zookeeper: { connect: zk, cluster: zkName, sessionTimeoutMs },
    sharding: (demoConfig(zk, [], 0, 0) as { sharding: unknown }).sharding,
    locks: { mode: LOCKS, timeoutMs: 3000 },
    pool: { maxSize: 8 },
    health: { runChecks },
  };
}

async function spawn(raw: RawConfig): Promise<ChildProxy> {
  const p = await spawnProxy(raw);
  proxies.push(p);
  return p;
}

/** Two proxies of a new cluster with a 4 s session: p2 connects to ZooKeeper directly and runs
 *  the backends' health checks (its session stays), p1 goes through a relay the test cuts. */
async function relayedPair(prefix: string): Promise<{ zkName: string; relay: TcpRelay; p1: ChildProxy; p2: ChildProxy }> {
  const zkName = uniqueName(prefix);
  const relay = new TcpRelay(cluster.zkPort);
  relays.push(relay);
  await relay.start();
  const p2 = await spawn(await proxyConfig(cluster.zk, zkName, true, 4000));
  const p1 = await spawn(await proxyConfig(relay.address, zkName, false, 4000));
  return { zkName, relay, p1, p2 };
}

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 3).map((p) => p.port);
  db = uniqueName('faultzk');
  createDatabase(ports, db);
});

after(async () => {
  for (const p of proxies) await p.stop('SIGKILL').catch(() => undefined);
  for (const r of relays) await r.stop();
  await ensemble?.stop();
  if (ensemble) fs.rmSync(ensemble.opts.dir, { recursive: true, force: true });
  dropDatabase(ports, db);
  await stopOwnCluster();
});

describe(`fault suite: ZooKeeper (locks.mode ${LOCKS})`, () => {
  it('3-node ensemble: a member killed and restarted, then the leader killed, under TPC-B', async () => {
    ensemble = new LocalZooKeeperEnsemble({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-ens-')) });
    await ensemble.start();
    const zkName = uniqueName('faultens');
    const p1 = await spawn(await proxyConfig(ensemble.connectString, zkName, true, 8000));
    const p2 = await spawn(await proxyConfig(ensemble.connectString, zkName, false, 8000));
    const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(p1.port), '-U', 'postgres', '-i', '-s', '2', '-q', db]);
    assert.equal(init.code, 0, init.stderr + init.stdout);
    const baseline = await ledgerTotals(ports, db);
    const run = tpcb([p1.port, p2.port], db, { seconds: SECONDS });
    const e = ensemble;
    await sleep(2500);
    const leader0 = await e.leader();
    const follower = (leader0 + 1) % 3;
    await e.kill(follower);
    await sleep(2000);
    await e.restart(follower);
    await sleep(1000);
    const leader = await e.leader();
    await e.kill(leader);
    const newLeader = await e.leader();
    const r = await run;
    console.log(`# ensemble: killed follower ${follower + 1} and restarted it, killed leader ${leader + 1} (new leader ${newLeader + 1}); committed ${r.committed}, aborted clients ${r.aborted}`);
    assert.ok(r.committed > 0, abortReasons(r));
    await withProxyLogs([p1, p2], async () => {
      const rep = await assertLedger({ shards: ports, db, zk: e.connectString, cluster: zkName, committed: r.committed, baseline, unknownOutcomes: r.unknownOutcomes, proxyPorts: livePorts([p1, p2]) });
      console.log(`# ensemble ledger: history +${rep.historyRows}, Σdelta ${rep.delta}`);
      await assertServing(p1.port, db);
      await assertServing(p2.port, db);
    });
    await p1.stop(); await p2.stop();
  });

  it('ZooKeeper session expiry while a proxy holds locks (relay cut longer than the session timeout)', async () => {
    const { zkName, relay, p1, p2 } = await relayedPair('faultexp');
    const baseline = await ledgerTotals(ports, db);
    const run = tpcb([p1.port, p2.port], db, { seconds: SECONDS });
    await sleep(3000);
    relay.cut('drop');         // a partition: p1 only learns by its own timeouts
    await sleep(6500);         // > sessionTimeoutMs (4000): the server expires p1's session
    relay.heal();
    const r = await run;
    console.log(`# session expiry: committed ${r.committed}, aborted clients ${r.aborted} (57P03 expected on p1), unknown ${r.unknownOutcomes}\n# ${abortReasons(r, 3).replace(/\n/g, '\n# ')}`);
    assert.ok(r.committed > 0, abortReasons(r));
    await withProxyLogs([p1, p2], async () => {
      const rep = await assertLedger({ shards: ports, db, zk: cluster.zk, cluster: zkName, committed: r.committed, baseline, unknownOutcomes: r.unknownOutcomes, proxyPorts: livePorts([p1, p2]) });
      console.log(`# session expiry ledger: history +${rep.historyRows}, Σdelta ${rep.delta}`);
      await assertServing(p1.port, db);
      await assertServing(p2.port, db);
    });
    // p1 fenced itself, lost its session, and lifted the fence after re-reading the cluster state.
    assert.match(p1.output(), /self-fenced/);
    assert.match(p1.output(), /ZooKeeper session lost/);
    await p1.stop(); await p2.stop();
  });

  it('a decision applied in ZooKeeper whose answer was lost, then the session expired: the controller commits it and the client is never told it was rolled back', async () => {
    const { zkName, relay, p1, p2 } = await relayedPair('faultans');
    const c = new pg.Client({ host: '127.0.0.1', port: p1.port, user: 'postgres', database: db });
    c.on('error', () => undefined);
    await c.connect();
    try {
      // A first distributed commit through p1, so that its decision record exists (the lost
      // write below is then a set of that record).
      const aids = Array.from({ length: 12 }, (_, i) => 101 + i);
      const txn = async () => {
        await c.query('BEGIN');
        for (const aid of aids) await c.query('UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1', [aid]);
      };
      for (let i = 0; ; i++) {
        try { await txn(); await c.query('COMMIT'); break; } catch (e) {
          await c.query('ROLLBACK').catch(() => undefined);
          assert.ok(i < 40, `p1 never took writes: ${(e as Error).message}`);
          await sleep(250);
        }
      }
      const before = await ledgerTotals(ports, db);
      await txn();
      // The decision write goes through to ZooKeeper; the connection is then cut before its
      // answer and new connections are refused until heal: p1's session expires.
      relay.cutWhen({ pattern: /_log-/, after: true, onCut: () => setImmediate(() => relay.cut('reset')) });
      const commit = c.query('COMMIT').then(() => null, (e: Error & { code?: string }) => e);
      for (let i = 0; relay.ruleCuts === 0; i++) { assert.ok(i < 100, 'the decision write never went through the relay'); await sleep(100); }
      // p1's session expires (sessionTimeoutMs 4000) and p2's controller commits the transaction
      // by the record, then deletes the record (its recovery pass runs every 5 s).
      await sleep(1000);
      const zk = await Zk.connect({ connect: cluster.zk });
      try {
        const txns = new Layout(zkName).txns;
        for (let i = 0; (await zk.children(txns).catch(() => [] as string[])).some((n) => n.includes('_log-')); i++) {
          assert.ok(i < 100, 'the controller never removed the decision record of the expired proxy');
          await sleep(200);
        }
      } finally { await zk.close(); }
      relay.heal();
      const err = await commit;
      const after = await ledgerTotals(ports, db);
      const committed = after.abalance - before.abalance;
      console.log(`# lost decision answer: COMMIT ${err ? `failed with ${err.code}: ${err.message}` : 'succeeded'}; Σabalance +${committed}`);
      assert.ok(committed === aids.length || committed === 0, `partly committed: +${committed}`);
      if (committed) {
        // Committed (by recovery or by p1): success, or 08007 "outcome unknown" -- never a rollback.
        assert.ok(!err || err.code === '08007', `the client was told ${err?.code} "${err?.message}" but the transaction committed`);
      } else {
        assert.ok(err, 'the client was told the transaction committed, but nothing changed');
      }
      assert.equal(committed, aids.length, 'the decision write reached ZooKeeper before the cut, so the record commits it');
    } finally {
      await c.end().catch(() => undefined);
      await p1.stop(); await p2.stop();
    }
  });
});
