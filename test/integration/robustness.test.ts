// Bad input on the wire ends only the offending connection, with an ErrorResponse;
// the proxy and every other client go on. Also checks the startup handshake bytes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { MessageReader } from '../../src/protocol/reader';
import { parseErrorFields } from '../../src/protocol/errors';
import { Writer } from '../../src/protocol/messages';

let proxy: RunningProxy;
let db: string;
let port0: number;

before(async () => {
  const cluster = await testCluster();
  port0 = cluster.pg[0]!.port;
  db = uniqueName('rob');
  createDatabase([port0], db);
  proxy = await startProxy(await baseConfig(cluster, 1));
});
after(async () => { await proxy?.stop(); dropDatabase([port0], db); });

/** Sends raw bytes, collects what comes back until the server closes (or timeout). */
function exchange(payloads: Buffer[], timeoutMs = 3000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(proxy.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    s.on('connect', async () => { for (const p of payloads) { s.write(p); await new Promise((r) => setTimeout(r, 50)); } });
    s.on('data', (d) => chunks.push(d));
    s.on('close', () => { closed = true; clearTimeout(t); resolve({ data: Buffer.concat(chunks), closed }); });
    s.on('error', () => undefined);
    const t = setTimeout(() => { s.destroy(); resolve({ data: Buffer.concat(chunks), closed }); }, timeoutMs);
  });
}

function startup(params: Record<string, string>): Buffer {
  const w = new Writer().int32(196608);
  for (const [k, v] of Object.entries(params)) w.cstr(k).cstr(v);
  return w.int8(0).packet();
}

function messages(data: Buffer): { type: string; msg: Buffer }[] {
  const out: { type: string; msg: Buffer }[] = [];
  new MessageReader().feed(data, (t, m) => out.push({ type: String.fromCharCode(t), msg: Buffer.from(m) }));
  return out;
}

async function stillServes(): Promise<void> {
  const c = client(proxy.port, db);
  await c.connect();
  assert.equal((await c.query('SELECT 7 AS x')).rows[0].x, 7);
  await c.end();
}

describe('malformed input', () => {
  it('answers SSLRequest and GSSENCRequest with N, then accepts the startup', async () => {
    const ssl = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    const gss = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
    const r = await exchange([ssl, gss, startup({ user: 'postgres', database: db })], 1500);
    assert.equal(r.data[0], 'N'.charCodeAt(0));
    assert.equal(r.data[1], 'N'.charCodeAt(0));
    const msgs = messages(r.data.subarray(2));
    assert.equal(msgs[0]!.type, 'R');
    assert.ok(msgs.some((m) => m.type === 'S'), 'ParameterStatus');
    assert.ok(msgs.some((m) => m.type === 'K'), 'BackendKeyData');
    assert.equal(msgs.at(-1)!.type, 'Z');
    const ps = new Map(msgs.filter((m) => m.type === 'S').map((m) => { const [k, v] = m.msg.subarray(5).toString().split('\0'); return [k, v]; }));
    assert.match(ps.get('server_version') ?? '', /^15\./);
    assert.equal(ps.get('integer_datetimes'), 'on');
  });

  it('closes a connection whose startup packet is malformed: 08P01, or silently for an impossible length', async () => {
    const bad = Buffer.concat([Buffer.from([0, 0, 0, 12]), Buffer.from([0, 3, 0, 0]), Buffer.from('user')]); // no terminators
    const r = await exchange([bad]);
    assert.ok(r.closed);
    const msgs = messages(r.data);
    assert.equal(msgs[0]!.type, 'E');
    assert.equal(parseErrorFields(msgs[0]!.msg).C, '08P01');
    // An impossible length is closed without an answer: PostgreSQL only logs "invalid length of
    // startup packet" (COMMERROR) and sends nothing.
    const huge = Buffer.from([0x7f, 0, 0, 0, 0, 3, 0, 0]);
    const r2 = await exchange([huge]);
    assert.ok(r2.closed);
    assert.equal(r2.data.length, 0);
    const v2 = Buffer.from([0, 0, 0, 8, 0, 2, 0, 0]);
    const r3 = await exchange([v2]);
    assert.equal(parseErrorFields(messages(r3.data)[0]!.msg).C, '08P01');
    await stillServes();
  });

  it('closes a connection that sends a message with a bad length, with 08P01', async () => {
    const bad = Buffer.from([0x51, 0, 0, 0, 2]); // Query with length 2 < 4
    const r = await exchange([startup({ user: 'postgres', database: db }), bad]);
    assert.ok(r.closed);
    const errs = messages(r.data).filter((m) => m.type === 'E');
    assert.equal(parseErrorFields(errs[0]!.msg).C, '08P01');
    await stillServes();
  });

  it('survives random bytes after startup', async () => {
    for (let i = 0; i < 20; i++) {
      const junk = randomBytes(64 + (i * 37) % 500);
      junk[0] = [0x00, 0x7a, 0xff, 0x51, 0x50][i % 5]!;
      await exchange([startup({ user: 'postgres', database: db }), junk], 800);
    }
    await stillServes();
  });
});
