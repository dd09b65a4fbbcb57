// Protocol fidelity, third round (issue 20, items 3, 4, 5, 7): replication connections through
// pgring (pg_recvlogical, pg_receivewal), listen.unixSocketDir, the server's FATAL on TLS, and
// auth.query (pass-through authentication with the secret stored on the server).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { freePort, freePorts, pgBin } from '../../src/local/proc';
import { LocalPostgres } from '../../src/local/postgres';
import { parseConfig } from '../../src/config/load';
import { Proxy } from '../../src/proxy';
import { silentLogger } from '../../src/log';
import { psqlAt, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { runTool } from '../helpers/tools';
import { waitFor } from '../helpers/tpcb';

let cluster: Awaited<ReturnType<typeof testCluster>>;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-f3b-'));
fs.chmodSync(dir, 0o755);
const db = uniqueName('f3b');
const proxies: RunningProxy[] = [];

async function proxyWith(shards: number, extra: Record<string, unknown> = {}): Promise<RunningProxy> {
  const p = await startProxy(await baseConfig(cluster, shards, extra));
  proxies.push(p);
  return p;
}

before(async () => {
  cluster = await testCluster();
  createDatabase(cluster.pg.slice(0, 2).map((p) => p.port), db);
});

after(async () => {
  for (const p of proxies) await p.stop().catch(() => undefined);
  for (const p of cluster.pg.slice(0, 2)) {
    try { psqlAt(p.port, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '${db}'`); } catch { /* none */ }
  }
  dropDatabase(cluster.pg.slice(0, 2).map((p) => p.port), db);
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Run { code: number | null; out: string; err: string }

/** Runs a client tool to completion (killed after timeoutMs). */
function run(tool: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60000): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(pgBin(tool), args, { env: { ...process.env, PGCONNECT_TIMEOUT: '10', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out, err }); });
  });
}

const conn = (port: number) => ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres'];

describe('replication connections pass through to one shard', () => {
  it('pg_recvlogical: creates a slot, streams the rows inserted through pgring (test_decoding), drops the slot', async () => {
    const p = await proxyWith(1);
    psqlAt(cluster.pg[0]!.port, 'CREATE TABLE IF NOT EXISTS repl_t (id int primary key, v text)', db);
    const slot = `f3b_slot_${process.pid}`;
    const created = await run('pg_recvlogical', [...conn(p.port), '-d', db, '--slot', slot, '--create-slot', '-P', 'test_decoding']);
    assert.equal(created.code, 0, created.err);
    assert.equal(psqlAt(cluster.pg[0]!.port, `SELECT plugin FROM pg_replication_slots WHERE slot_name = '${slot}'`).trim(), 'test_decoding');
    // Streaming through pgring while rows are inserted through pgring; stopped with SIGINT once seen.
    const child = spawn(pgBin('pg_recvlogical'), [...conn(p.port), '-d', db, '--slot', slot, '--start', '-F', '1', '-f', '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    try {
      const c = new pg.Client({ host: '127.0.0.1', port: p.port, user: 'postgres', database: db });
      await c.connect();
      await c.query(`INSERT INTO repl_t VALUES (1, 'one'), (2, 'two')`);
      await c.end();
      await waitFor('pg_recvlogical prints the decoded rows', async () => /:2 v\[text\]:'two'/.test(out) || child.exitCode !== null, 20000);
    } finally { child.kill('SIGINT'); }
    assert.equal(await exited, 0, err);
    assert.match(out, /table public\.repl_t: INSERT: id\[integer\]:1 v\[text\]:'one'/);
    assert.match(out, /table public\.repl_t: INSERT: id\[integer\]:2 v\[text\]:'two'/);
    const dropped = await run('pg_recvlogical', [...conn(p.port), '-d', db, '--slot', slot, '--drop-slot']);
    assert.equal(dropped.code, 0, dropped.err);
    assert.equal(psqlAt(cluster.pg[0]!.port, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = '${slot}'`).trim(), '0');
  });

  it('pg_receivewal (physical, replication=true) receives WAL segments through pgring', async () => {
    const p = await proxyWith(1);
    const walDir = path.join(dir, 'wal');
    fs.mkdirSync(walDir);
    const lsn = psqlAt(cluster.pg[0]!.port, 'SELECT pg_current_wal_lsn()').trim();
    const r = await run('pg_receivewal', [...conn(p.port), '-D', walDir, '-E', lsn, '--no-loop', '-n']);
    assert.equal(r.code, 0, r.err);
    const files = fs.readdirSync(walDir);
    assert.ok(files.some((f) => /^[0-9A-F]{24}(\.partial)?$/.test(f)), `WAL files: ${files.join(', ')}`);
  });

  it('several shards: refused with a FATAL naming options=-c pgring.shard; with it, the named shard serves', async () => {
    const p = await proxyWith(2);
    const slot = `f3b_s2_${process.pid}`;
    const refused = await run('pg_recvlogical', [...conn(p.port), '-d', db, '--slot', slot, '--create-slot', '-P', 'test_decoding']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.err, /pgring\.shard/);
    const named = await run('pg_recvlogical', [...conn(p.port), '-d', db, '--slot', slot, '--create-slot', '-P', 'test_decoding'], { PGOPTIONS: '-c pgring.shard=s2' });
    assert.equal(named.code, 0, named.err);
    assert.equal(psqlAt(cluster.pg[1]!.port, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = '${slot}'`).trim(), '1');
    assert.equal(psqlAt(cluster.pg[0]!.port, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = '${slot}'`).trim(), '0');
    const unknown = await run('pg_recvlogical', [...conn(p.port), '-d', db, '--slot', slot, '--drop-slot'], { PGOPTIONS: '-c pgring.shard=nope' });
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.err, /shard "nope"/);
    const dropped = await run('pg_recvlogical', [...conn(p.port), '-d', db, '--slot', slot, '--drop-slot'], { PGOPTIONS: '-c pgring.shard=s2' });
    assert.equal(dropped.code, 0, dropped.err);
  });
});

