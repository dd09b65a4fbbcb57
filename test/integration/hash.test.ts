// The TypeScript hashes against a live PostgreSQL, bit for bit, and the ring's
// sqlPredicate() evaluated server-side against ring.shardForKey().
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { Client } from 'pg';
import {
  KeyValueError, hashInt8Extended, hashTextExtended, hashUuidExtended, keyCoordinate, keyCoordinateBinary,
} from '../../src/ring/hash';
import { Ring, RingDefinition, quoteIdent } from '../../src/ring/ring';
import type { KeyType } from '../../src/config/types';
import { stopOwnCluster, testCluster } from '../helpers/env';

// Deterministic PRNG (mulberry32) so failures are reproducible.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = prng(20240611);
const randInt = (n: number) => Math.floor(rnd() * n);
const rand64 = (): bigint => BigInt.asIntN(64, (BigInt(randInt(2 ** 32)) << 32n) | BigInt(randInt(2 ** 32)));
const randUuid = (): string => {
  const h = Array.from({ length: 32 }, () => '0123456789abcdef'[randInt(16)]).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};
const ALPHABETS = [
  'abcdefghijklmnopqrstuvwxyz0123456789 _-',
  'äöüßéèçñÅØ', 'Ωλπσ', 'жшщыя', '中文字符测试', 'ひらがなカタカナ', '🙂🚀👍🏽🇫🇷', '\u{10FFFF}\u{1F600}\t\n\\"\'{},',
];
function randText(maxLen: number): string {
  const len = randInt(maxLen + 1);
  const alpha = [...ALPHABETS[randInt(ALPHABETS.length)] + ALPHABETS[0]];
  let s = '';
  for (let i = 0; i < len; i++) s += alpha[randInt(alpha.length)];
  return s;
}

const SEEDS = ['0', '1', '-1', '42', '2147483648', '-9223372036854775808', '9223372036854775807', '-6148914691236517206', '1311768467463790320'];

let client: Client;

before(async () => {
  const cluster = await testCluster();
  client = new Client({ host: '127.0.0.1', port: cluster.pg[0].port, user: 'postgres', database: 'postgres' });
  await client.connect();
});
after(async () => {
  await client?.end();
  await stopOwnCluster();
});

/** Runs `fn(v, seed)` over an array in one query, returns the int8 results as bigint. */
async function pgHashes(sql: string, values: string[], seed: string): Promise<bigint[]> {
  const r = await client.query({
    text: `SELECT (${sql})::text AS h FROM unnest($1::text[]) WITH ORDINALITY AS t(v, i) ORDER BY i`,
    values: [values, seed],
  });
  assert.equal(r.rows.length, values.length);
  return r.rows.map((row: { h: string }) => BigInt(row.h));
}

function compareAll(label: string, values: string[], got: (v: string) => bigint, want: bigint[], seed: string): void {
  for (let i = 0; i < values.length; i++) {
    const g = got(values[i]);
    if (g !== want[i]) {
      assert.fail(`${label} seed=${seed} value=${JSON.stringify(values[i].slice(0, 80))} (len ${values[i].length}): ts=${g} pg=${want[i]}`);
    }
  }
}

