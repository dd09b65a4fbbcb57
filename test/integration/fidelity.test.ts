// What a PostgreSQL client sees through transaction pooling, checked against plain PostgreSQL.
// psql runs the same script directly and through pgring (one shard, same server, another
// database) and the outputs must be identical; session-state cases use two `pg` clients so
// that a server connection really changes hands between them. Found by running PostgreSQL's
// own regression suite (pg_regress) through pgring.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import pg from 'pg';
import { testCluster, uniqueName, psqlAt } from '../helpers/env';
import { baseConfig, client, createDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { Pool } from '../../src/backend/pool';
import { serialize } from 'pg-protocol';
import { WireClient, WireMsg } from '../helpers/wire';

let cluster: Awaited<ReturnType<typeof testCluster>>;
let proxy: RunningProxy;
let serverPort: number;
let directDb: string;
let proxiedDb: string;
const tag = uniqueName('fid');

before(async () => {
  cluster = await testCluster();
  serverPort = cluster.pg[0]!.port;
  directDb = uniqueName('fid_direct');
  proxiedDb = uniqueName('fid_proxied');
  createDatabase([serverPort], directDb);
  createDatabase([serverPort], proxiedDb);
  psqlAt(serverPort, `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fid_role') THEN CREATE ROLE fid_role; END IF; END $$`);
  proxy = await startProxy(await baseConfig(cluster, 1, { pool: { maxSize: 4 } }));
});

after(async () => {
  await proxy?.stop();
  for (const d of [directDb, proxiedDb]) psqlAt(serverPort, `DROP DATABASE IF EXISTS ${d} WITH (FORCE)`);
});

async function connected(port: number, db: string): Promise<pg.Client> {
  const c = client(port, db);
  await c.connect();
  return c;
}

/** psql -a output (statements echoed, errors and notices interleaved), file name prefix removed.
 *  Asynchronous: pgring runs in this process. */
function psqlRun(port: number, db: string, script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `psql -X -a -q -h 127.0.0.1 -p ${port} -U postgres -d ${db} -f - 2>&1`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    const timer = setTimeout(() => { child.kill(); reject(new Error(`psql timed out; output so far:\n${out}`)); }, 60000);
    child.stdout.on('data', (d) => { out += d; });
    child.on('exit', () => { clearTimeout(timer); resolve(out.replace(/psql:<stdin>:\d+: /g, '')); });
    child.stdin.end(script);
  });
}

async function sameAsPostgres(script: string): Promise<void> {
  const want = await psqlRun(serverPort, directDb, script);
  const got = await psqlRun(proxy.port, proxiedDb, script);
  assert.equal(got, want);
}

