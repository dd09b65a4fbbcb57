// Pure ring tests: balance, movement on growth, weights, arcs, determinism, parsing.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  KeyValueError, hashInt8Extended, hashTextExtended, keyCoordinate, keyCoordinateBinary, toSigned, toUnsigned,
  integralOfNumeric,
} from '../../src/ring/hash';
import { Ring, RingDefinition, RingDefinitionError, signedRanges } from '../../src/ring/ring';

const TWO64 = 1n << 64n;
const SAMPLES = 1_000_000;

function def(shards: [string, number][], extra: Partial<RingDefinition> = {}): RingDefinition {
  return { version: 1, vnodes: 256, seed: 0, hash: 'pg-hashint8extended-v1', shards: shards.map(([name, weight]) => ({ name, weight })), ...extra };
}

function countKeys(ring: Ring, n = SAMPLES): { counts: number[]; owners: Uint16Array } {
  const counts = ring.shardNames.map(() => 0);
  const owners = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const s = ring.shardForKey('bigint', String(i));
    owners[i] = s;
    counts[s]++;
  }
  return { counts, owners };
}

describe('ring balance and movement', () => {
  const three = new Ring(def([['s1', 1], ['s2', 1], ['s3', 1]]));
  const third = 100 / 3;

  it('3 equal shards: exact shares within ±10 % of a third', () => {
    const shares = three.shares();
    assert.deepEqual(shares.map((s) => s.name), ['s1', 's2', 's3']);
    for (const s of shares) assert.ok(Math.abs(s.percent - third) <= third * 0.1, `${s.name} ${s.percent}`);
    const sum = shares.reduce((a, s) => a + s.percent, 0);
    assert.ok(Math.abs(sum - 100) < 1e-9, `sum ${sum}`);
  });

  it('3 equal shards: 1,000,000 sample keys within ±10 % of a third', () => {
    const { counts } = countKeys(three);
    for (const c of counts) assert.ok(Math.abs(c - SAMPLES / 3) <= (SAMPLES / 3) * 0.1, `counts ${counts}`);
    // Text keys too.
    const tc = [0, 0, 0];
    for (let i = 0; i < SAMPLES; i++) tc[three.shardForKey('text', `user-${i}`)]++;
    for (const c of tc) assert.ok(Math.abs(c - SAMPLES / 3) <= (SAMPLES / 3) * 0.1, `text counts ${tc}`);
  });

  it('adding a 4th shard moves 20-30 % of keys, all to the new shard', () => {
    const four = new Ring(def([['s1', 1], ['s2', 1], ['s3', 1], ['s4', 1]]));
    const before = countKeys(three).owners;
    const after = countKeys(four).owners;
    let moved = 0;
    for (let i = 0; i < SAMPLES; i++) {
      if (before[i] !== after[i]) {
        moved++;
        if (after[i] !== 3) assert.fail(`key ${i} moved from ${before[i]} to ${after[i]}, not to the new shard`);
      }
    }
    const frac = moved / SAMPLES;
    assert.ok(frac >= 0.2 && frac <= 0.3, `moved ${frac}`);
    // The exact arcs agree: the new shard's share is what moved.
    const s4 = four.shares()[3].percent / 100;
    assert.ok(Math.abs(s4 - frac) < 0.01, `share ${s4} vs moved ${frac}`);
  });

  it('weights are respected', () => {
    const ring = new Ring(def([['a', 1], ['b', 2], ['c', 0.5], ['z', 0]]));
    const total = 3.5;
    const shares = ring.shares();
    const { counts } = countKeys(ring, 400_000);
    for (const [i, w] of [1, 2, 0.5, 0].entries()) {
      const want = (w / total) * 100;
      assert.ok(Math.abs(shares[i].percent - want) <= Math.max(want * 0.12, 0), `${shares[i].name} ${shares[i].percent} vs ${want}`);
      assert.ok(Math.abs((counts[i] / 400_000) * 100 - want) <= Math.max(want * 0.12, 0), `count ${counts}`);
    }
    assert.equal(shares[3].percent, 0);
    assert.deepEqual(ring.arcs(3), []);
    assert.equal(ring.sqlPredicate(3, 'k', 'bigint'), 'false');
    assert.equal(ring.pointCount, 256 + 512 + 128);
  });

  it('is deterministic; placement depends only on seed, shard names and weights', () => {
    const a = new Ring(def([['s1', 1], ['s2', 1], ['s3', 1]]));
    const b = Ring.fromJSON(JSON.stringify(a.toJSON()));
    const c = new Ring(def([['s1', 1], ['s2', 1], ['s3', 1]], { seed: 7 }));
    let diffC = 0;
    for (let i = 0; i < 20000; i++) {
      const k = String(i * 7919 - 50000);
      assert.equal(a.shardForKey('bigint', k), b.shardForKey('bigint', k));
      assert.equal(a.shardForKey('bigint', k), three.shardForKey('bigint', k));
      if (a.shardForKey('bigint', k) !== c.shardForKey('bigint', k)) diffC++;
    }
    assert.ok(diffC > 5000, 'seed changes the placement');
    assert.deepEqual(a.shares(), b.shares());
    assert.deepEqual(a.arcs(1), b.arcs(1));
    // Shard order in the definition does not change who owns what (positions derive from names).
    const r = new Ring(def([['s3', 1], ['s1', 1], ['s2', 1]]));
    for (let i = 0; i < 20000; i++) {
      assert.equal(r.shardNames[r.shardForKey('text', `k${i}`)], a.shardNames[a.shardForKey('text', `k${i}`)]);
    }
  });
});

