// SCRAM-SHA-256-PLUS (tls-server-end-point) between clients and pgring, as PostgreSQL offers it:
// on TLS both mechanisms are offered and psql with channel_binding=require and the pg driver
// with enableChannelBinding log in; a plain connection offers SCRAM-SHA-256 only; a client that
// binds to another certificate (a man in the middle) is refused with PostgreSQL's
// "SCRAM channel binding check failed" (28000) even though its password proof is right.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import pg from 'pg';
import { testCluster } from '../helpers/env';
import { baseConfig, RunningProxy, startProxy } from '../helpers/proxy';
import { runTool } from '../helpers/tools';
import { makeLocalCerts, LocalCerts } from '../../src/local/certs';
import { tlsServerEndPoint } from '../../src/protocol/auth/channel-binding';
import { MessageReader } from '../../src/protocol/reader';
import { parseErrorFields } from '../../src/protocol/errors';
import { Writer } from '../../src/protocol/messages';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-cbind-'));
let certs: LocalCerts;
let other: LocalCerts;
let proxy: RunningProxy;
const password = 'cb-secret';

before(async () => {
  certs = makeLocalCerts(path.join(dir, 'tls'), 'cbind');
  other = makeLocalCerts(path.join(dir, 'other'), 'mitm');
  const cluster = await testCluster();
  proxy = await startProxy(await baseConfig(cluster, 1, {
    tls: { certFile: certs.certFile, keyFile: certs.keyFile },
    users: [{ name: 'postgres', auth: 'trust', admin: true }, { name: 'cbuser', auth: 'scram-sha-256', password, serverUser: 'postgres' }],
  }));
});
const opened: net.Socket[] = [];
after(async () => { for (const s of opened) s.destroy(); await proxy?.stop(); fs.rmSync(dir, { recursive: true, force: true }); });

function psqlAs(conn: string): ReturnType<typeof runTool> {
  return runTool('psql', ['-X', '-At', '-c', 'SELECT 6 * 7', `host=127.0.0.1 port=${proxy.port} user=cbuser dbname=postgres ${conn}`], { env: { PGPASSWORD: password }, timeoutMs: 30000 });
}

/** A wire session over TLS (or plain): collects messages; `next()` resolves with the next one. */
class Wire {
  private queue: { type: number; msg: Buffer }[] = [];
  private wake: (() => void) | null = null;
  private reader = new MessageReader();
  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => this.reader.feed(d, (type, msg) => { this.queue.push({ type, msg: Buffer.from(msg) }); this.wake?.(); }));
    socket.on('error', () => undefined);
  }
  static async open(useTls: boolean): Promise<Wire> {
    const raw = net.connect(proxy.port, '127.0.0.1');
    opened.push(raw);
    await new Promise<void>((r) => raw.once('connect', r));
    if (!useTls) return new Wire(raw);
    raw.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
    await new Promise<void>((r) => raw.once('data', (d) => { assert.equal(d.toString(), 'S'); r(); }));
    const t = tls.connect({ socket: raw, rejectUnauthorized: false });
    await new Promise<void>((r) => t.once('secureConnect', r));
    return new Wire(t);
  }
  async next(): Promise<{ type: number; msg: Buffer }> {
    while (!this.queue.length) await new Promise<void>((r) => { this.wake = r; });
    return this.queue.shift()!;
  }
  write(b: Buffer): void { this.socket.write(b); }
  startup(user: string): void { this.write(new Writer().int32(196608).cstr('user').cstr(user).cstr('database').cstr('postgres').int8(0).packet()); }
}

/** Mechanisms of an AuthenticationSASL message. */
function mechanisms(msg: Buffer): string[] {
  assert.equal(msg.readInt32BE(5), 10);
  return msg.subarray(9, msg.length - 2).toString().split('\0');
}

