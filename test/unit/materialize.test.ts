// What a SELECT that no merge answers reads first (src/router/materialize.ts): derived tables and
// set-operation arms run as they are, then each sharded table with the conditions of its own
// columns that are safe to copy into its read.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../../src/router/router';
import type { TableRead } from '../../src/router/materialize';

let r: Router;
before(async () => {
  await Router.init();
  r = new Router({ tables: [
    { name: 'users', column: 'id', type: 'bigint', columns: ['id', 'name', 'age', 'city'] },
    { name: 'orders', column: 'user_id', type: 'bigint', columns: ['id', 'user_id', 'amount'] },
  ] });
});
const reads = (sql: string): TableRead[] => r.tableReads(sql);
const texts = (sql: string): string[] => reads(sql).map((x) => x.text);

test('each sharded table is read with the conditions of its own columns', () => {
  assert.deepEqual(texts('SELECT id, row_number() OVER (ORDER BY id) FROM users WHERE age > 30 AND city = \'Oslo\''),
    ["SELECT * FROM users WHERE (age > 30) AND (city = 'Oslo')"]);
  // the last table in the text first; qualified conditions go to their table only, joins stay
  assert.deepEqual(texts('SELECT * FROM users u JOIN orders o ON o.id = u.id WHERE u.age BETWEEN 20 AND 30 AND o.amount > 5 AND o.id = u.id + 1'),
    ['SELECT * FROM orders AS "o" WHERE (o.amount > 5)', 'SELECT * FROM users AS "u" WHERE (u.age BETWEEN 20 AND 30)']);
  // an unqualified column with two tables could be either's: not copied
  assert.deepEqual(texts('SELECT * FROM users u, orders o WHERE age > 3'), ['SELECT * FROM orders AS "o"', 'SELECT * FROM users AS "u"']);
  // OR at the top, IN lists, casts, NOT, IS NULL
  assert.deepEqual(texts("SELECT * FROM users WHERE (age < 3 OR age > 60) AND city IN ('a', 'b') AND NOT name IS NULL AND id::text <> '7'"),
    ["SELECT * FROM users WHERE ((age < 3 OR age > 60)) AND (city IN ('a', 'b')) AND (NOT name IS NULL) AND (id::text <> '7')"]);
  // AND binds tighter than OR: the top-level split must give the parser's conjuncts, or nothing is copied
  assert.deepEqual(texts('SELECT * FROM users WHERE age > 3 AND age < 9 OR id = 1'), ['SELECT * FROM users WHERE (age > 3 AND age < 9 OR id = 1)']);
  // function calls, subqueries and columns of other tables are not copied
  assert.deepEqual(texts('SELECT * FROM users u WHERE lower(u.name) = \'x\' AND u.age > (SELECT 1) AND u.city = \'a\''),
    ['SELECT * FROM users AS "u" WHERE (u.city = \'a\')']);
});

test('conditions of a join\'s ON: for an inner join\'s sides, and the side an outer join null-extends', () => {
  assert.deepEqual(texts('SELECT * FROM users u JOIN orders o ON o.id = u.id AND o.amount > 5 AND u.age < 9 JOIN users v ON v.id = o.user_id AND v.city = \'x\' WHERE u.name = \'n\''),
    ['SELECT * FROM users AS "v" WHERE (v.city = \'x\')', 'SELECT * FROM orders AS "o" WHERE (o.amount > 5)', 'SELECT * FROM users AS "u" WHERE (u.name = \'n\') AND (u.age < 9)']);
  // LEFT JOIN: the ON's conditions on the right (null-extended) side go into its read; the left side's stay
  assert.deepEqual(texts('SELECT * FROM users u LEFT JOIN orders o ON o.id = u.id AND o.amount BETWEEN 1 AND 5 AND u.age > 3'),
    ['SELECT * FROM orders AS "o" WHERE (o.amount BETWEEN 1 AND 5)', 'SELECT * FROM users AS "u"']);
  assert.deepEqual(texts('SELECT * FROM orders o RIGHT JOIN users u ON o.id = u.id AND o.amount > 1 AND u.age > 3'),
    ['SELECT * FROM users AS "u"', 'SELECT * FROM orders AS "o" WHERE (o.amount > 1)']);
  assert.deepEqual(texts('SELECT * FROM orders o FULL JOIN users u ON o.id = u.id AND o.amount > 1'), ['SELECT * FROM users AS "u"', 'SELECT * FROM orders AS "o"']);
});