describe('arcs and coordinates', () => {
  const ring = new Ring(def([['s1', 1], ['s2', 2], ['s3', 1]], { vnodes: 32, seed: 12345 }));

  it('arcs partition the circle and agree with shardFor at every boundary', () => {
    const all = ring.shardNames.flatMap((_, s) => ring.arcs(s).map((a) => ({ ...a, s })));
    all.sort((x, y) => (x.start < y.start ? -1 : 1));
    assert.equal(all[0].start, 0n);
    assert.equal(all[all.length - 1].end, TWO64);
    let len = 0n;
    for (let i = 0; i < all.length; i++) {
      const a = all[i];
      assert.ok(a.start < a.end);
      if (i > 0) assert.equal(a.start, all[i - 1].end);
      len += a.end - a.start;
      for (const c of [a.start, a.end - 1n, (a.start + a.end) / 2n]) {
        assert.equal(ring.shardFor(c), a.s, `coordinate ${c}`);
        assert.equal(ring.shardFor(toSigned(c)), a.s, 'signed form of the same coordinate');
      }
    }
    assert.equal(len, TWO64);
    // Merged per shard: a shard's consecutive arcs never touch.
    for (let s = 0; s < 3; s++) {
      const arcs = ring.arcs(s);
      for (let i = 1; i < arcs.length; i++) assert.ok(arcs[i].start > arcs[i - 1].end);
    }
  });

  it('a point owns its own coordinate; wrap-around goes to the smallest point', () => {
    // Position of point s2#0 under seed 12345.
    const p = toUnsigned(hashTextExtended('s2#0', 12345n));
    assert.equal(ring.shardFor(p), 1);
    // The top of the circle belongs to whoever owns 0 (unless a point sits exactly at 2^64-1).
    assert.equal(ring.shardFor(TWO64 - 1n), ring.shardFor(0n));
    assert.equal(ring.shardFor(-1n), ring.shardFor(TWO64 - 1n));
    assert.throws(() => ring.shardFor(TWO64), RangeError);
    assert.throws(() => ring.shardFor(-(1n << 63n) - 1n), RangeError);
  });

  it('shardForKey = shardFor(keyCoordinate with the ring seed), text and binary', () => {
    for (let i = 0; i < 5000; i++) {
      const v = String((i * 2654435761) % 4294967296 - 2147483648);
      const c = keyCoordinate('integer', v, 12345n);
      assert.equal(ring.coordinate('integer', v), c);
      assert.equal(ring.shardForKey('integer', v), ring.shardFor(c));
      const b = Buffer.alloc(4); b.writeInt32BE(Number(v));
      assert.equal(ring.shardForKeyBinary('integer', b), ring.shardFor(c));
      const t = `key-${i}-ü`;
      assert.equal(ring.shardForKey('text', t), ring.shardFor(keyCoordinate('text', t, 12345n)));
      assert.equal(ring.shardForKeyBinary('varchar', Buffer.from(t)), ring.shardForKey('varchar', t));
    }
  });

  it('signedRanges splits at 2^63 and merges across the wrap', () => {
    const T63 = 1n << 63n;
    assert.deepEqual(signedRanges([{ start: 0n, end: 10n }, { start: T63 - 5n, end: T63 + 5n }, { start: TWO64 - 3n, end: TWO64 }]), [
      { start: -T63, end: -T63 + 5n }, { start: -3n, end: 10n }, { start: T63 - 5n, end: T63 },
    ]);
  });

  it('sqlPredicate shape', () => {
    const p = ring.sqlPredicate(0, '"id"', 'bigint');
    assert.match(p, /^\(width_bucket\(hashint8extended\(\("id"\)::int8, 12345::int8\), '\{[-0-9,]+\}'::int8\[\]\) % 2 = 1\)$/);
    assert.match(ring.sqlPredicate(1, 'name', 'text'), /hashtextextended\(\(\(name\)::text COLLATE "C"\), 12345::int8\)/);
    assert.match(ring.sqlPredicate(2, 'u', 'uuid'), /uuid_hash_extended\(\(u\)::uuid, 12345::int8\)/);
    const single = new Ring(def([['only', 1]]));
    assert.equal(single.sqlPredicate(0, 'k', 'integer'), '(hashint8extended((k)::int8, 0::int8) IS NOT NULL)');
    assert.throws(() => ring.sqlPredicate(3, 'k', 'bigint'), RangeError);
  });
});

