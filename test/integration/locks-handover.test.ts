// Lock buckets handed over between proxies (src/cluster/locks.ts), against a real ZooKeeper:
// three lock services (three proxies' sessions) queue for one bucket while a fourth local
// transaction waits behind them. Every waiter must get the bucket, in ZooKeeper's queue order,
// each one serving the transaction that waited for it. (Before, a node that became first with
// other proxies queued behind it released the bucket at once, unused, and three proxies passed a
// hot bucket round for seconds.) Also: an idle bucket is kept by its proxy (no node deleted)
// until another proxy queues for it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { testCluster, uniqueName } from '../helpers/env';
import { ZkSession } from '../../src/cluster/session';
import { Layout } from '../../src/cluster/layout';
import { LockOwner, ZkLockService } from '../../src/cluster/locks';
import { sleep } from '../../src/local/proc';

const quiet = { warn: () => undefined, info: () => undefined };
const BUCKET = 7;

describe('lock buckets handed over between proxies', () => {
  let layout: Layout;
  const sessions: ZkSession[] = [];
  const services: ZkLockService[] = [];

  before(async () => {
    const cluster = await testCluster();
    layout = new Layout(uniqueName('handover'));
    for (let i = 0; i < 3; i++) {
      const s = new ZkSession({ connect: cluster.zk, sessionTimeoutMs: 8000, logger: quiet });
      await s.start(15000);
      sessions.push(s);
      services.push(new ZkLockService(s, layout, { proxyId: `p${i + 1}`, buckets: 64, leaseMs: 0, logger: quiet }));
    }
  });
  after(async () => {
    for (const l of services) await l.close();
    for (const s of sessions) await s.close();
  });

  const owner = (label: string): LockOwner => ({ label });
  const nodes = async () => (await sessions[0]!.current().children(`${layout.locks}/b0007`)).sort((a, b) => a.slice(-10).localeCompare(b.slice(-10)));

  it('three proxies queued for a held bucket each get it in turn, for the transaction that waited', async () => {
    const [p1, p2, p3] = services as [ZkLockService, ZkLockService, ZkLockService];
    const a1 = owner('p1 tx1'), a2 = owner('p1 tx2'), b = owner('p2 tx'), c = owner('p3 tx');
    const first = p1.acquire(a1, BUCKET, 0);
    if (first) await first;
    const order: string[] = [];
    const wait = (svc: ZkLockService, o: LockOwner) => {
      const p = svc.acquire(o, BUCKET, 20000);
      return (p ?? Promise.resolve()).then(() => { order.push(o.label); });
    };
    // p2 then p3 queue in ZooKeeper behind p1's node; then a second p1 transaction queues locally.
    const gb = wait(p2, b);
    while ((await nodes()).length < 2) await sleep(20);
    const gc = wait(p3, c);
    while ((await nodes()).length < 3) await sleep(20);
    const ga2 = wait(p1, a2);
    await sleep(200);
    assert.deepEqual(order, [], 'nobody gets the bucket while p1 tx1 holds it');
    p1.releaseAll(a1);
    await gb;
    assert.deepEqual(order, ['p2 tx'], 'p2 (first in ZooKeeper\'s queue) gets it, and uses it');
    await sleep(200);
    assert.deepEqual(order, ['p2 tx'], 'p2 holds it for its transaction while p3 and p1 wait');
    p2.releaseAll(b);
    await gc;
    assert.deepEqual(order, ['p2 tx', 'p3 tx']);
    p3.releaseAll(c);
    await ga2;
    assert.deepEqual(order, ['p2 tx', 'p3 tx', 'p1 tx2'], 'p1\'s waiting transaction gets it after the proxies queued before it');
    p1.releaseAll(a2);
  });

  it('an idle bucket stays with its proxy until another proxy queues for it', async () => {
    const [p1, p2] = services as [ZkLockService, ZkLockService];
    const x = owner('p1 idle'), y = owner('p2 later');
    // p1 got the bucket last (previous test): a new p1 transaction takes it without ZooKeeper.
    await sleep(300);
    const mine = (await nodes()).filter((n) => n.startsWith('p1-'));
    assert.equal(mine.length, 1, `p1 still holds its node after its transaction ended: ${(await nodes()).join(', ')}`);
    const before = p1.stats.zkAcquires;
    assert.equal(p1.acquire(x, BUCKET, 0), null, 'granted at once, in the same tick');
    assert.equal(p1.stats.zkAcquires, before, 'no ZooKeeper acquisition');
    p1.releaseAll(x);
    await sleep(300);
    assert.equal((await nodes()).filter((n) => n.startsWith('p1-')).length, 1, 'kept while nobody else wants it');
    // p2 queues: p1 hands it over (its node goes) and p2 gets it.
    const got = p2.acquire(y, BUCKET, 20000);
    if (got) await got;
    assert.deepEqual((await nodes()).map((n) => n.slice(0, 3)), ['p2-'], 'p1 released it to p2');
    p2.releaseAll(y);
  });
});
