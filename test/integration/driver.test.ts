// The `pg` driver through pgring (one shard, transaction pooling): queries,
// prepared statements across pooled connections, COPY, cancel, notices, errors,
// authentication methods, startup parameters, state isolation and concurrency.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { psqlAt, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy, withClient } from '../helpers/proxy';

let proxy: RunningProxy;
let db: string;
let port0: number;

before(async () => {
  const cluster = await testCluster();
  port0 = cluster.pg[0]!.port;
  db = uniqueName('drv');
  createDatabase([port0], db);
  proxy = await startProxy(await baseConfig(cluster, 1, {
    pool: { maxSize: 5, queueTimeoutMs: 20000 },
    users: [
      { name: 'postgres', auth: 'trust', admin: true },
      { name: 'clear_u', auth: 'cleartext', password: 'c1ear', serverUser: 'postgres' },
      { name: 'md5_u', auth: 'md5', password: 'm5pw', serverUser: 'postgres' },
      { name: 'scram_u', auth: 'scram-sha-256', password: 'scr@m pw', serverUser: 'postgres' },
    ],
  }));
});

after(async () => {
  await proxy?.stop();
  dropDatabase([port0], db);
});

describe('pg driver through pgring', () => {
  it('runs simple and parameterised queries', async () => {
    await withClient(proxy.port, db, async (c) => {
      assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
      const r = await c.query('SELECT $1::int + $2::int AS s, $3::text AS t, $4::text IS NULL AS n', [40, 2, 'héllo', null]);
      assert.deepEqual(r.rows[0], { s: 42, t: 'héllo', n: true });
      const multi = await c.query('SELECT 1 AS a; SELECT 2 AS b');
      assert.equal((multi as unknown as { rows: unknown[] }[]).length, 2);
    });
  });

  it('reuses named prepared statements across pooled server connections', async () => {
    await withClient(proxy.port, db, (c) => c.query('CREATE TABLE IF NOT EXISTS kv (k int primary key, v text)'));
    const clients = await Promise.all(Array.from({ length: 12 }, async () => { const c = client(proxy.port, db); await c.connect(); return c; }));
    try {
      await Promise.all(clients.map(async (c, i) => {
        for (let j = 0; j < 25; j++) {
          const k = i * 1000 + j;
          await c.query({ name: 'ins', text: 'INSERT INTO kv VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v', values: [k, `v${k}`] });
          const r = await c.query({ name: 'get', text: 'SELECT v FROM kv WHERE k = $1', values: [k] });
          assert.equal(r.rows[0].v, `v${k}`);
        }
      }));
    } finally { await Promise.all(clients.map((c) => c.end())); }
    const n = psqlAt(port0, 'SELECT count(*) FROM kv', db).trim();
    assert.equal(n, String(12 * 25));
  });

  it('copies in and out', async () => {
    await withClient(proxy.port, db, async (c) => {
      await c.query('CREATE TABLE cp (id int, name text)');
      const rows = Array.from({ length: 1000 }, (_, i) => `${i}\tname ${i}\n`).join('');
      await pipeline(Readable.from([rows]), c.query(copyFrom('COPY cp FROM STDIN')));
      assert.equal((await c.query('SELECT count(*)::int AS n, sum(id)::int AS s FROM cp')).rows[0].n, 1000);
      const chunks: Buffer[] = [];
      await pipeline(c.query(copyTo('COPY (SELECT * FROM cp ORDER BY id) TO STDOUT')), new Writable({ write(ch, _e, cb) { chunks.push(ch); cb(); } }));
      assert.equal(Buffer.concat(chunks).toString(), rows);
      // the connection is usable afterwards
      assert.equal((await c.query('SELECT 2 AS x')).rows[0].x, 2);
    });
  });

  it('cancels a running query with 57014 in under a second', async () => {
    await withClient(proxy.port, db, async (c) => {
      const started = Date.now();
      const q = c.query('SELECT pg_sleep(30)').then(() => null, (e: { code?: string }) => e);
      await new Promise((r) => setTimeout(r, 300));
      const pid = (c as unknown as { processID: number }).processID;
      const secret = (c as unknown as { secretKey: number }).secretKey;
      await sendCancel(proxy.port, pid, secret);
      const err = await q;
      assert.ok(err, 'query must fail');
      assert.equal(err!.code, '57014');
      assert.ok(Date.now() - started < 1300, `took ${Date.now() - started} ms`);
      assert.equal((await c.query('SELECT 3 AS x')).rows[0].x, 3);
    });
  });

  it('passes notices and errors with their SQLSTATE and position', async () => {
    await withClient(proxy.port, db, async (c) => {
      const notices: string[] = [];
      c.on('notice', (n) => notices.push(n.message ?? ''));
      await c.query(`DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$`);
      assert.deepEqual(notices, ['hello from plpgsql']);
      await assert.rejects(c.query('SELECT 1/0'), (e: { code?: string; message: string }) => e.code === '22012' && /division by zero/.test(e.message));
      await assert.rejects(c.query('SELEC 1'), (e: { code?: string; position?: string }) => e.code === '42601' && e.position === '1');
      await assert.rejects(c.query(`DO $$ BEGIN RAISE EXCEPTION 'boom' USING DETAIL = 'the detail', HINT = 'the hint', ERRCODE = 'P0001'; END $$`),
        (e: { code?: string; detail?: string; hint?: string }) => e.code === 'P0001' && e.detail === 'the detail' && e.hint === 'the hint');
      await assert.rejects(c.query('SELECT * FROM no_such_table'), (e: { code?: string }) => e.code === '42P01');
      await assert.rejects(c.query({ name: 'bad', text: 'SELECT * FROM no_such_table WHERE x = $1', values: [1] }), (e: { code?: string }) => e.code === '42P01');
      assert.equal((await c.query('SELECT 4 AS x')).rows[0].x, 4);
    });
  });

  it('authenticates with trust, cleartext, md5 and SCRAM-SHA-256, and rejects a wrong password with 28P01', async () => {
    for (const [user, password] of [['clear_u', 'c1ear'], ['md5_u', 'm5pw'], ['scram_u', 'scr@m pw']] as const) {
      await withClient(proxy.port, db, async (c) => {
        assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'postgres');
      }, { user, password });
      const bad = client(proxy.port, db, { user, password: 'wrong' });
      await assert.rejects(bad.connect(), (e: { code?: string }) => e.code === '28P01', `${user} with a wrong password`);
    }
    const unknown = client(proxy.port, db, { user: 'nobody', password: 'x' });
    await assert.rejects(unknown.connect(), (e: { code?: string }) => e.code === '28P01' || e.code === '28000');
  });

  it('reports an unknown database with 3D000', async () => {
    const c = client(proxy.port, 'no_such_database_here');
    await assert.rejects(c.connect(), (e: { code?: string }) => e.code === '3D000');
  });

  it('serves 50 concurrent clients over a pool of 5', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => withClient(proxy.port, db, async (c) => {
      let s = 0;
      for (let j = 0; j < 10; j++) s += (await c.query('SELECT $1::int AS v, pg_sleep(0.001)', [i])).rows[0].v;
      return s;
    })));
    assert.deepEqual(results, Array.from({ length: 50 }, (_, i) => i * 10));
    const servers = Number(psqlAt(port0, `SELECT count(*) FROM pg_stat_activity WHERE datname = '${db}'`).trim());
    assert.ok(servers <= 5, `at most 5 server connections, saw ${servers}`);
  });

  it('applies startup parameters as PostgreSQL does and RESET returns to them', async () => {
    await withClient(proxy.port, db, async (c) => {
      const show = async (n: string) => (await c.query(`SELECT current_setting('${n}') AS v`)).rows[0].v;
      assert.equal(await show('statement_timeout'), '1234ms');
      assert.equal(await show('app.tenant'), 'acme');
      assert.equal(await show('DateStyle'), 'German, DMY');
      await c.query('SET statement_timeout = 5000');
      assert.equal(await show('statement_timeout'), '5s');
      await c.query('RESET statement_timeout');
      assert.equal(await show('statement_timeout'), '1234ms');
      await c.query(`SET app.tenant = 'other'`);
      assert.equal(await show('app.tenant'), 'other');
      await c.query('RESET ALL');
      assert.equal(await show('app.tenant'), 'acme');
      await assert.rejects(c.query('SELECT pg_sleep(2)'), (e: { code?: string }) => e.code === '57014');
    }, { options: '-c statement_timeout=1234 -c app.tenant=acme -c DateStyle=German,DMY' } as never);
  });

  it('keeps SET and temp tables of one client invisible to others in transaction pooling', async () => {
    const a = client(proxy.port, db); const b = client(proxy.port, db);
    await a.connect(); await b.connect();
    try {
      await a.query(`SET application_name = 'client_a'`);
      await a.query(`SET search_path = pg_catalog`);
      await a.query('CREATE TEMP TABLE only_a (x int)');
      await a.query('INSERT INTO only_a VALUES (1)');
      for (let i = 0; i < 10; i++) {
        assert.equal((await b.query(`SELECT current_setting('search_path') AS v`)).rows[0].v, '"$user", public');
        assert.notEqual((await b.query(`SELECT current_setting('application_name') AS v`)).rows[0].v, 'client_a');
        await assert.rejects(b.query('SELECT * FROM only_a'), (e: { code?: string }) => e.code === '42P01');
        assert.equal((await a.query(`SELECT current_setting('search_path') AS v`)).rows[0].v, 'pg_catalog');
        assert.equal((await a.query('SELECT count(*)::int AS n FROM only_a')).rows[0].n, 1);
      }
    } finally { await a.end(); await b.end(); }
  });

  it('rolls back what a client left open when it disconnects mid-transaction', async () => {
    await withClient(proxy.port, db, (c) => c.query('CREATE TABLE IF NOT EXISTS left_open (x int)'));
    const c = client(proxy.port, db);
    await c.connect();
    c.on('error', () => undefined);
    await c.query('BEGIN');
    await c.query('INSERT INTO left_open VALUES (1)');
    (c as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
    await new Promise((r) => setTimeout(r, 300));
    const idleInTx = psqlAt(port0, `SELECT count(*) FROM pg_stat_activity WHERE datname = '${db}' AND state LIKE 'idle in transaction%'`).trim();
    assert.equal(idleInTx, '0');
    assert.equal(psqlAt(port0, 'SELECT count(*) FROM left_open', db).trim(), '0');
  });

  it('gives a proper error when the server connection is terminated under a client, and never reuses it', async () => {
    const c = client(proxy.port, db);
    await c.connect();
    c.on('error', () => undefined);
    await c.query('BEGIN');
    const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    psqlAt(port0, `SELECT pg_terminate_backend(${pid})`);
    await assert.rejects(c.query('SELECT 1'), (e: { code?: string }) => e.code === '57P01' || e.code === '08006');
    await c.end().catch(() => undefined);
    for (let i = 0; i < 10; i++) {
      await withClient(proxy.port, db, async (d) => assert.notEqual((await d.query('SELECT pg_backend_pid() AS p')).rows[0].p, pid));
    }
  });
});

function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      const b = Buffer.alloc(16);
      b.writeInt32BE(16, 0); b.writeInt32BE(80877102, 4); b.writeInt32BE(pid, 8); b.writeInt32BE(secret, 12);
      s.end(b);
    });
    s.on('close', () => resolve());
    s.on('error', reject);
  });
}
