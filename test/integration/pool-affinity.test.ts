// Transaction pooling gives a client the server connection it last used when that one is idle
// (src/backend/pool.ts tryAcquire's `prefer`), so what lives in a server session beyond one
// transaction — currval()/lastval() after nextval(), a temporary schema — stays with the client
// whenever the pool allows. Before, the pool handed out its most recently released connection,
// usually another client's (PostgreSQL's regression test `constraints` failed through pgring:
// a column default `currval('insert_seq')` ran on another backend than the INSERT before it).
// A client whose own is busy or gone takes one no live client gave back last, if there is one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { testCluster, psqlAt, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, RunningProxy, startProxy } from '../helpers/proxy';

describe('transaction pooling: a client gets its previous server connection back when it is idle', () => {
  let proxy: RunningProxy;
  let serverPort: number;
  const db = uniqueName('affinity');

  before(async () => {
    const cluster = await testCluster();
    serverPort = cluster.pg[0]!.port;
    createDatabase([serverPort], db);
    psqlAt(serverPort, 'CREATE SEQUENCE s', db);
    proxy = await startProxy(await baseConfig(cluster, 1, { pool: { mode: 'transaction', maxSize: 4 } }));
  });
  after(async () => {
    await proxy?.stop();
    psqlAt(serverPort, `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  });

  it('currval after nextval works across transactions while other clients come and go', async () => {
    const a = client(proxy.port, db), c = client(proxy.port, db), d = client(proxy.port, db);
    await a.connect(); await c.connect(); await d.connect();
    try {
      for (let round = 0; round < 5; round++) {
        const pidA = (await a.query('SELECT pg_backend_pid() AS p, nextval(\'s\') AS v')).rows[0] as { p: number; v: string };
        // Two other clients take two connections (A's, the most recently released, among them)
        // and give them back in the other order: the pool's most recent one is now not A's.
        await c.query('BEGIN'); await c.query('SELECT 1');
        await d.query('BEGIN'); await d.query('SELECT 1');
        await c.query('COMMIT');
        await d.query('COMMIT');
        const r = (await a.query('SELECT pg_backend_pid() AS p, currval(\'s\') AS v')).rows[0] as { p: number; v: string };
        assert.equal(r.v, pidA.v, `round ${round}: currval is the value nextval gave`);
        assert.equal(r.p, pidA.p, `round ${round}: the same server connection`);
      }
    } finally {
      await a.end(); await c.end(); await d.end();
    }
  });

  it('another client takes an idle connection no live client will come back for, not one a live client used last', async () => {
    // the clients of the test above are gone: their connections are free for anyone
    const a = client(proxy.port, db), b = client(proxy.port, db);
    await a.connect(); await b.connect();
    try {
      const first = (await a.query('SELECT pg_backend_pid() AS p, nextval(\'s\') AS v')).rows[0] as { p: number; v: string };
      await b.query('BEGIN');
      const pidB = (await b.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
      assert.notEqual(pidB, first.p, 'B did not take the connection A gave back last');
      const r = (await a.query('SELECT pg_backend_pid() AS p, currval(\'s\') AS v')).rows[0] as { p: number; v: string };
      assert.deepEqual(r, first, 'A still has its connection, and its currval');
      await b.query('COMMIT');
    } finally {
      await a.end(); await b.end();
    }
  });

  it('a busy previous connection is not waited for: the client gets another one', async () => {
    // every connection of the pool (4) was given back last by a live client, A's most recently:
    // a newcomer takes A's, and A, finding it busy, another
    const others = [client(proxy.port, db), client(proxy.port, db), client(proxy.port, db)];
    const a = client(proxy.port, db), b = client(proxy.port, db);
    for (const c of [...others, a, b]) await c.connect();
    try {
      await Promise.all([...others, a].map((c) => c.query('BEGIN')));
      const pids = await Promise.all([...others, a].map(async (c) => (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number));
      assert.equal(new Set(pids).size, 4, 'four server connections');
      for (const c of others) await c.query('COMMIT');
      await a.query('COMMIT');
      const pidA = pids[3]!;
      await b.query('BEGIN');
      const pidB = (await b.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
      assert.equal(pidB, pidA, 'the newcomer got the connection A gave back (the most recent; all are some live client\'s)');
      const again = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
      assert.notEqual(again, pidA, 'A runs on another connection meanwhile');
      await b.query('COMMIT');
    } finally {
      for (const c of [...others, a, b]) await c.end();
    }
  });
});
