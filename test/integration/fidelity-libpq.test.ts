// What libpq-based drivers' own test suites (psycopg2, run by scripts/drivers-libpq.sh) found
// different through pgring, checked against plain PostgreSQL with the same server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'pg-protocol';
import { testCluster, uniqueName, psqlAt } from '../helpers/env';
import { baseConfig, createDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { WireClient, WireMsg } from '../helpers/wire';

let cluster: Awaited<ReturnType<typeof testCluster>>;
let session: RunningProxy;
let serverPort: number;
let directDb: string;
let proxiedDb: string;

before(async () => {
  cluster = await testCluster();
  serverPort = cluster.pg[0]!.port;
  directDb = uniqueName('fidl_direct');
  proxiedDb = uniqueName('fidl_proxied');
  createDatabase([serverPort], directDb);
  createDatabase([serverPort], proxiedDb);
  session = await startProxy(await baseConfig(cluster, 1, { pool: { mode: 'session', maxSize: 4 } }));
});

after(async () => {
  await session?.stop();
  for (const d of [directDb, proxiedDb]) psqlAt(serverPort, `DROP DATABASE IF EXISTS ${d} WITH (FORCE)`);
});

describe('libpq drivers through pgring, against plain PostgreSQL', () => {
  // psycopg2 test_cursor test_external_close_async: an autocommit connection whose backend is
  // terminated between statements must fail its next statement and close (pgring in session
  // pooling used to open a new server session silently).
  it('session pooling: an idle backend terminated between statements ends the client with its FATAL', async () => {
    const outcomes: WireMsg[][] = [];
    for (const [port, db] of [[serverPort, directDb], [session.port, proxiedDb]] as const) {
      const c = await WireClient.connect(port, db);
      c.send([serialize.query('SELECT pg_backend_pid()')]);
      const pid = (await c.until(1, 10000)).find((m) => m.name === 'dataRow')!.values![0]!;
      psqlAt(serverPort, `SELECT pg_terminate_backend(${pid})`);
      await new Promise((r) => setTimeout(r, 300)); // the FATAL reaches the client's side first
      c.send([serialize.query('SELECT 1')]);
      outcomes.push((await c.untilClosed(10000)).filter((m) => m.name === 'error' || m.name === 'dataRow'));
    }
    assert.deepEqual(outcomes[1], outcomes[0]);
    assert.deepEqual(outcomes[0], [{ name: 'error', code: '57P01', severity: 'FATAL' }]);
  });
});
