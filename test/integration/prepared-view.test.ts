// pg_prepared_statements through pgring lists the client's own statements, as PostgreSQL does
// (src/frontend/prepared-view.ts). A protocol-level statement lives on the servers under pgring's
// shared name (`pgring_<n>`, shared by every client that prepared the same text), so before this
// the view showed those names, other clients' statements and none of the client's own: drivers'
// test suites that count or read the view (Npgsql, psycopg, DBD::Pg) saw wrong rows. Every
// answer here is compared with the same client session run directly against PostgreSQL.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { testCluster, psqlAt, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';

let serverPort: number;
let ports: number[];
const db = uniqueName('prepview');
const proxies: RunningProxy[] = [];

before(async () => {
  const cluster = await testCluster();
  serverPort = cluster.pg[0]!.port;
  ports = cluster.pg.slice(0, 2).map((p) => p.port);
  createDatabase(ports, db);
  for (const p of ports) psqlAt(p, 'CREATE TABLE kv (k int PRIMARY KEY, v text)', db);
  proxies.push(await startProxy(await baseConfig(cluster, 1, { pool: { mode: 'transaction', maxSize: 3 } })));
  proxies.push(await startProxy(await baseConfig(cluster, 1, { pool: { mode: 'session', maxSize: 3 } })));
  proxies.push(await startProxy(await baseConfig(cluster, 2, { pool: { mode: 'transaction', maxSize: 3 }, sharding: { tables: [{ name: 'kv', column: 'k', type: 'integer' }] } })));
});
after(async () => {
  for (const p of proxies) await p.stop();
  dropDatabase(ports, db);
});

const VIEW = 'SELECT name, statement, parameter_types::text AS types, from_sql, generic_plans + custom_plans AS plans FROM pg_prepared_statements ORDER BY name';
// Over several shards a statement's server copy may be on another shard's connection than the
// one that answers the view: its parameter types are then the ones the client declared (the pg
// driver declares none) and its plan counts 0, so only names and texts are compared there.
const VIEW_NAMES = 'SELECT name, statement, from_sql FROM pg_prepared_statements ORDER BY name';

/** What one client sees of the view in a fixed scenario (prepared statements by Parse and by SQL). */
async function scenario(port: number, exact = true): Promise<unknown[]> {
  const view = exact ? VIEW : VIEW_NAMES;
  const c = client(port, db);
  await c.connect();
  const other = client(port, db);
  await other.connect();
  const seen: unknown[] = [];
  try {
    // another client prepares the same text under another name, and one text of its own
    await other.query({ name: 'theirs', text: 'SELECT $1::int + 1 AS x', values: [1] });
    await other.query({ name: 'theirs_only', text: 'SELECT v FROM kv WHERE k = $1', values: [1] });
    seen.push((await c.query(view)).rows);                                     // nothing yet
    await c.query({ name: 'mine', text: 'SELECT $1::int + 1 AS x', values: [1] });
    await c.query({ name: 'mine_kv', text: 'SELECT v FROM kv WHERE k = $1', values: [2] });
    await c.query('PREPARE by_sql(text) AS SELECT length($1)');
    seen.push((await c.query(view)).rows);
    // extended protocol (an unnamed statement with a parameter), an alias, a WHERE, a count
    seen.push((await c.query('SELECT count(*) AS n FROM pg_catalog.pg_prepared_statements p WHERE p.name LIKE $1 AND NOT p.from_sql', ['mine%'])).rows);
    // a multi-statement string
    seen.push(((await c.query('SELECT 1 AS a; SELECT name FROM pg_prepared_statements ORDER BY 1')) as unknown as pg.QueryResult[]).map((r) => r.rows));
    // in a transaction, joined with a table
    await c.query('BEGIN');
    seen.push((await c.query('SELECT s.name, k.v FROM pg_prepared_statements s LEFT JOIN kv k ON k.k = 0 WHERE s.name = \'mine\'')).rows);
    await c.query('COMMIT');
    // DEALLOCATE takes it out of the view
    await c.query('DEALLOCATE mine');
    await c.query('DEALLOCATE by_sql');
    seen.push((await c.query(view)).rows);
    seen.push((await other.query('SELECT name FROM pg_prepared_statements ORDER BY name')).rows);
  } finally {
    await c.end();
    await other.end();
  }
  return seen;
}

describe('pg_prepared_statements shows the client\'s own statements', () => {
  it('as directly, in transaction pooling, session pooling and over two shards', async () => {
    for (const exact of [true, false]) {
      const direct = await scenario(serverPort, exact);
      // the scenario itself says something (not all empty)
      assert.deepEqual((direct[1] as { name: string }[]).map((r) => r.name), ['by_sql', 'mine', 'mine_kv']);
      for (const [i, p] of proxies.entries()) {
        if (exact && i === 2) continue;
        const through = await scenario(p.port, exact);
        assert.deepEqual(through, direct, `proxy ${i} (${['transaction pooling', 'session pooling', 'two shards'][i]})`);
      }
    }
  });

  it('prepare_time is when the client prepared it', async () => {
    const c = client(proxies[0]!.port, db);
    await c.connect();
    try {
      const t0 = Date.now();
      await c.query({ name: 'timed', text: 'SELECT 2 AS y', values: [] });
      const r = await c.query('SELECT prepare_time FROM pg_prepared_statements WHERE name = \'timed\'');
      const at = (r.rows[0] as { prepare_time: Date }).prepare_time.getTime();
      assert.ok(Math.abs(at - t0) < 5000, `prepare_time ${at} near ${t0}`);
    } finally {
      await c.end();
    }
  });
});
