// Ring versions + active pointer (compare-and-set) and the RingWatcher, on a real ZooKeeper.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { testCluster, stopOwnCluster, uniqueName } from '../helpers/env';
import { ZkSession } from '../../src/cluster/session';
import { Layout } from '../../src/cluster/layout';
import { isZkError } from '../../src/cluster/zk';
import {
  initRing, listRingVersions, publishRing, readActiveRing, readRingVersion, RingConflictError, RingDocument, RingWatcher, switchActive, writeRingVersion,
} from '../../src/cluster/ring-store';

let connect = '';
const sessions: ZkSession[] = [];
const quiet = { warn: () => undefined };
async function session(): Promise<ZkSession> {
  const s = new ZkSession({ connect, sessionTimeoutMs: 6000, logger: quiet });
  sessions.push(s);
  await s.start();
  return s;
}
function ring(shards: string[], seed = 1): Omit<RingDocument, 'version'> {
  return { shards: shards.map((name) => ({ name, weight: 1 })), vnodes: 16, seed, hash: 'pg-hashint8extended-v1' };
}

before(async () => { connect = (await testCluster()).zk; });
after(async () => {
  for (const s of sessions) await s.close();
  await stopOwnCluster();
});

test('initRing is idempotent and safe when two proxies race', async () => {
  const layout = new Layout(uniqueName('ring_init'));
  const [a, b] = [await session(), await session()];
  const [ra, rb] = await Promise.all([initRing(a, layout, ring(['s1', 's2'])), initRing(b, layout, ring(['s1', 's2', 's3']))]);
  assert.equal(ra.version, 1);
  assert.equal(rb.version, 1);
  assert.deepEqual(ra.ring, rb.ring);
  assert.deepEqual(await listRingVersions(a, layout), [1]);
  const again = await initRing(a, layout, ring(['x']));
  assert.equal(again.version, 1);
  assert.deepEqual(again.ring.shards.map((s) => s.name), ra.ring.shards.map((s) => s.name));
});

test('publishRing writes immutable versions and moves active forward', async () => {
  const layout = new Layout(uniqueName('ring_pub'));
  const a = await session();
  assert.equal(await readActiveRing(a, layout), null);
  await initRing(a, layout, ring(['s1']));
  const v2 = await publishRing(a, layout, ring(['s1', 's2']));
  assert.equal(v2, 2);
  const act = await readActiveRing(a, layout);
  assert.equal(act?.version, 2);
  assert.equal(act?.ring.version, 2);
  assert.deepEqual(act?.ring.shards.map((s) => s.name), ['s1', 's2']);
  // version 1 is still there, unchanged
  const v1 = await readRingVersion(a, layout, 1);
  assert.deepEqual(v1.shards.map((s) => s.name), ['s1']);
  const zk = a.current();
  assert.equal((await zk.get(layout.ringVersion(1))).stat.version, 0);
  // strict publish from a stale base fails and leaves active alone
  await assert.rejects(publishRing(a, layout, ring(['s9']), { expectedActive: 1 }), RingConflictError);
  assert.equal((await readActiveRing(a, layout))?.version, 2);
  assert.equal(await publishRing(a, layout, ring(['s1', 's2', 's3']), { expectedActive: 2 }), 4);
});

test('CAS race: two sessions switch active from the same version, exactly one wins, the other re-reads', async () => {
  const layout = new Layout(uniqueName('ring_cas'));
  const [a, b] = [await session(), await session()];
  await initRing(a, layout, ring(['s1']));
  const va = await writeRingVersion(a, layout, ring(['s1', 'a']));
  const vb = await writeRingVersion(b, layout, ring(['s1', 'b']));
  assert.notEqual(va, vb);
  const base = await readActiveRing(a, layout);
  assert.equal(base?.version, 1);
  const results = await Promise.allSettled([
    switchActive(a, layout, va, base!.activeStatVersion),
    switchActive(b, layout, vb, base!.activeStatVersion),
  ]);
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(won.length, 1);
  assert.equal(lost.length, 1);
  assert.ok(isZkError(lost[0]!.reason, 'BADVERSION'));
  const winner = results[0]!.status === 'fulfilled' ? va : vb;
  const after1 = await readActiveRing(b, layout);
  assert.equal(after1?.version, winner);
  assert.ok(after1!.activeStatVersion > base!.activeStatVersion);

  // Both publish from the same base with expectedActive: one activates, the other gets a conflict.
  const cur = after1!.version;
  const pubs = await Promise.allSettled([
    publishRing(a, layout, ring(['p', 'a']), { expectedActive: cur }),
    publishRing(b, layout, ring(['p', 'b']), { expectedActive: cur }),
  ]);
  const ok = pubs.filter((r): r is PromiseFulfilledResult<number> => r.status === 'fulfilled');
  const bad = pubs.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(ok.length, 1);
  assert.equal(bad.length, 1);
  assert.ok(bad[0]!.reason instanceof RingConflictError);
  assert.equal((await readActiveRing(a, layout))?.version, ok[0]!.value);

  // Without expectedActive, concurrent publishers retry on BADVERSION; active ends on the newest.
  const many = await Promise.all([a, b, a, b].map((s, i) => publishRing(s, layout, ring(['m', String(i)])).catch((e) => e)));
  const versions = many.filter((x): x is number => typeof x === 'number');
  assert.ok(versions.length >= 1);
  for (const x of many) if (typeof x !== 'number') assert.ok(x instanceof RingConflictError, String(x));
  const final = await readActiveRing(a, layout);
  assert.equal(final?.version, Math.max(...(await listRingVersions(a, layout))));
});

test('RingWatcher on a second session sees new versions', async () => {
  const layout = new Layout(uniqueName('ring_watch'));
  const [a, b] = [await session(), await session()];
  const w = new RingWatcher(b, layout);
  const seen: number[] = [];
  w.on('ring', (r: RingDocument) => seen.push(r.version));
  await w.start();
  assert.equal(w.current(), null);           // nothing published yet; watching for creation
  await initRing(a, layout, ring(['s1']));
  assert.equal((await w.waitForVersion(1, 10000)).version, 1);
  const v = await publishRing(a, layout, ring(['s1', 's2']));
  const got = await w.waitForVersion(v, 10000);
  assert.deepEqual(got.shards.map((s) => s.name), ['s1', 's2']);
  const v3 = await publishRing(a, layout, ring(['s1', 's2', 's3']));
  await w.waitForVersion(v3, 10000);
  assert.deepEqual(seen, [1, 2, 3]);
  w.stop();
});
