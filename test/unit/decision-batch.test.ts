// Group commit of two-phase-commit decisions (src/txn/decision-batch.ts): which commits share a
// write, what the rolling record lists, when it is deleted, and that recovery's and restore's
// rules decide every transaction it lists.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { DecisionBatcher, DecisionMember, DecisionOutcome, logRecord } from '../../src/txn/decision-batch';
import { DecisionRecord, makeGid, parseDecisionName, recordDecides, recordTxids } from '../../src/cluster/txns';
import { settle } from '../../src/backup/manifest';
import type { Zk } from '../../src/cluster/zk';

const member = (txid: string, shards = ['s1', 's2']): DecisionMember => ({ txid, gids: shards.map((s) => ({ shard: s, gid: makeGid('c', 'p1', txid, s) })) });

/** A store whose answers the test releases one by one. */
function controlledStore() {
  const writes: { zk: Zk; rec: DecisionRecord; exists: boolean; answer: (o: DecisionOutcome | Error) => void }[] = [];
  const removes: DecisionRecord[] = [];
  const store = {
    write: (zk: Zk, rec: DecisionRecord, exists: boolean) => new Promise<DecisionOutcome>((resolve, reject) => {
      writes.push({ zk, rec, exists, answer: (o) => (o instanceof Error ? reject(o) : resolve(o)) });
    }),
    remove: async (rec: DecisionRecord) => { removes.push(rec); },
  };
  return { writes, removes, store };
}
const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const zkA = {} as Zk;
const zkB = {} as Zk;

describe('decision records', () => {
  it('a record decides exactly the transactions it lists, for recovery and for backup restore', () => {
    const rec = logRecord('p1', 'log-ab12', [member('a1'), member('a2', ['s3'])], 5);
    assert.deepEqual(rec.txids, ['a1', 'a2']);
    assert.equal(parseDecisionName(`p1_${rec.txid}`)?.proxy, 'p1');
    assert.deepEqual(rec.gids.map((g) => g.gid), [makeGid('c', 'p1', 'a1', 's1'), makeGid('c', 'p1', 'a1', 's2'), makeGid('c', 'p1', 'a2', 's3')]);
    assert.ok(recordDecides(rec, 'p1', 'a1') && recordDecides(rec, 'p1', 'a2'));
    assert.ok(!recordDecides(rec, 'p1', 'a3') && !recordDecides(rec, 'p2', 'a2') && !recordDecides(rec, 'p1', 'log-ab12'));
    const m = { cluster: 'c', decisions: [rec] };
    assert.equal(settle(m, makeGid('c', 'p1', 'a2', 's3'), 'db').action, 'commit');
    assert.equal(settle(m, makeGid('c', 'p1', 'a3', 's2'), 'db').action, 'rollback');
  });
  it('a per-transaction record (no txids) decides its own txid', () => {
    const rec: DecisionRecord = { proxy: 'p1', txid: 'a1', gids: member('a1').gids, at: 1 };
    assert.deepEqual(recordTxids(rec), ['a1']);
    assert.ok(recordDecides(rec, 'p1', 'a1'));
  });
});

