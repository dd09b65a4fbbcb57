// Pure parts of the transaction layer: global transaction ids, decision names, lock buckets.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decisionName, makeGid, parseDecisionName, parseGid } from '../../src/cluster/txns';
import { bucketDirName, encodeProxyForNode, LockTimeoutError } from '../../src/cluster/locks';
import { lockBucket, TxnManager } from '../../src/txn/manager';
import type { ProxyContext } from '../../src/frontend/client';
import { silentLogger } from '../../src/log';
import { keyCoordinate, toUnsigned } from '../../src/ring/hash';

function manager(buckets = 1024): TxnManager {
  return new TxnManager({ config: { locks: { mode: 'all', buckets, timeoutMs: 5000, leaseMs: 100 } } } as unknown as ProxyContext, silentLogger);
}

describe('global transaction ids', () => {
  it('round-trip proxy ids and shard names with underscores, percent signs and unicode', () => {
    for (const [proxy, shard] of [['host-1-abc', 's1'], ['my_host_2-77-x', 'shard_a_b'], ['h%41-1', 'ß_ü'], ['a.b.c-9-k', 's-1']]) {
      const gid = makeGid('prod_eu-1', proxy!, 'z9', shard!);
      assert.ok(gid.startsWith('pgring_prod%5feu-1_'));
      assert.deepEqual(parseGid(gid), { cluster: 'prod_eu-1', proxy, txid: 'z9', shard });
    }
  });
  it('rejects foreign gids', () => {
    assert.equal(parseGid('other_1'), null);
    assert.equal(parseGid('pgring_a_b'), null);
    assert.equal(parseGid('pgring_a_B!_c'), null);
  });
  it('decision names are one znode segment and parse back', () => {
    const n = decisionName('my_host-1-x', 'a1');
    assert.ok(!n.includes('/'));
    assert.deepEqual(parseDecisionName(n), { proxy: 'my_host-1-x', txid: 'a1' });
  });
});

describe('lock buckets', () => {
  it('bucket directories and node prefixes', () => {
    assert.equal(bucketDirName(17), 'b0017');
    assert.equal(bucketDirName(123456), 'b123456');
    assert.ok(!encodeProxyForNode('a/b-c_d').includes('/'));
    assert.equal(new LockTimeoutError(17, 5000).message, 'pgring: lock timeout on lock bucket 17 after 5000 ms');
  });
  it('a key hashes like PostgreSQL (seed 0) mod buckets; text and binary forms agree', () => {
    const m = manager(1024);
    const want = Number(toUnsigned(keyCoordinate('integer', '42')) % 1024n);
    assert.equal(lockBucket('integer', '42', undefined, 1024), want);
    assert.deepEqual(m.bucketsFor({ type: 'integer', values: ['42'] }, 't'), [want]);
    assert.deepEqual(m.bucketsFor({ type: 'integer', values: ['\\x0000002a'] }, 't'), [want]);
    assert.deepEqual(m.bucketsFor({ type: 'bigint', values: ['\\x000000000000002a'] }, 't'), [Number(toUnsigned(keyCoordinate('bigint', '42')) % 1024n)]);
    assert.deepEqual(m.bucketsFor({ type: 'text', values: ['\\x6162'] }, 't'), m.bucketsFor({ type: 'text', values: ['ab'] }, 't'));
    assert.deepEqual(m.bucketsFor({ type: 'integer', group: 'aid', values: ['\\x0000002a'] }, 't'), m.bucketsFor({ type: 'integer', group: 'aid', values: ['42'] }, 't'));
  });
  it('keys of one lock group (key column) share buckets; other groups get unrelated ones', () => {
    // an account and its history row (both keyed by aid): one lock
    assert.equal(lockBucket('integer', '7', 'aid', 1024), lockBucket('integer', '7', 'aid', 1024));
    // teller n and branch n must not share a bucket (a TPC-B lock cycle PostgreSQL does not have)
    let same = 0;
    for (let k = 1; k <= 200; k++) if (lockBucket('integer', String(k), 'tid', 1024) === lockBucket('integer', String(k), 'bid', 1024)) same++;
    assert.ok(same <= 3, `${same} of 200 equal keys of two groups share a bucket`);
    // within a group, distinct keys spread as the plain hash does
    const spread = new Set<number>();
    for (let k = 1; k <= 200; k++) spread.add(lockBucket('integer', String(k), 'tid', 1024));
    assert.ok(spread.size > 150, `only ${spread.size} buckets for 200 keys`);
  });
  it('key-less writes and NULL keys take the table bucket; results are sorted and unique', () => {
    const m = manager(64);
    const tb = m.tableBucket('accounts');
    assert.deepEqual(m.bucketsFor(null, 'accounts'), [tb]);
    assert.deepEqual(m.bucketsFor(null, 'ACCOUNTS'), [tb]);
    assert.deepEqual(m.bucketsFor({ type: 'integer', values: [null] }, 'accounts'), [tb]);
    const many = m.bucketsFor({ type: 'integer', values: ['1', '2', '3', '1', 'x'] }, 'accounts');
    assert.deepEqual(many, [...new Set(many)].sort((a, b) => a - b));
    for (const b of many) assert.ok(b >= 0 && b < 64);
  });
});