test('outer joins: nothing is copied into the nullable side', () => {
  assert.deepEqual(texts('SELECT * FROM users u LEFT JOIN orders o ON o.id = u.id WHERE o.amount IS NULL AND u.age > 3'),
    ['SELECT * FROM orders AS "o"', 'SELECT * FROM users AS "u" WHERE (u.age > 3)']);
  assert.deepEqual(texts('SELECT * FROM orders o RIGHT JOIN users u ON o.id = u.id WHERE o.amount IS NULL AND u.age > 3'),
    ['SELECT * FROM users AS "u" WHERE (u.age > 3)', 'SELECT * FROM orders AS "o"']);
  assert.deepEqual(texts('SELECT * FROM users u FULL JOIN orders o ON o.id = u.id WHERE u.age > 3'), ['SELECT * FROM orders AS "o"', 'SELECT * FROM users AS "u"']);
});

test('replacements: the table name (its alias stays) or the whole derived table', () => {
  const sql = 'SELECT * FROM users WHERE id > 2 INTERSECT SELECT user_id FROM orders o';
  const rs = reads(sql);
  // the set-operation arms run first as they are, then the tables
  assert.deepEqual(rs.map((x) => [x.table, x.text]), [
    [false, 'SELECT * FROM users WHERE id > 2'], [false, 'SELECT user_id FROM orders o'],
    [true, 'SELECT * FROM orders AS "o"'], [true, 'SELECT * FROM users WHERE (id > 2)'],
  ]);
  const t = rs[2]!;
  assert.equal(sql.slice(t.start, t.end), 'orders'); assert.equal(t.as, '');
  assert.equal(rs[3]!.as, ' AS "users"');
  const d = reads('SELECT count(*) FROM (SELECT DISTINCT city FROM users) d JOIN orders o ON o.id = 1');
  assert.deepEqual(d.map((x) => x.text), ['SELECT DISTINCT city FROM users', 'SELECT * FROM orders AS "o" WHERE (o.id = 1)', 'SELECT * FROM users']);
  const q = 'SELECT count(*) FROM (SELECT DISTINCT city FROM users) d';
  assert.equal(q.slice(d[0]!.start, d[0]!.end), '(SELECT DISTINCT city FROM users)');
  // a lateral derived table refers to the outer row: never run on its own
  assert.deepEqual(texts('SELECT * FROM users u, LATERAL (SELECT * FROM orders o WHERE o.id = u.id LIMIT 1) x'), ['SELECT * FROM orders AS "o"', 'SELECT * FROM users AS "u"']);
  // a column list renames the columns the conditions name: none copied, the list stays in the statement
  assert.deepEqual(texts('SELECT * FROM users AS v(a, b) WHERE a > 1'), ['SELECT * FROM users']);
});

test('nothing is read first where it would change the statement', () => {
  assert.deepEqual(reads('SELECT * FROM users u JOIN orders o ON o.id = u.id FOR UPDATE'), []);
  assert.deepEqual(reads('SELECT * FROM ONLY users'), []);
  assert.deepEqual(reads('SELECT * FROM users TABLESAMPLE SYSTEM (10)'), []);
  assert.deepEqual(reads('WITH users AS (SELECT 1 AS id) SELECT * FROM users, orders'), []);
  assert.deepEqual(reads('SELECT public.users.id FROM users, orders'), []);
  // (derived tables still run first: Prisma's count with skip / take names columns so)
  assert.deepEqual(texts('SELECT COUNT(*) FROM (SELECT "public"."users"."id" FROM "public"."users" WHERE 1=1 OFFSET 2) AS "sub"'),
    ['SELECT "public"."users"."id" FROM "public"."users" WHERE 1=1 OFFSET 2']);
  assert.deepEqual(reads('WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d, users'), []);
  assert.deepEqual(reads('SELECT * INTO x FROM users'), []);
  assert.deepEqual(reads('SELECT 1; SELECT 2'), []);
  // reference and unknown tables are not read
  assert.deepEqual(texts('SELECT * FROM cities c, users u'), ['SELECT * FROM users AS "u"']);
});
