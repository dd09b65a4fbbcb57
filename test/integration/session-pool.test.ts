// Session pooling (`pool.mode: session`): a client keeps one server connection from its
// first statement until it disconnects, so every session feature works as on PostgreSQL;
// the connection is cleaned before the next client gets it; the pool limit queues clients.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';

let proxy: RunningProxy;
let db: string;
let port0: number;
const open: pg.Client[] = [];

async function connect(): Promise<pg.Client> {
  const c = client(proxy.port, db);
  await c.connect();
  open.push(c);
  return c;
}
const pid = async (c: pg.Client) => (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;

before(async () => {
  const cluster = await testCluster();
  port0 = cluster.pg[0]!.port;
  db = uniqueName('sess');
  createDatabase([port0], db);
  proxy = await startProxy(await baseConfig(cluster, 1, { pool: { mode: 'session', maxSize: 2, queueTimeoutMs: 4000 } }));
});

after(async () => {
  for (const c of open) await c.end().catch(() => undefined);
  await proxy?.stop();
  dropDatabase([port0], db);
});

describe('session pooling', () => {
  it('keeps one server connection per client, with its session state, across transactions', async () => {
    const c = await connect();
    const first = await pid(c);
    await c.query("SET application_name = 'sess-a'");
    await c.query('CREATE TEMP TABLE t (x int)');
    await c.query('PREPARE q(int) AS SELECT $1 + 1 AS y');
    await c.query('BEGIN');
    await c.query('INSERT INTO t VALUES (1)');
    await c.query('COMMIT');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await pid(c), first);
    assert.equal((await c.query('SHOW application_name')).rows[0].application_name, 'sess-a');
    assert.equal((await c.query('SELECT count(*)::int AS n FROM t')).rows[0].n, 1);
    assert.equal((await c.query('EXECUTE q(41)')).rows[0].y, 42);
    await c.end();
    open.splice(open.indexOf(c), 1);
  });

  it('a client waits for a free connection when the pool is full, and gets a clean one', async () => {
    const a = await connect();
    const b = await connect();
    const pa = await pid(a);
    await a.query("SET application_name = 'left-behind'");
    await a.query('CREATE TEMP TABLE gone (x int)');
    await pid(b); // a and b now hold both server connections
    const c = await connect();
    let served = false;
    const q = c.query('SELECT pg_backend_pid() AS p, current_setting(\'application_name\') AS app, to_regclass(\'pg_temp.gone\') IS NULL AS clean')
      .then((r) => { served = true; return r; });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(served, false, 'a third client was served while two clients held the pool of 2');
    await a.end();
    open.splice(open.indexOf(a), 1);
    const r = await q;
    assert.equal(r.rows[0].p, pa, 'the third client should get the connection the first one released');
    assert.notEqual(r.rows[0].app, 'left-behind');
    assert.equal(r.rows[0].clean, true, 'a temporary table of the previous client is still there');
  });

  it('a client that cannot get a connection within queueTimeoutMs gets 53300', async () => {
    // Two clients from the previous test still hold the pool (b and c).
    const d = await connect();
    await assert.rejects(d.query('SELECT 1'), (e: Error & { code?: string }) => {
      assert.equal(e.code, '53300');
      assert.match(e.message, /no server connection available/);
      return true;
    });
  });
});
