// Planner rules for statements that may run on several shards (merge specs, scatter-unsupported
// forms, INSERT ... SELECT, MERGE), the GROUP BY key normalization of the merger, and the
// extended-protocol merge of src/frontend/group.ts.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Router, resolveKeys, RouterSchema, Plan } from '../../src/router/router';
import { ResultMerger, buildRowDescription, buildDataRow, parseDataRow, parseRowDescription, OID, FieldDesc } from '../../src/router/merge';
import { Group, clientRowDescription } from '../../src/frontend/group';
import { B } from '../../src/protocol/codes';

const schema: RouterSchema = {
  tables: [
    { name: 'users', column: 'id', type: 'bigint', columns: ['id', 'name', 'age', 'city'] },
    { name: 'orders', column: 'user_id', type: 'bigint', columns: ['id', 'user_id', 'amount'] },
    { name: 'events', column: 'key', type: 'text' },
    { name: 'pgbench_accounts', column: 'aid', type: 'integer' },
    { name: 'pgbench_tellers', column: 'tid', type: 'integer' },
  ],
};
let r: Router;
before(async () => { await Router.init(); r = new Router(schema); });
const plan = (sql: string): Plan => { const s = r.plan(sql); assert.equal(s.length, 1); return s[0]!.plan; };
const keys = (sql: string): (string | null)[] | null => resolveKeys(r.plan(sql)[0]!);
/** Why a keyless SELECT is not answered by the merge: pgring then reads its tables first and runs it
 *  on one shard (plan.materialize, src/router/materialize.ts); other statements are refused. */
const notMerged = (sql: string): string | undefined => { const p = plan(sql); return p.unsupported ?? (p.materialize ? p.subqueries : undefined); };

test('every SELECT on a sharded table gets a merge spec, also with keys', () => {
  const p = plan('SELECT aid FROM pgbench_accounts WHERE aid IN (1,2,3,4,5,6) ORDER BY aid');
  assert.deepEqual(resolveKeys(r.plan('SELECT aid FROM pgbench_accounts WHERE aid IN (1,2,3,4,5,6) ORDER BY aid')[0]!), ['1', '2', '3', '4', '5', '6']);
  assert.deepEqual(p.merge!.orderBy, [{ column: 0, desc: false, nullsFirst: false }]);
  assert.equal(p.unsupported, undefined); assert.equal(p.scatterUnsupported, undefined);
  const l = plan('SELECT aid FROM pgbench_accounts WHERE aid IN (1, 2) ORDER BY aid LIMIT 1 OFFSET 1');
  assert.equal(l.merge!.limit, 1); assert.equal(l.merge!.offset, 1);
  assert.match(l.merge!.shardSql!, /LIMIT 2$/);
  const a = plan('SELECT count(*), avg(abalance) FROM pgbench_accounts WHERE aid = ANY($1)');
  assert.deepEqual(a.merge!.aggregates.map((x) => x.fn), ['count', 'avg']);
  // a keyed form the merger cannot combine: fine on one shard, refused on several
  const d = plan('SELECT sum(DISTINCT abalance ORDER BY abalance) FROM pgbench_accounts WHERE aid IN (1, 2)');
  assert.equal(d.unsupported, undefined); assert.equal(d.scatterUnsupported, 'sum(DISTINCT) across shards');
  assert.equal(notMerged('SELECT sum(DISTINCT abalance ORDER BY abalance) FROM pgbench_accounts'), 'sum(DISTINCT) across shards');
  assert.equal(plan('SELECT sum(DISTINCT abalance ORDER BY abalance) FROM pgbench_accounts').materialize, true);
  assert.equal(d.materialize, true);   // with keys: read first only when they route to several shards
  assert.equal(plan('SELECT DISTINCT abalance FROM pgbench_accounts').merge?.distinct, true);
});

