// Protocol fuzzing: thousands of malformed client messages, before and after authentication,
// structured (each field of each message type broken in turn) and random (seeded, mutated
// valid messages and noise). Every broken message must end only its own connection, with
// FATAL 08P01 in PostgreSQL's words, never XX000 and never an error-level log line, while a
// well-behaved client keeps being served the whole time. maxClientConnections is checked too.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import pino from 'pino';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase } from '../helpers/proxy';
import { parseConfig } from '../../src/config/load';
import { Proxy } from '../../src/proxy';
import { MessageReader } from '../../src/protocol/reader';
import { parseErrorFields } from '../../src/protocol/errors';
import { Writer } from '../../src/protocol/messages';
import { F } from '../../src/protocol/codes';

let proxy: Proxy;
let port: number;
let db: string;
let pgPort: number;
const errorLogs: string[] = [];

before(async () => {
  const cluster = await testCluster();
  pgPort = cluster.pg[0]!.port;
  db = uniqueName('fuzz');
  createDatabase([pgPort], db);
  const raw = await baseConfig(cluster, 1, {
    users: [{ name: 'postgres', auth: 'trust', admin: true }, { name: 'fuzzer', auth: 'scram-sha-256', password: 'secret', serverUser: 'postgres' }],
    logLevel: 'warn',
  });
  // error-level lines (level 50 and up) are what the test forbids
  const log = pino({ level: 'warn' }, { write(line: string) { if ((JSON.parse(line) as { level: number }).level >= 50) errorLogs.push(line); } });
  proxy = new Proxy({ config: parseConfig(raw), log });
  await proxy.start();
  port = proxy.port;
});
after(async () => { await proxy?.stop(); dropDatabase([pgPort], db); });

// ---- wire helpers ---------------------------------------------------------------

function startup(user: string): Buffer {
  return new Writer().int32(196608).cstr('user').cstr(user).cstr('database').cstr(db).int8(0).packet();
}
const msg = (type: number, body: Buffer): Buffer => {
  const b = Buffer.alloc(5 + body.length);
  b[0] = type; b.writeInt32BE(4 + body.length, 1); body.copy(b, 5);
  return b;
};
const sync = msg(F.Sync, Buffer.alloc(0));
const terminate = msg(F.Terminate, Buffer.alloc(0));
const queryMsg = (sql: string): Buffer => new Writer().cstr(sql).msg(F.Query);

interface Outcome { errors: { S?: string; C?: string; M?: string }[]; closed: boolean }

/** Sends the bytes on a new connection, half-closes, collects messages until the proxy closes. */
function exchange(bytes: Buffer, timeoutMs = 10000): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const t = setTimeout(() => { s.destroy(); reject(new Error(`no close after ${timeoutMs} ms for ${bytes.toString('hex').slice(0, 200)}`)); }, timeoutMs);
    s.on('connect', () => s.end(bytes));
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      const errors: Outcome['errors'] = [];
      try {
        new MessageReader().feed(Buffer.concat(chunks), (type, m) => { if (type === 0x45) errors.push(parseErrorFields(m)); });
      } catch { /* a cut-off tail */ }
      resolve({ errors, closed: true });
    });
  });
}

/** Authenticated session prefix: trust user. */
const authed = (): Buffer => startup('postgres');

function assertSane(o: Outcome, what: string): void {
  for (const e of o.errors) {
    assert.notEqual(e.C, 'XX000', `${what}: internal error ${e.M}`);
    if (e.S === 'FATAL') assert.ok(['08P01', '28P01', '57014'].includes(e.C!), `${what}: FATAL ${e.C} ${e.M}`);
  }
}

async function expectFatal(bytes: Buffer, message: string | RegExp, what: string): Promise<void> {
  const o = await exchange(bytes);
  assertSane(o, what);
  const fatal = o.errors.find((e) => e.S === 'FATAL');
  assert.ok(fatal, `${what}: no FATAL in ${JSON.stringify(o.errors)}`);
  assert.equal(fatal.C, '08P01', what);
  if (typeof message === 'string') assert.equal(fatal.M, message, what); else assert.match(fatal.M!, message, what);
}

// ---- a well-behaved client, busy for the whole file --------------------------------

let stopWatch = false;
let served = 0;
let watchError: unknown = null;
async function watcher(): Promise<void> {
  const c = client(port, db);
  await c.connect();
  try {
    while (!stopWatch) {
      const r = await c.query('SELECT $1::int + 1 AS x', [served]);
      assert.equal(r.rows[0].x, served + 1);
      served++;
      await new Promise((res) => setTimeout(res, 5));
    }
  } catch (e) { watchError = e; } finally { await c.end().catch(() => undefined); }
}

// ---- seeded random ------------------------------------------------------------------

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}