describe('PostgreSQL behaviour through transaction pooling (against plain PostgreSQL)', () => {
  it('answers BEGIN / COMMIT / ROLLBACK [AND CHAIN] and failed blocks as PostgreSQL does', async () => {
    await sameAsPostgres(`
CREATE TABLE trans_abc (a int);
START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE, DEFERRABLE;
SHOW transaction_isolation;
INSERT INTO trans_abc VALUES (1);
COMMIT AND CHAIN;
SHOW transaction_isolation;
INSERT INTO trans_abc VALUES ('error');
INSERT INTO trans_abc VALUES (3);
COMMIT AND CHAIN;
SHOW transaction_isolation;
SHOW transaction_deferrable;
INSERT INTO trans_abc VALUES (4);
COMMIT;
START TRANSACTION ISOLATION LEVEL SERIALIZABLE;
COMMIT AND CHAIN;
SHOW transaction_isolation;
ROLLBACK AND CHAIN;
SHOW transaction_isolation;
ROLLBACK;
COMMIT AND CHAIN;
ROLLBACK AND CHAIN;
COMMIT;
ROLLBACK;
BEGIN;
BEGIN;
SELECT 1/0;
BEGIN;
SELECT 1;
ROLLBACK;
SELECT * FROM trans_abc ORDER BY 1;
CREATE TABLE dpk (id int PRIMARY KEY);
CREATE TABLE dfk (id int, r int REFERENCES dpk DEFERRABLE INITIALLY DEFERRED);
BEGIN;
INSERT INTO dfk VALUES (1, 20);
COMMIT;
BEGIN;
INSERT INTO dfk VALUES (2, 20);
SHOW transaction_isolation;
ROLLBACK;
begin;
bogus;
;
rollback;
`);
  });

  it('keeps the same transaction semantics in a session pinned by a temporary table', async () => {
    await sameAsPostgres(`
CREATE TEMP TABLE pk (id int PRIMARY KEY);
CREATE TEMP TABLE fk (id int PRIMARY KEY, r int REFERENCES pk DEFERRABLE INITIALLY DEFERRED);
BEGIN;
INSERT INTO fk VALUES (0, 20);
COMMIT;
BEGIN;
INSERT INTO fk VALUES (1, 20);
UPDATE fk SET id = id + 1;
SELECT count(*) FROM fk;
ROLLBACK;
SET default_transaction_read_only = on;
START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE, DEFERRABLE;
INSERT INTO pk VALUES (1);
COMMIT AND CHAIN;
SHOW transaction_isolation;
INSERT INTO pk VALUES ('error');
INSERT INTO pk VALUES (3);
COMMIT AND CHAIN;
SHOW transaction_isolation;
SHOW transaction_read_only;
INSERT INTO pk VALUES (4);
COMMIT;
RESET default_transaction_read_only;
SELECT * FROM pk;
`);
  });

  it('PREPARE TRANSACTION ends the block; COMMIT / ROLLBACK PREPARED outside it', async () => {
    await sameAsPostgres(`
CREATE TABLE px (a int);
BEGIN;
INSERT INTO px VALUES (10);
PREPARE TRANSACTION '${tag}_1';
SELECT * FROM px;
SHOW transaction_isolation;
COMMIT PREPARED '${tag}_1';
SELECT * FROM px;
BEGIN;
PREPARE TRANSACTION '${tag}_2';
ROLLBACK PREPARED '${tag}_2';
PREPARE TRANSACTION '${tag}_3';
BEGIN;
SELECT 1/0;
PREPARE TRANSACTION '${tag}_4';
BEGIN;
INSERT INTO px VALUES (11);
PREPARE TRANSACTION '${tag}_5';
BEGIN;
COMMIT PREPARED '${tag}_5';
ROLLBACK;
COMMIT PREPARED '${tag}_5';
BEGIN;
INSERT INTO px VALUES (12);
PREPARE TRANSACTION '${tag}_6';
BEGIN;
INSERT INTO px VALUES (13);
PREPARE TRANSACTION '${tag}_6';
BEGIN ISOLATION LEVEL SERIALIZABLE;
SHOW transaction_isolation;
COMMIT;
BEGIN;
CREATE TEMP TABLE ptemp (a int);
PREPARE TRANSACTION '${tag}_7';
SHOW transaction_isolation;
ROLLBACK PREPARED '${tag}_6';
SELECT * FROM px ORDER BY 1;
SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE '${tag}%';
`);
  });

  it('statements pgring cannot tokenize get PostgreSQL\'s own error, as PostgreSQL reports it', async () => {
    await sameAsPostgres(`
SELECT 0x0o;
SELECT U&'wrong: \\+2FFFFF';
SELECT E'wrong: \\U002FFFFF';
CREATE TABLE lexed (a int); SELECT 0x0o;
SELECT count(*) FROM pg_class WHERE relname = 'lexed';
SELECT 1 +;
`);
  });
});