describe('definition validation', () => {
  it('rejects bad definitions', () => {
    const ok = def([['a', 1]]);
    assert.doesNotThrow(() => new Ring(ok));
    const bad: unknown[] = [
      null, { ...ok, hash: 'md5' }, { ...ok, shards: [] }, { ...ok, vnodes: 0 }, { ...ok, vnodes: 1.5 },
      { ...ok, seed: 1.5 }, { ...ok, version: -1 }, { ...ok, shards: [{ name: 'a', weight: 1 }, { name: 'a', weight: 1 }] },
      { ...ok, shards: [{ name: '', weight: 1 }] }, { ...ok, shards: [{ name: 'a', weight: -1 }] },
      { ...ok, shards: [{ name: 'a', weight: 0 }] },
    ];
    for (const b of bad) assert.throws(() => new Ring(b as RingDefinition), RingDefinitionError, JSON.stringify(b));
  });
});

describe('key parsing', () => {
  it('integer spellings PostgreSQL accepts hash like the canonical value', () => {
    const h42 = hashInt8Extended(42n, 0n);
    for (const v of ['42', ' 42 ', '+42', '0042', '\t42\n']) {
      assert.equal(keyCoordinate('bigint', v), h42);
      assert.equal(keyCoordinate('integer', v), h42);
      assert.equal(keyCoordinate('smallint', v), h42);
    }
    assert.equal(keyCoordinate('bigint', '-0'), keyCoordinate('bigint', '0'));
    // an unquoted numeric constant compared with (or assigned to) an integer key: rounded half away
    // from zero by the router (session-util keyLiteral); text input stays strict, as int4in
    for (const [t, want] of [['5.0', '5'], ['2.5', '3'], ['-2.5', '-3'], ['7e1', '70'], ['.5', '1'], ['abc', null]] as const) assert.equal(integralOfNumeric(t), want, t);
    assert.equal(keyCoordinate('bigint', '-9223372036854775808'), hashInt8Extended(-(1n << 63n), 0n));
    assert.equal(keyCoordinate('bigint', '-7'), hashInt8Extended(-7n, 0n));
  });

  it('invalid values throw KeyValueError with PostgreSQL messages', () => {
    const cases: [Parameters<typeof keyCoordinate>[0], string, string][] = [
      ['bigint', 'abc', 'invalid input syntax for type bigint: "abc"'],
      ['integer', '', 'invalid input syntax for type integer: ""'],
      ['smallint', '1.0', 'invalid input syntax for type smallint: "1.0"'],
      ['smallint', '32768', 'value "32768" is out of range for type smallint'],
      ['integer', '-2147483649', 'value "-2147483649" is out of range for type integer'],
      ['bigint', '9223372036854775808', 'value "9223372036854775808" is out of range for type bigint'],
      ['uuid', 'not-a-uuid', 'invalid input syntax for type uuid: "not-a-uuid"'],
      ['text', 'a\0b', 'invalid byte sequence for encoding "UTF8": 0x00'],
    ];
    for (const [t, v, msg] of cases) {
      assert.throws(() => keyCoordinate(t, v), (e: unknown) => e instanceof KeyValueError && e.message === msg, `${t} ${v}`);
    }
    assert.throws(() => keyCoordinateBinary('bigint', Buffer.alloc(3)), KeyValueError);
    assert.throws(() => keyCoordinateBinary('uuid', Buffer.alloc(15)), KeyValueError);
  });

  it('uuid spellings agree', () => {
    const u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
    const h = keyCoordinate('uuid', u, 5n);
    for (const v of [u.toUpperCase(), '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', 'a0eebc999c0b4ef8bb6d6bb9bd380a11',
      'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11', '{a0eebc999c0b4ef8bb6d6bb9bd380a11}']) {
      assert.equal(keyCoordinate('uuid', v, 5n), h, v);
    }
  });
});