describe('hashes are bit-identical to PostgreSQL', () => {
  const int8Values: string[] = [
    '0', '-1', '1', '9223372036854775807', '-9223372036854775808', '2147483647', '-2147483648', '2147483648', '-2147483649',
    '32767', '-32768', '4294967295', '4294967296', '-4294967296', '-4294967295', '9007199254740991', '-9007199254740993',
    '999999999999999', '1000000000000000', '-1000000000000000', '1234567890123456789', '-1234567890123456789',
  ];
  for (let i = 0; i < 3000; i++) int8Values.push(rand64().toString());
  for (let i = 0; i < 1000; i++) int8Values.push(String(randInt(2 ** 31) - randInt(2 ** 31)));
  for (let i = 0; i < 500; i++) int8Values.push(String(randInt(2001) - 1000));
  for (let i = 0; i < 63; i++) { int8Values.push((1n << BigInt(i)).toString(), (-(1n << BigInt(i))).toString()); }
  // Spellings int8in accepts.
  const int8Spellings = [' 42 ', '+42', '-0', '+0', '0042', '-000000000000000000000007', '\t\n 9223372036854775807\r\f\v', '  -9223372036854775808  ', '00000000000000000000000000'];

  const int4Values: string[] = ['0', '-1', '2147483647', '-2147483648', ' 17', '+5 '];
  for (let i = 0; i < 2000; i++) int4Values.push(String(randInt(2 ** 32) - 2 ** 31));
  const int2Values: string[] = ['0', '-1', '32767', '-32768', ' 7 '];
  for (let i = 0; i < 1000; i++) int2Values.push(String(randInt(65536) - 32768));

  const textValues: string[] = ['', 'a', 'abc', 'x'.repeat(10000), 'é'.repeat(5000), '🚀'.repeat(2500), 'mixed ascii then ü', 'ü then ascii padding!!', '\ud800 lone surrogate'];
  for (let len = 0; len <= 40; len++) { textValues.push('q'.repeat(len)); textValues.push('é'.repeat(len)); }
  for (let i = 0; i < 3000; i++) textValues.push(randText(i % 10 === 0 ? 300 : 30));
  for (let i = 0; i < 5; i++) textValues.push(randText(10000));

  const uuidValues: string[] = ['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff'];
  for (let i = 0; i < 2000; i++) {
    const u = randUuid();
    const bare = u.replace(/-/g, '');
    switch (i % 5) {
      case 0: uuidValues.push(u); break;
      case 1: uuidValues.push(u.toUpperCase()); break;
      case 2: uuidValues.push(bare); break;
      case 3: uuidValues.push(`{${u}}`); break;
      default: uuidValues.push(bare.replace(/(.{4})(?=.)/g, '$1-')); break;
    }
  }

  for (const seed of SEEDS) {
    const s = BigInt(seed);
    it(`int8 / int4 / int2, seed ${seed}`, async () => {
      const vals = [...int8Values, ...int8Spellings];
      const want = await pgHashes('hashint8extended(v::int8, $2::int8)', vals, seed);
      compareAll('keyCoordinate(bigint)', vals, (v) => keyCoordinate('bigint', v, s), want, seed);
      compareAll('hashInt8Extended', int8Values, (v) => hashInt8Extended(BigInt(v), s), want, seed);
      const want4 = await pgHashes('hashint4extended(v::int4, $2::int8)', int4Values, seed);
      compareAll('keyCoordinate(integer)', int4Values, (v) => keyCoordinate('integer', v, s), want4, seed);
      const want2 = await pgHashes('hashint2extended(v::int2, $2::int8)', int2Values, seed);
      compareAll('keyCoordinate(smallint)', int2Values, (v) => keyCoordinate('smallint', v, s), want2, seed);
      // Binary Bind parameters, every width.
      for (let i = 0; i < int4Values.length; i++) {
        const n = Number(int4Values[i]);
        const b4 = Buffer.alloc(4); b4.writeInt32BE(n);
        const b8 = Buffer.alloc(8); b8.writeBigInt64BE(BigInt(n));
        assert.equal(keyCoordinateBinary('integer', b4, s), want4[i]);
        assert.equal(keyCoordinateBinary('bigint', b8, s), want4[i]);
      }
      for (let i = 0; i < int2Values.length; i++) {
        const b2 = Buffer.alloc(2); b2.writeInt16BE(Number(int2Values[i]));
        assert.equal(keyCoordinateBinary('smallint', b2, s), want2[i]);
      }
      for (let i = 0; i < int8Values.length; i++) {
        const b8 = Buffer.alloc(8); b8.writeBigInt64BE(BigInt(int8Values[i]));
        assert.equal(keyCoordinateBinary('bigint', b8, s), want[i]);
      }
    });

    it(`text / varchar, seed ${seed}`, async () => {
      const want = await pgHashes('hashtextextended(v, $2::int8)', textValues, seed);
      compareAll('keyCoordinate(text)', textValues, (v) => keyCoordinate('text', v, s), want, seed);
      compareAll('keyCoordinate(varchar)', textValues, (v) => keyCoordinate('varchar', v, s), want, seed);
      compareAll('hashTextExtended(Buffer)', textValues, (v) => hashTextExtended(Buffer.from(v, 'utf8'), s), want, seed);
      compareAll('keyCoordinateBinary(text)', textValues, (v) => keyCoordinateBinary('text', Buffer.from(v, 'utf8'), s), want, seed);
    });

    it(`uuid, seed ${seed}`, async () => {
      const want = await pgHashes('uuid_hash_extended(v::uuid, $2::int8)', uuidValues, seed);
      compareAll('keyCoordinate(uuid)', uuidValues, (v) => keyCoordinate('uuid', v, s), want, seed);
      compareAll('hashUuidExtended', uuidValues, (v) => hashUuidExtended(v, s), want, seed);
      compareAll('keyCoordinateBinary(uuid)', uuidValues,
        (v) => keyCoordinateBinary('uuid', Buffer.from(v.replace(/[-{}]/g, ''), 'hex'), s), want, seed);
    });
  }

  it('invalid inputs fail like PostgreSQL, with the same message', async () => {
    const cases: [KeyType, string, string][] = [];
    for (const [type, pgType] of [['smallint', 'int2'], ['integer', 'int4'], ['bigint', 'int8']] as const) {
      for (const v of ['', ' ', 'abc', '1.5', '1e3', '--1', '+-1', '- 1', '1 2', '0x10', '12a', '١٢', '99999999999999999999',
        '9223372036854775808', '-9223372036854775809', '2147483648', '-2147483649', '32768', '-32769', '100000', '1_000']) {
        cases.push([type, pgType, v]);
      }
    }
    for (const v of ['', 'abc', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111', 'a0eebc999-c0b-4ef8-bb6d-6bb9bd380a11',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-', ' a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      'a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11', '-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']) {
      cases.push(['uuid', 'uuid', v]);
    }
    for (const [type, pgType, v] of cases) {
      let pgErr: string | null = null;
      try { await client.query(`SELECT $1::${pgType}`, [v]); } catch (e) { pgErr = (e as Error).message; }
      let tsErr: string | null = null;
      try { keyCoordinate(type, v); } catch (e) {
        assert.ok(e instanceof KeyValueError, `${type} ${JSON.stringify(v)}: ${e}`);
        tsErr = e.message;
      }
      assert.equal(tsErr, pgErr, `${type} ${JSON.stringify(v)}`);
    }
  });
});

describe('Ring.sqlPredicate selects exactly the rows of each shard', () => {
  const def: RingDefinition = {
    version: 3, vnodes: 256, seed: -8_123_456_789,
    shards: [{ name: 's1', weight: 1 }, { name: 's2', weight: 1.5 }, { name: 's3', weight: 0.5 }, { name: 's4', weight: 1 }],
    hash: 'pg-hashint8extended-v1',
  };
  const ring = new Ring(def);
  const N = 20000;
  const keys: Record<string, string[]> = {
    bigint: [], integer: [], smallint: [], text: [], varchar: [], uuid: [],
  };
  const seen = new Set<string>();
  const uniq = (t: string, v: string) => { if (!seen.has(`${t}:${v}`)) { seen.add(`${t}:${v}`); keys[t].push(v); } };
  uniq('bigint', '9223372036854775807'); uniq('bigint', '-9223372036854775808');
  while (keys.bigint.length < N) uniq('bigint', rand64().toString());
  while (keys.integer.length < N) uniq('integer', String(randInt(2 ** 32) - 2 ** 31));
  while (keys.smallint.length < N) uniq('smallint', String(randInt(65536) - 32768));
  while (keys.text.length < N) uniq('text', `${randText(12)}#${keys.text.length}`);
  while (keys.varchar.length < N) uniq('varchar', `${randText(20)}${keys.varchar.length}`);
  while (keys.uuid.length < N) uniq('uuid', randUuid());

  for (const type of Object.keys(keys) as KeyType[]) {
    it(type, async () => {
      const table = `ring_pred_${type}`;
      await client.query(`CREATE TEMP TABLE ${table} ("Key Col" ${type})`);
      await client.query(`INSERT INTO ${table} SELECT unnest($1::${type}[])`, [keys[type]]);
      await client.query(`INSERT INTO ${table} VALUES (NULL)`);
      const col = quoteIdent('Key Col');
      const preds = ring.shardNames.map((_, s) => ring.sqlPredicate(s, col, type));
      const r = await client.query(`SELECT ${col}::text AS k, ARRAY[${preds.map((p) => `coalesce(${p}, false)`).join(', ')}] AS m FROM ${table}`);
      assert.equal(r.rows.length, N + 1);
      const counts = ring.shardNames.map(() => 0);
      for (const row of r.rows as { k: string | null; m: boolean[] }[]) {
        if (row.k === null) { assert.deepEqual(row.m, [false, false, false, false]); continue; }
        const want = ring.shardForKey(type, row.k);
        const got = row.m.flatMap((b, i) => (b ? [i] : []));
        assert.deepEqual(got, [want], `${type} ${row.k}`);
        counts[want]++;
      }
      // Sanity: every shard got rows, roughly by weight.
      for (const c of counts) assert.ok(c > N / 20, `counts ${counts}`);
    });
  }

  it('single-shard and empty-shard rings', async () => {
    const one = new Ring({ ...def, shards: [{ name: 'only', weight: 1 }, { name: 'none', weight: 0 }] });
    const p0 = one.sqlPredicate(0, 'x', 'bigint');
    const p1 = one.sqlPredicate(1, 'x', 'bigint');
    const r = await client.query(`SELECT ${p0} AS a, ${p1} AS b FROM (VALUES (1::int8), (-5::int8)) v(x)`);
    assert.deepEqual(r.rows, [{ a: true, b: false }, { a: true, b: false }]);
  });
});
