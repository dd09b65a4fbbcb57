import { test } from 'node:test';
import { decodeNumericBin, encodeNumericBin } from '../../src/router/numeric-bin';
import assert from 'node:assert/strict';
import {
  ResultMerger, buildRowDescription, buildDataRow, parseDataRow, parseRowDescription, OID, FieldDesc,
  divDec, parseDec, fmtDec, fmtFloat8, fmtFloat4,
} from '../../src/router/merge';
import type { MergeSpec } from '../../src/router/types';

const fd = (name: string, typeOid: number, format = 0): FieldDesc => ({ name, tableOid: 0, attnum: 0, typeOid, typlen: -1, typmod: -1, format });
const row = (...v: (string | null)[]): Buffer => buildDataRow(v.map((x) => (x === null ? null : Buffer.from(x))));
const spec = (s: Partial<MergeSpec>): MergeSpec => ({ orderBy: [], limit: null, offset: null, groupBy: [], aggregates: [], hiddenColumns: 0, ...s });
const text = (bufs: Buffer[]): (string | null)[][] => bufs.filter((b) => b[0] === 0x44).map((b) => parseDataRow(b).map((c) => (c === null ? null : c.toString())));
const tag = (bufs: Buffer[]): string => { const b = bufs[bufs.length - 1]; assert.equal(b[0], 0x43); return b.toString('utf8', 5, b.length - 1); };

function run(s: MergeSpec, fields: FieldDesc[], shards: (string | null)[][][], params?: (string | null)[]): { rd: FieldDesc[]; rows: (string | null)[][]; tag: string; streamed: (string | null)[][] } {
  const m = new ResultMerger(s, shards.length, params);
  let rd: Buffer | null = null;
  const streamed: Buffer[] = [];
  shards.forEach((rows, i) => {
    const x = m.rowDescription(i, buildRowDescription(fields));
    if (x) rd = x;
    for (const r of rows) { const o = m.dataRow(i, row(...r)); if (o) streamed.push(o); }
    m.commandComplete(i, `SELECT ${rows.length}`);
  });
  assert.equal(m.unsupported, null);
  const out = m.finish();
  return { rd: parseRowDescription(rd!), rows: [...text(streamed), ...text(out)], tag: tag(out), streamed: text(streamed) };
}

test('message codecs round-trip', () => {
  const f = [fd('a', OID.int4), fd('b', OID.text, 1)];
  assert.deepEqual(parseRowDescription(buildRowDescription(f)), f);
  assert.deepEqual(parseDataRow(row('1', null, '')).map((x) => x?.toString() ?? null), ['1', null, '']);
});

test('ORDER BY merge across shards: ints, text (C order), desc, nulls', () => {
  const f = [fd('id', OID.int8), fd('name', OID.text)];
  const r = run(spec({ orderBy: [{ column: 0, desc: false, nullsFirst: false }] }), f, [
    [['-5', 'a'], ['3', 'b'], ['10', 'c'], [null, 'n']],
    [['-20', 'd'], ['4', 'e'], ['100', 'f']],
  ]);
  assert.deepEqual(r.rows.map((x) => x[0]), ['-20', '-5', '3', '4', '10', '100', null]);
  assert.equal(r.tag, 'SELECT 7');
  const d = run(spec({ orderBy: [{ column: 1, desc: true, nullsFirst: true }] }), f, [[['2', 'a'], ['1', 'B']], [['3', null], ['4', 'b']]]);
  assert.deepEqual(d.rows.map((x) => x[1]), [null, 'b', 'a', 'B']);
  const n = run(spec({ orderBy: [{ column: 0, desc: false, nullsFirst: true }] }), [fd('x', OID.numeric)], [[['10.5'], ['NaN']], [[null], ['-1'], ['9.75']]]);
  assert.deepEqual(n.rows.map((x) => x[0]), [null, '-1', '9.75', '10.5', 'NaN']);
  const fl = run(spec({ orderBy: [{ column: 0, desc: true, nullsFirst: false }] }), [fd('x', OID.float8)], [[['1e+20'], ['-Infinity']], [['2.5'], [null]]]);
  assert.deepEqual(fl.rows.map((x) => x[0]), ['1e+20', '2.5', '-Infinity', null]);
});

