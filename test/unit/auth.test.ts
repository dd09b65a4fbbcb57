import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import {
  AuthError, ScramClient, ScramServer, clearScramCache, isMd5Hash, isScramVerifier, md5PasswordHash, md5Response,
  parseScramVerifier, saslprep, scramCacheSize, scramVerifier, verifyMd5,
} from '../../src/protocol/auth';

// RFC 7677 section 3 example.
const RFC = {
  user: 'user',
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};
const b = (s: string) => Buffer.from(s, 'latin1');

function rfcServer(secret: string = RFC.password): ScramServer {
  return new ScramServer({ user: RFC.user, secret, serverNonce: RFC.serverNonce, salt: RFC.salt, iterations: 4096 });
}

/** Full exchange; returns the server's final result. */
function roundTrip(server: ScramServer, client: ScramClient) {
  const sf = server.handleClientFirst(client.clientFirst());
  const cf = client.handleServerFirst(sf);
  const res = server.handleClientFinal(cf);
  if (res.ok) client.verifyServerFinal(res.serverFinal);
  return res;
}

function throwsAuth(fn: () => unknown, message: RegExp | string = 'malformed SCRAM message'): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof AuthError, `expected AuthError, got ${String(e)}`);
    if (typeof message === 'string') assert.equal(e.message, message); else assert.match(e.message, message);
    assert.match(e.code, /^[0-9A-Z]{5}$/);
    return true;
  });
}

describe('SCRAM-SHA-256 RFC 7677 example', () => {
  it('client side produces the RFC messages', () => {
    const c = new ScramClient(RFC.password, { user: RFC.user, nonce: RFC.clientNonce });
    assert.equal(c.clientFirst().toString('latin1'), RFC.clientFirst);
    assert.equal(c.handleServerFirst(b(RFC.serverFirst)).toString('latin1'), RFC.clientFinal);
    c.verifyServerFinal(b(RFC.serverFinal));
  });

  it('client rejects a wrong server signature and server errors', () => {
    const c = new ScramClient(RFC.password, { user: RFC.user, nonce: RFC.clientNonce });
    c.clientFirst();
    c.handleServerFirst(b(RFC.serverFirst));
    throwsAuth(() => c.verifyServerFinal(b('v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')), 'incorrect server signature');
    const c2 = new ScramClient(RFC.password, { user: RFC.user, nonce: RFC.clientNonce });
    c2.clientFirst();
    c2.handleServerFirst(b(RFC.serverFirst));
    throwsAuth(() => c2.verifyServerFinal(b('e=invalid-proof')), /invalid-proof/);
  });

  it('client rejects a server nonce that does not extend its own', () => {
    const c = new ScramClient(RFC.password, { user: RFC.user, nonce: RFC.clientNonce });
    c.clientFirst();
    throwsAuth(() => c.handleServerFirst(b('r=XXXXNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')), /nonce mismatch/);
    const c2 = new ScramClient(RFC.password, { nonce: RFC.clientNonce });
    c2.clientFirst();
    throwsAuth(() => c2.handleServerFirst(b(`r=${RFC.clientNonce}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0`)), /iteration count/);
    const c3 = new ScramClient(RFC.password, { nonce: RFC.clientNonce });
    c3.clientFirst();
    throwsAuth(() => c3.handleServerFirst(b(`r=${RFC.clientNonce}x,s=!!,i=4096`)), /invalid salt/);
  });

  it('server side (plain password) produces the RFC messages', () => {
    const s = rfcServer();
    assert.equal(s.handleClientFirst(b(RFC.clientFirst)).toString('latin1'), RFC.serverFirst);
    const res = s.handleClientFinal(b(RFC.clientFinal));
    assert.ok(res.ok);
    assert.equal(res.serverFinal.toString('latin1'), RFC.serverFinal);
    assert.equal(s.clientUsername, 'user');
  });

  it('server side (verifier) produces the RFC messages', () => {
    const v = scramVerifier(RFC.password, RFC.salt, 4096);
    assert.ok(isScramVerifier(v));
    const s = new ScramServer({ user: RFC.user, secret: v, serverNonce: RFC.serverNonce });
    assert.equal(s.handleClientFirst(b(RFC.clientFirst)).toString('latin1'), RFC.serverFirst);
    const res = s.handleClientFinal(b(RFC.clientFinal));
    assert.ok(res.ok);
    assert.equal(res.serverFinal.toString('latin1'), RFC.serverFinal);
  });
});

