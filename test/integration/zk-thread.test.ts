// A client that connects while the proxy is losing its ZooKeeper connection keeps being
// served after the proxy reconnects. The `zookeeper` package watches the C client's socket
// on the event loop it runs on and, after a connection loss, removes that socket's file
// descriptor number from the loop's epoll set only at the reconnect: a socket accepted in
// between (the number reused) went deaf, its next query never read (src/cluster/zk-thread.ts).
// The proxy is stopped (SIGSTOP) long enough for the C client to drop its connection on
// SIGCONT; clients connect while it reconnects (to the same session), and must all be read after.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { psqlAt, stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, ChildProxy, client, createDatabase, dropDatabase, spawnProxy } from '../helpers/proxy';
import { ClusterInfo } from '../../src/local/cluster';
import { sleep } from '../../src/local/proc';

const SESSION_MS = 4000;
// Longer than the C client waits for a ping answer (2/3 of the session timeout: it drops the
// connection at once on SIGCONT), shorter than the session: it reconnects to the same session.
const STOP_MS = 3000;
let cluster: ClusterInfo;
let db: string;
let P: ChildProxy;
let ports: number[];
const clients: pg.Client[] = [];

/** `q`, or a failure naming the query when no answer comes within `ms`. */
async function answered<T>(q: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); });
  try { return await Promise.race([q, late]); } finally { clearTimeout(timer); }
}

/** A write (and its undo) through `c`, retried while the proxy refuses writes (57P03, fenced). */
async function writeWhenOpen(c: pg.Client, k: number): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    try { await answered(c.query('INSERT INTO kv VALUES ($1, 1)', [k]), 10000, `write ${k}`); break; } catch (e) {
      if ((e as { code?: string }).code !== '57P03' || Date.now() - t0 > 20000) throw e;
      await sleep(200);
    }
  }
  await answered(c.query('DELETE FROM kv WHERE k = $1', [k]), 10000, `delete ${k}`);
}

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 2).map((p) => p.port);
  db = uniqueName('zkthread');
  createDatabase(ports, db);
  for (const p of ports) psqlAt(p, 'CREATE TABLE kv (k int PRIMARY KEY, v int NOT NULL)', db);
  P = await spawnProxy(await baseConfig(cluster, 2, {
    zookeeper: { connect: cluster.zk, cluster: uniqueName('zkthread'), sessionTimeoutMs: SESSION_MS },
    sharding: { tables: [{ name: 'kv', column: 'k', type: 'integer' }] },
    locks: { mode: 'all', buckets: 64, timeoutMs: 20000 },
  }));
});

after(async () => {
  if (process.env.PGRING_TEST_DUMP) require('node:fs').writeFileSync(process.env.PGRING_TEST_DUMP, P?.output() ?? '');
  for (const c of clients) await Promise.race([c.end().catch(() => undefined), sleep(1000)]);
  await P?.stop('SIGKILL').catch(() => undefined);
  dropDatabase(ports, db);
  await stopOwnCluster();
});

describe('ZooKeeper reconnect and client sockets', () => {
  it('clients accepted while the ZooKeeper connection times out are still read after the proxy reconnects', async () => {
    // First the proxy is fully up (registered, fence open): stopped in the middle of its start
    // it would be testing something else.
    const warm = client(P.port, db);
    warm.on('error', () => undefined);
    clients.push(warm);
    await warm.connect();
    await writeWhenOpen(warm, -1);
    for (let round = 0; round < 3; round++) {
      P.child.kill('SIGSTOP');
      await sleep(STOP_MS);
      P.child.kill('SIGCONT');
      // The C client times its connection out at once and reconnects about a second later:
      // clients connect all through that window, each answered once.
      const waiting: pg.Client[] = [];
      for (let i = 0; i < 12; i++) {
        const c = client(P.port, db);
        c.on('error', () => undefined);
        clients.push(c);
        waiting.push(c);
        await answered(c.connect(), 10000, `round ${round}: connect ${i}`);
        await answered(c.query('SELECT 1 AS one'), 10000, `round ${round}: first query of client ${i}`);
        await sleep(150);
      }
      // Once the proxy has its new session (writes pass again), every client is still read.
      await writeWhenOpen(waiting[0]!, round);
      for (const [i, c] of waiting.entries()) {
        const r = await answered(c.query('SELECT count(*) AS n FROM kv'), 5000, `round ${round}: query of client ${i} after the reconnect`);
        assert.equal(Number(r.rows[0].n), 0);
      }
    }
  });
});