test('LIMIT / OFFSET after merge, with params', () => {
  const f = [fd('id', OID.int4)];
  const s = spec({ orderBy: [{ column: 0, desc: false, nullsFirst: false }], limit: 3, offset: 2 });
  const r = run(s, f, [[['1'], ['4'], ['6'], ['8'], ['9']], [['2'], ['3'], ['5'], ['7']]]);
  assert.deepEqual(r.rows.map((x) => x[0]), ['3', '4', '5']);
  assert.equal(r.tag, 'SELECT 3');
  const p = run(spec({ orderBy: [{ column: 0, desc: true, nullsFirst: true }], limit: { param: 0 }, offset: { param: 1 } }), f, [[['2'], ['1']], [['3']]], ['1', '1']);
  assert.deepEqual(p.rows, [['2']]);
  // streaming (no order): rows forwarded as they come, offset/limit counted globally
  const st = run(spec({ limit: 2, offset: 1 }), f, [[['1'], ['2']], [['3']]]);
  assert.deepEqual(st.streamed, [['2'], ['3']]);
  assert.equal(st.tag, 'SELECT 2');
});

test('ORDER BY rows go out as they arrive, merged: a row once every shard still sending has one queued', () => {
  const f = [fd('id', OID.int4), fd('shard', OID.text)];
  const m = new ResultMerger(spec({ orderBy: [{ column: 0, desc: false, nullsFirst: false }], limit: 4, offset: 1 }), 3);
  assert.ok(m.sortedStreams);
  for (let i = 0; i < 3; i++) m.rowDescription(i, buildRowDescription(f));
  const ids = (b: Buffer[]): (string | null)[] => text(b).map((r) => r[0]!);
  m.dataRow(0, row('1', 'a')); m.dataRow(0, row('5', 'a'));
  m.dataRow(1, row('2', 'b'));
  assert.deepEqual(ids(m.drain()), []);            // shard 2 has sent nothing yet
  assert.equal(m.queued(0), 2);
  m.dataRow(2, row('3', 'c'));
  assert.deepEqual(ids(m.drain()), ['2']);         // 1 skipped (OFFSET 1); 3 waits for shard 1's next row
  m.commandComplete(1, 'SELECT 1');
  assert.deepEqual(ids(m.drain()), ['3']);         // shard 1 ended; shard 2 must say what follows 3
  m.dataRow(2, row('4', 'c')); m.dataRow(2, row('9', 'c'));
  assert.deepEqual(ids(m.drain()), ['4', '5']);    // LIMIT 4 reached
  m.dataRow(0, row('6', 'a'));
  assert.deepEqual(ids(m.drain()), []);
  m.commandComplete(0, 'SELECT 3'); m.commandComplete(2, 'SELECT 3');
  const out = m.finish();
  assert.deepEqual(ids(out), []);
  assert.equal(tag(out), 'SELECT 4');
  // DISTINCT ON (its keys lead the ORDER BY): the first row of each key, across shards
  const d = run(spec({ orderBy: [{ column: 0, desc: false, nullsFirst: false }, { column: 1, desc: true, nullsFirst: false }], distinctOn: [0] }), f,
    [[['1', 'a'], ['2', 'z']], [['1', 'y'], ['3', 'b']], [['2', 'c']]]);
  assert.deepEqual(d.rows, [['1', 'y'], ['2', 'z'], ['3', 'b']]);
});