describe('session state stays with its client when connections change hands', () => {
  /** Client B takes the server connection A just released (the pool hands out the last one back). */
  async function handOver(a: pg.Client, b: pg.Client): Promise<void> {
    await a.query('SELECT 1');
    await b.query('BEGIN');
    await b.query('SELECT 1');
  }

  it('temporary views, sequences and tables made by SELECT INTO keep the client on its connection', async () => {
    const a = await connected(proxy.port, proxiedDb);
    const b = await connected(proxy.port, proxiedDb);
    try {
      await a.query('CREATE TEMP VIEW tv AS SELECT 42 AS x');
      await a.query('CREATE TEMP SEQUENCE tseq');
      await a.query('SELECT 7 AS y INTO TEMP tinto');
      await a.query('CREATE TABLE pg_temp.tplain (z int)');
      await handOver(a, b);
      assert.equal((await a.query('SELECT x FROM tv')).rows[0].x, 42);
      assert.equal((await a.query(`SELECT nextval('tseq') AS n`)).rows[0].n, '1');
      assert.equal((await a.query('SELECT y FROM tinto')).rows[0].y, 7);
      await a.query('INSERT INTO tplain VALUES (1)');
      await b.query('ROLLBACK');
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('SET ROLE and SET SESSION AUTHORIZATION never reach the next client; RESET ALL keeps them as PostgreSQL does', async () => {
    const a = await connected(proxy.port, proxiedDb);
    const b = await connected(proxy.port, proxiedDb);
    try {
      await a.query('SET ROLE fid_role');
      await handOver(a, b);
      assert.equal((await b.query('SELECT current_user AS u')).rows[0].u, 'postgres');
      await b.query('COMMIT');
      assert.equal((await a.query('SELECT current_user AS u')).rows[0].u, 'fid_role');
      await a.query('RESET ALL');
      assert.equal((await a.query('SELECT current_user AS u')).rows[0].u, 'fid_role');
      await a.query('RESET ROLE');
      await a.query('SET SESSION AUTHORIZATION fid_role');
      await handOver(a, b);
      assert.deepEqual((await b.query('SELECT current_user AS u, session_user AS s')).rows[0], { u: 'postgres', s: 'postgres' });
      await b.query('COMMIT');
      assert.deepEqual((await a.query('SELECT current_user AS u, session_user AS s')).rows[0], { u: 'fid_role', s: 'fid_role' });
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('session pooling: a role set before a failed transaction block does not reach the next client of the connection', async () => {
    const session = await startProxy(await baseConfig(cluster, 1, { pool: { mode: 'session', maxSize: 1 } }));
    try {
      const a = await connected(session.port, proxiedDb);
      await a.query('SET SESSION AUTHORIZATION fid_role');
      await a.query('BEGIN');
      await assert.rejects(a.query('SELECT 1/0'));
      await a.query('END');
      await a.end();
      const b = await connected(session.port, proxiedDb); // the same server connection (pool of 1)
      try {
        assert.deepEqual((await b.query('SELECT current_user AS u, session_user AS s')).rows[0], { u: 'postgres', s: 'postgres' });
      } finally { await b.end(); }
    } finally { await session.stop(); }
  });

  it('DROP DATABASE through pgring is not blocked by pgring\'s own idle connections to that database', async () => {
    const victim = uniqueName('fid_drop');
    createDatabase([serverPort], victim);
    const v = await connected(proxy.port, victim);
    await v.query('SELECT 1');
    await v.end(); // its server connection stays in pgring's pool, idle
    const c = await connected(proxy.port, 'postgres');
    try {
      await c.query(`DROP DATABASE ${victim}`);
    } finally {
      await c.end();
    }
    assert.equal(psqlAt(serverPort, `SELECT count(*) FROM pg_database WHERE datname = '${victim}'`), '0\n');
  });
});

describe('pool', () => {
  it('serves a waiter for other startup parameters when the connection opened for an earlier waiter went elsewhere', async () => {
    const pool = new Pool({ host: '127.0.0.1', port: serverPort, shard: 0, shardName: 's1' }, { user: 'postgres', database: proxiedDb },
      { maxSize: 3, minSize: 0, queueTimeoutMs: 3000, connectTimeoutMs: 5000, idleTimeoutMs: 0 });
    const A: [string, string][] = [['application_name', 'fid_a']];
    const B: [string, string][] = [['application_name', 'fid_b']];
    try {
      const first = await pool.acquire(A, 'a');
      const second = pool.acquire(A, 'a'); // waits; a connection is opened for it
      pool.release(first); // ... but it gets this one at once
      const third = pool.acquire(B, 'b'); // nothing is on its way for these parameters
      assert.equal(await second, first);
      const got = await third; // before the fix: 53300 after queueTimeoutMs
      assert.equal(got.paramsKey, 'b');
      pool.release(got);
      pool.release(first);
    } finally {
      pool.close();
    }
  });

  it('a connection that finishes opening after the pool closed is closed, not left open', async () => {
    const pool = new Pool({ host: '127.0.0.1', port: serverPort, shard: 0, shardName: 's1' }, { user: 'postgres', database: proxiedDb },
      { maxSize: 3, minSize: 0, queueTimeoutMs: 3000, connectTimeoutMs: 5000, idleTimeoutMs: 0 });
    const tag = `fid_late_${process.pid}`;
    const open = () => Number(psqlAt(serverPort, `SELECT count(*) FROM pg_stat_activity WHERE application_name = '${tag}'`).trim());
    const waiter = pool.acquire([['application_name', tag]], tag); // a connection is being opened for it
    pool.close(); // the proxy stops meanwhile (before the fix the late connection went idle in the closed pool)
    await assert.rejects(waiter, (e: { code?: string }) => e.code === '57P01');
    const deadline = Date.now() + 5000;
    while (open() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 500)); // it may finish opening only now
    while (open() > 0 && Date.now() < deadline + 5000) await new Promise((r) => setTimeout(r, 100));
    assert.equal(open(), 0, 'no server session left behind');
  });
});

describe('extended-protocol pipelines (libpq pipeline mode), against plain PostgreSQL', () => {
  const { parse: P, bind: B, describe: D, execute: E, sync: S } = serialize;
  /** The same messages to plain PostgreSQL and through pgring; the answers must be the same. */
  async function sameAnswers(setup: string, msgs: () => Buffer[], syncs: number): Promise<WireMsg[]> {
    const answers: WireMsg[][] = [];
    for (const [port, db] of [[serverPort, directDb], [proxy.port, proxiedDb]] as const) {
      const c = await WireClient.connect(port, db);
      try {
        c.send([serialize.query(setup)]);
        await c.until(1, 10000);
        c.send(msgs());
        answers.push(await c.until(syncs, 30000));
      } finally { c.close(); }
    }
    assert.deepEqual(answers[1], answers[0]);
    return answers[0]!;
  }

  it('a ROLLBACK prepared before an error is skipped up to Sync, and the one after a Sync runs', async () => {
    // libpq's own pipeline test "transaction": pgring answers BEGIN/ROLLBACK itself, and must not
    // act on one PostgreSQL would have skipped, nor refuse what follows a pipelined ROLLBACK.
    const got = await sameAnswers('DROP TABLE IF EXISTS pipe_tx; CREATE TABLE pipe_tx (id int)', () => [
      P({ name: 'rb', text: 'ROLLBACK' }),
      P({ text: 'BEGIN' }), B({}), D({ type: 'P' }), E({}),
      P({ text: 'SELECT 0/0' }), B({}), D({ type: 'P' }), E({}),
      B({ statement: 'rb' }), D({ type: 'P' }), E({}),
      P({ text: 'INSERT INTO pipe_tx VALUES (1)' }), B({}), D({ type: 'P' }), E({}),
      S(),
      P({ text: 'INSERT INTO pipe_tx VALUES (2)' }), B({}), D({ type: 'P' }), E({}),
      S(),
      B({ statement: 'rb' }), D({ type: 'P' }), E({}),
      P({ text: 'INSERT INTO pipe_tx VALUES (3)' }), B({}), D({ type: 'P' }), E({}),
      S(), S(),
      serialize.query('SELECT id FROM pipe_tx'),
    ], 5);
    assert.deepEqual(got.filter((m) => m.name === 'dataRow').map((m) => m.values), [['3']]);
  });

  it('an empty transaction: tags and ReadyForQuery status as PostgreSQL sends them', async () => {
    const got = await sameAnswers('SELECT 1', () => ['START TRANSACTION', 'COMMIT', 'BEGIN', 'ROLLBACK', 'BEGIN', 'END', 'BEGIN', 'ABORT']
      .map((q) => serialize.query(q)), 8);
    assert.deepEqual(got.filter((m) => m.name === 'readyForQuery').map((m) => m.status).join(''), 'TITITITI');
  });

  it('a backend terminated while it runs a query: the client gets its FATAL once, then the connection closes', async () => {
    const outcomes: WireMsg[][] = [];
    for (const [port, db] of [[serverPort, directDb], [proxy.port, proxiedDb]] as const) {
      const c = await WireClient.connect(port, db);
      c.send([serialize.query('CREATE TEMP TABLE keep_me (a int)')]); // pins the server connection
      await c.until(1, 10000);
      c.send([serialize.query('SELECT pg_backend_pid()')]);
      const pid = (await c.until(1, 10000)).find((m) => m.name === 'dataRow')!.values![0]!;
      c.send([serialize.query('SELECT pg_sleep(30)')]);
      await new Promise((r) => setTimeout(r, 300));
      psqlAt(serverPort, `SELECT pg_terminate_backend(${pid})`);
      outcomes.push((await c.untilClosed(10000)).filter((m) => m.name === 'error'));
    }
    assert.deepEqual(outcomes[1], outcomes[0]);
    assert.deepEqual(outcomes[0], [{ name: 'error', code: '57P01', severity: 'FATAL' }]);
  });

  it('garbage instead of a startup packet is closed without an answer, as PostgreSQL does', async () => {
    for (const port of [serverPort, proxy.port]) {
      const s = net.connect({ host: '127.0.0.1', port });
      const got: Buffer[] = [];
      s.on('data', (d) => got.push(d));
      s.on('error', () => undefined);
      await new Promise<void>((r) => s.once('connect', r));
      s.write(serialize.end()); // Terminate before any StartupMessage (pg's connect(); end())
      await new Promise<void>((r) => s.once('close', r));
      assert.equal(Buffer.concat(got).length, 0, `port ${port}`);
    }
  });

  it('an unknown user is refused as PostgreSQL refuses it under trust (every configured user is trust)', async () => {
    const errs: string[] = [];
    for (const port of [serverPort, proxy.port]) {
      const c = client(port, directDb, { user: 'fid_nobody' });
      await assert.rejects(c.connect(), (e: { code?: string; message: string }) => { errs.push(`${e.code} ${e.message}`); return true; });
    }
    assert.deepEqual(errs, ['28000 role "fid_nobody" does not exist', '28000 role "fid_nobody" does not exist']);
  });

  it('a client that does not authenticate within authTimeoutMs is disconnected with 57014', async () => {
    const quick = await startProxy(await baseConfig(cluster, 1, { authTimeoutMs: 300 }));
    try {
      const s = net.connect({ host: '127.0.0.1', port: quick.port });
      const got: Buffer[] = [];
      s.on('data', (d) => got.push(d));
      s.on('error', () => undefined);
      await new Promise<void>((r) => s.once('close', r));
      assert.match(Buffer.concat(got).toString('latin1'), /57014.*canceling authentication due to timeout/s);
    } finally { await quick.stop(); }
  });

  it('Describe and Execute of an SQL cursor (DECLARE) reach the server that holds it', async () => {
    const got = await sameAnswers('SELECT 1', () => [
      serialize.query('BEGIN'),
      serialize.query('DECLARE cur CURSOR FOR SELECT 1::int4 AS one, \'x\'::text AS two'),
      D({ type: 'P', name: 'cur' }), S(),
      E({ portal: 'cur', rows: 0 }), S(),
      serialize.query('ROLLBACK'),
    ], 5);
    assert.deepEqual(got.find((m) => m.name === 'rowDescription')?.types, [23, 25]);
    assert.deepEqual(got.filter((m) => m.name === 'dataRow').map((m) => m.values), [['1', 'x']]);
  });

  it('answers a pipeline of 200,000 Bind/Execute without a Sync in between (no per-request scan of the queue)', async () => {
    const n = 200000;
    const c = await WireClient.connect(proxy.port, proxiedDb);
    try {
      c.send([serialize.query('DROP TABLE IF EXISTS pipe_long; CREATE TABLE pipe_long (id int)')]);
      await c.until(1, 10000);
      const msgs: Buffer[] = [P({ name: 'ins', text: 'INSERT INTO pipe_long VALUES ($1)', types: [23] })];
      for (let i = 0; i < n; i++) msgs.push(B({ statement: 'ins', values: [String(i)] }), E({}));
      msgs.push(S());
      c.send(msgs);
      const got = await c.until(1, 120000);
      assert.equal(got.filter((m) => m.name === 'commandComplete').length, n);
      assert.equal(got.filter((m) => m.name === 'error').length, 0);
    } finally { c.close(); }
  });
});
