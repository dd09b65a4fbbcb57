// Microbenchmark (not a test): ns per keyCoordinate / Ring.shardForKey call.
// Run: npx tsc -p tsconfig.json && node dist/bench/hash-bench.js [label filter]
import { keyCoordinate } from '../src/ring/hash';
import { Ring } from '../src/ring/ring';
import type { KeyType } from '../src/config/types';

const N = 2_000_000;
const ring = new Ring({
  version: 1, vnodes: 256, seed: 42, hash: 'pg-hashint8extended-v1',
  shards: [{ name: 's1', weight: 1 }, { name: 's2', weight: 1 }, { name: 's3', weight: 1 }, { name: 's4', weight: 1 }],
});

// Flat strings, as decoded from a protocol message (template literals would make cons strings).
function inputs(make: (i: number) => string): string[] {
  return Array.from({ length: 4096 }, (_, i) => Buffer.from(make(i), 'utf8').toString('utf8'));
}

// Each case gets its own loop (a closure built per case) so call sites stay monomorphic.
const only = process.argv[2];
function bench(label: string, type: KeyType, values: string[], fn: (t: KeyType, v: string) => bigint | number): void {
  if (only && !label.includes(only)) return;
  const loop = new Function('fn', 'type', 'values', 'n', `
    let sink = 0;
    for (let i = 0; i < n; i++) { const r = fn(type, values[i & 4095]); sink ^= typeof r === 'bigint' ? Number(r & 1n) : r; }
    return sink;`) as (f: typeof fn, t: KeyType, v: string[], n: number) => number;
  loop(fn, type, values, 200_000); // warm-up
  const t0 = process.hrtime.bigint();
  const sink = loop(fn, type, values, N);
  const ns = Number(process.hrtime.bigint() - t0) / N;
  console.log(`${label.padEnd(40)} ${ns.toFixed(1).padStart(7)} ns/call${sink === -1 ? '!' : ''}`);
}

const ints = inputs((i) => String(i * 2654435761 - 5e12));
const smallInts = inputs((i) => String(i));
const texts = inputs((i) => `user-${i}@example.com`);
const utf8 = inputs((i) => `пользователь-${i}-🙂`);
const uuids = inputs((i) => `a0eebc99-9c0b-4ef8-bb6d-${(0x6bb9bd380a11 + i).toString(16).padStart(12, '0')}`);

const seed = 42n;
bench('keyCoordinate bigint (13-16 digits)', 'bigint', ints, (t, v) => keyCoordinate(t, v, seed));
bench('keyCoordinate integer (small)', 'integer', smallInts, (t, v) => keyCoordinate(t, v, seed));
bench('keyCoordinate text (ascii ~22 B)', 'text', texts, (t, v) => keyCoordinate(t, v, seed));
bench('keyCoordinate text (utf8)', 'text', utf8, (t, v) => keyCoordinate(t, v, seed));
bench('keyCoordinate uuid', 'uuid', uuids, (t, v) => keyCoordinate(t, v, seed));
bench('Ring.shardForKey bigint', 'bigint', ints, (t, v) => ring.shardForKey(t, v));
bench('Ring.shardForKey integer (small)', 'integer', smallInts, (t, v) => ring.shardForKey(t, v));
bench('Ring.shardForKey text (ascii)', 'text', texts, (t, v) => ring.shardForKey(t, v));
bench('Ring.shardForKey text (utf8)', 'text', utf8, (t, v) => ring.shardForKey(t, v));
bench('Ring.shardForKey uuid', 'uuid', uuids, (t, v) => ring.shardForKey(t, v));