test('hidden columns removed from rows and RowDescription', () => {
  const f = [fd('note', OID.text), fd('amount', OID.numeric), fd('lower', OID.text)];
  const r = run(spec({ orderBy: [{ column: -2, desc: false, nullsFirst: false }, { column: -1, desc: false, nullsFirst: false }], hiddenColumns: 2 }), f, [
    [['x', '2', 'x'], ['y', '10', 'y']], [['z', '1.5', 'z'], ['b', '2', 'a']],
  ]);
  assert.deepEqual(r.rd.map((x) => x.name), ['note']);
  assert.deepEqual(r.rows, [['z'], ['b'], ['x'], ['y']]);
  const s = run(spec({ hiddenColumns: 1 }), f, [[['a', '1', 'q']]]);
  assert.deepEqual(s.streamed, [['a', '1']]);
});

test('count/sum/min/max without GROUP BY', () => {
  const f = [fd('count', OID.int8), fd('sum', OID.numeric), fd('min', OID.text), fd('max', OID.int4), fd('sum', OID.int8), fd('sum', OID.float8)];
  const r = run(spec({ aggregates: [{ column: 0, fn: 'count' }, { column: 1, fn: 'sum' }, { column: 2, fn: 'min' }, { column: 3, fn: 'max' }, { column: 4, fn: 'sum' }, { column: 5, fn: 'sum' }] }), f, [
    [['3', '1.50', 'b', '7', '9223372036854775807', '0.1']],
    [['0', null, null, null, null, null]],
    [['2', '0.005', 'B', '-3', '10', '0.2']],
  ]);
  assert.deepEqual(r.rows, [['5', '1.505', 'B', '7', '9223372036854775817', '0.30000000000000004']]);
  assert.equal(r.tag, 'SELECT 1');
});

test('avg = sum/count rendered as PostgreSQL numeric', () => {
  // avg(x) sent as sum(x) [int8] + hidden count(x)
  const f = [fd('avg', OID.int8), fd('count', OID.int8)];
  const r = run(spec({ aggregates: [{ column: 0, fn: 'avg', sumColumn: 0, countColumn: 1 }], hiddenColumns: 1 }), f, [[['1', '1']], [['2', '1']], [[null, '0']]]);
  assert.deepEqual(r.rows, [['1.5000000000000000']]);
  assert.equal(r.rd[0].typeOid, OID.numeric);
  assert.equal(r.rd.length, 1);
  // expected texts follow numeric_div's select_div_scale rule (not yet cross-checked against a live server)
  assert.equal(fmtDec(divDec(parseDec('5'), parseDec('3'))), '1.6666666666666667');
  assert.equal(fmtDec(divDec(parseDec('100000'), parseDec('3'))), '33333.333333333333');     // avg of 3 ints summing to 100000
  assert.equal(fmtDec(divDec(parseDec('1.25'), parseDec('2'))), '0.62500000000000000000');  // avg(numeric) of 0.5, 0.75
  assert.equal(fmtDec(divDec(parseDec('-7'), parseDec('2'))), '-3.5000000000000000');
  assert.equal(fmtDec(divDec(parseDec('0'), parseDec('4'))), '0.00000000000000000000');
  const fl = run(spec({ aggregates: [{ column: 0, fn: 'avg', sumColumn: 0, countColumn: 1 }], hiddenColumns: 1 }), [fd('avg', OID.float8), fd('count', OID.int8)], [[['1.5', '1']], [['2', '2']]]);
  assert.deepEqual(fl.rows, [['1.1666666666666667']]);
  assert.equal(fl.rd[0].typeOid, OID.float8);
});

test('aggregates with GROUP BY, ORDER BY on an aggregate, LIMIT', () => {
  const f = [fd('k', OID.text), fd('count', OID.int8), fd('sum', OID.int8)];
  const s = spec({ groupBy: [0], aggregates: [{ column: 1, fn: 'count' }, { column: 2, fn: 'sum' }], orderBy: [{ column: 1, desc: true, nullsFirst: true }, { column: 0, desc: false, nullsFirst: false }], limit: 3 });
  const r = run(s, f, [
    [['a', '2', '10'], ['b', '1', '5'], [null, '1', '1']],
    [['a', '1', '1'], ['c', '4', null], ['b', '2', '-5']],
  ]);
  assert.deepEqual(r.rows, [['c', '4', null], ['a', '3', '11'], ['b', '3', '0']]);
  assert.equal(r.tag, 'SELECT 3');
  // group by without aggregates = de-duplicate groups
  const g = run(spec({ groupBy: [0] }), [fd('k', OID.int4)], [[['1'], ['2']], [['2'], ['3']]]);
  assert.deepEqual(g.rows.map((x) => x[0]).sort(), ['1', '2', '3']);
});

