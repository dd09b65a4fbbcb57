// The pure halves of two ways pgring answers SELECTs the merge alone cannot: the split of a SELECT
// with expressions over aggregates (router/finalize.ts) and the subqueries run first
// (router/subqueries.ts). Their results against PostgreSQL are in the differential test.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../../src/router/router';
import { finalizeSql } from '../../src/router/finalize';
import { cteBodies, inlineCtes, subqueriesOf, valuesText } from '../../src/router/subqueries';

before(async () => { await Router.init(); });

test('finalize: inner query of group keys and aggregates, outer query over their columns', () => {
  const f = finalizeSql('SELECT city, round(avg(age), 2) AS a, coalesce(sum(age), 0) * 100 / count(*) FROM users WHERE id > 3 GROUP BY city HAVING sum(age) > 10 ORDER BY 2 DESC LIMIT 5');
  assert.ok(!('unsupported' in f));
  assert.equal(f.inner, 'SELECT city AS pgring_g1, avg(age) AS pgring_a1, sum(age) AS pgring_a2, count(*) AS pgring_a3 FROM users WHERE id > 3 GROUP BY 1');
  assert.equal(f.outerHead, 'SELECT pgring_m.pgring_g1 AS "city", round(pgring_m.pgring_a1, 2) AS a, coalesce(pgring_m.pgring_a2, 0) * 100 / pgring_m.pgring_a3 FROM (');
  assert.equal(f.outerTail, ') AS pgring_m(pgring_g1, pgring_a1, pgring_a2, pgring_a3) WHERE pgring_m.pgring_a2 > 10 ORDER BY 2 DESC LIMIT 5');
  assert.equal(f.width, 4);
});

test('finalize: group keys by position, nested in calls, FILTER, windows, DISTINCT and non-ASCII text', () => {
  const a = finalizeSql("SELECT to_char(date_trunc('month', t), 'YYYY-MM'), sum(x) FILTER (WHERE x > 0) FROM o GROUP BY date_trunc('month', t) ORDER BY date_trunc('month', t)");
  assert.ok(!('unsupported' in a));
  assert.equal(a.inner, "SELECT date_trunc('month', t) AS pgring_g1, sum(x) FILTER (WHERE x > 0) AS pgring_a1 FROM o GROUP BY 1");
  assert.match(a.outerHead, /to_char\(pgring_m\.pgring_g1, 'YYYY-MM'\)/);
  assert.match(a.outerTail, /ORDER BY pgring_m\.pgring_g1$/);
  const w = finalizeSql('SELECT DISTINCT g, rank() OVER (ORDER BY sum(x) DESC) FROM o GROUP BY 1');
  assert.ok(!('unsupported' in w));
  assert.equal(w.outerHead, 'SELECT DISTINCT pgring_m.pgring_g1 AS "g", rank() OVER (ORDER BY pgring_m.pgring_a1 DESC) AS "rank" FROM (');
  const u = finalizeSql("SELECT 'é' || g, count(*) * 2 FROM o GROUP BY g");
  assert.ok(!('unsupported' in u));
  assert.equal(u.outerHead, "SELECT 'é' || pgring_m.pgring_g1, pgring_m.pgring_a1 * 2 FROM (");
});

test('finalize: what stays refused', () => {
  const why = (sql: string): string | undefined => { const f = finalizeSql(sql); return 'unsupported' in f ? f.unsupported : undefined; };
  assert.match(why('SELECT g, h, count(*) + 1 FROM o GROUP BY g')!, /column "h" in the select list outside the GROUP BY keys/);
  assert.match(why('SELECT x AS g, count(*) + 1 FROM o GROUP BY g')!, /GROUP BY an output column name/);
  assert.match(why('SELECT g, count(*) + 1 FROM o GROUP BY ROLLUP (g)')!, /GROUPING SETS/);
  assert.match(why('SELECT g, count(*) + (SELECT 1) FROM o GROUP BY g')!, /a subquery in the select list/);
  assert.match(why('SELECT percentile_cont(0.1 + 0.2) WITHIN GROUP (ORDER BY x) + 1 FROM o')!, /expression fraction/);
});

test('subqueries: found with their parentheses, in text order; self-contained when every column is qualified by their own tables', () => {
  const sql = 'SELECT * FROM orders o WHERE o.amount > (SELECT avg(amount) FROM orders) AND o.pid IN (SELECT p.id FROM products p WHERE p.kind = \'é\') AND EXISTS (SELECT 1 FROM t WHERE t.a = o.a)';
  const subs = subqueriesOf(sql);
  assert.deepEqual(subs.map((x) => x.text), ['SELECT avg(amount) FROM orders', "SELECT p.id FROM products p WHERE p.kind = 'é'", 'SELECT 1 FROM t WHERE t.a = o.a']);
  assert.deepEqual(subs.map((x) => sql.slice(x.start, x.end)), subs.map((x) => `(${x.text})`));
  assert.deepEqual(subs.map((x) => x.selfContained), [false, true, false]);
  // nested subqueries are the outer one's business
  assert.equal(subqueriesOf('SELECT 1 WHERE 2 IN (SELECT a FROM t WHERE b > (SELECT max(b) FROM u))').length, 1);
});

test('subqueries: rows written in as typed literals', () => {
  assert.equal(valuesText(['integer', 'text'], ['id', 'n"m'], [['1', "it's"], [null, 'a\\b']]),
    "(SELECT pgring_v.c1 AS \"id\", pgring_v.c2 AS \"n\"\"m\" FROM (VALUES ('1'::integer, 'it''s'::text), (NULL::integer, E'a\\\\b'::text)) AS pgring_v(c1, c2))");
  assert.equal(valuesText(['numeric'], ['avg'], []), '(SELECT NULL::numeric AS "avg" WHERE false)');
});

test('CTEs: one used once written in as a derived table; the bodies of the others', () => {
  assert.equal(inlineCtes('WITH big AS (SELECT * FROM orders WHERE amount > 10) SELECT g, count(*) FROM big GROUP BY 1'),
    'SELECT g, count(*) FROM (SELECT * FROM orders WHERE amount > 10) AS big GROUP BY 1');
  assert.equal(inlineCtes('WITH a AS (SELECT id FROM users), b AS NOT MATERIALIZED (SELECT * FROM orders) SELECT * FROM b x JOIN a ON a.id = x.user_id'),
    'SELECT * FROM (SELECT * FROM orders) x JOIN (SELECT id FROM users) AS a ON a.id = x.user_id');
  // used twice, MATERIALIZED, with a column list, or recursive: not inlined
  for (const sql of ['WITH a AS (SELECT id FROM users) SELECT * FROM a, a a2', 'WITH a AS MATERIALIZED (SELECT id FROM users) SELECT * FROM a',
    'WITH a(x) AS (SELECT id FROM users) SELECT * FROM a', 'WITH RECURSIVE r AS (SELECT 1) SELECT * FROM r']) assert.equal(inlineCtes(sql), null, sql);
  const sql = 'WITH a AS (SELECT id FROM users), b AS MATERIALIZED (SELECT * FROM a) SELECT * FROM b, b c';
  assert.deepEqual(cteBodies(sql).map((c) => [c.text, c.usesOther, sql.slice(c.start, c.end)]), [['SELECT id FROM users', false, 'SELECT id FROM users'], ['SELECT * FROM a', true, 'SELECT * FROM a']]);
});
