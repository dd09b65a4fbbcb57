// Group commit of two-phase-commit decisions (src/txn/decision-batch.ts): which commits share
// a record, what the record says, and that recovery's and restore's rules decide every member.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { batchRecord, DecisionBatcher, DecisionMember, DecisionOutcome } from '../../src/txn/decision-batch';
import { DecisionRecord, makeGid, recordDecides, recordTxids } from '../../src/cluster/txns';
import { settle } from '../../src/backup/manifest';
import type { Zk } from '../../src/cluster/zk';

const member = (txid: string, shards = ['s1', 's2']): DecisionMember => ({ txid, gids: shards.map((s) => ({ shard: s, gid: makeGid('c', 'p1', txid, s) })) });

/** A write whose answers the test releases one by one. */
function controlledWrites() {
  const calls: { zk: Zk; rec: DecisionRecord; answer: (o: DecisionOutcome | Error) => void }[] = [];
  const write = (zk: Zk, rec: DecisionRecord) => new Promise<DecisionOutcome>((resolve, reject) => {
    calls.push({ zk, rec, answer: (o) => (o instanceof Error ? reject(o) : resolve(o)) });
  });
  return { calls, write };
}
const tick = () => new Promise((r) => setImmediate(r));
const zkA = {} as Zk;
const zkB = {} as Zk;

describe('batchRecord', () => {
  it('a batch of one is the plain record of one transaction', () => {
    const rec = batchRecord('p1', [member('a1')], 5);
    assert.deepEqual(rec, { proxy: 'p1', txid: 'a1', gids: member('a1').gids, at: 5 });
    assert.deepEqual(recordTxids(rec), ['a1']);
  });
  it('a batch names every member and every gid', () => {
    const rec = batchRecord('p1', [member('a1'), member('a2', ['s3'])], 5);
    assert.equal(rec.txid, 'a1');
    assert.deepEqual(rec.txids, ['a1', 'a2']);
    assert.deepEqual(rec.gids.map((g) => g.gid), [makeGid('c', 'p1', 'a1', 's1'), makeGid('c', 'p1', 'a1', 's2'), makeGid('c', 'p1', 'a2', 's3')]);
    assert.ok(recordDecides(rec, 'p1', 'a1') && recordDecides(rec, 'p1', 'a2'));
    assert.ok(!recordDecides(rec, 'p1', 'a3') && !recordDecides(rec, 'p2', 'a2'));
  });
  it('backup restore settles every member of a batch as committed', () => {
    const rec = batchRecord('p1', [member('a1'), member('a2')], 5);
    const m = { cluster: 'c', decisions: [rec] };
    assert.equal(settle(m, makeGid('c', 'p1', 'a2', 's2'), 'db').action, 'commit');
    assert.equal(settle(m, makeGid('c', 'p1', 'a3', 's2'), 'db').action, 'rollback');
  });
});

describe('DecisionBatcher', () => {
  it('writes the first decision at once and those arriving meanwhile together in the next write', async () => {
    const { calls, write } = controlledWrites();
    const b = new DecisionBatcher(() => 'p1', write);
    const r1 = b.decide(zkA, member('a1'));
    assert.equal(calls.length, 1);
    const r2 = b.decide(zkA, member('a2'));
    const r3 = b.decide(zkA, member('a3'));
    await tick();
    assert.equal(calls.length, 1, 'nothing else is written while a write is in flight');
    calls[0]!.answer('yes');
    const o1 = await r1;
    assert.equal(o1.outcome, 'yes');
    assert.equal(o1.batch.left, 1);
    await tick();
    assert.equal(calls.length, 2);
    assert.deepEqual(calls[1]!.rec.txids, ['a2', 'a3']);
    calls[1]!.answer('no');
    const [o2, o3] = await Promise.all([r2, r3]);
    assert.equal(o2.outcome, 'no');
    assert.equal(o2.batch, o3.batch, 'members share one batch (one delete)');
    assert.equal(o2.batch.left, 2);
    assert.deepEqual(b.stats, { batches: 2, members: 3, maxBatch: 2 });
  });

  it('never mixes ZooKeeper handles in one record, and a failed write is an unknown outcome', async () => {
    const { calls, write } = controlledWrites();
    const b = new DecisionBatcher(() => 'p1', write);
    const r1 = b.decide(zkA, member('a1'));
    const r2 = b.decide(zkB, member('a2'));
    const r3 = b.decide(zkA, member('a3'));
    calls[0]!.answer(new Error('boom'));
    assert.equal((await r1).outcome, 'unknown');
    await tick();
    assert.equal(calls[1]!.zk, zkB, 'handles are served in the order their first member arrived');
    assert.deepEqual(recordTxids(calls[1]!.rec), ['a2']);
    calls[1]!.answer('yes');
    assert.equal((await r2).outcome, 'yes');
    await tick();
    assert.equal(calls[2]!.zk, zkA);
    assert.deepEqual(recordTxids(calls[2]!.rec), ['a3']);
    calls[2]!.answer('yes');
    assert.equal((await r3).outcome, 'yes');
  });

  it('caps the members of one record', async () => {
    const { calls, write } = controlledWrites();
    const b = new DecisionBatcher(() => 'p1', write, 2);
    const rs = ['a0', 'a1', 'a2', 'a3'].map((t) => b.decide(zkA, member(t)));
    calls[0]!.answer('yes');
    await tick();
    assert.deepEqual(calls[1]!.rec.txids, ['a1', 'a2']);
    calls[1]!.answer('yes');
    await tick();
    assert.deepEqual(recordTxids(calls[2]!.rec), ['a3']);
    calls[2]!.answer('yes');
    for (const r of await Promise.all(rs)) assert.equal(r.outcome, 'yes');
  });
});
