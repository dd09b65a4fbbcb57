// A client that reads slower than its server answers (a large result, a dump to a slow disk)
// must not make pgring hold the whole result in memory: pgring stops reading from the server
// while the client's socket is full, as PgBouncer does. Without that, 200 MB of rows sat in the
// proxy's write queue for a client that did not read (and many such clients end the process).
// The other direction too: a client that sends faster than its server takes in (a large COPY FROM
// STDIN into a table a server is still waiting to lock) must not make pgring queue it all.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { serialize } from 'pg-protocol';
import { psqlAt, testCluster, uniqueName } from '../helpers/env';
import pg from 'pg';
import { baseConfig, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';

let a: RunningProxy;
let sharded: RunningProxy;
let ports: number[];
let db: string;

before(async () => {
  const cluster = await testCluster();
  a = await startProxy(await baseConfig(cluster, 1));
  ports = cluster.pg.slice(0, 3).map((p) => p.port);
  db = uniqueName('backpressure');
  createDatabase(ports, db);
  // 40,000 rows of 2 kB on each shard (where a row lives does not matter to a read without a key)
  for (const p of ports) psqlAt(p, "CREATE TABLE big (id int PRIMARY KEY, pad text); INSERT INTO big SELECT i, repeat('x', 2000) FROM generate_series(1, 40000) i; CREATE TABLE sink (id int, pad text)", db);
  sharded = await startProxy(await baseConfig(cluster, 3, { sharding: { tables: [{ name: 'big', column: 'id', type: 'integer', columns: ['id', 'pad'] }, { name: 'sink', column: 'id', type: 'integer', columns: ['id', 'pad'] }] } }));
});

after(async () => {
  await a?.stop();
  await sharded?.stop();
  dropDatabase(ports, db);
});

/** A raw client that counts DataRows without keeping them, and can stop reading. */
class CountingClient {
  rows = 0;
  outOfOrder = 0;
  private last = -Infinity;
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
      if (type === 0x44) {
        this.rows++;
        // first column as an integer: are the rows in ascending order?
        const len0 = this.buf.readInt32BE(off + 7);
        const id = len0 > 0 && len0 < 12 ? Number(this.buf.toString('latin1', off + 11, off + 11 + len0)) : NaN;
        if (!(id >= this.last)) this.outOfOrder++;
        this.last = id;
      }
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

/** Sends `sql`, stops reading for 4 s, then reads everything: the proxy's growth meanwhile and the rows. */
async function pausedRead(port: number, database: string, sql: string, extended = false): Promise<{ grown: number; rows: number; outOfOrder: number }> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
    const c = new CountingClient(socket);
    socket.write(serialize.startup({ user: 'postgres', database }));
    await c.untilReady(1, 10000);
    const before = process.memoryUsage().arrayBuffers;
    socket.pause();
    socket.write(extended ? Buffer.concat([serialize.parse({ text: sql }), serialize.bind({}), serialize.execute({}), serialize.sync()]) : serialize.query(sql));
    await new Promise((r) => setTimeout(r, 4000));
    const grown = process.memoryUsage().arrayBuffers - before;
    socket.resume();
    await c.untilReady(2, 120000);
    socket.end(serialize.end());
    return { grown, rows: c.rows, outOfOrder: c.outOfOrder };
}

describe('backpressure', () => {
  it('a client that stops reading a 200 MB result does not make the proxy hold it; every row arrives once it reads', async () => {
    const r = await pausedRead(a.port, 'postgres', "SELECT i, repeat('x', 2000) FROM generate_series(1, 100000) i");
    assert.equal(r.rows, 100000);
    // The kernel's socket buffers hold a few MB; the result is 200 MB.
    assert.ok(r.grown < 32 * 1024 * 1024, `the proxy held ${Math.round(r.grown / 1048576)} MB for a client that did not read`);
  });

  it('the same for a 240 MB read of three shards (rows that need no sort stream, sorted rows are merged as they come; COPY TO too)', async () => {
    for (const sql of ['SELECT * FROM big', 'SELECT * FROM big ORDER BY id', 'COPY big TO STDOUT']) {
      const r = await pausedRead(sharded.port, db, sql);
      if (sql.startsWith('SELECT')) assert.equal(r.rows, 120000, sql);
      if (sql.includes('ORDER BY')) assert.equal(r.outOfOrder, 0, `${sql}: rows out of order`);
      assert.ok(r.grown < 48 * 1024 * 1024, `${sql}: the proxy held ${Math.round(r.grown / 1048576)} MB for a client that did not read`);
    }
  });

  it('the same in the extended protocol (what drivers send with parameters)', async () => {
    // Before, every merged result of the extended protocol was collected whole: 240 MB held.
    for (const sql of ['SELECT * FROM big', 'SELECT * FROM big ORDER BY id']) {
      const r = await pausedRead(sharded.port, db, sql, true);
      assert.equal(r.rows, 120000, sql);
      if (sql.includes('ORDER BY')) assert.equal(r.outOfOrder, 0, `${sql}: rows out of order`);
      assert.ok(r.grown < 48 * 1024 * 1024, `${sql} (extended): the proxy held ${Math.round(r.grown / 1048576)} MB for a client that did not read`);
    }
  });

  it('a sorted read of three shards, one of them slow: the others are not read ahead without bound', async () => {
    // Before, a sorted result was collected whole: 160 MB of the two fast shards sat in the proxy
    // while the third waited for a lock. Now each fast shard is read until its queued rows wait
    // for the slow one (a few MB), and every row still arrives, in order.
    const lock = new pg.Client({ host: '127.0.0.1', port: ports[0]!, user: 'postgres', database: db });
    await lock.connect();
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE big IN ACCESS EXCLUSIVE MODE');
    const socket = net.connect({ host: '127.0.0.1', port: sharded.port });
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
    const c = new CountingClient(socket);
    socket.write(serialize.startup({ user: 'postgres', database: db }));
    await c.untilReady(1, 10000);
    const before = process.memoryUsage().arrayBuffers;
    socket.write(serialize.query('SELECT * FROM big ORDER BY id'));
    await new Promise((r) => setTimeout(r, 4000));
    const grown = process.memoryUsage().arrayBuffers - before;
    await lock.query('COMMIT');
    await lock.end();
    await c.untilReady(2, 120000);
    socket.end(serialize.end());
    assert.equal(c.rows, 120000);
    assert.equal(c.outOfOrder, 0, 'rows out of order');
    assert.ok(grown < 48 * 1024 * 1024, `the proxy held ${Math.round(grown / 1048576)} MB while one shard was slow`);
  });
});

/** Sends COPY sink FROM STDIN and `mb` MB of rows as fast as the proxy takes them while a direct
 *  session on `lockPort` holds the table locked for 4 s (the server waits for the lock and reads
 *  nothing): what the proxy held meanwhile, then the COPY's tag once the lock is gone. */
async function pushedCopy(port: number, lockPort: number, mb: number): Promise<{ grown: number; sentMb: number; tag: string }> {
  const lock = new pg.Client({ host: '127.0.0.1', port: lockPort, user: 'postgres', database: db });
  await lock.connect();
  await lock.query('BEGIN');
  await lock.query('LOCK TABLE sink IN ACCESS EXCLUSIVE MODE');
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  let got = '';
  socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
  socket.write(serialize.startup({ user: 'postgres', database: db }));
  for (let i = 0; i < 100 && !got.includes('Z\u0000\u0000\u0000\u0005I'); i++) await new Promise((r) => setTimeout(r, 50));
  got = '';
  socket.write(serialize.query('COPY sink FROM STDIN'));
  const pad = 'y'.repeat(1000);
  let sent = 0;
  let id = 100000;
  let stop = false;
  // 32 messages built once and sent round and round: what this process allocates meanwhile is the
  // proxy's (it runs here too), not the sending client's own buffers
  const msgs: Buffer[] = [];
  for (let k = 0; k < 32; k++) {
    let chunk = '';
    while (chunk.length < 65536) chunk += `${id++}\t${pad}\n`;
    msgs.push(serialize.copyData(Buffer.from(chunk)));
  }
  const before = process.memoryUsage().arrayBuffers;
  const writer = (async () => {
    for (let k = 0; !stop && sent < mb * 1048576; k++) {
      const m = msgs[k % msgs.length]!;
      sent += m.length - 5;
      if (!socket.write(m)) await new Promise((r) => socket.once('drain', r));
    }
  })();
  await new Promise((r) => setTimeout(r, 4000));
  const grown = process.memoryUsage().arrayBuffers - before;
  const sentMb = sent / 1048576;
  await lock.query('COMMIT');
  await lock.end();
  await writer;
  stop = true;
  socket.write(serialize.copyDone());
  for (let i = 0; i < 1200 && !/COPY \d+/.test(got); i++) await new Promise((r) => setTimeout(r, 50));
  socket.end(serialize.end());
  return { grown, sentMb, tag: /COPY \d+/.exec(got)?.[0] ?? got.slice(0, 200) };
}

describe('backpressure from client to server', () => {
  it('a COPY FROM STDIN the server cannot take yet is not queued in the proxy; every row arrives later', async () => {
    for (const [proxy, name] of [[a, 'one shard'], [sharded, 'three shards (split COPY)']] as const) {
      psqlAt(ports[0]!, 'TRUNCATE sink', db);
      if (proxy === sharded) for (const p of ports.slice(1)) psqlAt(p, 'TRUNCATE sink', db);
      const r = await pushedCopy(proxy.port, ports[0]!, 120);
      assert.ok(r.grown < 32 * 1024 * 1024, `${name}: the proxy held ${Math.round(r.grown / 1048576)} MB of a COPY its server did not read (client sent ${Math.round(r.sentMb)} MB)`);
      const rows = proxy === sharded ? ports.reduce((n, p) => n + Number(psqlAt(p, 'SELECT count(*) FROM sink', db)), 0) : Number(psqlAt(ports[0]!, 'SELECT count(*) FROM sink', db));
      assert.equal(r.tag, `COPY ${rows}`, name);
      assert.ok(rows > 100000, `${name}: ${rows} rows`);
    }
  });
});