describe('DecisionBatcher', () => {
  it('writes the first decision at once, those arriving meanwhile together, and drops finished ones in the next write', async () => {
    const { writes, store } = controlledStore();
    const b = new DecisionBatcher(() => 'p1', store, 200, 300, 1);
    const r1 = b.decide(zkA, member('a1'));
    assert.equal(writes.length, 1);
    assert.equal(writes[0]!.exists, false);
    const r2 = b.decide(zkA, member('a2'));
    const r3 = b.decide(zkA, member('a3'));
    await tick();
    assert.equal(writes.length, 1, 'nothing else is written while a write is in flight');
    writes[0]!.answer('yes');
    assert.equal(await r1, 'yes');
    await tick();
    assert.equal(writes.length, 2);
    assert.deepEqual(writes[1]!.rec.txids, ['a1', 'a2', 'a3'], 'a1 is in phase two: still listed');
    assert.equal(writes[1]!.rec.txid, writes[0]!.rec.txid, 'one record, rewritten');
    assert.equal(writes[1]!.exists, true);
    b.done('a1');
    writes[1]!.answer('yes');
    assert.deepEqual(await Promise.all([r2, r3]), ['yes', 'yes']);
    const r4 = b.decide(zkA, member('a4'));
    assert.deepEqual(writes[2]!.rec.txids, ['a2', 'a3', 'a4'], 'a1 finished: dropped by this write');
    writes[2]!.answer('yes');
    await r4;
    assert.equal(b.inPhaseTwo, 3);
    assert.deepEqual(b.stats, { writes: 3, members: 4, maxBatch: 2, deletes: 0 });
  });

  it('deletes the record once nothing is in phase two for a while', async () => {
    const { writes, removes, store } = controlledStore();
    const b = new DecisionBatcher(() => 'p1', store, 200, 20, 1);
    const r1 = b.decide(zkA, member('a1'));
    writes[0]!.answer('yes');
    await r1;
    b.done('a1');
    await sleep(60);
    assert.equal(removes.length, 1);
    assert.equal(removes[0]!.txid, writes[0]!.rec.txid);
    const r2 = b.decide(zkA, member('a2'));
    assert.equal(writes[1]!.exists, false, 'created again');
    writes[1]!.answer('yes');
    await r2;
    b.done('a2');
    const r3 = b.decide(zkA, member('a3'));   // a decision before the idle delete: no delete
    writes[2]!.answer('yes');
    await r3;
    await sleep(60);
    assert.equal(removes.length, 1);
  });

  it('a write that may have been applied leaves its record alone: later decisions go to a new one', async () => {
    const { writes, store } = controlledStore();
    const b = new DecisionBatcher(() => 'p1', store, 200, 300, 1);
    const r1 = b.decide(zkA, member('a1'));
    writes[0]!.answer('yes');
    await r1;
    const r2 = b.decide(zkA, member('a2'));
    writes[1]!.answer(new Error('connection lost'));
    assert.equal(await r2, 'unknown');
    const r3 = b.decide(zkA, member('a3'));
    assert.notEqual(writes[2]!.rec.txid, writes[1]!.rec.txid);
    assert.deepEqual(writes[2]!.rec.txids, ['a3']);
    assert.equal(writes[2]!.exists, false);
    writes[2]!.answer('no');
    assert.equal(await r3, 'no');
    const r4 = b.decide(zkA, member('a4'));
    assert.deepEqual(writes[3]!.rec.txids, ['a4'], 'a refused write adds nothing');
    assert.equal(writes[3]!.exists, true, 'its record may exist: set first');
    writes[3]!.answer('yes');
    await r4;
  });

  it('each ZooKeeper handle has its own record and write in flight; a write carries at most maxMembers new ones', async () => {
    const { writes, store } = controlledStore();
    const b = new DecisionBatcher(() => 'p1', store, 2, 300, 1);
    const rs = [b.decide(zkA, member('a0')), b.decide(zkB, member('b1')), b.decide(zkA, member('a1')), b.decide(zkA, member('a2')), b.decide(zkA, member('a3'))];
    assert.equal(writes.length, 2, 'the new session does not wait for the old one');
    assert.equal(writes[1]!.zk, zkB);
    assert.notEqual(writes[1]!.rec.txid, writes[0]!.rec.txid);
    assert.deepEqual(writes[1]!.rec.txids, ['b1']);
    writes[0]!.answer('yes');
    await tick();
    assert.equal(writes[2]!.zk, zkA);
    assert.deepEqual(writes[2]!.rec.txids, ['a0', 'a1', 'a2']);
    writes[2]!.answer('yes');
    await tick();
    assert.deepEqual(writes[3]!.rec.txids, ['a0', 'a1', 'a2', 'a3']);
    writes[3]!.answer('yes');
    writes[1]!.answer('yes');
    for (const r of await Promise.all(rs)) assert.equal(r, 'yes');
    assert.equal(b.inPhaseTwo, 5);
    for (const t of ['a0', 'b1', 'a1', 'a2', 'a3']) b.done(t);
    assert.equal(b.inPhaseTwo, 0);
  });

  it('with two records per session, a decision waits only when both have a write in flight', async () => {
    const { writes, store } = controlledStore();
    const b = new DecisionBatcher(() => 'p1', store);
    const r1 = b.decide(zkA, member('a1'));
    const r2 = b.decide(zkA, member('a2'));
    assert.equal(writes.length, 2, 'the second record takes the second decision at once');
    assert.notEqual(writes[0]!.rec.txid, writes[1]!.rec.txid);
    const r3 = b.decide(zkA, member('a3'));
    const r4 = b.decide(zkA, member('a4'));
    assert.equal(writes.length, 2);
    writes[1]!.answer('yes');
    assert.equal(await r2, 'yes');
    await tick();
    assert.equal(writes[2]!.rec.txid, writes[1]!.rec.txid);
    assert.deepEqual(writes[2]!.rec.txids, ['a2', 'a4'], 'the waiting decisions are spread over the shorter queues');
    writes[0]!.answer('yes');
    await tick();
    assert.deepEqual(writes[3]!.rec.txids, ['a1', 'a3']);
    writes[2]!.answer('yes');
    writes[3]!.answer('yes');
    assert.deepEqual(await Promise.all([r1, r3, r4]), ['yes', 'yes', 'yes']);
    assert.equal(b.inPhaseTwo, 4);
  });
});
