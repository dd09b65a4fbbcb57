// TLS from pgring to PostgreSQL servers (serverTls / a backend's tls, as libpq's sslmode):
// a server with ssl = on and a CA of our own; pg_stat_ssl on that server shows pgring's
// connections encrypted; a wrong CA, or `require` against a server without SSL, fails with
// an error naming the backend; `prefer` falls back to plain TCP.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testCluster } from '../helpers/env';
import { baseConfig, client, startProxy } from '../helpers/proxy';
import { LocalPostgres } from '../../src/local/postgres';
import { makeClientCert, makeLocalCerts, LocalCerts } from '../../src/local/certs';
import { chownPostgres, freePort } from '../../src/local/proc';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-server-tls-'));
let pg: LocalPostgres;
let certs: LocalCerts;
let wrongCa: LocalCerts;
let plainPort: number;

before(async () => {
  chownPostgres(dir);
  certs = makeLocalCerts(path.join(dir, 'tls'), 'pgring test');
  wrongCa = makeLocalCerts(path.join(dir, 'other'), 'another');
  pg = new LocalPostgres({ dir: path.join(dir, 'pg'), port: await freePort(), ssl: certs });
  pg.start();
  await pg.waitReady();
  // certuser logs in only over TLS with a client certificate the CA signed (CN = certuser)
  pg.psql('CREATE ROLE certuser LOGIN');
  pg.setHba(['local all all trust', 'hostssl all certuser 127.0.0.1/32 cert', 'host all certuser 127.0.0.1/32 reject', 'host all all 127.0.0.1/32 trust']);
  pg.reload();
  plainPort = (await testCluster()).pg[0]!.port;
});
after(() => { pg?.stop('immediate'); fs.rmSync(dir, { recursive: true, force: true }); });

async function configFor(port: number, extra: Record<string, unknown>, backendTls?: Record<string, unknown>): Promise<Record<string, unknown>> {
  const raw = await baseConfig(await testCluster(), 1, extra);
  raw.shards = [{ name: 's1', backends: [{ host: '127.0.0.1', port, ...(backendTls ? { tls: backendTls } : {}) }] }];
  return raw;
}

/** ssl flag of the server connections pgring opened for application_name `app`. */
function sslOf(app: string): string {
  return pg.psql(`SELECT string_agg(s.ssl::text || ':' || coalesce(s.version, ''), ',') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '${app}'`).trim();
}

async function queryThrough(port: number, app: string): Promise<number> {
  const c = client(port, 'postgres', { application_name: app });
  await c.connect();
  try { return (await c.query('SELECT 6 * 7 AS x')).rows[0].x as number; } finally { await c.end(); }
}

describe('TLS to servers', () => {
  it('verify-full with the right CA: pg_stat_ssl shows the pool connection encrypted', async () => {
    const p = await startProxy(await configFor(pg.port, { serverTls: { sslmode: 'verify-full', caFile: certs.caFile } }));
    try {
      assert.equal(await queryThrough(p.port, 'tls_vf'), 42);
      // the pooled server connection stays open: the server reports it
      assert.match(sslOf('tls_vf'), /^true:TLSv1\.[23]$/);
    } finally { await p.stop(); }
  });

  it('a backend\'s own tls overrides serverTls (disable for all, verify-ca for this one)', async () => {
    const p = await startProxy(await configFor(pg.port, { serverTls: { sslmode: 'disable' } }, { sslmode: 'verify-ca', caFile: certs.caFile }));
    try {
      assert.equal(await queryThrough(p.port, 'tls_override'), 42);
      assert.match(sslOf('tls_override'), /^true:/);
    } finally { await p.stop(); }
  });

  it('disable and prefer: plain TCP where asked, or where the server has no SSL', async () => {
    const p = await startProxy(await configFor(pg.port, { serverTls: { sslmode: 'disable' } }));
    try {
      assert.equal(await queryThrough(p.port, 'tls_disable'), 42);
      assert.equal(sslOf('tls_disable'), 'false:');
    } finally { await p.stop(); }
    // prefer (the default) against the shared cluster's server, which runs with ssl = off
    const q = await startProxy(await configFor(plainPort, {}));
    try { assert.equal(await queryThrough(q.port, 'tls_prefer'), 42); } finally { await q.stop(); }
  });

  it('a wrong CA fails with an error naming the backend', async () => {
    const p = await startProxy(await configFor(pg.port, { serverTls: { sslmode: 'verify-full', caFile: wrongCa.caFile } }));
    try {
      await assert.rejects(queryThrough(p.port, 'tls_wrong'), (e: { code?: string; message: string }) => {
        assert.equal(e.code, '08006');
        assert.match(e.message, new RegExp(`shard "s1" at 127\\.0\\.0\\.1:${pg.port}: SSL error: .*(certificate|verify)`));
        return true;
      });
    } finally { await p.stop(); }
  });

  it('require against a server without SSL fails naming the backend', async () => {
    const p = await startProxy(await configFor(plainPort, { serverTls: { sslmode: 'require' } }));
    try {
      await assert.rejects(queryThrough(p.port, 'tls_req'), (e: { message: string }) => {
        assert.match(e.message, new RegExp(`shard "s1" at 127\\.0\\.0\\.1:${plainPort}: server does not support SSL, but SSL was required`));
        return true;
      });
    } finally { await p.stop(); }
  });

  it('a client certificate (certFile + keyFile) logs in where pg_hba requires one; without it the server refuses', async () => {
    const cc = makeClientCert(certs.dir, 'certuser');
    const users = [{ name: 'postgres', auth: 'trust', admin: true, serverUser: 'certuser' }];
    const p = await startProxy(await configFor(pg.port, { users, serverTls: { sslmode: 'verify-full', caFile: certs.caFile, ...cc } }));
    try {
      assert.equal(await queryThrough(p.port, 'tls_cert'), 42);
      assert.match(sslOf('tls_cert'), /^true:/);
      assert.equal(pg.psql("SELECT usename FROM pg_stat_activity WHERE application_name = 'tls_cert'").trim(), 'certuser');
    } finally { await p.stop(); }
    const q = await startProxy(await configFor(pg.port, { users, serverTls: { sslmode: 'verify-full', caFile: certs.caFile } }));
    try {
      await assert.rejects(queryThrough(q.port, 'tls_nocert'), /certificate|certuser/);
    } finally { await q.stop(); }
  });

  it('an unreadable CA file stops start-up naming the file', async () => {
    await assert.rejects(startProxy(await configFor(pg.port, { serverTls: { sslmode: 'verify-full', caFile: path.join(dir, 'missing.crt') } })), /could not read server CA file ".*missing\.crt"/);
  });
});