function validMessages(): Buffer[] {
  return [
    queryMsg('SELECT 1'),
    new Writer().cstr('s1').cstr('SELECT $1::int').int16(1).int32(23).msg(F.Parse),
    new Writer().cstr('').cstr('s1').int16(1).int16(0).int16(1).int32(1).bytes(Buffer.from('7')).int16(1).int16(0).msg(F.Bind),
    new Writer().int8(0x50).cstr('').msg(F.Describe),
    new Writer().cstr('').int32(0).msg(F.Execute),
    new Writer().int8(0x53).cstr('s1').msg(F.Close),
    sync,
    msg(F.Flush, Buffer.alloc(0)),
    new Writer().int32(0).int16(0).int16(0).int16(0).msg(F.FunctionCall), // oid 0: no such function
  ];
}

/** A valid message broken at random: truncated, extended, a byte or the length changed. */
function mutate(r: () => number, m: Buffer): Buffer {
  const b = Buffer.from(m);
  switch (Math.floor(r() * 6)) {
    case 0: { // truncate the body, fix the length (fields run past the end)
      const cut = 5 + Math.floor(r() * (b.length - 5));
      const t = Buffer.from(b.subarray(0, cut)); t.writeInt32BE(cut - 1, 1); return t;
    }
    case 1: { // trailing garbage
      const extra = Buffer.from([Math.floor(r() * 256), 0, Math.floor(r() * 256)]);
      const t = Buffer.concat([b, extra]); t.writeInt32BE(t.length - 1, 1); return t;
    }
    case 2: // a random byte of the body
      if (b.length > 5) b[5 + Math.floor(r() * (b.length - 5))] = Math.floor(r() * 256);
      return b;
    case 3: // a count or length field made negative / huge
      if (b.length > 7) { const at = 5 + Math.floor(r() * (b.length - 7)); b.writeInt16BE(-1 - Math.floor(r() * 30000), at); }
      return b;
    case 4: // the declared length wrong (the message swallows what follows, or stops short)
      b.writeInt32BE(Math.max(0, b.length - 1 + Math.floor(r() * 40) - 20), 1);
      return b;
    default: { // the type byte
      b[0] = Math.floor(r() * 256);
      return b;
    }
  }
}

function randomCase(r: () => number): Buffer {
  if (r() < 0.15) { // pure noise
    const n = 1 + Math.floor(r() * 200);
    const noise = Buffer.alloc(n);
    for (let i = 0; i < n; i++) noise[i] = Math.floor(r() * 256);
    return noise;
  }
  const valid = validMessages();
  return mutate(r, valid[Math.floor(r() * valid.length)]!);
}

async function runMany(cases: Buffer[], prefix: () => Buffer, what: string, concurrency = 6): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: concurrency }, async () => {
    while (next < cases.length) {
      const i = next++;
      const o = await exchange(Buffer.concat([prefix(), cases[i]!, sync, queryMsg('SELECT 1'), terminate]));
      assertSane(o, `${what} #${i} ${cases[i]!.toString('hex').slice(0, 120)}`);
    }
  });
  await Promise.all(workers);
}

