// LISTEN / NOTIFY through a 3-shard pgring with ZooKeeper. Every LISTEN and NOTIFY meets on one
// shard (the first live one): before, each went to the first shard its session happened to use,
// so a listener in session pooling that had read another shard, or a NOTIFY inside a transaction
// that had written another shard, never met. A NOTIFY inside a transaction is held until the
// transaction commits (after its data is visible), and dropped when it rolls back: sent with a
// write transaction over several shards it made PREPARE TRANSACTION fail the commit.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { ClusterInfo } from '../../src/local/cluster';

let cluster: ClusterInfo;
let ports: number[];
let db: string;
let tx: RunningProxy;
let session: RunningProxy;
const open: pg.Client[] = [];

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 3).map((p) => p.port);
  db = uniqueName('notify');
  createDatabase(ports, db);
  for (const p of ports) {
    const c = new pg.Client({ host: '127.0.0.1', port: p, user: 'postgres', database: db });
    await c.connect();
    await c.query('CREATE TABLE jobs (id int PRIMARY KEY, state text)');
    await c.end();
  }
  const zkName = uniqueName('notify');
  const sharding = { tables: [{ name: 'jobs', column: 'id', type: 'integer' as const, columns: ['id', 'state'] }] };
  tx = await startProxy(await baseConfig(cluster, 3, { sharding, zookeeper: { connect: cluster.zk, cluster: zkName, sessionTimeoutMs: 4000 } }));
  session = await startProxy(await baseConfig(cluster, 3, { sharding, pool: { mode: 'session', maxSize: 10 }, zookeeper: { connect: cluster.zk, cluster: zkName, sessionTimeoutMs: 4000 } }));
});

after(async () => {
  for (const c of open) await c.end().catch(() => undefined);
  await tx?.stop();
  await session?.stop();
  dropDatabase(ports, db);
});

async function connect(p: RunningProxy): Promise<pg.Client> {
  const c = client(p.port, db);
  c.on('error', () => undefined);
  await c.connect();
  open.push(c);
  return c;
}
/** One key on each shard (s1, the notification shard, first). */
function keys(): number[] {
  const out: number[] = [];
  for (let sh = 0; sh < 3; sh++) {
    let k = 1;
    while (tx.proxy.ctx.shards.shardForKey('integer', String(k)) !== sh) k++;
    out.push(k);
  }
  return out;
}
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 400));

