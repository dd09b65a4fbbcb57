// What libpq-based drivers' own test suites (psycopg2, run by scripts/drivers-libpq.sh) found
// different through pgring, checked against plain PostgreSQL with the same server.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { serialize } from 'pg-protocol';
import { client, RunningProxy } from '../helpers/proxy';
import { psqlAt } from '../helpers/env';
import { comparedDatabases } from '../helpers/compare';
import { WireClient, WireMsg } from '../helpers/wire';

let session: RunningProxy;
let serverPort: number;
let directDb: string;
let proxiedDb: string;

const env = comparedDatabases('fidl', [{ pool: { mode: 'session', maxSize: 4 } }], (e) => { ({ serverPort, directDb, proxiedDb } = e); session = e.proxies[0]!; });

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

  // psycopg2 test_connection TestConnectionInfo.test_backend_pid: PQbackendPID() (BackendKeyData)
  // is what pg_backend_pid() returns.
  it('session pooling, one shard: BackendKeyData carries the pid pg_backend_pid() returns, and cancel still works', async () => {
    for (const [port, db] of [[serverPort, directDb], [session.port, proxiedDb]] as const) {
      const c = client(port, db);
      await c.connect();
      try {
        const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
        assert.equal((c as unknown as { processID: number }).processID, pid, `port ${port}`);
        const slow = c.query('SELECT pg_sleep(20)').then(() => null, (e: { code?: string }) => e.code);
        await new Promise((r) => setTimeout(r, 300));
        const k = c as unknown as { processID: number; secretKey: number };
        await cancelRequest(port, k.processID, k.secretKey);
        assert.equal(await slow, '57014', `port ${port}`);
      } finally { await c.end(); }
    }
  });
});

function cancelRequest(port: number, pid: number, secret: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      const pkt = Buffer.alloc(16);
      pkt.writeInt32BE(16, 0); pkt.writeInt32BE(80877102, 4); pkt.writeInt32BE(pid, 8); pkt.writeInt32BE(secret, 12);
      s.end(pkt);
    });
    s.on('error', reject);
    s.on('close', () => resolve());
  });
}
