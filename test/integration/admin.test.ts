// The admin console on the proxy port (database `pgring`): every SHOW command's
// columns, errors for unknown commands, admin-only access, PAUSE/RESUME and RELOAD
// (valid and invalid config) against an in-process proxy over the test cluster.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RawConfig, withClient } from '../helpers/proxy';
import { psql } from '../helpers/tools';
import { Proxy } from '../../src/proxy';
import { silentLogger } from '../../src/log';

let proxy: Proxy;
let db: string;
let ports: number[];
let configFile: string;
let raw: RawConfig;

const ADMIN_SECRET = 'adm1n-s3cret';

before(async () => {
  const cluster = await testCluster();
  ports = cluster.pg.slice(0, 2).map((p) => p.port);
  db = uniqueName('adm');
  createDatabase(ports, db);
  raw = await baseConfig(cluster, 2, {
    pool: { maxSize: 5 },
    users: [
      { name: 'postgres', auth: 'trust', admin: true },
      { name: 'app', auth: 'trust', serverUser: 'postgres' },
      { name: 'boss', auth: 'md5', password: ADMIN_SECRET, serverUser: 'postgres', admin: true },
    ],
  });
  configFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-admin-')), 'proxy.json');
  fs.writeFileSync(configFile, JSON.stringify(raw, null, 2));
  proxy = new Proxy({ configFile, log: silentLogger });
  await proxy.start();
});

after(async () => {
  await proxy?.stop();
  dropDatabase(ports, db);
});

function admin(opts: Partial<pg.ClientConfig> = {}): pg.Client {
  return client(proxy.port, 'pgring', opts);
}

async function adminQuery(sql: string): Promise<pg.QueryResult> {
  return withClient(proxy.port, 'pgring', (c) => c.query(sql));
}

