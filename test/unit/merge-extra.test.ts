// HAVING evaluation and string_agg / array_agg partial merging (pure parts of the merger).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evalHaving, type HExpr, type HVal } from '../../src/router/having';
import { concatArrays, concatJson, concatJsonb, concatJsonObject, joinStrings, jsonbMembers, jsonStructured, mergeJsonbObjects } from '../../src/router/list-aggs';
import { parseDec } from '../../src/router/merge';

const num = (s: string): HVal => ({ num: parseDec(s) });
const col = (c: number): HExpr => ({ k: 'col', c });
const k = (v: string | null, n = true): HExpr => ({ k: 'const', v, num: n });

test('HAVING: comparisons, arithmetic and three-valued logic', () => {
  const row: HVal[] = [num('3'), null, { str: 'Paris' }, num('2.50')];
  const ev = (e: HExpr, params?: (string | null)[]): unknown => evalHaving(e, (c) => row[c]!, params);
  assert.equal(ev({ k: 'op', op: '>', a: col(0), b: k('2') }), true);
  assert.equal(ev({ k: 'op', op: '=', a: col(3), b: k('2.5') }), true);                     // numeric scale ignored
  assert.equal(ev({ k: 'op', op: '>', a: col(1), b: k('2') }), null);                        // NULL compares unknown
  assert.equal(ev({ k: 'and', args: [{ k: 'op', op: '>', a: col(1), b: k('2') }, { k: 'op', op: '<', a: col(0), b: k('1') }] }), false);
  assert.equal(ev({ k: 'or', args: [{ k: 'op', op: '>', a: col(1), b: k('2') }, { k: 'op', op: '<', a: col(0), b: k('1') }] }), null);
  assert.equal(ev({ k: 'not', a: { k: 'isnull', a: col(1), not: false } }), false);
  assert.equal(ev({ k: 'op', op: '>=', a: { k: 'op', op: '-', a: col(0), b: col(3) }, b: { k: 'param', i: 0 } }, ['0.5']), true);
  assert.equal(ev({ k: 'op', op: '<>', a: col(2), b: k('Rome', false) }), true);
  assert.equal(ev({ k: 'op', op: '<', a: col(2), b: k('paris', false) }), true);               // bytes: 'P' < 'p'
});

test('string_agg and array_agg partials merge in text and binary format', () => {
  assert.equal(joinStrings([Buffer.from('a,b'), Buffer.from('c')], Buffer.from(',')).toString(), 'a,b,c');
  assert.equal(concatArrays([Buffer.from('{1,NULL}'), Buffer.from('{"a b",3}')], 0).toString(), '{1,NULL,"a b",3}');
  assert.equal(concatArrays([Buffer.from('{{1,2}}'), Buffer.from('{{3,4}}')], 0).toString(), '{{1,2},{3,4}}');
  // binary int4[]: ndim 1, flags, elemtype 23, dim (n, lbound 1), elements
  const arr = (vals: (number | null)[]): Buffer => {
    const parts = [Buffer.alloc(20)];
    parts[0]!.writeInt32BE(1, 0); parts[0]!.writeInt32BE(vals.includes(null) ? 1 : 0, 4); parts[0]!.writeInt32BE(23, 8);
    parts[0]!.writeInt32BE(vals.length, 12); parts[0]!.writeInt32BE(1, 16);
    for (const v of vals) { const b = Buffer.alloc(v === null ? 4 : 8); b.writeInt32BE(v === null ? -1 : 4, 0); if (v !== null) b.writeInt32BE(v, 4); parts.push(b); }
    return Buffer.concat(parts);
  };
  assert.deepEqual(concatArrays([arr([1, 2]), arr([null, 3])], 1), arr([1, 2, null, 3]));
});

test('jsonb_agg partials: one array as jsonb prints it, in text and binary (version byte 1)', () => {
  assert.equal(concatJsonb([Buffer.from('[1, {"a": [2, 3]}]'), Buffer.from('["x, y"]')], 0).toString(), '[1, {"a": [2, 3]}, "x, y"]');
  assert.equal(concatJsonb([Buffer.from('[null]')], 0).toString(), '[null]');
  const bin = (t: string) => Buffer.concat([Buffer.from([1]), Buffer.from(t)]);
  assert.deepEqual(concatJsonb([bin('[1]'), bin('[2, 3]')], 1), bin('[1, 2, 3]'));
});

test('json_agg partials: ", \\n " before arrays and composites (not before NULL), ", " otherwise', () => {
  assert.equal(concatJson([Buffer.from('[1, 2]'), Buffer.from('[null, 3]')], false).toString(), '[1, 2, null, 3]');
  assert.equal(concatJson([Buffer.from('[{"a":1}, \n {"a":2}]'), Buffer.from('[{"a":3}]'), Buffer.from('[null, \n {"a":4}]')], true).toString(), '[{"a":1}, \n {"a":2}, \n {"a":3}, null, \n {"a":4}]');
  assert.equal(jsonStructured('object:users'), true);
  assert.equal(jsonStructured('array:integer[]'), true);
  assert.equal(jsonStructured('object:jsonb'), false);
  assert.equal(jsonStructured('number:integer'), false);
});

test('json_object_agg / jsonb_object_agg partials', () => {
  assert.equal(concatJsonObject([Buffer.from('{ "1" : 10, "2" : 20 }'), Buffer.from('{ "1" : 30 }')]).toString(), '{ "1" : 10, "2" : 20, "1" : 30 }');
  assert.deepEqual(jsonbMembers('{"a": {"x": [1, ","]}, "b, c": "d: e", "q\\"": null}'), [['"a"', '{"x": [1, ","]}'], ['"b, c"', '"d: e"'], ['"q\\""', 'null']]);
  // one member per key (the later wins), shorter keys first, then by bytes
  assert.equal(mergeJsonbObjects([Buffer.from('{"b": 1, "aa": 2}'), Buffer.from('{"a": 3, "b": 4}')], 0).toString(), '{"a": 3, "b": 4, "aa": 2}');
  const bin = (t: string) => Buffer.concat([Buffer.from([1]), Buffer.from(t)]);
  assert.deepEqual(mergeJsonbObjects([bin('{"x": 1}'), bin('{"é": 2}')], 1), bin('{"x": 1, "é": 2}'));
});
