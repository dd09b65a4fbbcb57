// Pure resharding plan: the next ring per change, and the moves between two rings agree with
// the rings' own owners for every sampled key (only keys whose owner changes move).
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { Ring, RingDefinition } from '../../src/ring/ring';
import { computeMoves, MovingKeys, nextRing, PlanError } from '../../src/reshard/plan';

function def(names: string[], seed = 0): RingDefinition {
  return { version: 3, vnodes: 128, seed, hash: 'pg-hashint8extended-v1', shards: names.map((name) => ({ name, weight: 1 })) };
}

/** Which move (source->target) covers a signed coordinate, or null. */
function moveOf(moves: ReturnType<typeof computeMoves>, h: bigint): string | null {
  for (const m of moves) for (const r of m.ranges) if (h >= BigInt(r.lo) && h <= BigInt(r.hi)) return `${m.source}->${m.target}`;
  return null;
}

describe('resharding plan', () => {
  it('nextRing: add, remove, rebalance; refusals name the shard', () => {
    const d = def(['s1', 's2', 's3']);
    assert.deepEqual(nextRing(d, { kind: 'add', name: 's4', weight: 1 }).shards.map((s) => s.name), ['s1', 's2', 's3', 's4']);
    assert.equal(nextRing(d, { kind: 'add', name: 's4', weight: 1 }).version, 4);
    assert.deepEqual(nextRing(d, { kind: 'remove', name: 's2' }).shards.map((s) => s.name), ['s1', 's3']);
    assert.equal(nextRing(d, { kind: 'rebalance', weights: { s1: 2 } }).shards[0]!.weight, 2);
    assert.throws(() => nextRing(d, { kind: 'add', name: 's1', weight: 1 }), (e) => e instanceof PlanError && /s1/.test(e.message));
    assert.throws(() => nextRing(d, { kind: 'remove', name: 'x' }), /shard "x" is not in the ring/);
    assert.throws(() => nextRing(def(['s1']), { kind: 'remove', name: 's1' }), /last shard/);
  });

  for (const [label, from, change] of [
    ['add s4 to 3', def(['s1', 's2', 's3'], 7), { kind: 'add', name: 's4', weight: 1 }],
    ['remove s2 of 4', def(['s1', 's2', 's3', 's4'], 7), { kind: 'remove', name: 's2' }],
    ['rebalance s1 to weight 2', def(['s1', 's2', 's3'], 7), { kind: 'rebalance', weights: { s1: 2 } }],
  ] as const) {
    it(`moves agree with both rings for sampled keys: ${label}`, () => {
      const to = nextRing(from, change);
      const moves = computeMoves(from, to);
      const a = new Ring(from), b = new Ring(to);
      const mk = new MovingKeys(from, to);
      let moved = 0;
      const N = 20000;
      for (let k = 1; k <= N; k++) {
        const text = String(k * 7919);
        const src = a.shardNames[a.shardForKey('integer', text)]!;
        const dst = b.shardNames[b.shardForKey('integer', text)]!;
        const h = a.coordinate('integer', text);
        const m = moveOf(moves, h);
        assert.equal(m, src === dst ? null : `${src}->${dst}`, `key ${text}`);
        assert.equal(mk.moves('integer', text), src !== dst);
        if (src !== dst) moved++;
      }
      const pct = moves.reduce((x, m) => x + m.percent, 0);
      assert.ok(Math.abs(moved / N * 100 - pct) < 2, `sampled ${moved / N * 100}% vs arcs ${pct}%`);
      if (change.kind === 'add') assert.ok(pct > 18 && pct < 32, `adding one shard to three moves about a quarter: ${pct}`);
      if (change.kind === 'add') assert.ok(moves.every((m) => m.target === 's4'), 'only arcs towards the new shard move');
      if (change.kind === 'remove') assert.ok(moves.every((m) => m.source === 's2'), 'only the removed shard\'s arcs move');
    });
  }
});
