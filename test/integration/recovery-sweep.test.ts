// A proxy's own sweep (src/txn/recovery.ts, scope 'own') against a real ZooKeeper and real
// PostgreSQL servers. A proxy that is not the controller sweeps its leftover prepared
// transactions only when its transaction manager asks (a ROLLBACK PREPARED that failed, a link
// lost at PREPARE). The request used to be taken at the start of the pass even when a shard
// could not be listed: a transaction prepared on a shard that was restarting stayed prepared
// until the proxy itself restarted (the fault suite's "shard s2 restarted under load" saw one
// left behind). Now a pass that could not finish asks for another one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { testCluster, uniqueName } from '../helpers/env';
import { ZkSession } from '../../src/cluster/session';
import { Layout } from '../../src/cluster/layout';
import { makeGid } from '../../src/cluster/txns';
import { Recovery, RecoveryHost } from '../../src/txn/recovery';
import { Topology } from '../../src/backend/topology';
import { parseConfig } from '../../src/config/load';
import { ClusterInfo } from '../../src/local/cluster';
import { freePort } from '../../src/local/proc';

const quiet = { warn: () => undefined, info: () => undefined, debug: () => undefined, error: () => undefined } as never;

describe("a proxy's own sweep of its leftover prepared transactions", () => {
  let cluster: ClusterInfo;
  let session: ZkSession;
  let layout: Layout;
  const db = uniqueName('sweep');
  const PROXY = 'p-sweep';

  const query = async (port: number, database: string, sql: string) => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database });
    await c.connect();
    try { return await c.query(sql); } finally { await c.end(); }
  };
  const preparedGids = async (port: number) =>
    (await query(port, 'postgres', 'SELECT gid FROM pg_prepared_xacts')).rows.map((r) => r.gid as string).filter((g) => g.startsWith(makeGid(layout.cluster, PROXY, 'x', 's1').split('_x_')[0]!));
  const recoveryOver = (shard2Port: number, host: RecoveryHost) => {
    const config = parseConfig({
      listen: { host: '127.0.0.1', port: 1 },
      users: [{ name: 'postgres', auth: 'trust', admin: true }],
      shards: [
        { name: 's1', backends: [{ host: '127.0.0.1', port: cluster.pg[0]!.port }] },
        { name: 's2', backends: [{ host: '127.0.0.1', port: shard2Port }] },
      ],
    });
    return new Recovery(session, layout, PROXY, config, new Topology(config.shards, config), quiet, host);
  };
  const host = (): RecoveryHost & { needsSweep: boolean } => ({
    inflight: new Set<string>(), needsSweep: true,
    sweepDone() { this.needsSweep = false; },
    sweepAgain() { this.needsSweep = true; },
  });

  before(async () => {
    cluster = await testCluster();
    layout = new Layout(uniqueName('sweep'));
    session = new ZkSession({ connect: cluster.zk, sessionTimeoutMs: 8000, logger: quiet });
    await session.start(15000);
    await query(cluster.pg[0]!.port, 'postgres', `CREATE DATABASE ${db}`);
    await query(cluster.pg[0]!.port, db, 'CREATE TABLE t (v int)');
  });
  after(async () => {
    for (const g of await preparedGids(cluster.pg[0]!.port).catch(() => [])) await query(cluster.pg[0]!.port, db, `ROLLBACK PREPARED '${g}'`).catch(() => undefined);
    await session?.close();
  });

  it('rolls back what it can reach and asks for another pass while a shard cannot be listed', async () => {
    // This proxy's transaction prepared on s1 without a decision (its commit failed before it).
    const gid = makeGid(layout.cluster, PROXY, 'a1', 's1');
    const c = new pg.Client({ host: '127.0.0.1', port: cluster.pg[0]!.port, user: 'postgres', database: db });
    await c.connect();
    await c.query('BEGIN');
    await c.query('INSERT INTO t VALUES (1)');
    await c.query(`PREPARE TRANSACTION '${gid}'`);
    await c.end();
    assert.deepEqual(await preparedGids(cluster.pg[0]!.port), [gid]);

    // s2 is down (nothing listens on its port): its part cannot be listed.
    const h = host();
    const down = recoveryOver(await freePort(), h);
    await down.runPass('own');
    assert.deepEqual(await preparedGids(cluster.pg[0]!.port), [], 'the transaction on the reachable shard is rolled back');
    assert.equal(h.needsSweep, true, 'a pass that could not list every shard asks for another one');

    // With every shard reachable the pass completes and the request is taken.
    const up = recoveryOver(cluster.pg[1]!.port, h);
    await up.runPass('own');
    assert.equal(h.needsSweep, false, 'a complete pass takes the request');
    const rows = (await query(cluster.pg[0]!.port, db, 'SELECT count(*)::int AS n FROM t')).rows[0].n as number;
    assert.equal(rows, 0, 'nothing of the rolled-back transaction is left');
  });
});