test('binary int/float/numeric columns merge', () => {
  const b8 = (n: bigint): Buffer => { const b = Buffer.alloc(8); b.writeBigInt64BE(n); return b; };
  const m = new ResultMerger(spec({ orderBy: [{ column: 0, desc: false, nullsFirst: false }], aggregates: [] }), 2);
  m.rowDescription(0, buildRowDescription([{ ...fd('x', OID.int8, 1), typlen: 8 }]));
  m.dataRow(0, buildDataRow([b8(5n)])); m.dataRow(1, buildDataRow([b8(-3n)])); m.dataRow(1, buildDataRow([b8(4n)]));
  assert.deepEqual(m.finish().filter((b) => b[0] === 0x44).map((b) => parseDataRow(b)[0]!.readBigInt64BE(0)), [-3n, 4n, 5n]);
  const c = new ResultMerger(spec({ aggregates: [{ column: 0, fn: 'count' }] }), 2);
  c.rowDescription(0, buildRowDescription([{ ...fd('count', OID.int8, 1), typlen: 8 }]));
  c.dataRow(0, buildDataRow([b8(5n)])); c.dataRow(1, buildDataRow([b8(7n)]));
  assert.equal(parseDataRow(c.finish()[0])[0]!.readBigInt64BE(0), 12n);
  const u = new ResultMerger(spec({ aggregates: [{ column: 0, fn: 'sum' }] }), 2);
  u.rowDescription(0, buildRowDescription([fd('sum', OID.numeric, 1)]));
  assert.equal(u.unsupported, null);
  u.dataRow(0, buildDataRow([encodeNumericBin(parseDec('12345.678'))])); u.dataRow(1, buildDataRow([encodeNumericBin(parseDec('-0.0789'))]));
  assert.equal(fmtDec(decodeNumericBin(parseDataRow(u.finish()[0])[0]!)), '12345.5991');
});

test('numeric binary codec matches numeric_send', () => {
  // numeric_send of 12345.678: ndigits 3, weight 1, sign 0, dscale 3, digits 1 2345 6780
  assert.deepEqual([...encodeNumericBin(parseDec('12345.678'))], [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]);
  // 0.00: no digits, weight 0, dscale 2; -0.0001: weight -1, one digit 1
  assert.deepEqual([...encodeNumericBin(parseDec('0.00'))], [0, 0, 0, 0, 0, 0, 0, 2]);
  assert.deepEqual([...encodeNumericBin(parseDec('-0.0001'))], [0, 1, 0xff, 0xff, 0x40, 0, 0, 4, 0, 1]);
  for (const t of ['0', '1', '-1', '10000', '100000000', '0.5', '123.4500', '-98765432109876543210.0123456789', 'NaN', '20000.0000']) {
    assert.equal(fmtDec(decodeNumericBin(encodeNumericBin(parseDec(t)))), t);
  }
});

test('float output formatting like float8out / float4out', () => {
  assert.equal(fmtFloat8(0.1 + 0.2), '0.30000000000000004');
  assert.equal(fmtFloat8(1e15), '1e+15');
  assert.equal(fmtFloat8(123456789012345), '123456789012345');
  assert.equal(fmtFloat8(0.0001), '0.0001');
  assert.equal(fmtFloat8(0.00001), '1e-05');
  assert.equal(fmtFloat8(-2.5e-300), '-2.5e-300');
  assert.equal(fmtFloat8(NaN), 'NaN');
  assert.equal(fmtFloat4(1000000), '1e+06');
  assert.equal(fmtFloat4(100000), '100000');
  assert.equal(fmtFloat4(Math.fround(0.1)), '0.1');
});

