// md5 / SCRAM-SHA-256 against real PostgreSQL: stored secrets and real logins over raw TCP.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  AuthError, ScramClient, ScramServer, md5PasswordHash, md5Response, parseScramVerifier, scramVerifier,
} from '../../src/protocol/auth';
import { LocalPostgres } from '../../src/local/postgres';
import { freePort } from '../../src/local/proc';
import { psqlAt, stopOwnCluster, testCluster, uniqueName } from '../helpers/env';

// ------------------------------------------------------------ a tiny wire-protocol client

interface Msg { type: string; body: Buffer }

class RawConn {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private closed: Error | null = null;
  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake(); });
    sock.on('close', () => { this.closed ??= new Error('connection closed'); this.wake(); });
    sock.on('error', (e) => { this.closed = e; this.wake(); });
  }
  private wake() { const w = this.waiter; this.waiter = null; w?.(); }

  static open(port: number): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.off('error', reject); resolve(new RawConn(s)); });
      s.once('error', reject);
    });
  }

  async next(): Promise<Msg> {
    for (;;) {
      if (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1);
        if (this.buf.length >= 1 + len) {
          const m = { type: String.fromCharCode(this.buf[0]!), body: this.buf.subarray(5, 1 + len) };
          this.buf = this.buf.subarray(1 + len);
          return m;
        }
      }
      if (this.closed) throw this.closed;
      await new Promise<void>((r) => { this.waiter = r; });
    }
  }

  startup(user: string, database = 'postgres'): void {
    const params = Buffer.from(`user\0${user}\0database\0${database}\0\0`, 'utf8');
    const head = Buffer.alloc(8);
    head.writeInt32BE(8 + params.length, 0);
    head.writeInt32BE(196608, 4);
    this.sock.write(Buffer.concat([head, params]));
  }

  send(type: string, body: Buffer): void {
    const head = Buffer.alloc(5);
    head.write(type, 0, 'latin1');
    head.writeInt32BE(4 + body.length, 1);
    this.sock.write(Buffer.concat([head, body]));
  }

  close(): void { this.sock.destroy(); }
}

const cstr = (s: string) => Buffer.from(s + '\0', 'utf8');
const int32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };

function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const code = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    out[code] = body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return out;
}

type LoginResult = { ok: true; method: string } | { ok: false; code: string; message: string };

/** Startup + authentication by hand until AuthenticationOk or ErrorResponse. */
async function login(port: number, user: string, password: string): Promise<LoginResult> {
  const c = await RawConn.open(port);
  try {
    c.startup(user);
    let method = 'trust';
    let scram: ScramClient | null = null;
    for (;;) {
      const m = await c.next();
      if (m.type === 'E') {
        const f = errorFields(m.body);
        return { ok: false, code: f['C']!, message: f['M']! };
      }
      assert.equal(m.type, 'R', `unexpected message ${m.type}`);
      const kind = m.body.readInt32BE(0);
      switch (kind) {
        case 0: // AuthenticationOk
          assert.equal(scram === null || method === 'scram', true);
          return { ok: true, method };
        case 5: { // AuthenticationMD5Password
          method = 'md5';
          c.send('p', cstr(md5Response(user, password, m.body.subarray(4, 8))));
          break;
        }
        case 10: { // AuthenticationSASL
          method = 'scram';
          const mechs = m.body.subarray(4).toString('utf8').split('\0').filter(Boolean);
          assert.ok(mechs.includes('SCRAM-SHA-256'), mechs.join(','));
          scram = new ScramClient(password);
          const first = scram.clientFirst();
          c.send('p', Buffer.concat([cstr(scram.mechanism), int32(first.length), first]));
          break;
        }
        case 11: // AuthenticationSASLContinue
          c.send('p', scram!.handleServerFirst(m.body.subarray(4)));
          break;
        case 12: // AuthenticationSASLFinal
          scram!.verifyServerFinal(m.body.subarray(4));
          break;
        default:
          throw new Error(`unexpected authentication request ${kind}`);
      }
    }
  } finally {
    c.close();
  }
}

// ------------------------------------------------------------ stored secrets on the shared cluster