test('subqueries over sharded tables not correlated on the key: unsupported', () => {
  // a select list of aggregate subqueries merges as aggregates (one per item); anything more is refused
  const p = plan('SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers)');
  assert.equal(p.unsupported, undefined);
  assert.deepEqual(p.merge?.aggregates.map((a) => a.fn), ['sum', 'sum']);
  // (the simple protocol runs such subqueries first and writes their rows in: plan.subqueries, frontend/subqueries.ts)
  assert.match(plan('SELECT (SELECT sum(abalance) FROM pgbench_accounts) + 1').subqueries!, /subquery over sharded table/);
  assert.match(plan('SELECT 1, (SELECT sum(abalance) FROM pgbench_accounts)').subqueries!, /subquery over sharded table/);
  assert.match(plan('SELECT * FROM users WHERE age > (SELECT avg(age) FROM users)').subqueries!, /subquery over sharded table "users"/);
  assert.equal(plan('SELECT * FROM users WHERE age > (SELECT avg(age) FROM users)').unsupported, undefined);
  // a derived table whose rows each come from one shard merges; one that dedupes across shards does not
  assert.equal(plan('SELECT count(*) FROM (SELECT * FROM users) x').unsupported, undefined);
  assert.match(notMerged('SELECT count(*) FROM (SELECT DISTINCT age FROM users) x')!, /subquery/);
  assert.match(plan('SELECT name FROM cities c WHERE EXISTS (SELECT 1 FROM users u WHERE u.city = c.name)').subqueries!, /subquery over sharded table "users"/);
  // correlated on the shard key: each shard answers for its own rows
  assert.equal(plan('SELECT u.id, (SELECT count(*) FROM orders o WHERE o.user_id = u.id) FROM users u').unsupported, undefined);
  assert.equal(plan('SELECT id FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)').unsupported, undefined);
  assert.equal(plan('SELECT id FROM users WHERE id IN (SELECT user_id FROM orders WHERE amount > 5)').unsupported, undefined);
  // with keys: allowed on one shard only
  const k = plan('SELECT * FROM users WHERE id = 4 AND age > (SELECT min(age) FROM users WHERE id = 4)');
  assert.equal(k.unsupported, undefined); assert.match(k.subqueries!, /subquery/);
});

test('joins: co-located on the key, reference tables, cross-shard', () => {
  assert.equal(plan('SELECT * FROM users u JOIN orders o ON o.user_id = u.id').unsupported, undefined);
  assert.equal(plan('SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id').unsupported, undefined);
  assert.equal(plan('SELECT * FROM users u JOIN cities c ON c.name = u.city').unsupported, undefined);
  assert.match(notMerged('SELECT * FROM users u JOIN orders o ON o.id = u.id')!, /cross-shard join/);
  // an outer join keeping a reference table's rows: each shard would keep them all
  assert.match(notMerged('SELECT * FROM cities c LEFT JOIN users u ON u.city = c.name')!, /outer join that keeps the rows of a table that is not sharded/);
  assert.match(notMerged('SELECT * FROM users u RIGHT JOIN cities c ON u.city = c.name')!, /outer join/);
  assert.match(notMerged('SELECT * FROM users u FULL JOIN (VALUES (1)) v(x) ON u.id = v.x')!, /outer join/);
  assert.equal(notMerged('SELECT * FROM users u LEFT JOIN cities c ON u.city = c.name'), undefined);
  // different key types are not co-located
  assert.match(notMerged('SELECT * FROM users u JOIN events e ON e.key = u.id::text')!, /cross-shard join/);
  // keys in two unjoined tables: one union of keys, refused when they span shards
  const p = plan('SELECT * FROM users u, orders o WHERE u.id = 1 AND o.user_id = 2');
  assert.deepEqual(keys('SELECT * FROM users u, orders o WHERE u.id = 1 AND o.user_id = 2'), ['1', '2']);
  assert.equal(p.unsupported, undefined); assert.match(p.scatterUnsupported!, /cross-shard join/);
  assert.equal(plan('SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id IN (1, 2)').scatterUnsupported, undefined);
});

test('set operations', () => {
  assert.equal(plan('SELECT id FROM users UNION ALL SELECT user_id FROM orders').unsupported, undefined);
  assert.match(notMerged('SELECT id FROM users UNION ALL SELECT 1')!, /mixing sharded and non-sharded/);
  assert.match(notMerged('SELECT id FROM users UNION SELECT user_id FROM orders')!, /UNION across shards/);
  assert.match(notMerged('SELECT id FROM users INTERSECT SELECT user_id FROM orders')!, /INTERSECT/);
  assert.equal(plan('SELECT id FROM users INTERSECT SELECT user_id FROM orders').materialize, true);
});