test('aggregates cast to a type: sums cast once after adding the exact partials, min/max by the uncast value', () => {
  // SELECT sum(x)::int, max(x)::text: column 0 sum(x)::int4, 1 max(x)::text, hidden 2 sum(x), 3 max(x)
  const s = spec({ aggregates: [{ column: 0, fn: 'sum', sumColumn: 2 }, { column: 1, fn: 'max', byColumn: 3 }], hiddenColumns: 2 });
  const f = [fd('sum', OID.int4), fd('max', OID.text), fd('sum', OID.numeric), fd('max', OID.numeric)];
  // each shard's 0.4 rounds to 0, the total 1.2 to 1; '9' > '10' as text, 10 > 9 as a number
  const r = run(s, f, [[['0', '9', '0.4', '9']], [['0', '10', '0.4', '10']], [['0', '2', '0.4', '2']]]);
  assert.deepEqual(r.rows, [['1', '10']]);
  assert.deepEqual(r.rd.map((x) => x.typeOid), [OID.int4, OID.text]);
  // half away from zero from numeric (as PostgreSQL's numeric to int), half to even from float8 (rint)
  assert.deepEqual(run(s, f, [[['0', 'a', '0.75', '1']], [['0', 'b', '0.75', '2']]]).rows, [['2', 'b']]);
  assert.deepEqual(run(s, f, [[['0', 'a', '-0.75', '1']], [['0', 'b', '-0.75', '2']]]).rows, [['-2', 'b']]);
  const fl = [fd('sum', OID.int4), fd('max', OID.text), fd('sum', OID.float8), fd('max', OID.numeric)];
  assert.deepEqual(run(s, fl, [[['0', 'a', '1.25', '1']], [['0', 'b', '1.25', '2']]]).rows, [['2', 'b']]);
  assert.deepEqual(run(s, fl, [[['0', 'a', '1.75', '1']], [['0', 'b', '1.75', '2']]]).rows, [['4', 'b']]);
  // numeric(12,1): rounded to the typmod's scale; an integer column over its range: 22003, as PostgreSQL
  const n1 = [{ ...fd('sum', OID.numeric), typmod: ((12 << 16) | 1) + 4 }, fd('max', OID.text), fd('sum', OID.numeric), fd('max', OID.numeric)];
  assert.deepEqual(run(s, n1, [[['0', 'a', '1.25', '1']], [['0', 'b', '1.00', '2']]]).rows, [['2.3', 'b']]);
  const m = new ResultMerger(s, 2);
  for (const [i, v] of [[0, '2147483000'], [1, '1000']] as const) { m.rowDescription(i, buildRowDescription(f)); m.dataRow(i, row('0', 'x', v, '1')); m.commandComplete(i, 'SELECT 1'); }
  assert.throws(() => m.finish(), (e: Error & { code?: string }) => e.code === '22003' && /integer out of range/.test(e.message));
});

test('count(*)::int and ::numeric add up in text and binary format', () => {
  const s = spec({ aggregates: [{ column: 0, fn: 'count' }, { column: 1, fn: 'count' }] });
  assert.deepEqual(run(s, [fd('count', OID.int4), fd('count', OID.numeric)], [[['3', '3']], [['4', '4']]]).rows, [['7', '7']]);
  const m = new ResultMerger(s, 2);
  const i4 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
  for (const [i, n] of [[0, 3], [1, 4]] as const) {
    m.rowDescription(i, buildRowDescription([fd('count', OID.int4, 1), fd('count', OID.numeric, 1)]));
    m.dataRow(i, buildDataRow([i4(n), encodeNumericBin(parseDec(String(n)))]));
    m.commandComplete(i, 'SELECT 1');
  }
  const out = m.finish().filter((b) => b[0] === 0x44).map((b) => parseDataRow(b));
  assert.equal(out[0]![0]!.readInt32BE(0), 7);
  assert.equal(fmtDec(decodeNumericBin(out[0]![1]!)), '7');
});