describe('listen.unixSocketDir', () => {
  it('psql -h <dir> and the pg driver (host = directory) connect; SSLRequest is answered N; auth applies; the file goes at stop', async () => {
    const sockDir = path.join(dir, 'sock');
    fs.mkdirSync(sockDir);
    const port = await freePort();
    // A stale socket file from a proxy that died is replaced.
    fs.writeFileSync(path.join(sockDir, `.s.PGSQL.${port}`), '');
    const certFile = path.join(dir, 'u.crt'), keyFile = path.join(dir, 'u.key');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    const p = await proxyWith(1, {
      listen: { host: '127.0.0.1', port, unixSocketDir: sockDir },
      tls: { certFile, keyFile, require: true },
      users: [{ name: 'postgres', auth: 'trust', admin: true }, { name: 'app', auth: 'scram-sha-256', password: 'app-pw', serverUser: 'postgres' }],
    });
    const file = path.join(sockDir, `.s.PGSQL.${port}`);
    assert.ok(fs.statSync(file).isSocket());
    assert.equal(fs.statSync(file).mode & 0o777, 0o777);
    const ok = await runTool('psql', ['-h', sockDir, '-p', String(port), '-U', 'postgres', '-d', db, '-XAtc', 'SELECT 40 + 2']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), '42');
    // No TLS over the socket (libpq never asks there; pgring answers an SSLRequest N, and
    // tls.require does not apply, as pg_hba's `local` lines know no TLS).
    const answer = await new Promise<string>((resolve, reject) => {
      const s = net.connect({ path: file });
      s.once('error', reject);
      s.once('data', (d) => { resolve(d.toString('latin1')); s.destroy(); });
      s.once('connect', () => s.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])));
    });
    assert.equal(answer, 'N');
    // Passwords are checked as over TCP.
    const bad = await runTool('psql', [`host=${sockDir} port=${port} user=app dbname=${db}`, '-XAtc', 'SELECT 1'], { env: { PGPASSWORD: 'wrong' } });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /password authentication failed for user "app"/);
    const c = new pg.Client({ host: sockDir, port, user: 'app', password: 'app-pw', database: db });
    await c.connect();
    assert.equal((await c.query('SELECT $1::int * 2 AS n', [21])).rows[0].n, 42);
    await c.end();
    await p.stop();
    assert.equal(fs.existsSync(file), false, 'the socket file is removed at stop');
  });
});