const EXPECTED: Record<string, string[]> = {
  'SHOW HELP': ['command', 'description'],
  'SHOW SHARDS': ['name', 'weight', 'share_pct', 'in_ring', 'backends', 'state', 'role', 'live_backends', 'backend_count'],
  'SHOW BACKENDS': ['shard', 'host', 'port', 'role', 'state', 'checked_at', 'error', 'sv_active', 'sv_idle', 'sv_login', 'cl_waiting', 'lsn', 'replay_lag_bytes', 'replay_lag_s', 'epoch'],
  'SHOW RING': ['version', 'hash', 'vnodes', 'seed', 'shard', 'weight', 'points', 'share_pct', 'total_points'],
  'SHOW POOLS': ['database', 'user', 'shard', 'backend', 'cl_active', 'cl_waiting', 'sv_active', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode', 'pool_size'],
  'SHOW STATS': ['database', 'shard', 'total_xact_count', 'total_query_count', 'total_received', 'total_sent', 'total_xact_time', 'total_query_time', 'total_wait_time',
    'avg_xact_count', 'avg_query_count', 'avg_recv', 'avg_sent', 'avg_xact_time', 'avg_query_time', 'avg_wait_time'],
  'SHOW CLIENTS': ['type', 'user', 'database', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'wait', 'wait_us',
    'close_needed', 'pid', 'link', 'tls', 'application_name', 'tx_status', 'shards', 'pins', 'last_query'],
  'SHOW SERVERS': ['type', 'user', 'database', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'remote_pid', 'link',
    'shard', 'tx_status', 'bytes_in', 'bytes_out', 'prepared_statements'],
  'SHOW LOCKS': ['bucket', 'proxy', 'state', 'holder', 'waiting', 'remote_waiting', 'held_ms', 'owner_ms'],
  'SHOW TRANSACTIONS': ['pid', 'user', 'database', 'tx_status', 'shards', 'shard_count', 'server_pids', 'xact_start', 'duration_ms', 'last_query'],
  'SHOW CONFIG': ['key', 'value', 'changeable'],
  'SHOW VERSION': ['version'],
};

describe('admin console', () => {
  before(async () => {
    // Some traffic on both shards so pools, stats and servers have rows.
    await withClient(proxy.port, db, async (c) => {
      await c.query('CREATE TABLE IF NOT EXISTS ref (id int primary key, v text)');
      await c.query('INSERT INTO ref VALUES (1, \'a\') ON CONFLICT DO NOTHING');
      await c.query('SELECT * FROM ref');
    });
  });

  for (const [cmd, columns] of Object.entries(EXPECTED)) {
    it(`${cmd} returns the documented columns`, async () => {
      const r = await adminQuery(cmd);
      const names = r.fields.map((f) => f.name);
      // SHOW LOCKS may append extra columns when a lock manager provides more fields.
      if (cmd === 'SHOW LOCKS') assert.deepEqual(names.slice(0, columns.length), columns);
      else assert.deepEqual(names, columns);
      assert.equal(r.command, 'SHOW');
    });
  }

  it('answers with typed rows: shards, ring, pools, stats, servers, config, version', async () => {
    await withClient(proxy.port, 'pgring', async (c) => {
      const shards = await c.query('SHOW SHARDS');
      assert.deepEqual(shards.rows.map((r) => r.name), ['s1', 's2']);
      const total = shards.rows.reduce((a, r) => a + Number(r.share_pct), 0);
      assert.ok(Math.abs(total - 100) < 0.1, `shares add up to 100 (${total})`);
      assert.equal(shards.rows[0].state, 'live');
      assert.equal(shards.rows[0].backends, `127.0.0.1:${ports[0]}`);
      assert.equal(shards.rows[0].role, 'primary');
      const ring = await c.query('SHOW RING');
      assert.equal(ring.rows.length, 2);
      assert.equal(ring.rows[0].version, '1'); // int8 -> string in pg
      assert.equal(ring.rows[0].vnodes, '256');
      assert.equal(ring.fields.find((f) => f.name === 'version')!.dataTypeID, 20);
      assert.equal(ring.fields.find((f) => f.name === 'share_pct')!.dataTypeID, 1700);
      const pools = await c.query('SHOW POOLS');
      const mine = pools.rows.filter((r) => r.database === db);
      assert.equal(mine.length, 2, 'one pool per shard for the test database');
      for (const p of mine) {
        assert.equal(p.user, 'postgres');
        assert.equal(p.pool_mode, 'transaction');
        assert.ok(Number(p.sv_idle) + Number(p.sv_active) >= 1);
      }
      const stats = await c.query('SHOW STATS');
      const s1 = stats.rows.find((r) => r.database === db && r.shard === 's1');
      assert.ok(s1, 'stats row for the test database on s1');
      assert.ok(Number(s1.total_query_count) >= 1);
      assert.ok(Number(s1.total_xact_count) >= 1);
      assert.ok(Number(s1.total_sent) > 0 && Number(s1.total_received) > 0);
      const servers = await c.query('SHOW SERVERS');
      assert.ok(servers.rows.some((r) => r.database === db && r.state === 'idle' && Number(r.remote_pid) > 0));
      const version = await c.query('SHOW VERSION');
      assert.match(version.rows[0].version, /^pgring \d+\.\d+\.\d+/);
    });
  });

  it('masks passwords in SHOW CONFIG', async () => {
    const r = await adminQuery('SHOW CONFIG');
    const kv = new Map(r.rows.map((x) => [x.key, x.value]));
    assert.equal(kv.get('users[2].password'), '********');
    assert.equal(kv.get('pool.maxSize'), '5');
    assert.equal(kv.get(`listen.port`), String(proxy.port));
    assert.ok(!JSON.stringify(r.rows).includes(ADMIN_SECRET));
    assert.equal(r.rows.find((x) => x.key === 'pool.maxSize').changeable, 'yes');
    assert.equal(r.rows.find((x) => x.key === 'listen.port').changeable, 'no');
  });

  it('is case-insensitive, takes an optional semicolon and several commands', async () => {
    await withClient(proxy.port, 'pgring', async (c) => {
      assert.ok((await c.query('show pools;')).fields.some((f) => f.name === 'cl_active'));
      assert.ok((await c.query('  Show   Shards  ;; ')).rows.length === 2);
      const multi = await c.query('SHOW VERSION; SHOW RING') as unknown as pg.QueryResult[];
      assert.equal(multi.length, 2);
    });
  });

  it('rejects unknown commands with 42601 / 0A000 naming SHOW HELP', async () => {
    await withClient(proxy.port, 'pgring', async (c) => {
      await assert.rejects(c.query('SELECT 1'), (e: { code: string; message: string }) => e.code === '42601' && /SHOW HELP/.test(e.message));
      await assert.rejects(c.query('SHOW NONSENSE'), (e: { code: string; message: string }) => e.code === '0A000' && /SHOW HELP/.test(e.message));
      // The session goes on after an error.
      assert.equal((await c.query('SHOW VERSION')).rows.length, 1);
    });
  });

  it('refuses users that are not admin with 42501', async () => {
    const c = admin({ user: 'app' });
    await assert.rejects(c.connect(), (e: { code: string; message: string }) => e.code === '42501' && /not an admin/.test(e.message));
    // An admin with a password gets in.
    await withClient(proxy.port, 'pgring', async (b) => { assert.equal((await b.query('SHOW VERSION')).rows.length, 1); }, { user: 'boss', password: ADMIN_SECRET });
  });

  it('works with psql', async () => {
    const r = await psql(proxy.port, 'pgring', 'SHOW POOLS', ['-A', '-F', '|']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.split('\n')[0]!, /^database\|user\|shard\|backend\|cl_active\|cl_waiting\|sv_active\|sv_idle\|sv_used/);
    const bad = await psql(proxy.port, 'pgring', 'FROBNICATE');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /SHOW HELP/);
  });

  it('shows clients and an in-flight multi-shard transaction', async () => {
    const app = client(proxy.port, db, { application_name: 'adm-test' });
    await app.connect();
    try {
      await app.query('BEGIN');
      await app.query('UPDATE ref SET v = \'b\' WHERE id = 1'); // reference table: written on every shard
      const clients = await adminQuery('SHOW CLIENTS');
      const me = clients.rows.find((r) => r.application_name === 'adm-test');
      assert.ok(me, 'the app client is listed');
      assert.equal(me.user, 'postgres');
      assert.equal(me.database, db);
      assert.equal(me.tx_status, 'T');
      assert.equal(me.shards, 's1,s2');
      const tx = await adminQuery('SHOW TRANSACTIONS');
      const row = tx.rows.find((r) => r.pid === me.pid);
      assert.ok(row, `multi-shard transaction listed: ${JSON.stringify(tx.rows)}`);
      assert.equal(row.shard_count, '2');
      assert.match(row.last_query, /UPDATE ref/);
      await app.query('ROLLBACK');
      const after = await adminQuery('SHOW TRANSACTIONS');
      assert.ok(!after.rows.some((r) => r.pid === me.pid));
    } finally {
      await app.end();
    }
  });

  it('PAUSE holds client statements until RESUME; the console keeps working', async () => {
    const console = admin();
    await console.connect();
    const app = client(proxy.port, db);
    await app.connect();
    try {
      assert.equal((await console.query('PAUSE')).command, 'PAUSE');
      let done = false;
      const q = app.query('SELECT 42 AS x').then((r) => { done = true; return r; });
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(done, false, 'query held while paused');
      // Another admin connection and the same one both still work.
      assert.equal((await adminQuery('SHOW VERSION')).rows.length, 1);
      assert.ok((await console.query('SHOW POOLS')).rows.length >= 1);
      assert.equal((await console.query('RESUME')).command, 'RESUME');
      assert.equal((await q).rows[0].x, 42);
    } finally {
      await console.query('RESUME').catch(() => undefined);
      await app.end();
      await console.end();
    }
  });

  it('RELOAD applies a valid config and refuses an invalid one', async () => {
    const c = admin();
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    await c.connect();
    try {
      const next = structuredClone(raw) as RawConfig & { pool: Record<string, unknown>; users: unknown[]; listen: { port: number } };
      next.pool = { maxSize: 7, queueTimeoutMs: 4321 };
      next.users.push({ name: 'late', auth: 'trust', serverUser: 'postgres' });
      next.listen = { ...next.listen, port: next.listen.port + 1 };
      fs.writeFileSync(configFile, JSON.stringify(next, null, 2));
      const r = await c.query('RELOAD');
      assert.equal(r.command, 'RELOAD');
      assert.ok(notices.some((n) => /applied: .*pool\.maxSize/.test(n) && /users/.test(n)), notices.join(' | '));
      assert.ok(notices.some((n) => /not applied .*listen\.port/.test(n)), notices.join(' | '));
      const cfg = new Map((await c.query('SHOW CONFIG')).rows.map((x) => [x.key, x.value]));
      assert.equal(cfg.get('pool.maxSize'), '7');
      assert.equal(cfg.get('pool.queueTimeoutMs'), '4321');
      assert.equal(cfg.get('listen.port'), String(proxy.port), 'listen keeps the running value');
      const pools = (await c.query('SHOW POOLS')).rows.filter((x) => x.database === db);
      assert.ok(pools.length > 0 && pools.every((x) => x.pool_size === '7'), 'existing pools resized');
      // The new user can log in; connected clients were not dropped (this console is one).
      await withClient(proxy.port, db, async (l) => assert.equal((await l.query('SELECT 1 AS one')).rows[0].one, 1), { user: 'late' });

      fs.writeFileSync(configFile, JSON.stringify({ ...next, pool: { maxSize: 'lots' } }, null, 2));
      await assert.rejects(c.query('RELOAD'), (e: { code: string; message: string }) => e.code === 'F0000' && /pool\.maxSize/.test(e.message));
      fs.writeFileSync(configFile, '{ not json');
      await assert.rejects(c.query('RELOAD'), (e: { code: string; message: string }) => e.code === 'F0000' && /not valid JSON/.test(e.message));
      const still = new Map((await c.query('SHOW CONFIG')).rows.map((x) => [x.key, x.value]));
      assert.equal(still.get('pool.maxSize'), '7', 'the running config stays');
    } finally {
      fs.writeFileSync(configFile, JSON.stringify(raw, null, 2));
      await c.end();
    }
  });
});
