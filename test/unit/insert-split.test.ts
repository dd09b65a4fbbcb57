import { test } from 'node:test';
import assert from 'node:assert/strict';
import { partBind, renumberParams, splitInsertRows, statementOrder } from '../../src/frontend/insert-split';
import { decodeBind } from '../../src/protocol/messages';
import type { InsertSplit } from '../../src/router/types';

const split: InsertSplit = {
  head: 'INSERT INTO t (k, v) VALUES ',
  rows: [1, 2, 3].map((n) => ({ sql: `($${2 * n - 1}, $${2 * n})`, key: { kind: 'param' as const, index: 2 * n - 2 } })),
  tail: " RETURNING k, '$9'",
};

test('rows grouped by shard, parameters renumbered in order (not inside strings)', () => {
  const shardOf = [1, 0, 1];
  const parts = splitInsertRows(split, (k) => shardOf[(k as { index: number }).index / 2]!).map(renumberParams);
  assert.deepEqual(parts.map((p) => [p.shard, p.rows, p.sql, p.params]), [
    [0, [1], "INSERT INTO t (k, v) VALUES ($1, $2) RETURNING k, '$9'", [2, 3]],
    [1, [0, 2], "INSERT INTO t (k, v) VALUES ($1, $2), ($3, $4) RETURNING k, '$9'", [0, 1, 4, 5]],
  ]);
});

test('a part Bind carries its values, their formats and the result formats', () => {
  const part = { shard: 0, rows: [1], sql: '', params: [2, 3] };
  const vals = ['a', 'b', 'c', null, 'e', 'f'].map((v) => (v === null ? null : Buffer.from(v)));
  // client Bind: portal p, statement s, 6 formats (one per parameter), 1 result format (binary)
  const w: Buffer[] = [Buffer.from('p\0s\0'), Buffer.from([0, 6, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 6])];
  for (const v of vals) { const l = Buffer.alloc(4); l.writeInt32BE(v ? v.length : -1); w.push(l); if (v) w.push(v); }
  w.push(Buffer.from([0, 1, 0, 1]));
  const body = Buffer.concat(w);
  const head = Buffer.alloc(5); head[0] = 0x42; head.writeInt32BE(body.length + 4, 1);
  const msg = Buffer.concat([head, body]);
  const info = decodeBind(msg);
  const out = decodeBind(partBind(msg, 'p', 'pgring_x', info.params, info.paramFormats, info.resultOffset, part));
  assert.equal(out.statement, 'pgring_x');
  assert.deepEqual(out.paramFormats, [1, 0]); // formats of $3 and $4
  assert.deepEqual(out.params.map((b) => b?.toString() ?? null), ['c', null]);
  const o = partBind(msg, 'p', 'pgring_x', info.params, info.paramFormats, info.resultOffset, part);
  assert.deepEqual([...o.subarray(out.resultOffset)], [0, 1, 0, 1]);
});

test('RETURNING rows back in statement order; shard order when a part skipped rows', () => {
  const r = (s: string): Buffer => Buffer.from(s);
  const parts = [{ rows: [1] }, { rows: [0, 2] }];
  assert.deepEqual(statementOrder([[r('b')], [r('a'), r('c')]], parts).map(String), ['a', 'b', 'c']);
  assert.deepEqual(statementOrder([[r('b')], [r('a')]], parts).map(String), ['b', 'a']);
});
