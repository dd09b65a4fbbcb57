// Fail closed: a proxy cut off from ZooKeeper (through a TCP relay the test cuts) stops
// starting writes and refuses the COMMIT of transactions that wrote (57P03 naming ZooKeeper,
// rolled back on the shards) in every lock mode, keeps serving reads, and writes again once
// ZooKeeper is back and it has re-read the cluster state.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { psqlAt, stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { TcpRelay } from '../helpers/relay';
import { ClusterInfo } from '../../src/local/cluster';
import { freePort, sleep } from '../../src/local/proc';
import { parseConfig } from '../../src/config/load';

let cluster: ClusterInfo;
let db: string;
let ports: number[];

/** Runs `sql` until it fails; returns the error and how many times it succeeded before (throws after ms). */
async function untilError(c: pg.Client, sql: string, ms: number): Promise<{ err: pg.DatabaseError; ok: number }> {
  const deadline = Date.now() + ms;
  for (let ok = 0; ; ok++) {
    try { await c.query(sql); } catch (e) { return { err: e as pg.DatabaseError, ok }; }
    if (Date.now() > deadline) throw new Error(`"${sql}" still succeeds after ${ms} ms`);
    await sleep(100);
  }
}

/** Runs `sql` until it succeeds (throws the last error after ms). */
async function untilOk(c: pg.Client, sql: string, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  let fails = 0;
  for (;;) {
    try { await c.query(sql); return fails; } catch (e) {
      fails++;
      if (Date.now() > deadline) throw e;
      await sleep(100);
    }
  }
}

function assertFenced(e: pg.DatabaseError | unknown, what: string): void {
  const err = e as pg.DatabaseError;
  assert.equal(err.code, '57P03', `${what}: ${err.code} ${err.message}`);
  assert.match(err.message, /ZooKeeper/, what);
}

/** The value of row `id` read on the shards directly (not through pgring). */
function shardValue(id: number): number {
  for (const p of ports) {
    const v = psqlAt(p, `SELECT v FROM t WHERE id = ${id}`, db).trim();
    if (v) return Number(v);
  }
  throw new Error(`row ${id} not found on any shard`);
}

function shardOf(id: number): number {
  return ports.findIndex((p) => psqlAt(p, `SELECT 1 FROM t WHERE id = ${id}`, db).trim() === '1');
}

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 2).map((p) => p.port);
  db = uniqueName('failclosed');
  createDatabase(ports, db);
  for (const p of ports) psqlAt(p, 'CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)', db);
});

after(async () => {
  dropDatabase(ports, db);
  await stopOwnCluster();
});

