// Session supervision against a ZooKeeper of our own: forced expiry, restarts, long outages.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalZooKeeper } from '../../src/local/zookeeper';
import { freePort, sleep } from '../../src/local/proc';
import { uniqueName } from '../helpers/env';
import { SessionState, ZkSession } from '../../src/cluster/session';
import { Layout } from '../../src/cluster/layout';
import { Zk } from '../../src/cluster/zk';
import { expireSession } from '../helpers/zk';
import { initRing, publishRing, RingDocument, RingWatcher } from '../../src/cluster/ring-store';
import { EphemeralNode, listProxies, registerProxy, ProxyRecord } from '../../src/cluster/registry';
import { LeaderLatch } from '../../src/cluster/election';

let lz: LocalZooKeeper;
const sessions: ZkSession[] = [];
const quiet = { warn: () => undefined };
async function session(timeoutMs = 4000): Promise<ZkSession> {
  const s = new ZkSession({ connect: lz.connectString, sessionTimeoutMs: timeoutMs, logger: quiet });
  sessions.push(s);
  await s.start();
  return s;
}
function ring(shards: string[]): Omit<RingDocument, 'version'> {
  return { shards: shards.map((name) => ({ name, weight: 1 })), vnodes: 8, seed: 3, hash: 'pg-hashint8extended-v1' };
}
function nextEvent<T = unknown>(em: NodeJS.EventEmitter, ev: string, timeoutMs = 20000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${ev}' within ${timeoutMs} ms`)), timeoutMs);
    em.once(ev, (x: T) => { clearTimeout(t); resolve(x); });
  });
}
async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
/** Expires `s`'s current session server-side by closing a twin handle on the same session id. */
async function expire(s: ZkSession): Promise<void> {
  const zk = s.current();
  await expireSession(zk, lz.connectString);
  assert.ok(zk.dead, 'session expired');
}

