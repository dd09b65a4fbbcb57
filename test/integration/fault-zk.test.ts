// Fault suite, ZooKeeper side: pgbench TPC-B through two proxies (--max-tries) while
// (1) a 3-node ZooKeeper ensemble loses a member (killed and restarted) and then its leader;
// (2) one proxy's ZooKeeper traffic is cut (TCP relay) for longer than the session timeout
//     while it holds locks: its session expires, it fences itself, then comes back.
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
    const zkName = uniqueName('faultexp');
    const relay = new TcpRelay(cluster.zkPort);
    relays.push(relay);
    await relay.start();
    // p2 runs the backends' health checks (its session stays), p1 goes through the relay.
    const p2 = await spawn(await proxyConfig(cluster.zk, zkName, true, 4000));
    const p1 = await spawn(await proxyConfig(relay.address, zkName, false, 4000));
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
});