describe('stored secrets match PostgreSQL', () => {
  let port = 0;
  const roles: string[] = [];
  const role = (p: string) => { const r = uniqueName(p); roles.push(r); return r; };
  const rolpassword = (r: string) => psqlAt(port, `SELECT rolpassword FROM pg_authid WHERE rolname = '${r}'`).trim();

  before(async () => { port = (await testCluster()).pg[0]!.port; });
  after(async () => {
    for (const r of roles) { try { psqlAt(port, `DROP ROLE IF EXISTS ${r}`); } catch { /* ignore */ } }
    await stopOwnCluster();
  });

  it('md5PasswordHash equals pg_authid.rolpassword', () => {
    const r = role('auth_md5');
    psqlAt(port, `SET password_encryption = 'md5'; CREATE ROLE ${r} LOGIN PASSWORD 'secret'`);
    assert.equal(rolpassword(r), md5PasswordHash(r, 'secret'));
  });

  // [password as SQL literal, password as JS string]
  const cases: [string, string][] = [
    [`'pencil-Pw_1'`, 'pencil-Pw_1'],
    [`U&'p\\00E4ssw\\00F6rd'`, 'p\u00e4ssw\u00f6rd'],        // non-ASCII, already normalized: raw UTF-8
    [`U&'a\\00A0b\\FB01'`, 'a\u00A0b\uFB01'],              // SASLprep maps the space and the ligature
  ];
  for (const [sql, pw] of cases) {
    it(`SCRAM verifier from pg_authid (${JSON.stringify(pw)}) matches and authenticates`, () => {
      const r = role('auth_scram');
      psqlAt(port, `SET password_encryption = 'scram-sha-256'; CREATE ROLE ${r} LOGIN PASSWORD ${sql}`);
      const stored = rolpassword(r);
      const keys = parseScramVerifier(stored);
      assert.ok(keys, stored);
      assert.equal(scramVerifier(pw, keys.salt, keys.iterations), stored);

      const server = new ScramServer({ user: r, secret: stored });
      const client = new ScramClient(pw);
      const cf = client.handleServerFirst(server.handleClientFirst(client.clientFirst()));
      const res = server.handleClientFinal(cf);
      assert.ok(res.ok);
      client.verifyServerFinal(res.serverFinal);

      const bad = new ScramServer({ user: r, secret: stored });
      const badClient = new ScramClient(pw + 'x');
      assert.deepEqual(bad.handleClientFinal(badClient.handleServerFirst(bad.handleClientFirst(badClient.clientFirst()))), { ok: false });
    });
  }
});

// ------------------------------------------------------------ real logins on our own server

describe('real logins with md5 and SCRAM-SHA-256', () => {
  let pg: LocalPostgres | null = null;
  let dir = '';
  const scramRole = 'auth_scram_login';
  const md5Role = 'auth_md5_login';
  const scramPw = 'sc ram\'"pw';
  const md5Pw = 'md5-pw';

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-auth-'));
    pg = new LocalPostgres({ dir, port: await freePort(), maxConnections: 20 });
    pg.start();
    await pg.waitReady();
    pg.psql(`SET password_encryption = 'scram-sha-256'; CREATE ROLE ${scramRole} LOGIN PASSWORD 'sc ram''"pw'`);
    pg.psql(`SET password_encryption = 'md5'; CREATE ROLE ${md5Role} LOGIN PASSWORD '${md5Pw}'`);
    pg.setHba([
      'local all all trust',
      `host all ${scramRole} 127.0.0.1/32 scram-sha-256`,
      `host all ${md5Role} 127.0.0.1/32 md5`,
      'host all all 127.0.0.1/32 trust',
    ]);
    pg.reload();
    // Wait until the reload took effect (the scram role no longer gets in by trust).
    for (let i = 0; i < 100; i++) {
      const r = await login(pg.port, scramRole, 'probe-wrong');
      if (!r.ok) break;
      await new Promise((res) => setTimeout(res, 100));
    }
  });

  after(() => {
    pg?.stop('immediate');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('SCRAM-SHA-256 login succeeds with the right password', async () => {
    assert.deepEqual(await login(pg!.port, scramRole, scramPw), { ok: true, method: 'scram' });
  });

  it('SCRAM-SHA-256 login with a wrong password gives 28P01', async () => {
    const r = await login(pg!.port, scramRole, 'wrong');
    assert.equal(r.ok, false);
    assert.equal((r as { code: string }).code, '28P01');
    assert.match((r as { message: string }).message, /password authentication failed/);
  });

  it('md5 login succeeds with the password and with the stored hash', async () => {
    assert.deepEqual(await login(pg!.port, md5Role, md5Pw), { ok: true, method: 'md5' });
    assert.deepEqual(await login(pg!.port, md5Role, md5PasswordHash(md5Role, md5Pw)), { ok: true, method: 'md5' });
  });

  it('md5 login with a wrong password gives 28P01', async () => {
    const r = await login(pg!.port, md5Role, 'wrong');
    assert.equal(r.ok, false);
    assert.equal((r as { code: string }).code, '28P01');
  });

  it('a forged server signature is caught by ScramClient', () => {
    const client = new ScramClient(scramPw);
    const server = new ScramServer({ user: scramRole, secret: 'a different password' });
    client.handleServerFirst(server.handleClientFirst(client.clientFirst()));
    assert.throws(() => client.verifyServerFinal(Buffer.from(`v=${Buffer.alloc(32).toString('base64')}`)), AuthError);
  });
});
