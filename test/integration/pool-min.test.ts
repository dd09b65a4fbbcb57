// pool.minSize, as PgBouncer's min_pool_size: once a pool has had a client, pgring keeps at
// least that many server connections open, and opens them again after they are closed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { testCluster, uniqueName, psqlAt } from '../helpers/env';
import { baseConfig, createDatabase, dropDatabase, RunningProxy, startProxy, withClient } from '../helpers/proxy';

let proxy: RunningProxy;
let db: string;
let port0: number;

/** Server connections pgring holds to the test database, counted on the server itself. */
const serverConns = () => Number(psqlAt(port0, `SELECT count(*) FROM pg_stat_activity WHERE datname = '${db}' AND pid <> pg_backend_pid()`).trim());

async function eventually(what: string, ok: () => boolean, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  const cluster = await testCluster();
  port0 = cluster.pg[0]!.port;
  db = uniqueName('poolmin');
  createDatabase([port0], db);
  proxy = await startProxy(await baseConfig(cluster, 1, { pool: { minSize: 3, maxSize: 5, idleTimeoutMs: 1000 } }));
});

after(async () => {
  await proxy?.stop();
  dropDatabase([port0], db);
});

describe('pool.minSize', () => {
  it('opens nothing before the first client, then keeps minSize connections and re-opens closed ones', async () => {
    assert.equal(serverConns(), 0);
    await withClient(proxy.port, db, async (c) => { await c.query('SELECT 1'); });
    await eventually('3 server connections after the first client', () => serverConns() === 3);
    // Idle reaping (idleTimeoutMs 1 s) does not go below minSize.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(serverConns(), 3);
    psqlAt(port0, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db}' AND pid <> pg_backend_pid()`);
    await eventually('3 server connections again after they were terminated', () => serverConns() === 3);
    const n = await withClient(proxy.port, db, async (c) => (await c.query('SELECT 41 + 1 AS n')).rows[0].n as number);
    assert.equal(n, 42);
  });
});
