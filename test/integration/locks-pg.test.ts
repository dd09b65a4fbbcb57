// ZooKeeper locks that wait like PostgreSQL's: through two proxies over 3 shards, a lock wait
// lasts until the holder ends (longer than the old 5 s), the client's own lock_timeout ends it
// with 55P03, a CancelRequest with 57014, and distributed deadlocks — through ZooKeeper waits
// alone and through a ZooKeeper wait plus a row-lock wait — end with 40P01 for one transaction
// while the other commits. DDL locks only what it names: two sessions create different tables,
// one inside an open transaction, without waiting for each other.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import pg from 'pg';
import { psqlAt, stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { ClusterInfo } from '../../src/local/cluster';
import { sleep } from '../../src/local/proc';
import { lockBucket } from '../../src/txn/manager';

let cluster: ClusterInfo;
let ports: number[];
let db: string;
let A: RunningProxy;
let B: RunningProxy;
const clients: pg.Client[] = [];

async function open(p: RunningProxy): Promise<pg.Client> {
  const c = client(p.port, db);
  c.on('error', () => undefined);
  await c.connect();
  clients.push(c);
  return c;
}

/** Two keys on different shards with different lock buckets, fresh for each test. */
let nextKey = 1;
function twoKeys(): [number, number] {
  const shardOf = (k: number) => A.proxy.ctx.shards.shardForKey('integer', String(k));
  const k1 = nextKey++;
  let k2 = nextKey++;
  while (shardOf(k2) === shardOf(k1) || lockBucket('integer', String(k2), 'k', 1024) === lockBucket('integer', String(k1), 'k', 1024)) k2 = nextKey++;
  return [k1, k2];
}

async function seed(...keys: number[]): Promise<void> {
  const c = await open(A);
  for (const k of keys) await c.query('INSERT INTO kv VALUES ($1, 0)', [k]);
}

function sqlstate(p: Promise<unknown>): Promise<{ code: string | null; message: string; ms: number }> {
  const t0 = Date.now();
  return p.then(() => ({ code: null, message: '', ms: Date.now() - t0 }), (e: Error & { code?: string }) => ({ code: e.code ?? 'none', message: e.message, ms: Date.now() - t0 }));
}

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 3).map((p) => p.port);
  db = uniqueName('lockspg');
  createDatabase(ports, db);
  for (const p of ports) psqlAt(p, 'CREATE TABLE kv (k int PRIMARY KEY, v int NOT NULL)', db);
  const zkName = uniqueName('lockspg');
  const cfg = async () => baseConfig(cluster, 3, {
    zookeeper: { connect: cluster.zk, cluster: zkName, sessionTimeoutMs: 6000 },
    sharding: { tables: [{ name: 'kv', column: 'k', type: 'integer' }] },
    // The safety net far away: every wait below ends for a PostgreSQL reason or not at all.
    locks: { mode: 'all', timeoutMs: 120000 },
    pool: { maxSize: 8 },
  });
  A = await startProxy(await cfg());
  B = await startProxy(await cfg());
});

after(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  await A?.stop().catch(() => undefined);
  await B?.stop().catch(() => undefined);
  dropDatabase(ports, db);
  await stopOwnCluster();
});

describe('lock waits behave like PostgreSQL lock waits', () => {
  it('a writer behind a long transaction waits (longer than 5 s) and succeeds when it commits', async () => {
    const [k] = twoKeys();
    await seed(k);
    const c1 = await open(A), c2 = await open(B);
    await c1.query('BEGIN');
    await c1.query('UPDATE kv SET v = v + 1 WHERE k = $1', [k]);
    const waiting = sqlstate(c2.query('UPDATE kv SET v = v + 10 WHERE k = $1', [k]));
    await sleep(6000);
    await c1.query('COMMIT');
    const r = await waiting;
    assert.equal(r.code, null, r.message);
    assert.equal((await c1.query('SELECT v FROM kv WHERE k = $1', [k])).rows[0].v, 11);
  });

  it("the client's lock_timeout ends the wait with 55P03", async () => {
    const [k] = twoKeys();
    await seed(k);
    const c1 = await open(A), c2 = await open(B);
    await c1.query('BEGIN');
    await c1.query('UPDATE kv SET v = 1 WHERE k = $1', [k]);
    await c2.query("SET lock_timeout = '100ms'");
    const r = await sqlstate(c2.query('UPDATE kv SET v = 2 WHERE k = $1', [k]));
    assert.equal(r.code, '55P03', r.message);
    assert.match(r.message, /canceling statement due to lock timeout/);
    await c2.query('RESET lock_timeout');
    await c1.query('COMMIT');
  });

  it("the client's statement_timeout ends the wait with 57014", async () => {
    const [k] = twoKeys();
    await seed(k);
    const c1 = await open(A), c2 = await open(B);
    await c1.query('BEGIN');
    await c1.query('UPDATE kv SET v = 1 WHERE k = $1', [k]);
    await c2.query("SET statement_timeout = '300ms'");
    const r = await sqlstate(c2.query('UPDATE kv SET v = 2 WHERE k = $1', [k]));
    assert.equal(r.code, '57014', r.message);
    assert.match(r.message, /statement timeout/);
    await c2.query('RESET statement_timeout');
    await c1.query('COMMIT');
  });

  it('a CancelRequest ends a lock wait with 57014', async () => {
    const [k] = twoKeys();
    await seed(k);
    const c1 = await open(A), c2 = await open(B);
    await c1.query('BEGIN');
    await c1.query('UPDATE kv SET v = 1 WHERE k = $1', [k]);
    const waiting = sqlstate(c2.query('UPDATE kv SET v = 2 WHERE k = $1', [k]));
    await sleep(300);
    const { processID, secretKey } = c2 as unknown as { processID: number; secretKey: number };
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(B.port, '127.0.0.1', () => {
        const pkt = Buffer.alloc(16);
        pkt.writeInt32BE(16, 0); pkt.writeInt32BE(80877102, 4); pkt.writeInt32BE(processID, 8); pkt.writeInt32BE(secretKey, 12);
        s.end(pkt);
      });
      s.on('close', () => resolve());
      s.on('error', reject);
    });
    const r = await waiting;
    assert.equal(r.code, '57014', r.message);
    assert.match(r.message, /canceling statement due to user request/);
    await c1.query('COMMIT');
  });
});