describe('SCRAM-SHA-256 round trips', () => {
  it('plain password, default salt', () => {
    const res = roundTrip(new ScramServer({ user: 'alice', secret: 's3cret' }), new ScramClient('s3cret'));
    assert.equal(res.ok, true);
  });

  it('verifier with custom iterations', () => {
    const v = scramVerifier('s3cret', undefined, 1000);
    const parsed = parseScramVerifier(v)!;
    assert.equal(parsed.iterations, 1000);
    assert.equal(parsed.salt.length, 16);
    assert.equal(roundTrip(new ScramServer({ user: 'alice', secret: v }), new ScramClient('s3cret')).ok, true);
  });

  it('non-ASCII password round trips (raw UTF-8 when already normalized)', () => {
    assert.deepEqual(saslprep('pässwörd'), Buffer.from('pässwörd', 'utf8'));
    assert.deepEqual(saslprep('plain ascii'), Buffer.from('plain ascii'));
    assert.deepEqual(saslprep('a\u00A0b'), Buffer.from('a b'));     // non-ASCII space mapped
    assert.deepEqual(saslprep('\uFB01x'), Buffer.from('fix'));      // NFKC ligature
    assert.deepEqual(saslprep('a\u0007\u00e9'), Buffer.from('a\u0007\u00e9', 'utf8')); // prohibited -> raw
    const v = scramVerifier('pässwörd');
    assert.equal(roundTrip(new ScramServer({ user: 'u', secret: v }), new ScramClient('pässwörd')).ok, true);
    assert.equal(roundTrip(new ScramServer({ user: 'u', secret: v }), new ScramClient('passwörd')).ok, false);
  });

  it('wrong password fails (plain and verifier)', () => {
    assert.deepEqual(roundTrip(new ScramServer({ user: 'alice', secret: 'right' }), new ScramClient('wrong')), { ok: false });
    assert.deepEqual(roundTrip(new ScramServer({ user: 'alice', secret: scramVerifier('right') }), new ScramClient('wrong')), { ok: false });
  });

  it('unknown user / md5 secret: mock exchange always fails', () => {
    for (const secret of [null, undefined, md5PasswordHash('alice', 'pw')]) {
      const s = new ScramServer({ user: 'alice', secret });
      assert.equal(s.doomed, true);
      assert.deepEqual(roundTrip(s, new ScramClient('pw')), { ok: false });
    }
    // Same mock salt for the same user each time.
    const sf1 = new ScramServer({ user: 'ghost', secret: null }).handleClientFirst(b('n,,n=,r=abc')).toString();
    const sf2 = new ScramServer({ user: 'ghost', secret: null }).handleClientFirst(b('n,,n=,r=abc')).toString();
    assert.equal(sf1.split(',')[1], sf2.split(',')[1]);
  });

  it('accepts biws with n,, and eSws with y,, and rejects crossed headers', () => {
    for (const [hdr, cb, ok] of [['n,,', 'biws', true], ['y,,', 'eSws', true], ['n,,', 'eSws', false], ['y,,', 'biws', false]] as const) {
      const rfc = hdr + RFC.clientFirst.slice(3);
      const s = rfcServer();
      s.handleClientFirst(b(rfc));
      // Compute the proof for this channel-binding value with a client whose messages we rewrite.
      const final = proofFor(`c=${cb},r=${RFC.clientNonce}${RFC.serverNonce}`);
      if (ok) {
        const res = s.handleClientFinal(b(final));
        assert.ok(res.ok, `${hdr} ${cb}`);
      } else {
        throwsAuth(() => s.handleClientFinal(b(final)), 'unexpected SCRAM channel-binding attribute in client-final-message');
      }
    }
  });

  it('mismatched nonce in client-final is rejected', () => {
    const s = rfcServer();
    s.handleClientFirst(b(RFC.clientFirst));
    const final = proofFor(`c=biws,r=${RFC.clientNonce}${RFC.serverNonce}XX`);
    assert.deepEqual(s.handleClientFinal(b(final)), { ok: false });
  });

  it('tampered proof is rejected', () => {
    const s = rfcServer();
    s.handleClientFirst(b(RFC.clientFirst));
    const tampered = RFC.clientFinal.replace('p=dHzb', 'p=dHzc');
    assert.deepEqual(s.handleClientFinal(b(tampered)), { ok: false });
  });

  it('caches PBKDF2 results (bounded)', () => {
    clearScramCache();
    const salt = Buffer.alloc(16, 7);
    const t0 = process.hrtime.bigint();
    scramVerifier('cache-me', salt, 200000);
    const first = Number(process.hrtime.bigint() - t0);
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < 5; i++) scramVerifier('cache-me', salt, 200000);
    const again = Number(process.hrtime.bigint() - t1);
    assert.equal(scramCacheSize(), 1);
    assert.ok(again < first, `cached calls (${again}ns for 5) should beat the first PBKDF2 (${first}ns)`);
    for (let i = 0; i < 600; i++) scramVerifier(`p${i}`, salt, 1);
    assert.ok(scramCacheSize() <= 512);
  });
});