describe('protocol fuzzing', () => {
  let watch: Promise<void>;
  before(() => { watch = watcher(); });
  after(async () => { stopWatch = true; await watch; });

  it('answers each structurally broken message with FATAL 08P01 in PostgreSQL words', async () => {
    const a = authed;
    const cases: [Buffer, string | RegExp, string][] = [
      [msg(F.Execute, Buffer.from('portal')), 'invalid string in message', 'Execute without NUL'],
      [msg(F.Execute, Buffer.from([0, 0, 1])), 'insufficient data left in message', 'truncated Execute'],
      [msg(F.Execute, Buffer.from([0, 0, 0, 0, 0, 9])), 'invalid message format', 'Execute with trailing bytes'],
      [new Writer().cstr('').cstr('s').int16(0).int16(1).int32(-5).int16(0).msg(F.Bind), 'insufficient data left in message', 'Bind with length -5'],
      [new Writer().cstr('').cstr('s').int16(0).int16(3).int32(1).bytes(Buffer.from('x')).msg(F.Bind), 'insufficient data left in message', 'Bind with fewer params than counted'],
      [new Writer().cstr('').cstr('s').int16(0).int16(0).int16(0).int8(1).msg(F.Bind), 'invalid message format', 'Bind with a trailing byte'],
      [new Writer().cstr('').cstr('s').int16(2).int16(0).int16(0).int16(3).msg(F.Bind), 'bind message has 2 parameter formats but 3 parameters', 'Bind formats/params'],
      [new Writer().cstr('').cstr('s').int16(-1).msg(F.Bind), 'insufficient data left in message', 'Bind with 65535 formats'],
      [new Writer().cstr('s').cstr('SELECT 1').int16(-1).msg(F.Parse), 'insufficient data left in message', 'Parse with 65535 types'],
      [new Writer().cstr('s').msg(F.Parse), 'invalid string in message', 'Parse without query'],
      [msg(0x7a, Buffer.from('junk')), 'invalid frontend message type 122', 'unknown type'],
      [msg(F.Sync, Buffer.from([1])), 'invalid message format', 'Sync with a body'],
      [new Writer().int8(0x58).cstr('x').msg(F.Describe), 'invalid DESCRIBE message subtype 88', 'Describe X'],
      [new Writer().int8(0x58).cstr('x').msg(F.Close), 'invalid CLOSE message subtype 88', 'Close X'],
      [msg(F.Query, Buffer.from('SELECT 1')), 'invalid string in message', 'Query without NUL'],
      [msg(F.Query, Buffer.from('SELECT 1\0x\0')), 'invalid message format', 'Query with two strings'],
      [new Writer().int32(0).int16(0).int16(2).int32(-7).msg(F.FunctionCall), 'insufficient data left in message', 'FunctionCall arg length -7'],
    ];
    for (const [m, text, what] of cases) await expectFatal(Buffer.concat([a(), m, sync]), text, what);
    // the same before authentication (the password exchange of a SCRAM user)
    await expectFatal(Buffer.concat([startup('fuzzer'), msg(F.Password, Buffer.from('SCRAM-SHA-256\0\0\0\0\x09ab'))]), 'insufficient data left in message', 'SASLInitialResponse too short');
    await expectFatal(Buffer.concat([startup('fuzzer'), msg(F.Password, Buffer.from('SCRAM-SHA-256'))]), 'invalid string in message', 'SASLInitialResponse without NUL');
    await expectFatal(Buffer.concat([startup('fuzzer'), msg(F.Query, Buffer.from('SELECT 1\0'))]), /expected password response/, 'Query during authentication');
    await expectFatal(Buffer.concat([startup('fuzzer'), msg(0x01, Buffer.alloc(3))]), 'invalid frontend message type 1', 'unknown type during authentication');
  });

  it('refuses a length over the limit from the header alone, before buffering the body', async () => {
    const header = (type: number, len: number): Buffer => { const b = Buffer.alloc(5); b[0] = type; b.writeInt32BE(len, 1); return b; };
    // Only the 5 header bytes are sent: an answer proves nothing waited for the body.
    await expectFatal(Buffer.concat([authed(), header(F.Sync, 20000)]), 'invalid message length', 'Sync over 10000 bytes');
    await expectFatal(Buffer.concat([authed(), header(F.Query, 0x40000000)]), 'invalid message length', 'Query over 1 GB');
    await expectFatal(Buffer.concat([startup('fuzzer'), header(F.Password, 70000)]), 'invalid message length', 'password over 65535 bytes');
    // a startup packet over 10,000 bytes is closed at once, without an answer (PostgreSQL only logs it)
    const big = Buffer.alloc(4); big.writeInt32BE(10001, 0);
    const o = await exchange(big);
    assert.deepEqual(o.errors, []);
  });

  it('keeps serving through thousands of random malformed messages before and after authentication', async () => {
    const seed = Number(process.env.PGRING_FUZZ_SEED ?? Date.now() % 100000);
    const r = rng(seed);
    const post = Array.from({ length: 2000 }, () => randomCase(r));
    const pre = Array.from({ length: 600 }, () => randomCase(r));
    const before = served;
    await runMany(post, authed, `seed ${seed} after auth`);
    await runMany(pre, () => startup('fuzzer'), `seed ${seed} during auth`);
    // noise in place of the startup packet
    await runMany(Array.from({ length: 200 }, () => randomCase(r)), () => Buffer.alloc(0), `seed ${seed} as startup`);
    assert.equal(watchError, null, `the well-behaved client failed: ${watchError}`);
    assert.ok(served > before, 'the well-behaved client ran queries during the fuzzing');
    const c = client(port, db);
    await c.connect();
    assert.equal((await c.query('SELECT 41 + 1 AS x')).rows[0].x, 42);
    await c.end();
    assert.deepEqual(errorLogs, [], 'no error-level log lines');
  });
});

describe('maxClientConnections', () => {
  it('refuses the excess with 53300 and admits again once a client leaves', async () => {
    const cluster = await testCluster();
    const raw = await baseConfig(cluster, 1, { maxClientConnections: 2 });
    const p = new Proxy({ config: parseConfig(raw), log: pino({ level: 'silent' }) });
    await p.start();
    try {
      const a = client(p.port, db); const b = client(p.port, db);
      await a.connect(); await b.connect();
      const c = client(p.port, db);
      await assert.rejects(c.connect(), (e: { code?: string; message: string }) => e.code === '53300' && e.message === 'sorry, too many clients already');
      // the admin console is not counted
      const admin = client(p.port, 'pgring');
      await admin.connect();
      await admin.end();
      await b.end();
      // the proxy sees b's close a moment later: retry until it is admitted
      let d = client(p.port, db);
      for (let i = 0; ; i++) {
        try { await d.connect(); break; } catch (e) {
          if ((e as { code?: string }).code !== '53300' || i > 100) throw e;
          await new Promise((res) => setTimeout(res, 50));
          d = client(p.port, db);
        }
      }
      assert.equal((await d.query('SELECT 1 AS x')).rows[0].x, 1);
      await d.end(); await a.end();
    } finally { await p.stop(); }
  });
});
