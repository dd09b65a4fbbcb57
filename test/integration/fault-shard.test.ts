// Fault suite, shard side: pgbench TPC-B through two proxies (--max-tries) over two
// PostgreSQL shards of this file's own (restarted here), the proxies reaching shard s1 through
// TCP relays the test controls:
// - s1's server connections cut in the middle of a transaction, and in the middle of two-phase
//   commit (after PREPARE TRANSACTION was sent; before COMMIT PREPARED);
// - shard s2 restarted under load;
// - a proxy SIGKILLed in the middle of two-phase commit (at its COMMIT PREPARED).
// After each: the ledger invariant (sums equal, history rows = committed), no prepared
// transactions, no lock znodes, and the proxies serving reads and writes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { ChildProxy, createDatabase, RawConfig, spawnProxy } from '../helpers/proxy';
import { runTool } from '../helpers/tools';
import { livePorts } from '../helpers/fault';
import { assertLedger, ledgerTotals, LedgerTotals } from '../helpers/ledger';
import { abortReasons, assertServing, tpcb, TpcbRun, withProxyLogs } from '../helpers/fault';
import { pidOfLocalPort, TcpRelay } from '../helpers/relay';
import { demoConfig } from '../../src/cli/demo';
import { ClusterInfo } from '../../src/local/cluster';
import { LocalPostgres } from '../../src/local/postgres';
import { chownPostgres, freePort, freePorts, sleep } from '../../src/local/proc';

const LOCKS = (process.env.PGRING_FAULT_LOCKS ?? 'all') as 'all' | 'multi_shard' | 'off';
const SECONDS = 8;
let cluster: ClusterInfo;
let db: string;
let zkName: string;
let pgs: LocalPostgres[] = [];
let pgDir = '';
let ports: number[];
const relays: TcpRelay[] = [];
let p1: ChildProxy;
let p2: ChildProxy;
let p2config: RawConfig;

async function proxyConfig(s1Port: number, runChecks: boolean): Promise<RawConfig> {
  return {
    listen: { host: '127.0.0.1', port: await freePort() },
    metrics: { enabled: false },
    logLevel: 'warn',
    users: [{ name: 'postgres', auth: 'trust', admin: true }],
    shards: [
      { name: 's1', backends: [{ host: '127.0.0.1', port: s1Port }] },
      { name: 's2', backends: [{ host: '127.0.0.1', port: ports[1]! }] },
    ],
    zookeeper: { connect: cluster.zk, cluster: zkName, sessionTimeoutMs: 4000 },
    sharding: (demoConfig(cluster.zk, [], 0, 0) as { sharding: unknown }).sharding,
    locks: { mode: LOCKS, timeoutMs: 3000 },
    pool: { maxSize: 8 },
    health: { runChecks },
  };
}

async function relayTo(port: number): Promise<TcpRelay> {
  const r = new TcpRelay(port);
  relays.push(r);
  await r.start();
  return r;
}