describe('a server connection terminated under a TLS client', () => {
  it('the client gets 57P01 "terminating connection due to administrator command", as in the clear', async () => {
    const certFile = path.join(dir, 't.crt'), keyFile = path.join(dir, 't.key');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    for (const poolMode of ['transaction', 'session'] as const) {
    const p = await proxyWith(1, { tls: { certFile, keyFile }, pool: { mode: poolMode } });
    for (const ssl of [false, { rejectUnauthorized: false }] as const) {
      for (const mode of ['busy', 'idle'] as const) {
        const c = new pg.Client({ host: '127.0.0.1', port: p.port, user: 'postgres', database: db, ssl });
        const errors: { code?: string; message: string }[] = [];
        c.on('error', (e) => errors.push(e as { code?: string; message: string }));
        await c.connect();
        await c.query('CREATE TEMP TABLE pin_me (a int)'); // keeps the server connection the client's
        const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
        if (mode === 'busy') {
          const running = c.query('SELECT pg_sleep(30)').then(() => null, (e: { code?: string; message: string }) => e);
          await new Promise((r) => setTimeout(r, 300));
          psqlAt(cluster.pg[0]!.port, `SELECT pg_terminate_backend(${pid})`);
          const e = await running;
          assert.equal(e?.code, '57P01', `${poolMode} ssl=${!!ssl}: ${e?.message}`);
          assert.match(e!.message, /terminating connection due to administrator command/);
        } else {
          psqlAt(cluster.pg[0]!.port, `SELECT pg_terminate_backend(${pid})`);
          await waitFor('the client is told', async () => errors.length > 0, 10000);
          assert.equal(errors[0]!.code, '57P01', `${poolMode} ssl=${!!ssl} idle: ${errors[0]!.message}`);
        }
        await c.end().catch(() => undefined);
      }
    }
    }
  });
});