/** client-final with a correct proof for the RFC exchange and a given without-proof part. */
function proofFor(withoutProof: string): string {
  const salted = crypto.pbkdf2Sync(RFC.password, RFC.salt, 4096, 32, 'sha256');
  const clientKey = crypto.createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = crypto.createHash('sha256').update(clientKey).digest();
  const clientFirstBare = RFC.clientFirst.slice(3);
  const auth = `${clientFirstBare},${RFC.serverFirst},${withoutProof}`;
  const sig = crypto.createHmac('sha256', storedKey).update(auth).digest();
  const proof = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) proof[i] = clientKey[i]! ^ sig[i]!;
  return `${withoutProof},p=${proof.toString('base64')}`;
}

describe('SCRAM-SHA-256 malformed messages', () => {
  const firsts: [string, RegExp | string][] = [
    ['', 'malformed SCRAM message'],
    ['x,,n=,r=abc', 'malformed SCRAM message'],
    ['p=tls-server-end-point,,n=,r=abc', 'malformed SCRAM message'],
    ['n,n=,r=abc', 'malformed SCRAM message'],
    ['n,a=bob,n=,r=abc', 'client uses authorization identity, but it is not supported'],
    ['n,,m=ext,n=,r=abc', 'client requires an unsupported SCRAM extension'],
    ['n,,r=abc', 'malformed SCRAM message'],
    ['n,,n=', 'malformed SCRAM message'],
    ['n,,n=,r', 'malformed SCRAM message'],
    ['n,,n=,r=a,b', 'malformed SCRAM message'],
    ['n,,n=,r=a\x01b', 'malformed SCRAM message'],
    ['n,,n=,r=abc\0', 'malformed SCRAM message'],
  ];
  for (const [msg, err] of firsts) {
    it(`client-first ${JSON.stringify(msg)}`, () => {
      throwsAuth(() => new ScramServer({ user: 'u', secret: 'pw' }).handleClientFirst(b(msg)), err);
    });
  }
  it('client-first with extensions after r= is accepted', () => {
    const sf = new ScramServer({ user: 'u', secret: 'pw', serverNonce: 'SN' }).handleClientFirst(b('n,,n=bob,r=abc,x=1'));
    assert.match(sf.toString(), /^r=abcSN,s=[^,]+,i=4096$/);
  });

  const finals = [
    '',
    'r=abc,p=AAAA',
    'c=biws',
    'c=biws,r=abcSN',
    'c=biws,r=abcSN,p=notbase64!',
    'c=biws,r=abcSN,p=AAAA',
    `c=biws,r=abcSN,p=${Buffer.alloc(32).toString('base64')},x=1`,
    `c=biws,r=abcSN,p=${Buffer.alloc(32).toString('base64')},`,
  ];
  for (const msg of finals) {
    it(`client-final ${JSON.stringify(msg)}`, () => {
      const s = new ScramServer({ user: 'u', secret: 'pw', serverNonce: 'SN' });
      s.handleClientFirst(b('n,,n=,r=abc'));
      throwsAuth(() => s.handleClientFinal(b(msg)));
    });
  }
  it('client-final extensions before p= are accepted (proof still checked)', () => {
    const s = new ScramServer({ user: 'u', secret: 'pw', serverNonce: 'SN' });
    s.handleClientFirst(b('n,,n=,r=abc'));
    assert.deepEqual(s.handleClientFinal(b(`c=biws,r=abcSN,x=1,p=${Buffer.alloc(32).toString('base64')}`)), { ok: false });
  });
  it('out-of-order calls throw', () => {
    const s = new ScramServer({ user: 'u', secret: 'pw' });
    throwsAuth(() => s.handleClientFinal(b(RFC.clientFinal)), 'invalid SCRAM exchange state');
    const c = new ScramClient('pw');
    throwsAuth(() => c.handleServerFirst(b(RFC.serverFirst)), 'invalid SCRAM exchange state');
  });
  it('parseScramVerifier rejects junk', () => {
    for (const v of ['', 'md5abc', 'SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA', 'SCRAM-SHA-256$0:c2FsdA==$' +
      `${Buffer.alloc(32).toString('base64')}:${Buffer.alloc(32).toString('base64')}`]) {
      assert.equal(parseScramVerifier(v), null, v);
    }
  });
});

