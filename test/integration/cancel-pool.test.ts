// A cancel must not reach the next client of a pooled server connection. pgring forwards a
// client's CancelRequest to the server (a new connection to the postmaster, which forks a process
// that signals the backend: a few ms); when the statement ends meanwhile, transaction pooling hands
// the connection to the next client, and the signal then cancelled *that* client's statement.
// PostgreSQL's own double signal (process and process group) can do the same after a cancel that
// did end the statement. pgring now runs a throw-away statement on a connection it sent a cancel
// for before any other client gets it (src/backend/cleanup.ts settleCancel).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { serialize } from 'pg-protocol';
import { testCluster } from '../helpers/env';
import { baseConfig, client, RunningProxy, startProxy } from '../helpers/proxy';
import { WireClient } from '../helpers/wire';

let proxy: RunningProxy;

before(async () => {
  const cluster = await testCluster();
  proxy = await startProxy(await baseConfig(cluster, 1, { pool: { mode: 'transaction', maxSize: 1 } }));
});
after(async () => { await proxy?.stop(); });

function cancelRequest(port: number, pid: number, secret: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      const pkt = Buffer.alloc(16);
      pkt.writeInt32BE(16, 0); pkt.writeInt32BE(80877102, 4); pkt.writeInt32BE(pid, 8); pkt.writeInt32BE(secret, 12);
      s.end(pkt);
    });
    s.once('close', () => resolve());
    s.once('error', () => resolve());
  });
}

describe('a cancel and the next client of the server connection', () => {
  it('never cancels another client\'s statement (one pooled connection shared by two clients)', async () => {
    const a = await WireClient.connect(proxy.port, 'postgres');
    const b = client(proxy.port, 'postgres');
    await b.connect();
    let bCancelled = 0, aCancelled = 0;
    try {
      for (let i = 0; i < 40; i++) {
        // mostly a statement that ends about when the cancel arrives; every fourth one the cancel ends
        a.send([serialize.query(i % 4 === 0 ? 'SELECT pg_sleep(1)' : 'SELECT pg_sleep(0.01)')]);
        const aDone = a.until(1, 10000);
        await new Promise((r) => setTimeout(r, 1));
        // B waits for the only server connection, and gets it as soon as A's statement ends
        const bDone = b.query('SELECT pg_sleep(0.05)').then(() => null, (e: Error & { code?: string }) => e.code ?? e.message);
        await new Promise((r) => setTimeout(r, 5 + (i % 8)));
        await cancelRequest(proxy.port, a.backendKey!.pid, a.backendKey!.secret);
        const got = await aDone;
        if (got.some((m) => m.name === 'error' && m.code === '57014')) aCancelled++;
        const err = await bDone;
        if (err === '57014') bCancelled++;
        else assert.equal(err, null);
      }
    } finally {
      a.close();
      await b.end();
    }
    assert.equal(bCancelled, 0, `the other client's statement was cancelled ${bCancelled} times of 40 (A's own: ${aCancelled})`);
    assert.ok(aCancelled > 0, 'some of A\'s statements were cancelled');
  });
});