describe('LISTEN / NOTIFY over 3 shards', () => {
  it('a listener hears NOTIFY from any session: outside a transaction, after a write on another shard, after a two-shard commit', async () => {
    const [k1, k2, k3] = keys();
    // the listener (session pooling) first reads a row of another shard: its session holds that shard
    const listener = await connect(session);
    await listener.query('SELECT * FROM jobs WHERE id = $1', [k2]);
    const heard: { payload: string; visible: boolean }[] = [];
    const checker = await connect(tx);
    listener.on('notification', (m) => {
      // what a job queue does: the notification says a row is there, read it
      void checker.query('SELECT count(*) AS n FROM jobs WHERE id = $1', [Number(m.payload!.split(':')[1] ?? 0)]).then((r) => heard.push({ payload: m.payload!, visible: r.rows[0].n === '1' }));
    });
    await listener.query('LISTEN jobs');
    const n = await connect(tx);
    await n.query("NOTIFY jobs, 'plain:0'");
    await n.query('BEGIN');
    await n.query("INSERT INTO jobs VALUES ($1, 'new')", [k3]);
    await n.query(`NOTIFY jobs, 'one-shard:${k3}'`);
    await n.query('COMMIT');
    await n.query('BEGIN');
    await n.query("INSERT INTO jobs VALUES ($1, 'new')", [k1]);
    await n.query("INSERT INTO jobs VALUES ($1, 'new')", [k2]);
    await n.query(`NOTIFY jobs, 'two-shard:${k2}'`);
    await n.query('COMMIT');
    for (let i = 0; i < 20 && heard.length < 3; i++) await settle();
    assert.deepEqual(heard.map((h) => h.payload).sort(), ['one-shard:' + k3, 'plain:0', 'two-shard:' + k2].sort());
    assert.ok(heard.filter((h) => h.payload !== 'plain:0').every((h) => h.visible), `a notification came before its transaction's row was visible: ${JSON.stringify(heard)}`);
    await listener.query('UNLISTEN jobs');
  });

  it('a rolled-back transaction notifies nobody; ROLLBACK TO drops what followed the savepoint', async () => {
    const listener = await connect(tx);
    const heard: string[] = [];
    listener.on('notification', (m) => heard.push(m.payload!));
    await listener.query('LISTEN jobs2');
    const n = await connect(tx);
    await n.query('BEGIN');
    await n.query("NOTIFY jobs2, 'rolled back'");
    await n.query('ROLLBACK');
    await n.query('BEGIN');
    await n.query("NOTIFY jobs2, 'kept'");
    await n.query('SAVEPOINT s');
    await n.query("NOTIFY jobs2, 'dropped'");
    await n.query('ROLLBACK TO SAVEPOINT s');
    await n.query("NOTIFY jobs2, 'kept'");       // the same payload twice in a transaction: PostgreSQL sends it once
    await n.query('COMMIT');
    await n.query("SELECT pg_notify('jobs2', 'function')");
    for (let i = 0; i < 10 && heard.length < 2; i++) await settle();
    await settle();
    assert.deepEqual(heard, ['kept', 'function']);
  });

  it('pg_notify() without tables reaches the listeners from a session that holds another shard', async () => {
    const [, k2] = keys();
    const listener = await connect(tx);
    const heard: string[] = [];
    listener.on('notification', (m) => heard.push(m.payload!));
    await listener.query('LISTEN jobs5');
    // session pooling: this session keeps the connection to the shard it read (before: pg_notify ran there)
    const n = await connect(session);
    await n.query('SELECT * FROM jobs WHERE id = $1', [k2]);
    await n.query("SELECT pg_notify('jobs5', 'by function')");
    await n.query('SELECT pg_notify($1, $2)', ['jobs5', 'with parameters']);
    for (let i = 0; i < 10 && heard.length < 2; i++) await settle();
    assert.deepEqual(heard, ['by function', 'with parameters']);
  });

  it('pg_notify() in a transaction that writes several shards (s1 too) is sent after the commit, in both protocols; its checks and answer are PostgreSQL\'s', async () => {
    // Before, it ran on s1 inside the transaction, and COMMIT failed: "cannot PREPARE a
    // transaction that has executed LISTEN, UNLISTEN, or NOTIFY".
    const [k1, k2, k3] = [0, 1, 2].map((sh) => { let k = 9000; while (tx.proxy.ctx.shards.shardForKey('integer', String(k)) !== sh) k++; return k; });
    const listener = await connect(tx);
    const heard: string[] = [];
    listener.on('notification', (m) => heard.push(`${m.channel}:${m.payload}`));
    await listener.query('LISTEN jobs6');
    await listener.query('LISTEN "Jobs 7"');
    const n = await connect(tx);
    await n.query('BEGIN');
    await n.query("INSERT INTO jobs VALUES ($1, 'a'), ($2, 'b')", [k1, k2]);
    const r = await n.query({ text: 'SELECT pg_notify($1, $2)', values: ['jobs6', 'ext'], rowMode: 'array' });
    assert.deepEqual(r.rows, [['']]);
    assert.equal(r.fields[0]!.name, 'pg_notify');
    assert.equal(r.fields[0]!.dataTypeID, 2278);
    const s = await n.query("SELECT pg_notify('jobs6', 'it''s simple') AS a, pg_catalog.pg_notify('Jobs 7', NULL) AS b");
    assert.deepEqual(s.rows, [{ a: '', b: '' }]);
    await n.query("INSERT INTO jobs VALUES ($1, 'c')", [k3]);
    await settle();
    assert.deepEqual(heard, [], 'heard before the commit');
    await n.query('COMMIT');
    for (let i = 0; i < 10 && heard.length < 3; i++) await settle();
    assert.deepEqual(heard, ['jobs6:ext', "jobs6:it's simple", 'Jobs 7:']);
    assert.equal((await n.query('SELECT count(*)::int AS c FROM jobs WHERE id = ANY($1)', [[k1, k2, k3]])).rows[0].c, 3);
    // the call's own errors, as PostgreSQL gives them (22023), and the transaction fails
    for (const [args, msg] of [[['', 'x'], 'channel name cannot be empty'], [['x'.repeat(64), 'x'], 'channel name too long'], [['jobs6', 'y'.repeat(8000)], 'payload string too long']] as const) {
      await n.query('BEGIN');
      await n.query("UPDATE jobs SET state = 'd' WHERE id = $1", [k1]);
      await assert.rejects(n.query('SELECT pg_notify($1, $2)', [...args]), (e: Error & { code?: string }) => e.code === '22023' && e.message === msg);
      await assert.rejects(n.query('SELECT 1'), (e: Error & { code?: string }) => e.code === '25P02');
      await n.query('ROLLBACK');
    }
    // rolled back: nothing heard
    await n.query('BEGIN');
    await n.query("UPDATE jobs SET state = 'e' WHERE id = ANY($1)", [[k1, k2]]);
    await n.query("SELECT pg_notify('jobs6', 'rolled back')");
    await n.query('ROLLBACK');
    await settle();
    assert.deepEqual(heard.length, 3);
    await listener.query('UNLISTEN *');
  });

  it('a NOTIFY in a query string that writes several shards is sent when the string commits, and not when it fails', async () => {
    // keys of their own, one per shard
    const [k1, k2, k3] = [0, 1, 2].map((sh) => { let k = 7000; while (tx.proxy.ctx.shards.shardForKey('integer', String(k)) !== sh) k++; return k; });
    const listener = await connect(tx);
    const heard: string[] = [];
    listener.on('notification', (m) => heard.push(m.payload!));
    await listener.query('LISTEN jobs3');
    const n = await connect(tx);
    await n.query(`INSERT INTO jobs VALUES (${k2}, 'a'); INSERT INTO jobs VALUES (${k3}, 'b'); NOTIFY jobs3, 'string'`);
    await assert.rejects(n.query(`INSERT INTO jobs VALUES (${k1}, 'c'); NOTIFY jobs3, 'failed'; INSERT INTO jobs VALUES (${k2}, 'dup')`), (e: Error & { code?: string }) => e.code === '23505');
    for (let i = 0; i < 10 && heard.length < 1; i++) await settle();
    await settle();
    assert.deepEqual(heard, ['string']);
  });
});

