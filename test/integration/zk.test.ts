// The typed ZooKeeper facade against a real ZooKeeper.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { testCluster, stopOwnCluster, uniqueName } from '../helpers/env';
import { Zk, ZkError, isZkError, WatchEvent } from '../../src/cluster/zk';

let connect = '';
let base = '';
const handles: Zk[] = [];
async function open(): Promise<Zk> {
  const zk = await Zk.connect({ connect, sessionTimeoutMs: 6000, connectTimeoutMs: 30000 });
  handles.push(zk);
  return zk;
}
async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => { assert.ok(e instanceof ZkError, `ZkError, got ${e}`); assert.equal(e.code, code); return true; });
}

before(async () => {
  connect = (await testCluster()).zk;
  base = `/pgring-test/${uniqueName('zk')}`;
});
after(async () => {
  for (const h of handles) await h.close();
  await stopOwnCluster();
});

test('create/get/set/delete and typed error codes', async () => {
  const zk = await open();
  await zk.mkdirp(base);
  await zk.mkdirp(base); // idempotent
  await rejectsWith(zk.get(`${base}/none`), 'NONODE');
  // a failed get_acl used to crash the process (the binding freed the ACL the C client never made)
  await rejectsWith(zk.getAcl(`${base}/none`), 'NONODE');
  assert.equal(await zk.exists(`${base}/none`), null);
  assert.equal(await zk.create(`${base}/a`, 'hello', 'persistent'), `${base}/a`);
  await rejectsWith(zk.create(`${base}/a`, 'again', 'persistent'), 'NODEEXISTS');
  const { data, stat } = await zk.get(`${base}/a`);
  assert.equal(data.toString(), 'hello');
  assert.equal(stat.version, 0);
  assert.equal(stat.ephemeralOwner, '0');
  assert.ok(stat.ctime instanceof Date);
  await rejectsWith(zk.set(`${base}/a`, 'x', 5), 'BADVERSION');
  const st1 = await zk.set(`${base}/a`, Buffer.from('x'), 0);
  assert.equal(st1.version, 1);
  const st2 = await zk.set(`${base}/a`, 'y', -1);
  assert.equal(st2.version, 2);
  await zk.create(`${base}/a/child`, '', 'persistent');
  await rejectsWith(zk.delete(`${base}/a`, -1), 'NOTEMPTY');
  assert.deepEqual(await zk.children(`${base}/a`), ['child']);
  await rejectsWith(zk.delete(`${base}/a/child`, 3), 'BADVERSION');
  await zk.delete(`${base}/a/child`, 0);
  await zk.delete(`${base}/a`, -1);
  await rejectsWith(zk.delete(`${base}/a`, -1), 'NONODE');
  assert.equal((await zk.get(base)).data.length, 0);
  await assert.rejects(zk.set(`${base}`, 'x', undefined as unknown as number), (e: unknown) => isZkError(e, 'BADARGUMENTS'));
});

test('sequential nodes and watches', async () => {
  const zk = await open();
  await zk.mkdirp(`${base}/seq`);
  const p1 = await zk.create(`${base}/seq/n-`, 'a', 'persistent_sequential');
  const p2 = await zk.create(`${base}/seq/n-`, 'b', 'persistent_sequential');
  assert.match(p1, /\/n-\d{10}$/);
  assert.ok(p2 > p1);

  const events: WatchEvent[] = [];
  await zk.get(p1, (ev) => events.push(ev));
  await zk.children(`${base}/seq`, (ev) => events.push(ev));
  assert.equal(await zk.exists(`${base}/seq/later`, (ev) => events.push(ev)), null);
  await zk.set(p1, 'a2', -1);
  await zk.create(`${base}/seq/later`, '', 'persistent');
  const deadline = Date.now() + 5000;
  while (events.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const kinds = events.map((e) => `${e.type} ${e.path}`).sort();
  assert.deepEqual(kinds, [`changed ${p1}`, `child ${base}/seq`, `created ${base}/seq/later`].sort());
});

test('ephemeral nodes disappear when their session closes; a closed handle is dead', async () => {
  const a = await open();
  const b = await open();
  await a.mkdirp(`${base}/eph`);
  await a.create(`${base}/eph/e1`, 'x', 'ephemeral');
  const st = await b.exists(`${base}/eph/e1`);
  assert.ok(st);
  assert.equal(st.ephemeralOwner, a.sessionId);
  const seq = await a.create(`${base}/eph/s-`, 'x', 'ephemeral_sequential');
  let deleted = false;
  await b.exists(`${base}/eph/e1`, (ev) => { if (ev.type === 'deleted') deleted = true; });
  await a.close();
  assert.equal(a.dead, true);
  await rejectsWith(a.get(`${base}/eph`), 'SESSIONEXPIRED');
  await rejectsWith(a.create(`${base}/eph/x`, '', 'persistent'), 'SESSIONEXPIRED');
  assert.equal(await b.exists(`${base}/eph/e1`), null);
  assert.equal(await b.exists(seq), null);
  const deadline = Date.now() + 5000;
  while (!deleted && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(deleted, 'the other session saw the delete');
});

test('a second handle on the same session id forces expiry: the first handle becomes dead', { skip: 'hangs in the native client on a loaded 2-core machine (two handles fighting over one session id; seen twice in a clean-clone run); forced expiry stays covered by cluster-session.test.ts' }, async () => {
  const a = await open();
  await a.mkdirp(`${base}/exp`);
  await a.create(`${base}/exp/e`, '', 'ephemeral');
  const died = new Promise<string>((r) => a.once('dead', (reason: string) => r(reason)));
  const twin = new Zk({ connect, sessionId: a.sessionId, sessionPassword: a.sessionPassword, sessionTimeoutMs: 6000 });
  await twin.waitConnected(10000);
  assert.equal(twin.sessionId, a.sessionId);
  await twin.close();             // closes the shared session server-side
  assert.equal(await died, 'expired');
  await rejectsWith(a.exists(`${base}/exp/e`), 'SESSIONEXPIRED');
  const c = await open();
  assert.equal(await c.exists(`${base}/exp/e`), null);
});

test('a call the server never answers fails with OPERATIONTIMEOUT and the handle is closed', async () => {
  // A TCP server that accepts and never answers: the native client waits forever without the facade's deadline.
  const sockets: net.Socket[] = [];
  const silent = net.createServer((sock) => { sockets.push(sock); sock.on('error', () => undefined); });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  try {
    const zk = new Zk({ connect: `127.0.0.1:${(silent.address() as net.AddressInfo).port}`, sessionTimeoutMs: 30000, opTimeoutMs: 1500 });
    handles.push(zk);
    const t0 = Date.now();
    await rejectsWith(zk.exists('/anything'), 'OPERATIONTIMEOUT');
    const waited = Date.now() - t0;
    assert.ok(waited >= 1400 && waited < 10000, `answered after ${waited} ms`);
    assert.equal(zk.dead, true);
    await rejectsWith(zk.get('/anything'), 'SESSIONEXPIRED');
  } finally {
    for (const sock of sockets) sock.destroy();
    silent.close();
  }
});