describe('hash known answers (from PostgreSQL 15)', () => {
  it('matches values computed by PostgreSQL', () => {
    const vectors: [Parameters<typeof keyCoordinate>[0], string, bigint, bigint][] = [
      ['bigint', '42', 0n, 8010225493015854792n],
      ['bigint', '-1', 7n, 8228280636233252028n],
      ['bigint', '-9223372036854775808', -1n, 8384907054876656385n],
      ['text', '', 0n, -6939563903564495251n],
      ['text', 'hello', 42n, -5084431038376545807n],
      ['text', 'héllo wörld 🙂', 1311768467463790320n, -6565889868540871106n],
      ['uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', -1n, -2439430487680470256n],
    ];
    for (const [t, v, seed, want] of vectors) assert.equal(keyCoordinate(t, v, seed), want, `${t} ${v} ${seed}`);
    assert.equal(hashInt8Extended(42n, 0n), 8010225493015854792n);
  });

  it('string UTF-8 encoding agrees with Buffer (surrogates, all tail lengths)', () => {
    const pool = ['a', 'é', '中', '🙂', '\ud800', '\udfff', '\u07ff', '\u0800', '\uffff', 'z'];
    let x = 12345;
    for (let i = 0; i < 20000; i++) {
      let s = '';
      const len = i % 60;
      for (let j = 0; j < len; j++) { x = (x * 1103515245 + 12345) >>> 0; s += pool[x % pool.length]; }
      for (const seed of [0n, -3n]) assert.equal(hashTextExtended(s, seed), hashTextExtended(Buffer.from(s, 'utf8'), seed), JSON.stringify(s));
    }
  });
});