/** Runs TPC-B through both proxies while `fault` runs; then checks the ledger and that the proxies serve. */
async function underLoad(name: string, fault: () => Promise<void>): Promise<TpcbRun> {
  const baseline: LedgerTotals = await ledgerTotals(ports, db);
  const run = tpcb([p1.port, p2.port], db, { seconds: SECONDS });
  await sleep(1500);
  await fault();
  const r = await run;
  console.log(`# ${name}: committed ${r.committed}, aborted clients ${r.aborted}, unknown outcome ${r.unknownOutcomes}${r.aborted ? `\n# ${abortReasons(r, 3).replace(/\n/g, '\n# ')}` : ''}`);
  assert.ok(r.committed > 0, abortReasons(r));
  await withProxyLogs([p1, p2], async () => {
    const rep = await assertLedger({ shards: ports, db, zk: cluster.zk, cluster: zkName, committed: r.committed, baseline, unknownOutcomes: r.unknownOutcomes, proxyPorts: livePorts([p1, p2]), settleMs: 45000 });
    console.log(`# ${name} ledger: history +${rep.historyRows}, Σdelta ${rep.delta}`);
    await assertServing(p1.port, db);
    await assertServing(p2.port, db);
  });
  return r;
}

before(async () => {
  cluster = await testCluster();
  const dir = pgDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-faultpg-'));
  chownPostgres(dir);
  ports = await freePorts(2);
  pgs = ports.map((port, i) => new LocalPostgres({ dir: path.join(dir, `pg${i + 1}`), port }));
  for (const p of pgs) p.start();
  db = uniqueName('faultpg');
  zkName = uniqueName('faultpg');
  createDatabase(ports, db);
  // Both proxies reach s1 through the relay (backends are shared through ZooKeeper, so one
  // address per backend); a rule that must hit one proxy only checks the connection's owner.
  const r1 = await relayTo(ports[0]!);
  p1 = await spawnProxy(await proxyConfig(r1.port, true));
  p2config = await proxyConfig(r1.port, false);
  p2 = await spawnProxy(p2config);
  const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(p1.port), '-U', 'postgres', '-i', '-s', '2', '-q', db]);
  assert.equal(init.code, 0, init.stderr + init.stdout);
});

after(async () => {
  await p1?.stop('SIGKILL').catch(() => undefined);
  await p2?.stop('SIGKILL').catch(() => undefined);
  for (const r of relays) await r.stop();
  for (const p of pgs) p.stop('immediate');
  if (pgDir) fs.rmSync(pgDir, { recursive: true, force: true });
  await stopOwnCluster();
});

describe(`fault suite: shards (locks.mode ${LOCKS})`, () => {
  it("shard s1's server connections cut in the middle of a transaction", async () => {
    await underLoad('cut mid-transaction', async () => {
      relays[0]!.cutWhen({ pattern: /UPDATE pgbench_tellers/, after: false, times: 2 });
      relays[0]!.cutWhen({ pattern: /UPDATE pgbench_branches/, after: true, times: 1 });
    });
    assert.ok(relays[0]!.ruleCuts > 0, 'the relay cut connections');
    relays[0]!.clearRules();
  });

  it("shard s1's server connections cut in the middle of two-phase commit", async () => {
    const before = relays[0]!.ruleCuts;
    await underLoad('cut mid-2PC', async () => {
      relays[0]!.cutWhen({ pattern: /PREPARE TRANSACTION/, after: true, times: 1 });    // prepared, answer lost
      relays[0]!.cutWhen({ pattern: /COMMIT PREPARED/, after: false, times: 1 });       // decided, not yet committed on s1
    });
    assert.ok(relays[0]!.ruleCuts > before, 'the relay cut connections');
    relays[0]!.clearRules();
  });

  it('shard s2 restarted under load', async () => {
    await underLoad('shard restart', async () => {
      pgs[1]!.stop('fast');
      await sleep(500);
      pgs[1]!.start();
    });
  });

  it('a proxy SIGKILLed in the middle of two-phase commit', async () => {
    let killed = false;
    await underLoad('proxy SIGKILL mid-2PC', async () => {
      // p2 runs no health checks: killing it leaves the backends' liveness nodes in place.
      const victim = p2.child.pid;
      relays[0]!.cutWhen({
        pattern: /COMMIT PREPARED/, after: false, times: 1,
        accept: (clientPort) => pidOfLocalPort(clientPort) === victim,
        onCut: () => { killed = true; p2.child.kill('SIGKILL'); },
      });
      const deadline = Date.now() + (SECONDS - 2) * 1000;
      while (!killed && Date.now() < deadline) await sleep(50);
      // A new proxy in its place (same config) for the serving check.
      await sleep(500);
      p2 = await spawnProxy(p2config);
    });
    assert.ok(killed, 'the proxy was killed at COMMIT PREPARED');
  });
});
