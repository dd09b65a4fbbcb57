// A client that reads slower than its server answers (a large result, a dump to a slow disk)
// must not make pgring hold the whole result in memory: pgring stops reading from the server
// while the client's socket is full, as PgBouncer does. Without that, 200 MB of rows sat in the
// proxy's write queue for a client that did not read (and many such clients end the process).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { serialize } from 'pg-protocol';
import { testCluster } from '../helpers/env';
import { baseConfig, RunningProxy, startProxy } from '../helpers/proxy';

let a: RunningProxy;

before(async () => {
  const cluster = await testCluster();
  a = await startProxy(await baseConfig(cluster, 1));
});

after(async () => { await a?.stop(); });

/** A raw client that counts DataRows without keeping them, and can stop reading. */
class CountingClient {
  rows = 0;
  private rfq = 0;
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => this.data(d));
  }
  private data(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    let off = 0;
    while (this.buf.length - off >= 5) {
      const len = this.buf.readInt32BE(off + 1);
      if (this.buf.length - off < 1 + len) break;
      const type = this.buf[off]!;
      if (type === 0x44) this.rows++;
      else if (type === 0x5a) { this.rfq++; this.waiter?.(); }
      else if (type === 0x45) throw new Error(`server error: ${this.buf.subarray(off + 5, off + 1 + len).toString('utf8')}`);
      off += 1 + len;
    }
    this.buf = this.buf.subarray(off);
  }
  untilReady(n: number, ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ReadyForQuery after ${ms} ms (${this.rows} rows)`)), ms);
      const check = (): void => { if (this.rfq >= n) { clearTimeout(t); this.waiter = null; resolve(); } };
      this.waiter = check;
      check();
    });
  }
}

describe('backpressure', () => {
  it('a client that stops reading a 200 MB result does not make the proxy hold it; every row arrives once it reads', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: a.port });
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
    const c = new CountingClient(socket);
    socket.write(serialize.startup({ user: 'postgres', database: 'postgres' }));
    await c.untilReady(1, 10000);
    const before = process.memoryUsage().arrayBuffers;
    socket.pause();
    socket.write(serialize.query("SELECT i, repeat('x', 2000) FROM generate_series(1, 100000) i"));
    await new Promise((r) => setTimeout(r, 4000));
    const grown = process.memoryUsage().arrayBuffers - before;
    socket.resume();
    await c.untilReady(2, 120000);
    socket.end(serialize.end());
    assert.equal(c.rows, 100000);
    // The kernel's socket buffers hold a few MB; the result is 200 MB.
    assert.ok(grown < 32 * 1024 * 1024, `the proxy held ${Math.round(grown / 1048576)} MB for a client that did not read`);
  });
});