describe('advisory locks over 3 shards', () => {
  it('two sessions locking the same number exclude each other, whatever shards they used before', async () => {
    const [, k2, k3] = keys();
    // session pooling: each session first reads a row of another shard, so its session holds that shard
    const a = await connect(session);
    const b = await connect(session);
    await a.query(`SELECT * FROM jobs WHERE id = ${k2}`);   // simple protocol: no statement prepared on the first shard
    await b.query(`SELECT * FROM jobs WHERE id = ${k3}`);
    assert.equal((await a.query('SELECT pg_try_advisory_lock(4242) AS ok')).rows[0].ok, true);
    // before: b's lock went to another shard than a's and was granted too
    assert.equal((await b.query('SELECT pg_try_advisory_lock(4242) AS ok')).rows[0].ok, false);
    // transaction-level locks, in a transaction that writes a shard
    const t = await connect(tx);
    await t.query('BEGIN');
    await t.query("INSERT INTO jobs VALUES ($1, 'x')", [k3 + 3000]);
    assert.equal((await t.query('SELECT pg_try_advisory_xact_lock(4242) AS ok')).rows[0].ok, false);
    assert.equal((await t.query('SELECT pg_try_advisory_xact_lock(4343) AS ok')).rows[0].ok, true);
    assert.equal((await b.query('SELECT pg_try_advisory_lock(4343) AS ok')).rows[0].ok, false);
    await t.query('COMMIT');
    assert.equal((await b.query('SELECT pg_try_advisory_lock(4343) AS ok')).rows[0].ok, true);
    await a.query('SELECT pg_advisory_unlock(4242)');
    assert.equal((await b.query('SELECT pg_try_advisory_lock(4242) AS ok')).rows[0].ok, true);
    await b.query('SELECT pg_advisory_unlock_all()');
  });
});
