// Pure parts of the hardening work: frontend message checks (PostgreSQL's limits and words),
// the tls-server-end-point hash per signature algorithm (certificates made by openssl), and
// the SCRAM-SHA-256-PLUS server state machine.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkFrontendMessage, frontendMessageLimit, SMALL_MESSAGE_LIMIT } from '../../src/protocol/frontend-check';
import { MessageReader, ProtocolViolation } from '../../src/protocol/reader';
import { FRONTEND } from '../../src/protocol/frontend-check';
import { Writer } from '../../src/protocol/messages';
import { F } from '../../src/protocol/codes';
import { signatureAlgorithmOid, tlsServerEndPoint } from '../../src/protocol/auth/channel-binding';
import { ScramServer } from '../../src/protocol/auth/scram';
import { AuthError } from '../../src/protocol/auth/errors';

const violation = (text: string) => (e: unknown) => e instanceof ProtocolViolation && e.message === text;

describe('frontend message checks', () => {
  it('accepts well-formed messages of every type', () => {
    const ok: [number, Buffer][] = [
      [F.Query, new Writer().cstr('SELECT 1').msg(F.Query)],
      [F.Parse, new Writer().cstr('s').cstr('SELECT $1').int16(1).int32(23).msg(F.Parse)],
      [F.Bind, new Writer().cstr('').cstr('s').int16(1).int16(1).int16(2).int32(-1).int32(2).bytes(Buffer.from('ab')).int16(0).msg(F.Bind)],
      [F.Execute, new Writer().cstr('').int32(0).msg(F.Execute)],
      [F.Describe, new Writer().int8(0x53).cstr('s').msg(F.Describe)],
      [F.Close, new Writer().int8(0x50).cstr('').msg(F.Close)],
      [F.Sync, new Writer().msg(F.Sync)],
      [F.FunctionCall, new Writer().int32(1).int16(1).int16(0).int16(1).int32(1).bytes(Buffer.from('x')).int16(0).msg(F.FunctionCall)],
      [F.CopyFail, new Writer().cstr('oops').msg(F.CopyFail)],
    ];
    for (const [t, m] of ok) checkFrontendMessage(t, m);
  });

  it('refuses fields past the end, negative lengths, trailing bytes and unknown types in PostgreSQL words', () => {
    assert.throws(() => checkFrontendMessage(F.Execute, Buffer.from([F.Execute, 0, 0, 0, 7, 0, 0, 1])), violation('insufficient data left in message'));
    assert.throws(() => checkFrontendMessage(F.Bind, new Writer().cstr('').cstr('').int16(0).int16(1).int32(-2).int16(0).msg(F.Bind)), violation('insufficient data left in message'));
    assert.throws(() => checkFrontendMessage(F.Sync, Buffer.from([F.Sync, 0, 0, 0, 5, 1])), violation('invalid message format'));
    assert.throws(() => frontendMessageLimit(0x7a), violation('invalid frontend message type 122'));
    assert.equal(frontendMessageLimit(F.Sync), SMALL_MESSAGE_LIMIT);
  });

  it('the client reader refuses an over-long length from the header alone', () => {
    const r = new MessageReader(FRONTEND);
    const header = Buffer.from([F.Describe, 0, 0, 0x40, 0]); // 16 kB Describe, body not sent
    assert.throws(() => r.feed(header, () => assert.fail('delivered')), violation('invalid message length'));
    assert.throws(() => new MessageReader(FRONTEND).feed(Buffer.from([0x01]), () => undefined), violation('invalid frontend message type 1'));
  });
});