describe('auth.query: unlisted roles log in with the secret stored on the server', () => {
  let server: LocalPostgres;
  let p: RunningProxy;
  before(async () => {
    server = new LocalPostgres({ dir: path.join(dir, 'authpg'), port: await freePort() });
    server.start();
    const s = server;
    process.on('exit', () => s.stop('immediate'));
    server.psql(`SET password_encryption = 'scram-sha-256'; CREATE ROLE pgring_lookup LOGIN SUPERUSER PASSWORD 'lookup-pw'; CREATE ROLE alice LOGIN PASSWORD 'alice-pw'`);
    server.psql(`SET password_encryption = 'md5'; CREATE ROLE bob LOGIN PASSWORD 'bob-pw'`);
    // The servers themselves ask for the roles' passwords: pgring must pass SCRAM / md5 through.
    server.setHba([
      'local all all trust',
      'host all postgres 127.0.0.1/32 trust',
      'host all bob 127.0.0.1/32 md5',
      'host all all 127.0.0.1/32 scram-sha-256',
    ]);
    server.reload();
    p = await startProxy({
      listen: { host: '127.0.0.1', port: await freePort() }, metrics: { enabled: false }, logLevel: 'silent',
      users: [{ name: 'postgres', auth: 'trust', admin: true }],
      auth: { user: 'pgring_lookup', password: 'lookup-pw', database: 'postgres' },
      shards: [{ name: 's1', backends: [{ host: '127.0.0.1', port: server.port }] }],
    });
  });
  after(async () => {
    await p?.stop();
    server?.stop('immediate');
  });

  const login = (user: string, password: string) => {
    const c = new pg.Client({ host: '127.0.0.1', port: p.port, user, password, database: 'postgres' });
    return c.connect().then(async () => {
      try { return (await c.query('SELECT current_user AS u, $1::int AS n', [7])).rows[0] as { u: string; n: number }; } finally { await c.end(); }
    });
  };

  it('a SCRAM role: the right password logs in (the server gets SCRAM with the client\'s ClientKey), a wrong one gets 28P01', async () => {
    assert.deepEqual(await login('alice', 'alice-pw'), { u: 'alice', n: 7 });
    // again: served from the cache and from pooled server connections
    assert.deepEqual(await login('alice', 'alice-pw'), { u: 'alice', n: 7 });
    await assert.rejects(login('alice', 'nope'), (e: { code?: string; message: string }) => e.code === '28P01' && /password authentication failed for user "alice"/.test(e.message));
    const r = await runTool('psql', [`host=127.0.0.1 port=${p.port} user=alice dbname=postgres`, '-XAtc', 'SELECT current_user'], { env: { PGPASSWORD: 'alice-pw' } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'alice');
  });

  it('an md5 role logs in with md5 (client and server), a wrong password gets 28P01', async () => {
    assert.deepEqual(await login('bob', 'bob-pw'), { u: 'bob', n: 7 });
    await assert.rejects(login('bob', 'bad'), (e: { code?: string }) => e.code === '28P01');
  });

  it('a role the lookup does not find gets 28P01 as PostgreSQL; listed roles work as before', async () => {
    await assert.rejects(login('nobody', 'x'), (e: { code?: string; message: string }) => e.code === '28P01' && /"nobody"/.test(e.message));
    const c = new pg.Client({ host: '127.0.0.1', port: p.port, user: 'postgres', database: 'postgres' });
    await c.connect();
    assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'postgres');
    await c.end();
  });

  it('a password changed on the server is seen after auth.cacheMs', async () => {
    await p.stop();
    p = await startProxy({
      listen: { host: '127.0.0.1', port: await freePort() }, metrics: { enabled: false }, logLevel: 'silent',
      users: [{ name: 'postgres', auth: 'trust', admin: true }],
      auth: { user: 'pgring_lookup', password: 'lookup-pw', cacheMs: 0 },
      shards: [{ name: 's1', backends: [{ host: '127.0.0.1', port: server.port }] }],
    });
    server.psql(`CREATE ROLE carol LOGIN PASSWORD 'carol-1'`);
    assert.equal((await login('carol', 'carol-1')).u, 'carol');
    server.psql(`ALTER ROLE carol PASSWORD 'carol-2'`);
    await assert.rejects(login('carol', 'carol-1'), (e: { code?: string }) => e.code === '28P01');
  });
});

describe('proxy.example.json', () => {
  it('loads as it is and starts (ports, ZooKeeper and shards replaced by the test cluster\'s)', async () => {
    const raw = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../../proxy.example.json'), 'utf8')) as Record<string, any>;
    parseConfig(structuredClone(raw)); // valid as shipped
    // two distinct ports (two freePort() calls may give the same one: CI saw EADDRINUSE)
    [raw.listen.port, raw.metrics.port] = await freePorts(2);
    raw.zookeeper.connect = cluster.zk;
    raw.zookeeper.cluster = uniqueName('example');
    raw.logLevel = 'silent';
    raw.shards = raw.shards.map((s: { backends: { port: number }[] }, i: number) => ({ ...s, backends: [{ ...s.backends[0], port: cluster.pg[i]!.port }] }));
    const px = new Proxy({ config: parseConfig(raw), log: silentLogger });
    await px.start();
    try {
      const c = new pg.Client({ host: '127.0.0.1', port: px.port, user: 'postgres', database: db });
      await c.connect();
      assert.equal((await c.query('SELECT 1 + 1 AS n')).rows[0].n, 2);
      await c.end();
    } finally { await px.stop(); }
  });
});