describe('distributed deadlocks', () => {
  it('two transactions on two shards taking keys in opposite order through two proxies: one gets 40P01, the other commits', async () => {
    const [k1, k2] = twoKeys();
    await seed(k1, k2);
    const c1 = await open(A), c2 = await open(B);
    await c1.query('BEGIN');
    await c1.query('UPDATE kv SET v = v + 1 WHERE k = $1', [k1]);
    await sleep(50);   // c1's transaction is the older one
    await c2.query('BEGIN');
    await c2.query('UPDATE kv SET v = v + 1 WHERE k = $1', [k2]);
    const w1 = sqlstate(c1.query('UPDATE kv SET v = v + 1 WHERE k = $1', [k2]));
    await sleep(100);
    const w2 = sqlstate(c2.query('UPDATE kv SET v = v + 1 WHERE k = $1', [k1]));
    const r2 = await w2;
    assert.equal(r2.code, '40P01', r2.message);
    assert.equal(r2.message, 'deadlock detected');
    await c2.query('ROLLBACK');
    const r1 = await w1;
    assert.equal(r1.code, null, r1.message);
    await c1.query('COMMIT');
    const rows = (await c1.query('SELECT k, v FROM kv WHERE k = ANY($1) ORDER BY k', [[k1, k2]])).rows;
    assert.deepEqual(rows.map((r) => r.v), [1, 1]);
    console.log(`# ZooKeeper-only cycle ended after ${r2.ms} ms`);
  });

  it('a cycle through a ZooKeeper wait and a row-lock wait is found: the ZooKeeper waiter gets 40P01', async () => {
    const [k1, k2] = twoKeys();
    await seed(k1, k2);
    const c1 = await open(A), c2 = await open(B);
    // c2 locks k2's row without writing (no bucket), c1 holds k1's bucket and blocks on that row,
    // then c2 wants k1's bucket: c1 -> c2 (row lock, PostgreSQL) -> c1 (bucket, ZooKeeper).
    await c2.query('BEGIN');
    await c2.query('SELECT v FROM kv WHERE k = $1 FOR UPDATE', [k2]);
    await c1.query('BEGIN');
    await c1.query('UPDATE kv SET v = v + 1 WHERE k = $1', [k1]);
    const w1 = sqlstate(c1.query('UPDATE kv SET v = v + 1 WHERE k = $1', [k2]));
    await sleep(200);
    const r2 = await sqlstate(c2.query('UPDATE kv SET v = v + 1 WHERE k = $1', [k1]));
    assert.equal(r2.code, '40P01', r2.message);
    await c2.query('ROLLBACK');
    const r1 = await w1;
    assert.equal(r1.code, null, r1.message);
    await c1.query('COMMIT');
    console.log(`# mixed cycle ended after ${r2.ms} ms`);
  });
});

describe('lock scope', () => {
  it('two sessions create different tables, one inside an open transaction: both succeed', async () => {
    const c1 = await open(A), c2 = await open(B);
    await c1.query('BEGIN');
    await c1.query('CREATE TABLE scope_a (x int)');
    const r = await sqlstate(c2.query('CREATE TABLE scope_b (x int)'));
    assert.equal(r.code, null, r.message);
    await c1.query('INSERT INTO scope_a VALUES (1)');
    await c1.query('COMMIT');
    await c2.query('DROP TABLE scope_a, scope_b');
  });

  it('temporary tables take no ZooKeeper lock', async () => {
    // (On one shard: a transaction that used temporary objects cannot take part in a two-phase commit.)
    const c1 = await open(A);
    await c1.query('/* pgring: shard=s1 */ CREATE TEMP TABLE scope_tmp (x int)');
    await c1.query('BEGIN');
    await c1.query('/* pgring: shard=s1 */ INSERT INTO scope_tmp VALUES (1)');
    await c1.query('/* pgring: shard=s1 */ UPDATE scope_tmp SET x = 2');
    // SHOW LOCKS' rows: no bucket has an owner while only temporary objects were written.
    assert.deepEqual(A.proxy.txn!.snapshot().filter((l) => l.holder !== null), []);
    await c1.query('COMMIT');
    // a permanent table of another name still takes its lock
    await c1.query('BEGIN');
    await c1.query('/* pgring: shard=s1 */ CREATE TABLE scope_perm (x int)');
    assert.equal(A.proxy.txn!.snapshot().filter((l) => l.holder !== null).length, 1);
    await c1.query('ROLLBACK');
  });
});