test('INSERT forms', () => {
  assert.deepEqual(keys("INSERT INTO users VALUES (1, 'a', 2, 'x'), (2, 'b', 3, 'y')"), ['1', '2']);
  assert.equal(plan("INSERT INTO users VALUES (1, 'a', 2, 'x'), (2, 'b', 3, 'y')").insertSplit!.rows.length, 2);
  assert.match(plan("INSERT INTO users (name) VALUES ('x')").unsupported!, /without a value for its shard key column "id"/);
  assert.match(plan("INSERT INTO events VALUES ('k', 1)").unsupported!, /without a column list/);
  assert.match(plan('INSERT INTO users DEFAULT VALUES').unsupported!, /DEFAULT VALUES/);
  assert.match(plan("INSERT INTO users VALUES (1 + 1, 'a')").unsupported!, /computed shard key/);
  // INSERT ... SELECT: rows stay on their shard when the key is a co-located key column
  const a = plan('INSERT INTO orders SELECT id + 1000, user_id, amount FROM orders WHERE user_id = 9');
  assert.equal(a.unsupported, undefined); assert.equal(a.scatterUnsupported, undefined);
  assert.deepEqual(keys('INSERT INTO orders SELECT id + 1000, user_id, amount FROM orders WHERE user_id = 9'), ['9']);
  const b = plan('INSERT INTO orders (id, user_id, amount) SELECT 1, id, 0 FROM users WHERE age > 3');
  assert.equal(b.unsupported, undefined); assert.equal(b.keys, null); // every shard inserts its own rows
  assert.equal(plan('INSERT INTO users SELECT * FROM users WHERE id = 5').unsupported, undefined);
  assert.match(plan('INSERT INTO users (id, name) SELECT id + 500, name FROM users').unsupported!, /shard key that is not a constant or a co-located shard key column/);
  // pgring places such rows itself in the simple protocol (frontend/insert-select.ts)
  assert.deepEqual(plan('INSERT INTO users (id, name) SELECT id + 500, name FROM users').insertVia, { n: 2, keyIdx: 0 });
  assert.deepEqual(plan("INSERT INTO users (name, id) SELECT 'x', g FROM generate_series(1, 3) g").insertVia, { n: 2, keyIdx: 1 });
  assert.deepEqual(plan('INSERT INTO users SELECT 1, 2 UNION ALL SELECT 3, 4').insertVia, { n: 2, keyIdx: 0 });
  assert.equal(plan('INSERT INTO users (name) SELECT name FROM users').insertVia, undefined);   // no key column named
  assert.equal(plan('WITH x AS (SELECT 1 AS id) INSERT INTO users (id) SELECT id + 1 FROM x').insertVia, undefined);
  assert.match(plan('INSERT INTO orders SELECT id, user_id, amount FROM orders LIMIT 3').unsupported!, /INSERT \.\.\. SELECT with LIMIT/);
  assert.match(plan('INSERT INTO users SELECT * FROM orders').unsupported!, /SELECT \* into sharded table "users" from another relation/);
  // constant key with a SELECT over reference tables: one shard
  assert.deepEqual(keys("INSERT INTO users (id, name) SELECT 7, name FROM cities WHERE name = 'Oslo'"), ['7']);
  // constant key, SELECT over sharded data: only when everything is on one shard
  const c = plan('INSERT INTO users (id, name) SELECT 7, name FROM users WHERE id = 8');
  assert.deepEqual(keys('INSERT INTO users (id, name) SELECT 7, name FROM users WHERE id = 8'), ['7', '8']);
  assert.match(c.scatterUnsupported!, /subquery over sharded table|cross-shard/);
  assert.match(plan('INSERT INTO users (id, name) SELECT 7, name FROM users').unsupported!, /subquery|cross-shard/);
  // a reference table written from sharded data
  assert.match(plan('INSERT INTO cities SELECT city FROM users').unsupported!, /writing a reference table/);
  assert.match(plan("UPDATE cities SET country = 'x' WHERE name IN (SELECT city FROM users WHERE id = 1)").unsupported!, /writing a reference table/);
});

test('UPDATE / DELETE / MERGE', () => {
  assert.equal(plan('UPDATE users SET age = age + 1 WHERE age > 3').unsupported, undefined);
  assert.match(plan('UPDATE users SET age = (SELECT max(age) FROM users)').subqueries!, /subquery over sharded table "users"/);   // run first (subqueries.ts)
  assert.equal(plan('DELETE FROM orders WHERE user_id IN (SELECT id FROM users WHERE age > 50)').unsupported, undefined);
  assert.equal(plan('DELETE FROM orders o USING users u WHERE o.user_id = u.id AND u.age IS NULL').unsupported, undefined);
  assert.match(plan('DELETE FROM orders o USING users u WHERE o.id = u.id').unsupported!, /cross-shard join/);
  const m = plan("MERGE INTO users u USING (VALUES (1, 'm')) v(id, name) ON u.id = v.id WHEN MATCHED THEN UPDATE SET name = v.name");
  assert.equal(m.command, 'merge'); assert.equal(m.write, true); assert.equal(m.unsupported, 'MERGE into a sharded table');
  assert.equal(plan("MERGE INTO cities c USING (VALUES ('a')) v(n) ON c.name = v.n WHEN NOT MATCHED THEN INSERT VALUES (v.n)").unsupported, undefined);
  // an explicit shard hint lifts the scatter restriction
  assert.equal(r.plan('/* pgring: shard=s1 */ SELECT (SELECT sum(abalance) FROM pgbench_accounts)')[0]!.plan.unsupported, undefined);
});

// ------------------------------------------------------------------ merger: GROUP BY keys by type

