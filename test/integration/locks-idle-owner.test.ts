// An idle lock owner is bypassed (locks.idleOwnerMs; src/cluster/lock-peers.ts idleFor), with
// a real ZooKeeper, real PostgreSQL and two proxies. Every bucket has an owner proxy that grants
// it to the others over a link; when the owner's own clients write nothing (a standby proxy),
// the proxy doing the work used to pay a link round trip for every lock of the owner's half of
// the buckets (measured in the benchmark: an idle second proxy of the same cluster cut TPC-B of
// the busy one to 0.73× of locks off). Now the busy proxy queues in ZooKeeper itself and keeps
// those buckets; when the owner's clients write again it forwards again. Both ways, concurrent
// increments through both proxies add up.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { psqlAt, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { ClusterInfo } from '../../src/local/cluster';
import { sleep } from '../../src/local/proc';

const IDLE_MS = 1000;
let cluster: ClusterInfo;
let ports: number[];
let db: string;
let zkName: string;
let A: RunningProxy;       // does the work
let B: RunningProxy;       // owns half the buckets
const clients: pg.Client[] = [];

async function open(port: number): Promise<pg.Client> {
  const c = client(port, db);
  await c.connect();
  clients.push(c);
  return c;
}

const statsOf = (p: RunningProxy) => p.proxy.txn!.lockService!.stats as Record<string, number>;

/** Increments keys 1..40 once each, one transaction per key (every bucket of both owners). */
async function incrementAll(c: pg.Client): Promise<void> {
  for (let k = 1; k <= 40; k++) await c.query('UPDATE kv SET v = v + 1 WHERE k = $1', [k]);
}

async function total(): Promise<number> {
  let s = 0;
  for (const p of ports) s += Number(psqlAt(p, 'SELECT coalesce(sum(v), 0) FROM kv', db));
  return s;
}

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 2).map((p) => p.port);
  db = uniqueName('idleowner');
  zkName = uniqueName('idleowner');
  createDatabase(ports, db);
  for (const p of ports) psqlAt(p, 'CREATE TABLE kv (k int PRIMARY KEY, v int NOT NULL)', db);
  const config = async () => baseConfig(cluster, 2, {
    zookeeper: { connect: cluster.zk, cluster: zkName, sessionTimeoutMs: 8000 },
    sharding: { tables: [{ name: 'kv', column: 'k', type: 'integer' }] },
    locks: { mode: 'all', buckets: 64, timeoutMs: 30000, idleOwnerMs: IDLE_MS },
    pool: { maxSize: 4 },
  });
  A = await startProxy(await config());
  B = await startProxy(await config());
  const peers = A.proxy.coordinator!.lockPeers!;
  for (let i = 0; i < 200 && peers.members().length < 2; i++) await sleep(50);
  assert.equal(peers.members().length, 2, 'A sees two proxies serving locks');
  const c = await open(A.port);
  for (let k = 1; k <= 40; k++) await c.query('INSERT INTO kv VALUES ($1, 0)', [k]);
});

after(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  await B?.stop().catch(() => undefined);
  await A?.stop().catch(() => undefined);
  dropDatabase(ports, db);
});

describe('an idle lock owner is bypassed, and served again once its clients write', () => {
  it('the busy proxy takes an idle owner\'s buckets in ZooKeeper and keeps them', async () => {
    const a = await open(A.port);
    const bId = B.proxy.coordinator!.id;
    const peers = A.proxy.coordinator!.lockPeers!;
    const owned = [...Array(64).keys()].filter((b) => peers.ownerOf(b) === bId);
    assert.ok(owned.length > 0, 'B owns some buckets');
    // B's clients have written nothing: after IDLE_MS (and a ping) A stops forwarding to it.
    await sleep(IDLE_MS + 1500);
    await incrementAll(a);                    // may still forward while the first pong is due
    await sleep(1200);
    const f0 = statsOf(A).forwarded ?? 0;
    const by0 = statsOf(A).idleBypass ?? 0;
    await incrementAll(a);
    await incrementAll(a);
    assert.equal((statsOf(A).forwarded ?? 0) - f0, 0, 'nothing forwarded to the idle owner');
    assert.ok((statsOf(A).idleBypass ?? 0) - by0 > 0, 'its buckets were taken in ZooKeeper instead');
    // A keeps them (held idle, no ZooKeeper round trip for the next transaction).
    const held = A.proxy.txn!.snapshot().filter((r) => owned.includes(r.bucket) && r.proxy === A.proxy.coordinator!.id);
    assert.ok(held.length > 0, 'A holds buckets B owns');
  });

  it('once the owner\'s clients write, the other proxy forwards again; increments from both add up', async () => {
    const a = await open(A.port), b = await open(B.port);
    const before = await total();
    const f0 = statsOf(A).forwarded ?? 0;
    // Both write at once for a while: B turns busy at its first lock; A forwards from its next pong.
    const deadline = Date.now() + 3000;
    let n = 0;
    await Promise.all([a, b].map(async (c) => {
      while (Date.now() < deadline) { await incrementAll(c); n += 40; }
    }));
    assert.ok((statsOf(A).forwarded ?? 0) - f0 > 0, 'A forwards to B again');
    assert.equal(await total() - before, n, 'every committed increment is there');
    // (this database's only: other test files run two-phase commits on the same servers meanwhile)
    for (const p of ports) assert.equal(psqlAt(p, 'SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()', db).trim(), '0');
  });
});