describe('fail closed when ZooKeeper is unreachable', () => {
  it('config: zookeeper.selfFenceMs must be shorter than the session timeout', () => {
    assert.throws(() => parseConfig({ users: [{ name: 'u', auth: 'trust' }], zookeeper: { connect: 'x:1', sessionTimeoutMs: 4000, selfFenceMs: 4000 } }), /zookeeper\.selfFenceMs/);
    assert.throws(() => parseConfig({ users: [{ name: 'u', auth: 'trust' }], zookeeper: { connect: 'x:1', selfFenceMs: 'soon' } }), /selfFenceMs/);
  });

  for (const mode of ['all', 'multi_shard', 'off'] as const) {
    it(`locks.mode ${mode}: writes and COMMIT of writing transactions refused with 57P03, reads served, writes resume after reconnect`, async () => {
      const relay = new TcpRelay(cluster.zkPort);
      await relay.start();
      let proxy: RunningProxy | null = null;
      const clients: pg.Client[] = [];
      const mport = await freePort();
      const fenceGauge = async () => Number(/^pgring_write_fence_closed (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text())?.[1]);
      try {
        proxy = await startProxy(await baseConfig(cluster, 2, {
          metrics: { enabled: true, host: '127.0.0.1', port: mport },
          zookeeper: { connect: relay.address, cluster: uniqueName('fc'), sessionTimeoutMs: 4000, selfFenceMs: 1000 },
          sharding: { tables: [{ name: 't', column: 'id', type: 'integer' }] },
          locks: { mode, timeoutMs: 20000 },
        }));
        const open = async () => { const c = client(proxy!.port, db); c.on('error', () => undefined); await c.connect(); clients.push(c); return c; };
        const [auto, one, multi, reader] = [await open(), await open(), await open(), await open()];
        const base = mode === 'all' ? 0 : mode === 'multi_shard' ? 100 : 200;
        await auto.query(`INSERT INTO t VALUES ${Array.from({ length: 20 }, (_, i) => `(${base + 1 + i}, 0)`).join(', ')}`);
        // Two keys on different shards: `multi` writes both (two-phase commit).
        // Keys: k1 (`one`), k3 on k1's shard and k2 on the other (`multi`), w1/w2 (autocommit writes).
        const k1 = base + 1, w1 = base + 19, w2 = base + 20;
        const cands = Array.from({ length: 17 }, (_, i) => base + 2 + i);
        // Where each key is, from the proxy's ring (the INSERT placed the rows by it): psql run
        // synchronously here would block this process (the proxy, its ZooKeeper session, the relay);
        // on a loaded machine that fenced the proxy before the test cut anything (session 21's full run).
        const shard = (k: number): number => proxy!.proxy.ctx.shards.shardForKey('integer', String(k));
        const s1 = shard(k1);
        assert.equal(shardOf(k1), s1, 'the ring places rows where the proxy put them');
        const k2 = cands.find((k) => shard(k) !== s1)!;
        const k3 = cands.find((k) => shard(k) === s1)!;
        assert.ok(k2 && k3, 'keys on two shards');
        await one.query('BEGIN');
        await one.query(`UPDATE t SET v = v + 1 WHERE id = ${k1}`);
        await multi.query('BEGIN');
        await multi.query(`UPDATE t SET v = v + 10 WHERE id IN (${k3}, ${k2})`);

        relay.cut('reset');
        // Autocommit writes fail once the proxy fenced itself.
        const { err: e1, ok: okBefore } = await untilError(auto, `UPDATE t SET v = v + 1 WHERE id = ${w1}`, 15000);
        assertFenced(e1, 'autocommit write while fenced');
        assertFenced(await auto.query(`INSERT INTO t VALUES (${base + 50}, 0)`).catch((e) => e), 'INSERT while fenced');
        // Reads keep working: single-shard, scatter, and a read-only transaction.
        assert.equal((await reader.query(`SELECT v FROM t WHERE id = ${k2}`)).rowCount, 1);
        assert.equal(Number((await reader.query(`SELECT count(*) AS n FROM t WHERE id > ${base} AND id <= ${base + 20}`)).rows[0].n), 20);
        await reader.query('BEGIN');
        await reader.query(`SELECT v FROM t WHERE id = ${k1}`);
        await reader.query('COMMIT');
        await reader.query('BEGIN');   // a read-only transaction over both shards
        assert.equal(Number((await reader.query(`SELECT count(*) AS n FROM t WHERE id > ${base} AND id <= ${base + 20}`)).rows[0].n), 20);
        assert.equal((await reader.query(`SELECT v FROM t WHERE id = ${k2}`)).rowCount, 1);
        await reader.query('COMMIT');
        // Transactions that wrote before the fence: COMMIT refused and rolled back.
        assertFenced(await one.query('COMMIT').then(() => null, (e) => e), 'single-shard COMMIT while fenced');
        assertFenced(await multi.query('COMMIT').then(() => null, (e) => e), 'multi-shard COMMIT while fenced');
        assert.equal(shardValue(k1), 0, 'single-shard transaction rolled back');
        assert.equal(shardValue(k3), 0, 'multi-shard transaction rolled back (first key)');
        assert.equal(shardValue(k2), 0, 'multi-shard transaction rolled back (second key)');
        // A new transaction cannot start writing either.
        await one.query('BEGIN');
        assertFenced(await one.query(`UPDATE t SET v = 5 WHERE id = ${k1}`).catch((e) => e), 'write in a transaction block while fenced');
        await one.query('ROLLBACK');
        assert.equal(proxy.proxy.coordinator!.fence.closed, true);
        assert.equal(await fenceGauge(), 1, 'metrics: pgring_write_fence_closed');

        relay.heal();
        await untilOk(auto, `UPDATE t SET v = v + 1 WHERE id = ${w2}`, 30000);
        assert.equal(proxy.proxy.coordinator!.fence.closed, false);
        assert.equal(await fenceGauge(), 0, 'metrics: pgring_write_fence_closed');
        assert.equal(shardValue(w2), 1, 'the write after reconnect committed once');
        assert.equal(shardValue(w1), okBefore, 'no write got through while fenced');
        // Transactions and two-phase commit work again.
        await multi.query('BEGIN');
        await multi.query(`UPDATE t SET v = v + 10 WHERE id IN (${k3}, ${k2})`);
        await multi.query('COMMIT');
        assert.equal(shardValue(k2), 10);
      } finally {
        for (const c of clients) await c.end().catch(() => undefined);
        await proxy?.stop();
        await relay.stop();
      }
    });
  }

  it('a transaction that wrote before a fence that has already lifted is refused at COMMIT', async () => {
    const relay = new TcpRelay(cluster.zkPort);
    await relay.start();
    let proxy: RunningProxy | null = null;
    try {
      proxy = await startProxy(await baseConfig(cluster, 2, {
        zookeeper: { connect: relay.address, cluster: uniqueName('fc'), sessionTimeoutMs: 4000, selfFenceMs: 500 },
        sharding: { tables: [{ name: 't', column: 'id', type: 'integer' }] },
        locks: { mode: 'off' },
      }));
      const cl = client(proxy.port, db);
      cl.on('error', () => undefined);
      await cl.connect();
      try {
        await cl.query('INSERT INTO t VALUES (301, 0)');
        await cl.query('BEGIN');
        await cl.query('UPDATE t SET v = v + 1 WHERE id = 301');
        const fence = proxy.proxy.coordinator!.fence;
        relay.cut('reset');
        const t0 = Date.now();
        while (!fence.closed && Date.now() - t0 < 10000) await sleep(50);
        assert.equal(fence.closed, true, 'fenced');
        relay.heal();
        while (fence.closed && Date.now() - t0 < 30000) await sleep(50);
        assert.equal(fence.closed, false, 'unfenced');
        assertFenced(await cl.query('COMMIT').then(() => null, (e) => e), 'COMMIT after a fence came and went');
        assert.equal(shardValue(301), 0);
      } finally { await cl.end().catch(() => undefined); }
    } finally {
      await proxy?.stop();
      await relay.stop();
    }
  });
});