const fd = (name: string, typeOid: number, format = 0): FieldDesc => ({ name, tableOid: 0, attnum: 0, typeOid, typlen: -1, typmod: -1, format });
const row = (...v: (string | null)[]): Buffer => buildDataRow(v.map((x) => (x === null ? null : Buffer.from(x))));
const rowsOf = (bufs: Buffer[]): (string | null)[][] => bufs.filter((b) => b[0] === 0x44).map((b) => parseDataRow(b).map((c) => (c === null ? null : c.toString())));
const base = { orderBy: [], limit: null, offset: null, groupBy: [], aggregates: [], hiddenColumns: 0 };

test('GROUP BY keys compare by PostgreSQL equality: numeric scale, float -0, bpchar spaces', () => {
  const cases: [number, string, string][] = [[OID.numeric, '1.0', '1.00'], [OID.float8, '-0', '0'], [OID.bpchar, 'ab  ', 'ab']];
  for (const [oid, a, b] of cases) {
    const m = new ResultMerger({ ...base, groupBy: [0], aggregates: [{ column: 1, fn: 'count' }] }, 2);
    m.rowDescription(0, buildRowDescription([fd('g', oid), fd('count', OID.int8)]));
    m.dataRow(0, row(a, '2')); m.dataRow(1, row(b, '3'));
    assert.equal(m.unsupported, null);
    const out = rowsOf(m.finish());
    assert.equal(out.length, 1, `${oid}: ${a} = ${b}`); assert.equal(out[0]![1], '5');
  }
  const m = new ResultMerger({ ...base, groupBy: [0], aggregates: [{ column: 1, fn: 'count' }] }, 2);
  m.rowDescription(0, buildRowDescription([fd('g', OID.interval), fd('count', OID.int8)]));
  assert.match(m.unsupported!, /GROUP BY on type 1186/);
  const o = new ResultMerger({ ...base, orderBy: [{ column: 0, desc: false, nullsFirst: false }] }, 2);
  o.rowDescription(0, buildRowDescription([fd('m', OID.money)]));
  assert.match(o.unsupported!, /ORDER BY on type 790/);
});

// ------------------------------------------------------------------ group.ts, extended protocol

test('Group merge-ext: RowDescription given by describe(), rows arriving before it are kept', () => {
  // grouped by a column that is not the key (grouped by the key, each group is final on its shard)
  const sql = 'SELECT name, avg(age) FROM users GROUP BY name ORDER BY name OFFSET $1';
  const stmt = r.planPrepared(sql);
  assert.ok(stmt.plan.merge?.shardSql);
  // without the shard rewrite: refused, never wrong rows
  const refused = new Group('merge-ext', 2, stmt, [], ['0']);
  let out: Buffer[] = [];
  refused.onFinish = (m) => { out = m; };
  refused.memberDone(0); refused.memberDone(1);
  assert.equal(out[0]![0], B.ErrorResponse); assert.match(out[0]!.toString(), /extended protocol/);
  // with it: shard rows (name, sum AS avg, hidden count) merged
  const g = new Group('merge-ext', 2, stmt, [], [Buffer.from('1')], { shardSql: true });
  g.onFinish = (m) => { out = m; };
  const shardRd = buildRowDescription([fd('id', OID.int8), fd('avg', OID.int8), fd('count', OID.int8)]);
  g.message(1, B.DataRow, row('2', '10', '4'));          // before the RowDescription
  const visible = parseRowDescription(g.describe(shardRd)!);
  assert.deepEqual(visible.map((f) => [f.name, f.typeOid]), [['id', OID.int8], ['avg', OID.numeric]]);
  assert.deepEqual(parseRowDescription(clientRowDescription(stmt, shardRd)).map((f) => f.name), ['id', 'avg']);
  g.message(0, B.DataRow, row('1', '3', '2'));
  g.message(0, B.DataRow, row('3', null, '0'));
  g.message(0, B.CommandComplete, Buffer.from('C\0\0\0\rSELECT 2\0'));
  g.message(1, B.CommandComplete, Buffer.from('C\0\0\0\rSELECT 1\0'));
  g.memberDone(0); g.memberDone(1);
  assert.deepEqual(rowsOf(out), [['2', '2.5000000000000000'], ['3', null]]);
  assert.equal(out.some((m) => m[0] === B.RowDescription), false); // the client got it from its Describe
});

test('Group refuses a scatter the plan marks unsupported', () => {
  const stmt = r.plan('SELECT sum(DISTINCT age ORDER BY age) FROM users WHERE id IN (1, 2)')[0]!;
  let out: Buffer[] = [];
  const g = new Group('merge', 2, stmt, []);
  g.onFinish = (m) => { out = m; };
  g.memberDone(0); g.memberDone(1);
  assert.match(out[0]!.toString(), /sum\(DISTINCT\) across shards is not supported/);
  const one = new Group('merge', 1, stmt, []);
  one.onFinish = (m) => { out = m; };
  one.memberDone(0);
  assert.equal(out.length, 0);
});
