// Leader latch: two candidates, one leader; the leader goes -> the other leads.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { testCluster, stopOwnCluster, uniqueName } from '../helpers/env';
import { ZkSession } from '../../src/cluster/session';
import { Layout } from '../../src/cluster/layout';
import { LeaderLatch } from '../../src/cluster/election';

let connect = '';
const sessions: ZkSession[] = [];
const quiet = { warn: () => undefined };
async function session(): Promise<ZkSession> {
  const s = new ZkSession({ connect, sessionTimeoutMs: 6000, logger: quiet });
  sessions.push(s);
  await s.start();
  return s;
}

before(async () => { connect = (await testCluster()).zk; });
after(async () => {
  for (const s of sessions) await s.close();
  await stopOwnCluster();
});

test('two candidates: exactly one leads; when the leader closes its session the other leads', async () => {
  const layout = new Layout(uniqueName('elect'));
  const [sa, sb] = [await session(), await session()];
  const a = new LeaderLatch(sa, layout, { id: 'a' });
  const b = new LeaderLatch(sb, layout, { id: 'b' });
  await Promise.all([a.start(), b.start()]);
  assert.equal(Number(a.isLeader()) + Number(b.isLeader()), 1, 'exactly one leader');
  const [leader, follower, leaderSession] = a.isLeader() ? [a, b, sa] : [b, a, sb];
  const took = follower.waitLeader(20000);
  let lostLead = false;
  leader.on('follower', () => { lostLead = true; });
  await leaderSession.close();
  await took;
  assert.equal(follower.isLeader(), true);
  assert.ok(lostLead || !leader.isLeader());
  await follower.stop();
});

test('stop() hands leadership over; a third candidate waits its turn', async () => {
  const layout = new Layout(uniqueName('elect2'));
  const [s1, s2, s3] = [await session(), await session(), await session()];
  const l1 = new LeaderLatch(s1, layout, { id: '1' });
  await l1.start();
  const l2 = new LeaderLatch(s2, layout, { id: '2' });
  await l2.start();
  const l3 = new LeaderLatch(s3, layout, { id: '3' });
  await l3.start();
  assert.deepEqual([l1.isLeader(), l2.isLeader(), l3.isLeader()], [true, false, false]);
  const kids = await s1.current().children(layout.controller);
  assert.equal(kids.length, 3);
  const t2 = l2.waitLeader(10000);
  await l1.stop();
  await t2;
  assert.deepEqual([l1.isLeader(), l2.isLeader(), l3.isLeader()], [false, true, false]);
  const t3 = l3.waitLeader(10000);
  await l2.stop();
  await t3;
  assert.equal(l3.isLeader(), true);
  await l3.stop();
});
