// TLS between clients and pgring: SSLRequest answered 'S' when tls is configured (psql and
// the pg driver negotiate it), plain connections allowed or refused by tls.require, bytes
// sent in the clear after SSLRequest refused, unreadable certificate files stop start-up.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { testCluster } from '../helpers/env';
import { baseConfig, RunningProxy, startProxy } from '../helpers/proxy';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-tls-'));
const certFile = path.join(dir, 'server.crt');
const keyFile = path.join(dir, 'server.key');
let cluster: Awaited<ReturnType<typeof testCluster>>;
let optional: RunningProxy;
let required: RunningProxy;

before(async () => {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  cluster = await testCluster();
  optional = await startProxy(await baseConfig(cluster, 1, { tls: { certFile, keyFile } }));
  required = await startProxy(await baseConfig(cluster, 1, { tls: { certFile, keyFile, require: true } }));
});

after(async () => {
  await optional?.stop();
  await required?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function psql(port: number, sslmode: string, sql: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('psql', ['-X', '-At', '-c', sql, `host=127.0.0.1 port=${port} user=postgres dbname=postgres sslmode=${sslmode}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('exit', (code) => resolve({ code, out }));
  });
}

describe('TLS to clients', () => {
  it('psql with sslmode=require gets an encrypted session; sslmode=disable still works when TLS is optional', async () => {
    const enc = await psql(optional.port, 'require', 'SELECT 41 + 1');
    assert.equal(enc.code, 0, enc.out);
    assert.equal(enc.out.trim(), '42');
    const plain = await psql(optional.port, 'disable', 'SELECT 1');
    assert.equal(plain.code, 0, plain.out);
  });

  it('the pg driver negotiates TLS, runs simple and extended queries over it, and SHOW CLIENTS says tls', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: optional.port, user: 'postgres', database: 'postgres', ssl: { rejectUnauthorized: false } });
    await c.connect();
    try {
      assert.equal((c as unknown as { connection: { stream: { encrypted?: boolean } } }).connection.stream.encrypted, true);
      assert.equal((await c.query('SELECT $1::int + 1 AS n', [1])).rows[0].n, 2);
      const big = await c.query('SELECT repeat(\'x\', 200000) AS s');
      assert.equal(big.rows[0].s.length, 200000);
      const admin = new pg.Client({ host: '127.0.0.1', port: optional.port, user: 'postgres', database: 'pgring', ssl: { rejectUnauthorized: false } });
      await admin.connect();
      try {
        const rows = (await admin.query('SHOW CLIENTS')).rows as { database: string; tls: boolean }[];
        assert.ok(rows.some((r) => r.database === 'postgres' && r.tls === true), JSON.stringify(rows));
      } finally { await admin.end(); }
    } finally { await c.end(); }
  });

  it('tls.require refuses a plain connection with 28000 and accepts an encrypted one', async () => {
    const plain = await psql(required.port, 'disable', 'SELECT 1');
    assert.notEqual(plain.code, 0);
    assert.match(plain.out, /pgring requires TLS/);
    const enc = await psql(required.port, 'require', 'SELECT 1');
    assert.equal(enc.code, 0, enc.out);
    const c = new pg.Client({ host: '127.0.0.1', port: required.port, user: 'postgres', database: 'postgres' });
    await assert.rejects(c.connect(), (e: { code?: string }) => e.code === '28000');
  });

  it('bytes sent in the clear right after SSLRequest end the connection with 08P01', async () => {
    const s = net.connect({ host: '127.0.0.1', port: optional.port });
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    await new Promise<void>((resolve) => s.once('connect', resolve));
    const ssl = Buffer.alloc(8); ssl.writeInt32BE(8, 0); ssl.writeInt32BE(80877103, 4);
    s.write(Buffer.concat([ssl, Buffer.from('junk after the request')]));
    await new Promise<void>((resolve) => s.once('close', resolve));
    const all = Buffer.concat(got).toString('latin1');
    assert.match(all, /08P01/);
    assert.match(all, /unencrypted data after SSL request/);
  });

  it('an unreadable certificate file stops start-up and names the file', async () => {
    const cfg = await baseConfig(cluster, 1, { tls: { certFile: path.join(dir, 'missing.crt'), keyFile } });
    await assert.rejects(startProxy(cfg), /tls\.certFile: cannot read .*missing\.crt/);
  });
});