before(async () => {
  lz = new LocalZooKeeper({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-zk-sess-')), port: await freePort() });
  await lz.start();
});
after(async () => {
  for (const s of sessions) await s.close();
  await lz.stop();
});

test('session expiry: new handle, re-registered ephemerals, re-read ring, latch re-entered', async () => {
  const layout = new Layout(uniqueName('sess_exp'));
  const a = await session();
  const b = await session();
  await initRing(b, layout, ring(['s1']));
  const watcher = new RingWatcher(a, layout);
  await watcher.start();
  assert.equal(watcher.current()?.version, 1);
  const rec: ProxyRecord = { id: 'p1', host: '127.0.0.1', port: 6432, pid: process.pid, startedAt: Date.now() };
  const proxy = await registerProxy(a, layout, rec);
  const latch = new LeaderLatch(a, layout, { id: 'a' });
  await latch.start();
  assert.equal(latch.isLeader(), true);

  const states: SessionState[] = [];
  a.on('state', (st: SessionState) => states.push(st));
  const oldZk = a.current();
  const oldSession = oldZk.sessionId;
  const reconnected = nextEvent<Zk>(a, 'reconnected');
  let syncsAfterExpiry = 0;
  watcher.on('synced', () => { syncsAfterExpiry++; });
  const follower = nextEvent(latch, 'follower');
  await expire(a);
  const newZk = await reconnected;
  await follower;
  assert.notEqual(newZk, oldZk);
  assert.notEqual(newZk.sessionId, oldSession);
  assert.equal(oldZk.dead, true);
  assert.deepEqual(states.slice(states.indexOf('lost'), states.indexOf('lost') + 3), ['lost', 'connecting', 'connected']);
  assert.equal(a.sessionCount, 2);

  // ephemeral proxy node comes back, owned by the new session
  await waitFor(async () => (await b.current().exists(layout.proxy('p1')))?.ephemeralOwner === newZk.sessionId, 'proxy node re-created');
  assert.deepEqual((await listProxies(b, layout)).map((p) => p.id), ['p1']);
  await latch.waitLeader(10000);

  // the ring watcher re-read after reconnecting and its watch is registered again
  // nothing changed the ring, so a read after the expiry is the re-read on reconnect
  await waitFor(() => syncsAfterExpiry > 0, 'ring re-read after the new session');
  const v2 = await publishRing(b, layout, ring(['s1', 's2']));
  assert.equal((await watcher.waitForVersion(v2, 10000)).version, v2);

  // the proxy node's data can still be updated
  proxy.update({ ...rec, port: 7000 });
  await proxy.flushed();
  assert.equal((await listProxies(b, layout))[0]?.port, 7000);
  watcher.stop();
  await latch.stop();
  await proxy.stop();
  assert.deepEqual(await listProxies(b, layout), []);
});

test('ring published while the session was being replaced is picked up by the re-read', async () => {
  const layout = new Layout(uniqueName('sess_reread'));
  const a = await session();
  const b = await session();
  await initRing(b, layout, ring(['s1']));
  const watcher = new RingWatcher(a, layout);
  await watcher.start();
  // Hold the new handle back so the publish happens while `a` has no session.
  let lostAt = 0;
  a.once('lost', () => { lostAt = Date.now(); });
  await expire(a);
  await waitFor(() => lostAt > 0, 'lost');
  const v = await publishRing(b, layout, ring(['s1', 's9']));
  assert.equal((await watcher.waitForVersion(v, 15000)).shards[1]?.name, 's9');
  watcher.stop();
});

test('ZooKeeper restart within the session timeout: same session, watcher still delivers', async () => {
  const layout = new Layout(uniqueName('sess_restart'));
  const a = await session(8000);
  await initRing(a, layout, ring(['s1']));
  const w = new RingWatcher(a, layout);
  await w.start();
  const eph = new EphemeralNode(a, `${layout.proxies}/keep`, { x: 1 });
  await eph.start();
  const sid = a.current().sessionId;
  const suspended = nextEvent(a, 'suspended');
  await lz.stop();
  await suspended;
  assert.equal(a.state, 'suspended');
  assert.throws(() => a.current(), /suspended/);
  await sleep(1000);
  await lz.start();
  await a.waitConnected(20000);
  assert.equal(a.current().sessionId, sid, 'same session after a short outage');
  const b = await session();
  const v = await publishRing(b, layout, ring(['s1', 's2']));
  assert.equal((await w.waitForVersion(v, 15000)).version, v);
  assert.equal((await b.current().exists(`${layout.proxies}/keep`))?.ephemeralOwner, sid);
  w.stop();
  await eph.stop();
});

test('ZooKeeper down longer than the session timeout: lost, new session, ephemerals and watches back', async () => {
  const layout = new Layout(uniqueName('sess_long'));
  const a = await session(2000);
  await initRing(a, layout, ring(['s1']));
  const w = new RingWatcher(a, layout);
  await w.start();
  const eph = new EphemeralNode(a, `${layout.proxies}/long`, { x: 1 });
  await eph.start();
  const sid = a.current().sessionId;
  const lost = nextEvent(a, 'lost');
  const reconnected = nextEvent(a, 'reconnected', 60000);
  await lz.stop();
  await lost;                      // declared after suspension > negotiated session timeout
  await sleep(500);
  await lz.start();
  await reconnected;
  const zk = a.current();
  assert.notEqual(zk.sessionId, sid);
  const b = await session();
  // our old session may live on the server for its timeout; the node is taken over afterwards
  await waitFor(async () => (await b.current().exists(`${layout.proxies}/long`))?.ephemeralOwner === zk.sessionId, 'ephemeral owned by the new session', 30000);
  const v = await publishRing(b, layout, ring(['s1', 's3']));
  assert.equal((await w.waitForVersion(v, 15000)).version, v);
  w.stop();
  await eph.stop();
});