describe('tls-server-end-point', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-cb-unit-'));
  const cert = (name: string, keyArgs: string[], digest: string | null): Buffer => {
    const key = path.join(dir, `${name}.key`), crt = path.join(dir, `${name}.crt`);
    execFileSync('openssl', ['req', '-x509', '-nodes', '-days', '1', ...keyArgs, '-keyout', key, '-out', crt, '-subj', `/CN=${name}`, ...(digest ? [`-${digest}`] : [])], { stdio: 'ignore' });
    return new X509Certificate(fs.readFileSync(crt)).raw;
  };

  it('hashes with the signature hash, SHA-256 for SHA-1, and refuses Ed25519', () => {
    const rsa256 = cert('rsa256', ['-newkey', 'rsa:2048'], 'sha256');
    assert.equal(signatureAlgorithmOid(rsa256), '1.2.840.113549.1.1.11');
    assert.deepEqual(tlsServerEndPoint(rsa256), createHash('sha256').update(rsa256).digest());
    const ec384 = cert('ec384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], 'sha384');
    assert.equal(signatureAlgorithmOid(ec384), '1.2.840.10045.4.3.3');
    assert.deepEqual(tlsServerEndPoint(ec384), createHash('sha384').update(ec384).digest());
    const rsa1 = cert('rsa1', ['-newkey', 'rsa:2048'], 'sha1');
    assert.deepEqual(tlsServerEndPoint(rsa1), createHash('sha256').update(rsa1).digest());
    const ed = cert('ed', ['-newkey', 'ed25519'], null);
    assert.equal(tlsServerEndPoint(ed), null);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('SCRAM-SHA-256-PLUS server', () => {
  const binding = Buffer.alloc(32, 7);
  const password = 'pw';
  function clientFinal(srv: ScramServer, header: string, cbindData: Buffer | null): Buffer {
    const nonce = 'clientnonce';
    const first = Buffer.from(`${header}n=,r=${nonce}`);
    const serverFirst = srv.handleClientFirst(first, header.startsWith('p=')).toString();
    const a = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
    const salted = pbkdf2Sync(password, Buffer.from(a.s!, 'base64'), Number(a.i), 32, 'sha256');
    const ck = createHmac('sha256', salted).update('Client Key').digest();
    const c = Buffer.concat([Buffer.from(header), cbindData ?? Buffer.alloc(0)]).toString('base64');
    const without = `c=${c},r=${a.r}`;
    const sig = createHmac('sha256', createHash('sha256').update(ck).digest()).update(`n=,r=${nonce},${serverFirst},${without}`).digest();
    return Buffer.from(`${without},p=${Buffer.from(ck.map((b, i) => b ^ sig[i]!)).toString('base64')}`);
  }

  it('offers -PLUS only with a binding, accepts the right binding, refuses a wrong one with 28000', () => {
    assert.deepEqual(new ScramServer({ user: 'u', secret: password }).mechanisms, ['SCRAM-SHA-256']);
    const ok = new ScramServer({ user: 'u', secret: password, channelBinding: binding });
    assert.deepEqual(ok.mechanisms, ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    assert.equal(ok.handleClientFinal(clientFinal(ok, 'p=tls-server-end-point,,', binding)).ok, true);
    const bad = new ScramServer({ user: 'u', secret: password, channelBinding: binding });
    assert.throws(() => bad.handleClientFinal(clientFinal(bad, 'p=tls-server-end-point,,', Buffer.alloc(32, 8))), (e: unknown) => e instanceof AuthError && e.code === '28000' && e.message === 'SCRAM channel binding check failed');
    const plain = new ScramServer({ user: 'u', secret: password });
    assert.throws(() => plain.handleClientFirst(Buffer.from('p=tls-server-end-point,,n=,r=x'), false), (e: unknown) => e instanceof AuthError && e.code === '08P01');
    const down = new ScramServer({ user: 'u', secret: password, channelBinding: binding });
    assert.throws(() => down.handleClientFirst(Buffer.from('y,,n=,r=x')), (e: unknown) => e instanceof AuthError && e.code === '28000');
    const other = new ScramServer({ user: 'u', secret: password, channelBinding: binding });
    assert.throws(() => other.handleClientFirst(Buffer.from('p=tls-unique,,n=,r=x'), true), (e: unknown) => e instanceof AuthError && /unsupported SCRAM channel-binding type "tls-unique"/.test(e.message));
  });
});
