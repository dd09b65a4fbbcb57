// locks.singleShard: on a one-shard cluster a write takes no ZooKeeper lock (PostgreSQL alone
// orders it) unless locks.singleShard is set, which `npm run regress` uses to run PostgreSQL's
// regression suite through the lock path.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { ClusterInfo } from '../../src/local/cluster';

let cluster: ClusterInfo;
let db: string;
const proxies: RunningProxy[] = [];
const clients: pg.Client[] = [];

async function proxyWith(singleShard: boolean | undefined): Promise<RunningProxy> {
  const locks = singleShard === undefined ? { mode: 'all' } : { mode: 'all', singleShard };
  const p = await startProxy(await baseConfig(cluster, 1, {
    zookeeper: { connect: cluster.zk, cluster: uniqueName('single') },
    locks,
  }));
  proxies.push(p);
  return p;
}

/** Held buckets of a proxy while a transaction that created a table and wrote to it is open. */
async function heldInOpenWrite(p: RunningProxy, table: string): Promise<number> {
  const c = client(p.port, db);
  clients.push(c);
  await c.connect();
  await c.query('BEGIN');
  await c.query(`CREATE TABLE ${table} (x int)`);
  await c.query(`INSERT INTO ${table} VALUES (1)`);
  const held = p.proxy.txn!.snapshot().filter((l) => l.holder !== null).length;
  await c.query('ROLLBACK');
  return held;
}

before(async () => {
  cluster = await testCluster();
  db = uniqueName('single');
  createDatabase([cluster.pg[0]!.port], db);
});

after(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  for (const p of proxies) await p.stop().catch(() => undefined);
  dropDatabase([cluster.pg[0]!.port], db);
  await stopOwnCluster();
});

describe('locks.singleShard', () => {
  it('one shard, default: a transaction that creates a table and writes to it holds no ZooKeeper lock', async () => {
    assert.equal(await heldInOpenWrite(await proxyWith(undefined), 'single_a'), 0);
  });

  it('one shard, locks.singleShard true: the same transaction holds the locks of what it wrote', async () => {
    // the created table's bucket (DDL) and the table's bucket of the key-less insert: the same one
    assert.ok(await heldInOpenWrite(await proxyWith(true), 'single_b') >= 1);
  });
});
