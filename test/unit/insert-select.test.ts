// INSERT ... SELECT whose rows pgring places itself (src/frontend/insert-select.ts): where the
// statement's head, SELECT and tail are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { insertParts } from '../../src/frontend/insert-select';

test('insertParts splits head, SELECT and tail at the top level', () => {
  assert.deepEqual(insertParts("INSERT INTO t (a, b) SELECT g, 'x' FROM generate_series(1, 3) g"),
    { head: 'INSERT INTO t (a, b)', select: "SELECT g, 'x' FROM generate_series(1, 3) g", tail: '' });
  assert.deepEqual(insertParts('insert into s.t AS x SELECT * FROM u JOIN v ON u.id = v.id ON CONFLICT (id) DO NOTHING RETURNING x.id;'),
    { head: 'insert into s.t AS x', select: 'SELECT * FROM u JOIN v ON u.id = v.id', tail: 'ON CONFLICT (id) DO NOTHING RETURNING x.id' });
  assert.deepEqual(insertParts('INSERT INTO "T" (SELECT 1, 2) RETURNING *'), { head: 'INSERT INTO "T"', select: '(SELECT 1, 2)', tail: 'RETURNING *' });
  assert.deepEqual(insertParts('INSERT INTO t (id) OVERRIDING SYSTEM VALUE WITH w AS (SELECT 1 AS v) SELECT v FROM w'),
    { head: 'INSERT INTO t (id) OVERRIDING SYSTEM VALUE', select: 'WITH w AS (SELECT 1 AS v) SELECT v FROM w', tail: '' });
  // a RETURNING or ON inside the SELECT's parentheses is the SELECT's
  assert.deepEqual(insertParts("INSERT INTO t SELECT (SELECT 'returning'), x FROM (SELECT 1 AS x) s"),
    { head: 'INSERT INTO t', select: "SELECT (SELECT 'returning'), x FROM (SELECT 1 AS x) s", tail: '' });
  assert.equal(insertParts('INSERT INTO t DEFAULT VALUES'), null);
  assert.equal(insertParts('UPDATE t SET a = 1'), null);
});

test('INSERT … VALUES into a reference table (computedItemSpans): calls are evaluated once; constants and expressions of constants stay in place', async () => {
  await (require('libpg-query') as { loadModule(): Promise<void> }).loadModule();
  const { computedItemSpans } = await import('../../src/frontend/reference-defaults');
  const texts = (sql: string) => (computedItemSpans(sql) ?? []).map(([a, b]) => sql.slice(a, b));
  assert.deepEqual(texts("INSERT INTO r (id, at, u) VALUES (1, now(), gen_random_uuid())"), ['now()', 'gen_random_uuid()']);
  assert.deepEqual(texts('INSERT INTO r (id, at) VALUES (1, CURRENT_TIMESTAMP)'), ['CURRENT_TIMESTAMP']);
  assert.deepEqual(texts("INSERT INTO x (x) VALUES (('a', 'b'))"), []);
  assert.deepEqual(texts('INSERT INTO x (a, b, c) VALUES (ARRAY[1, 2], 1 + 2, NOT true)'), []);
  assert.deepEqual(texts("INSERT INTO x (a) VALUES (lower('A'))"), ["lower('A')"]);
});