describe('md5', () => {
  it('stored hash matches md5(password + user)', () => {
    assert.equal(md5PasswordHash('postgres', 'secret'), 'md553f48b7c4b76a86ce72276c5755f217d');
    assert.ok(isMd5Hash(md5PasswordHash('postgres', 'secret')));
    assert.ok(!isMd5Hash('md5XYZ'));
  });
  it('client response from password or stored hash', () => {
    const salt = Buffer.from([1, 2, 3, 4]);
    assert.equal(md5Response('postgres', 'secret', salt), 'md5bb41a296aab6baccb36ff243a562abff');
    assert.equal(md5Response('postgres', 'md553f48b7c4b76a86ce72276c5755f217d', salt), 'md5bb41a296aab6baccb36ff243a562abff');
  });
  it('verifyMd5', () => {
    const salt = Buffer.from([9, 8, 7, 6]);
    const resp = md5Response('bob', 'pw', salt);
    assert.equal(verifyMd5('bob', 'pw', salt, resp), true);
    assert.equal(verifyMd5('bob', md5PasswordHash('bob', 'pw'), salt, resp), true);
    assert.equal(verifyMd5('bob', 'other', salt, resp), false);
    assert.equal(verifyMd5('bob', 'pw', Buffer.from([1, 2, 3, 4]), resp), false);
    assert.equal(verifyMd5('bob', 'pw', salt, 'md5short'), false);
    assert.equal(verifyMd5('bob', scramVerifier('pw'), salt, resp), false);
  });
});

describe('unknown users', () => {
  it('get 28000 "role does not exist" when every configured user is trust, else a mock SCRAM exchange', async () => {
    const { ClientAuth } = await import('../../src/frontend/auth');
    const trustOnly = new ClientAuth('nobody', undefined, true).start();
    assert.ok('error' in trustOnly);
    assert.equal(trustOnly.error.code, '28000');
    assert.equal(trustOnly.error.message, 'role "nobody" does not exist');
    const mock = new ClientAuth('nobody', undefined, false).start();
    assert.ok('send' in mock, 'a SASL challenge, like a configured scram-sha-256 user gets');
  });
});