describe('SCRAM-SHA-256-PLUS', () => {
  it('psql with sslmode=require channel_binding=require logs in; plain with channel_binding=require cannot', async () => {
    const ok = await psqlAs('sslmode=require channel_binding=require');
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), '42');
    const plain = await psqlAs('sslmode=disable channel_binding=require');
    assert.notEqual(plain.code, 0);
    assert.match(plain.stderr, /channel binding/);
    const noCb = await psqlAs('sslmode=disable channel_binding=disable');
    assert.equal(noCb.code, 0, noCb.stderr);
  });

  it('the pg driver logs in with SCRAM-SHA-256-PLUS over TLS, and with a wrong password gets 28P01', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'cbuser', password, database: 'postgres', ssl: { rejectUnauthorized: false }, enableChannelBinding: true } as pg.ClientConfig);
    await c.connect();
    assert.equal((await c.query('SELECT 1 AS x')).rows[0].x, 1);
    await c.end();
    const bad = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'cbuser', password: 'wrong', database: 'postgres', ssl: { rejectUnauthorized: false }, enableChannelBinding: true } as pg.ClientConfig);
    await assert.rejects(bad.connect(), (e: { code?: string }) => e.code === '28P01');
  });

  it('offers SCRAM-SHA-256-PLUS first on TLS and only SCRAM-SHA-256 on a plain connection', async () => {
    const t = await Wire.open(true);
    t.startup('cbuser');
    assert.deepEqual(mechanisms((await t.next()).msg), ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    t.socket.destroy();
    const p = await Wire.open(false);
    p.startup('cbuser');
    assert.deepEqual(mechanisms((await p.next()).msg), ['SCRAM-SHA-256']);
    p.socket.destroy();
  });

  it('a binding to another certificate gets 28000 "SCRAM channel binding check failed", though the proof is right', async () => {
    const binding = (der: Buffer) => tlsServerEndPoint(der)!;
    const otherDer = new (await import('node:crypto')).X509Certificate(fs.readFileSync(other.certFile)).raw;
    const realDer = new (await import('node:crypto')).X509Certificate(fs.readFileSync(certs.certFile)).raw;
    // our computation agrees with what the server binds to: the same client with the real certificate logs in
    for (const [der, expect] of [[otherDer, 'fail'], [realDer, 'ok']] as const) {
      const w = await Wire.open(true);
      w.startup('cbuser');
      await w.next(); // AuthenticationSASL
      const nonce = randomBytes(18).toString('base64');
      const header = 'p=tls-server-end-point,,';
      const first = `${header}n=,r=${nonce}`;
      w.write(new Writer().cstr('SCRAM-SHA-256-PLUS').int32(first.length).bytes(Buffer.from(first)).msg(0x70));
      const cont = await w.next();
      const serverFirst = cont.msg.subarray(9).toString();
      const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
      const salted = pbkdf2Sync(password, Buffer.from(attrs.s!, 'base64'), Number(attrs.i), 32, 'sha256');
      const clientKey = createHmac('sha256', salted).update('Client Key').digest();
      const stored = createHash('sha256').update(clientKey).digest();
      const c = Buffer.concat([Buffer.from(header), binding(der)]).toString('base64');
      const withoutProof = `c=${c},r=${attrs.r}`;
      const authMessage = `n=,r=${nonce},${serverFirst},${withoutProof}`;
      const sig = createHmac('sha256', stored).update(authMessage).digest();
      const proof = Buffer.alloc(32).map((_, i) => clientKey[i]! ^ sig[i]!);
      w.write(new Writer().bytes(Buffer.from(`${withoutProof},p=${Buffer.from(proof).toString('base64')}`)).msg(0x70));
      const answer = await w.next();
      if (expect === 'fail') {
        assert.equal(String.fromCharCode(answer.type), 'E');
        const f = parseErrorFields(answer.msg);
        assert.equal(f.S, 'FATAL');
        assert.equal(f.C, '28000');
        assert.equal(f.M, 'SCRAM channel binding check failed');
      } else {
        assert.equal(String.fromCharCode(answer.type), 'R');
        assert.equal(answer.msg.readInt32BE(5), 12, 'AuthenticationSASLFinal');
      }
      w.socket.destroy();
    }
  });

  it('a client that can bind but sends "y" on TLS is refused as a downgrade (28000)', async () => {
    const w = await Wire.open(true);
    w.startup('cbuser');
    await w.next();
    const first = `y,,n=,r=${randomBytes(18).toString('base64')}`;
    w.write(new Writer().cstr('SCRAM-SHA-256').int32(first.length).bytes(Buffer.from(first)).msg(0x70));
    const f = parseErrorFields((await w.next()).msg);
    assert.equal(f.C, '28000');
    assert.equal(f.M, 'SCRAM channel binding negotiation error');
    w.socket.destroy();
  });
});
