// The differential test's statements (test/integration/differential.test.ts runs them directly
// against one PostgreSQL holding all rows and through pgring over 3 shards; the cluster-definition
// test runs them through two proxies): steps, how a statement is run, how outcomes compare.
import pg from 'pg';
import type { ShardMap } from '../../src/frontend/routing';
import type { KeyType } from '../../src/config/types';

export interface Step {
  /** statement text for the simple protocol (and the extended one unless `p` is given) */
  sql: string;
  /** extended-protocol form: text with $n and the values */
  p?: { text: string; values: unknown[] };
  /** which protocols: 'both' (reads only), 'simple' or 'ext' (default: simple, or ext when `p` is given) */
  mode?: 'both' | 'simple' | 'ext';
  /** rows must come in this order (the statement orders without ties) */
  ordered?: boolean;
  /** only the number of rows is compared (LIMIT without ORDER BY: any rows) */
  countOnly?: boolean;
  /** columns holding string_agg / array_agg results without ORDER BY inside the aggregate (no
   *  defined element order): their elements are compared sorted, in the text format only */
  listCols?: number[];
  /** pgring answers 0A000 by design; the message must match */
  unsupported?: RegExp;
  /** float results combined from the shards' partial states (variance of float input): compared to
   *  12 significant digits, as PostgreSQL's own parallel aggregation differs from a serial one in the last ones */
  floatCols?: number[];
}

export type Outcome = { ok: true; command: string; rowCount: number | null; fields: string[]; rows: string[] } | { ok: false; code: string; message: string };

export const RAW = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

export const TABLES = [
  { name: 'users', column: 'id', type: 'bigint', columns: ['id', 'name', 'age', 'city'] },
  { name: 'orders', column: 'user_id', type: 'bigint', columns: ['id', 'user_id', 'amount', 'created'] },
  { name: 'events', column: 'key', type: 'text' }, // no column list configured
  { name: 'uuids', column: 'id', type: 'uuid', columns: ['id', 'label', 'n'] },
];

/** Extended-protocol variants: text results from the unnamed statement, binary results from a named one. */
export interface Variant { binary?: boolean; named?: boolean }
export const EXT_VARIANTS: Variant[] = [{}, { binary: true, named: true }];
const stmtNames = new Map<string, string>();
export function stmtName(text: string): string {
  let n = stmtNames.get(text);
  if (!n) stmtNames.set(text, n = `diff_${stmtNames.size}`);
  return n;
}

export async function run(c: pg.Client, sql: string, ext: boolean, p?: Step['p'], v: Variant = {}): Promise<Outcome> {
  try {
    const text = p ? p.text : sql;
    const cfg: pg.QueryConfig & { queryMode?: string; rowMode: 'array'; types: pg.CustomTypesConfig; binary?: boolean } = ext
      ? { text, values: p ? p.values : undefined, rowMode: 'array', types: RAW, queryMode: 'extended', binary: v.binary, name: v.named ? stmtName(text) : undefined }
      : { text: sql, rowMode: 'array', types: RAW };
    const r = await c.query(cfg as pg.QueryConfig);
    return {
      ok: true, command: r.command, rowCount: r.rowCount,
      // the whole RowDescription but the table OID (each database has its own): name, type, size, modifier, format, column
      fields: r.fields.map((f) => `${f.name}:${f.dataTypeID}:${f.dataTypeSize}:${f.dataTypeModifier}:${f.format}:${f.tableID ? 't' : '0'}:${f.columnID}`),
      rows: (r.rows as unknown[][]).map((row) => JSON.stringify(row)),
    };
  } catch (e) {
    const err = e as { code?: string; message: string };
    return { ok: false, code: err.code ?? 'NOCODE', message: err.message };
  }
}

/** keys (ints) that live on the same shard / on different shards, from the proxy's own ring */
export function keysOnShards(shards: ShardMap, type: KeyType, candidates: string[]): Map<number, string[]> {
  const m = new Map<number, string[]>();
  for (const k of candidates) { const s = shards.shardForKey(type, k); m.set(s, [...(m.get(s) ?? []), k]); }
  return m;
}

export const CITIES = ['Paris', 'Berlin', 'Rome', 'Oslo', null, 'Lima'];
export const ages = (i: number): number | null => (i % 7 === 0 ? null : 20 + ((i * 7) % 40));
export const UUIDS = ['00000000-0000-0000-0000-000000000001', '6f1c1d4e-2b3a-4c5d-8e9f-0a1b2c3d4e5f', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'];

export function buildSteps(shards: ShardMap): Step[] {
  const keysOn = (type: KeyType, candidates: string[]) => keysOnShards(shards, type, candidates);
  const S: Step[] = [];
  const add = (s: Step): void => { S.push(s); };
  // ---- DDL (every shard)
  add({ sql: 'CREATE TABLE users (id bigint primary key, name text, age int, city text)' });
  add({ sql: 'CREATE TABLE orders (id bigint, user_id bigint, amount numeric(10,2), created date, primary key (user_id, id))' });
  add({ sql: 'CREATE TABLE events (key text, seq int, payload text, primary key (key, seq))' });
  add({ sql: 'CREATE TABLE uuids (id uuid primary key, label text, n int)' });
  add({ sql: 'CREATE TABLE cities (name text primary key, country text)' });
  add({ sql: 'CREATE INDEX users_city ON users (city)' });
  // ---- reference table: multi-row insert goes to every shard
  add({ sql: "INSERT INTO cities VALUES ('Paris', 'FR'), ('Berlin', 'DE'), ('Rome', 'IT'), ('Oslo', 'NO')" });
  // ---- single-row inserts, alternating protocols
  for (let i = 1; i <= 30; i++) {
    const city = CITIES[i % 6];
    const age = ages(i);
    if (i % 2) add({ sql: `INSERT INTO users (id, name, age, city) VALUES (${i}, 'u${i}', ${age ?? 'NULL'}, ${city ? `'${city}'` : 'NULL'})` });
    else add({ sql: '', p: { text: 'INSERT INTO users (id, name, age, city) VALUES ($1, $2, $3, $4)', values: [i, `u${i}`, age, city] } });
  }
  // orders: multi-row inserts whose rows share one key (one shard)
  for (let u = 1; u <= 24; u++) {
    const rows = Array.from({ length: 1 + (u % 4) }, (_, j) => `(${j + 1}, ${u}, ${((u * 13 + j * 37) % 100) + 0.25 * (j % 4)}, DATE '2024-01-01' + ${u + j})`);
    add({ sql: `INSERT INTO orders VALUES ${rows.join(', ')}` });
  }
  // multi-row insert with different keys on one shard
  const byShard = keysOn('bigint', Array.from({ length: 40 }, (_, i) => String(200 + i)));
  const same = [...byShard.values()].find((ks) => ks.length >= 3)!.slice(0, 3);
  add({ sql: `INSERT INTO users VALUES ${same.map((k) => `(${k}, 'multi${k}', 44, 'Rome')`).join(', ')}` });
  const spreadIns = [...keysOn('bigint', Array.from({ length: 30 }, (_, i) => String(300 + i))).values()].map((ks) => ks[0]!);
  add({ sql: `INSERT INTO users VALUES ${spreadIns.map((k, j) => `(${k}, 'spread${j}', ${j}, 'Paris')`).join(', ')} RETURNING id, name`, ordered: true });
  add({ sql: `INSERT INTO orders (user_id, id, amount, created) VALUES (${spreadIns[0]}, 1, 1.5, '2024-02-01'), (${spreadIns[1]}, 1, 2.5, '2024-02-02'), (${spreadIns[0]}, 2, 3.5, '2024-02-03')` });
  add({ sql: '', p: { text: 'INSERT INTO users VALUES ($1, $2, 45, NULL), ($3, $4, 46, NULL)', values: [Number(same[0]) + 1000, 'pa', Number(same[0]) + 1000, 'pb'] } }); // duplicate in one statement: 23505
  add({ sql: "INSERT INTO events (key, seq, payload) VALUES ('alpha', 1, 'a1')" });
  add({ sql: "INSERT INTO events VALUES ('k', 1, 'x')" }); // no column list configured: the proxy reads it from the catalog
  add({ sql: '', p: { text: 'INSERT INTO events (key, seq, payload) VALUES ($1, $2, $3)', values: ['beta', 1, 'b1'] } });
  for (const k of ['gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta', 'Alpha', 'beta ']) add({ sql: `INSERT INTO events (key, seq, payload) VALUES ('${k}', 1, '${k}-1'), ('${k}', 2, NULL)` });
  UUIDS.forEach((u, i) => add(i % 2 ? { sql: '', p: { text: 'INSERT INTO uuids VALUES ($1, $2, $3)', values: [u, `l${i}`, i * 10] } } : { sql: `INSERT INTO uuids VALUES ('${u}', 'l${i}', ${i * 10})` }));

  // ---- reads: point, IN / ANY, ranges, scans
  add({ sql: 'SELECT * FROM users WHERE id = 5', p: { text: 'SELECT * FROM users WHERE id = $1', values: [5] }, mode: 'both' });
  add({ sql: 'SELECT name FROM users WHERE id = 999', mode: 'both' });
  add({ sql: 'SELECT id, name FROM users WHERE id IN (1, 2, 3, 4, 5, 6) ORDER BY id', p: { text: 'SELECT id, name FROM users WHERE id IN ($1, $2, $3, $4, $5, $6) ORDER BY id', values: [1, 2, 3, 4, 5, 6] }, mode: 'both', ordered: true });
  add({ sql: "SELECT id FROM users WHERE id = ANY('{7,8,9,10}'::bigint[]) ORDER BY id DESC", p: { text: 'SELECT id FROM users WHERE id = ANY($1::bigint[]) ORDER BY id DESC', values: ['{7,8,9,10}'] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT id, age FROM users WHERE id BETWEEN 5 AND 25 ORDER BY id', mode: 'both', ordered: true });
  add({ sql: 'SELECT * FROM users', mode: 'both' });
  add({ sql: 'SELECT * FROM users WHERE id IN (1, 2, 3, 4, 5, 6) LIMIT 2 OFFSET 1', mode: 'both', countOnly: true });
  add({ sql: 'SELECT id FROM users WHERE id IN (11, 12, 13, 14) ORDER BY id LIMIT 2 OFFSET 1', p: { text: 'SELECT id FROM users WHERE id IN (11, 12, 13, 14) ORDER BY id LIMIT $1 OFFSET $2', values: [2, 1] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT id, age FROM users ORDER BY age NULLS FIRST, id', mode: 'both', ordered: true });
  add({ sql: 'SELECT id, age FROM users ORDER BY age DESC NULLS LAST, id', mode: 'both', ordered: true });
  add({ sql: 'SELECT id, age FROM users ORDER BY age DESC, id DESC', mode: 'both', ordered: true });
  add({ sql: 'SELECT id FROM users ORDER BY id LIMIT 5 OFFSET 3', p: { text: 'SELECT id FROM users ORDER BY id LIMIT $1 OFFSET $2', values: [5, 3] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT id FROM users ORDER BY id DESC LIMIT 4', p: { text: 'SELECT id FROM users ORDER BY id DESC LIMIT $1', values: [4] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT name FROM users ORDER BY age DESC NULLS LAST, id LIMIT 7', mode: 'both', ordered: true });
  add({ sql: 'SELECT id, name FROM users LIMIT 3', mode: 'both', countOnly: true });
  add({ sql: 'SELECT city, id FROM users WHERE age > 30 ORDER BY city NULLS FIRST, id', p: { text: 'SELECT city, id FROM users WHERE age > $1 ORDER BY city NULLS FIRST, id', values: [30] }, mode: 'both', ordered: true });
  // ---- aggregates
  add({ sql: 'SELECT count(*), sum(age), min(age), max(age), avg(age) FROM users', mode: 'both' });
  add({ sql: 'SELECT count(*), sum(age), avg(age) FROM users WHERE id IN (1, 2, 3, 4, 5, 6)', p: { text: 'SELECT count(*), sum(age), avg(age) FROM users WHERE id IN ($1, $2, $3, $4, $5, $6)', values: [1, 2, 3, 4, 5, 6] }, mode: 'both' });
  add({ sql: 'SELECT max(name), min(name) FROM users WHERE id = ANY(ARRAY[2, 9, 16, 23])', mode: 'both' });
  add({ sql: 'SELECT city, count(*), avg(age) FROM users GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'SELECT count(*), sum(amount), avg(amount), min(amount), max(amount) FROM orders', mode: 'both' });
  add({ sql: 'SELECT user_id, sum(amount) FROM orders GROUP BY user_id ORDER BY 2 DESC, 1 LIMIT 5', mode: 'both', ordered: true });
  add({ sql: 'SELECT min(created), max(created), count(created) FROM orders', mode: 'both' });
  add({ sql: 'SELECT count(*) FILTER (WHERE age > 30), count(age) FROM users', mode: 'both' });
  add({ sql: 'SELECT count(*) FROM users GROUP BY age > 30', mode: 'both' });
  add({ sql: 'SELECT city FROM users GROUP BY city ORDER BY count(*) DESC, city NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'SELECT amount, count(*) FROM orders GROUP BY amount ORDER BY amount', mode: 'both', ordered: true });
  add({ sql: 'SELECT count(*) FROM users WHERE age IS NULL', mode: 'both' });
  add({ sql: 'SELECT sum(age) FROM users WHERE id > 1000', mode: 'both' });
  // ---- joins of co-located tables, reference joins, subqueries / CTEs
  add({ sql: 'SELECT u.name, o.id, o.amount FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 3 ORDER BY o.id', p: { text: 'SELECT u.name, o.id, o.amount FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = $1 ORDER BY o.id', values: [3] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT u.id, count(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY u.id ORDER BY u.id', mode: 'both', ordered: true });
  add({ sql: 'SELECT u.id, o.id FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id IN (4, 5, 6, 7) ORDER BY u.id, o.id', mode: 'both', ordered: true });
  add({ sql: 'SELECT u.id, c.country FROM users u JOIN cities c ON c.name = u.city ORDER BY u.id', mode: 'both', ordered: true });
  add({ sql: 'SELECT c.country, count(*) FROM users u JOIN cities c ON c.name = u.city GROUP BY c.country ORDER BY 1', mode: 'both', ordered: true });
  add({ sql: 'SELECT * FROM cities ORDER BY name', mode: 'both', ordered: true });
  add({ sql: 'SELECT id, name FROM users WHERE id = 4 AND age >= (SELECT min(age) FROM users WHERE id = 4)', mode: 'both' });
  add({ sql: 'WITH x AS (SELECT * FROM orders WHERE user_id = 5) SELECT count(*), sum(amount) FROM x', p: { text: 'WITH x AS (SELECT * FROM orders WHERE user_id = $1) SELECT count(*), sum(amount) FROM x', values: [5] }, mode: 'both' });
  add({ sql: 'SELECT id FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.amount > 50) ORDER BY id', mode: 'both', ordered: true });
  add({ sql: 'SELECT id FROM users WHERE id IN (SELECT user_id FROM orders WHERE amount > 20) ORDER BY id', mode: 'both', ordered: true });
  add({ sql: 'SELECT u.id, (SELECT count(*) FROM orders o WHERE o.user_id = u.id) FROM users u ORDER BY u.id', mode: 'both', ordered: true });
  add({ sql: 'SELECT id FROM users WHERE age > 40 UNION ALL SELECT user_id FROM orders WHERE amount > 90', mode: 'both' });
  add({ sql: 'SELECT id FROM users WHERE age > 40 UNION ALL SELECT user_id FROM orders WHERE amount > 90 ORDER BY 1 LIMIT 4', mode: 'both' , countOnly: true });
  add({ sql: 'SELECT key, count(*), count(payload) FROM events GROUP BY key ORDER BY key', mode: 'both', ordered: true });
  add({ sql: 'SELECT key, seq FROM events ORDER BY key DESC, seq LIMIT 5', mode: 'both', ordered: true });
  add({ sql: "SELECT * FROM events WHERE key IN ('alpha', 'beta', 'gamma') ORDER BY key, seq", p: { text: 'SELECT * FROM events WHERE key = ANY($1) ORDER BY key, seq', values: [['alpha', 'beta', 'gamma']] }, mode: 'both', ordered: true });
  add({ sql: `SELECT * FROM uuids WHERE id = '${UUIDS[1]}'`, p: { text: 'SELECT * FROM uuids WHERE id = $1', values: [UUIDS[1]] }, mode: 'both' });
  add({ sql: 'SELECT id, n FROM uuids ORDER BY id', mode: 'both', ordered: true });
  add({ sql: 'SELECT sum(n), avg(n), count(*) FROM uuids', mode: 'both' });
  // ---- merges with bind parameters (the forms ORMs send; binary and named variants run too)
  add({ sql: "SELECT avg(age) FROM users WHERE city = 'Paris'", p: { text: 'SELECT avg(age) FROM users WHERE city = $1', values: ['Paris'] }, mode: 'both' });
  add({ sql: 'SELECT avg(amount), sum(amount), count(*) FROM orders WHERE amount > 20', p: { text: 'SELECT avg(amount), sum(amount), count(*) FROM orders WHERE amount > $1', values: [20] }, mode: 'both' });
  add({ sql: 'SELECT user_id % 3 AS b, avg(amount) AS a, sum(amount), max(amount) FROM orders GROUP BY 1 ORDER BY 1', mode: 'both', ordered: true });
  add({ sql: 'SELECT avg(amount::float8) AS f, avg(age::numeric) FROM orders o JOIN users u ON u.id = o.user_id', mode: 'both' });
  add({ sql: 'SELECT name FROM users WHERE age > 25 ORDER BY age DESC NULLS LAST, id LIMIT 4 OFFSET 3', p: { text: 'SELECT name FROM users WHERE age > $1 ORDER BY age DESC NULLS LAST, id LIMIT $2 OFFSET $3', values: [25, 4, 3] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT count(*), avg(age) FROM users GROUP BY city ORDER BY count(*) DESC, min(id)', mode: 'both', ordered: true });
  add({ sql: 'SELECT id FROM users ORDER BY id OFFSET 25', p: { text: 'SELECT id FROM users ORDER BY id OFFSET $1', values: [25] }, mode: 'both', ordered: true });
  // Prisma: findMany({ skip, take, orderBy }) -- quoted schema-qualified columns, LIMIT/OFFSET parameters
  add({ sql: 'SELECT "public"."users"."id", "public"."users"."name", "public"."users"."age" FROM "public"."users" WHERE 1=1 ORDER BY "public"."users"."id" ASC LIMIT 5 OFFSET 10',
    p: { text: 'SELECT "public"."users"."id", "public"."users"."name", "public"."users"."age" FROM "public"."users" WHERE 1=1 ORDER BY "public"."users"."id" ASC LIMIT $1 OFFSET $2', values: [5, 10] }, mode: 'both', ordered: true });
  // Prisma: aggregate({ _avg, _count }) without a subquery (no skip/take)
  add({ sql: 'SELECT COUNT("public"."users"."id") AS "_count$id", AVG("public"."users"."age") AS "_avg$age" FROM "public"."users" WHERE "public"."users"."age" >= 20',
    p: { text: 'SELECT COUNT("public"."users"."id") AS "_count$id", AVG("public"."users"."age") AS "_avg$age" FROM "public"."users" WHERE "public"."users"."age" >= $1', values: [20] }, mode: 'both' });
  // TypeORM: find({ skip, take, order }) with aliases "User_id"
  add({ sql: 'SELECT "User"."id" AS "User_id", "User"."name" AS "User_name" FROM "users" "User" WHERE "User"."city" = \'Paris\' ORDER BY "User"."id" ASC LIMIT 3 OFFSET 1',
    p: { text: 'SELECT "User"."id" AS "User_id", "User"."name" AS "User_name" FROM "users" "User" WHERE "User"."city" = $1 ORDER BY "User"."id" ASC LIMIT 3 OFFSET 1', values: ['Paris'] }, mode: 'both', ordered: true });
  // Sequelize: findAndCountAll (count, then the page)
  add({ sql: 'SELECT count(*) AS "count" FROM "users" AS "User" WHERE "User"."age" > 30;', p: { text: 'SELECT count(*) AS "count" FROM "users" AS "User" WHERE "User"."age" > $1;', values: [30] }, mode: 'both' });
  add({ sql: 'SELECT "id", "name", "age" FROM "users" AS "User" WHERE "User"."age" > 30 ORDER BY "User"."age" DESC, "User"."id" ASC LIMIT 4 OFFSET 2;',
    p: { text: 'SELECT "id", "name", "age" FROM "users" AS "User" WHERE "User"."age" > $1 ORDER BY "User"."age" DESC, "User"."id" ASC LIMIT $2 OFFSET $3;', values: [30, 4, 2] }, mode: 'both', ordered: true });
  // SQLAlchemy 2.0: select(func.count()).select_from(User); select(User).order_by(User.id).limit().offset()
  add({ sql: 'SELECT count(*) AS count_1 FROM users', mode: 'both' });
  add({ sql: 'SELECT users.id, users.name, users.city FROM users ORDER BY users.name DESC LIMIT 6 OFFSET 6',
    p: { text: 'SELECT users.id, users.name, users.city FROM users ORDER BY users.name DESC LIMIT $1::INTEGER OFFSET $2::INTEGER', values: [6, 6] }, mode: 'both', ordered: true });
  // Django: Paginator (count, then LIMIT/OFFSET page), aggregate(Avg)
  add({ sql: 'SELECT COUNT(*) AS "__count" FROM "users" WHERE "users"."age" IS NOT NULL', mode: 'both' });
  add({ sql: 'SELECT "users"."id", "users"."name" FROM "users" WHERE "users"."age" IS NOT NULL ORDER BY "users"."age" ASC, "users"."id" ASC LIMIT 5 OFFSET 5',
    p: { text: 'SELECT "users"."id", "users"."name" FROM "users" WHERE "users"."age" IS NOT NULL ORDER BY "users"."age" ASC, "users"."id" ASC LIMIT $1 OFFSET $2', values: [5, 5] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT AVG("orders"."amount") AS "amount__avg" FROM "orders"', mode: 'both' });
  // ---- DISTINCT, DISTINCT ON, HAVING, bool_and/bool_or, FILTER across shards
  add({ sql: 'SELECT DISTINCT city FROM users', mode: 'both' });
  add({ sql: 'SELECT DISTINCT * FROM cities', mode: 'both' });
  add({ sql: 'SELECT DISTINCT city, age > 30 AS old FROM users ORDER BY city NULLS FIRST, old LIMIT 4 OFFSET 1', p: { text: 'SELECT DISTINCT city, age > $1 AS old FROM users ORDER BY city NULLS FIRST, old LIMIT $2 OFFSET $3', values: [30, 4, 1] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT DISTINCT amount FROM orders ORDER BY amount DESC LIMIT 5', mode: 'both', ordered: true });
  add({ sql: 'SELECT DISTINCT age::float8 / 4 AS q, created FROM users u JOIN orders o ON o.user_id = u.id WHERE age > 40', mode: 'both' });
  add({ sql: 'SELECT DISTINCT ON (city) city, id, name FROM users ORDER BY city, id', mode: 'both', ordered: true });
  add({ sql: 'SELECT DISTINCT ON (city) id, name FROM users ORDER BY city NULLS FIRST, age DESC NULLS LAST, id LIMIT 3', p: { text: 'SELECT DISTINCT ON (city) id, name FROM users ORDER BY city NULLS FIRST, age DESC NULLS LAST, id LIMIT $1', values: [3] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT city, count(*) FROM users GROUP BY city HAVING count(*) > 2', mode: 'both' });
  add({ sql: 'SELECT city, avg(age) FROM users GROUP BY city HAVING avg(age) > 35 AND count(*) >= 2 ORDER BY city', p: { text: 'SELECT city, avg(age) FROM users GROUP BY city HAVING avg(age) > $1 AND count(*) >= $2 ORDER BY city', values: [35, 2] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT user_id FROM orders GROUP BY user_id HAVING sum(amount) > 100 OR max(amount) > 90 ORDER BY user_id LIMIT 5', mode: 'both', ordered: true });
  add({ sql: 'SELECT city FROM users GROUP BY city HAVING NOT (min(age) IS NULL) AND max(age) - min(age) >= 10 ORDER BY city NULLS FIRST', mode: 'both', ordered: true });
  // Django: .values('user_id').annotate(n=Count('id')).filter(n__gt=1); TypeORM groupBy + having
  add({ sql: 'SELECT "orders"."user_id", COUNT("orders"."id") AS "n" FROM "orders" GROUP BY "orders"."user_id" HAVING COUNT("orders"."id") > 1 ORDER BY "orders"."user_id" ASC',
    p: { text: 'SELECT "orders"."user_id", COUNT("orders"."id") AS "n" FROM "orders" GROUP BY "orders"."user_id" HAVING COUNT("orders"."id") > $1 ORDER BY "orders"."user_id" ASC', values: [1] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT city, bool_and(age > 25), bool_or(age > 50), every(name IS NOT NULL) FROM users GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'SELECT city, count(*) FILTER (WHERE age > 30), avg(age) FILTER (WHERE age < 50), sum(age) FILTER (WHERE id > 10) FROM users GROUP BY city ORDER BY 1', mode: 'both', ordered: true });
  // variance and standard deviation: integer, numeric and float input, groups, FILTER, HAVING on a listed one
  add({ sql: 'SELECT stddev(age), variance(age), stddev_pop(age), var_pop(age), var_samp(age), stddev_samp(age) FROM users', mode: 'both' });
  add({ sql: 'SELECT stddev(amount), var_pop(amount), variance(amount * 3), stddev_pop(id) FROM orders', mode: 'both' });
  add({ sql: 'SELECT city, stddev(age) AS s, variance(age) FILTER (WHERE age > 20), var_pop(age) FROM users GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'SELECT city, stddev(age) FROM users GROUP BY city HAVING stddev(age) > 1 ORDER BY city', p: { text: 'SELECT city, stddev(age) FROM users GROUP BY city HAVING stddev(age) > $1 ORDER BY city', values: [1] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT stddev(amount::float8) AS sf, var_samp(age::float4) AS vf, var_pop(amount::float8) FROM orders o JOIN users u ON u.id = o.user_id', mode: 'both', floatCols: [0, 1, 2] });
  add({ sql: 'SELECT user_id % 3 AS b, stddev(amount) FROM orders GROUP BY 1 ORDER BY 2 DESC NULLS LAST, 1', mode: 'both', ordered: true });
  add({ sql: 'SELECT stddev(amount / 7), var_samp(amount * 1000003), stddev_pop(age * 1.5) FROM orders o JOIN users u ON u.id = o.user_id', mode: 'both' });
  // sum / avg (DISTINCT): the union of the shards' distinct values (equal ages live on several shards)
  add({ sql: 'SELECT sum(DISTINCT age), avg(DISTINCT age), count(DISTINCT age), sum(age), max(DISTINCT age), min(DISTINCT name) FROM users', mode: 'both' });
  add({ sql: 'SELECT sum(DISTINCT amount), avg(DISTINCT amount), sum(DISTINCT amount::float8) AS f8, sum(DISTINCT amount::float4) AS f4, avg(DISTINCT amount::float4) AS a4, sum(DISTINCT user_id) FROM orders', mode: 'both' });
  add({ sql: 'SELECT city, sum(DISTINCT age) AS s, avg(DISTINCT age) FILTER (WHERE age > 20) FROM users GROUP BY city HAVING sum(DISTINCT age) > 10 ORDER BY s DESC, city', mode: 'both', ordered: true });
  // bitwise aggregates of integers, jsonb_agg without ORDER BY inside (element order unspecified, as on one server)
  add({ sql: 'SELECT bit_and(age), bit_or(age), bit_xor(age), bit_or(id), bit_and(age::int2), bit_or(DISTINCT age) FROM users', mode: 'both' });
  add({ sql: 'SELECT city, bit_xor(age) AS x, bit_and(id) FROM users GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'SELECT jsonb_agg(age) FROM users WHERE age > 30', mode: 'both', listCols: [0] });
  add({ sql: "SELECT city, jsonb_agg(jsonb_build_object('n', name)) AS people, count(*) FROM users GROUP BY city ORDER BY city NULLS FIRST", mode: 'both', ordered: true, listCols: [1] });
  add({ sql: 'SELECT jsonb_agg(age) FROM users WHERE age > 1000', mode: 'both' });
  add({ sql: 'SELECT count(DISTINCT city) FROM users', mode: 'both' });
  add({ sql: 'SELECT count(DISTINCT amount), count(DISTINCT created) FILTER (WHERE amount > 20), count(*) FROM orders', mode: 'both' });
  add({ sql: 'SELECT city, count(DISTINCT age) AS ages FROM users GROUP BY city HAVING count(DISTINCT age) > 1 ORDER BY ages DESC, city', mode: 'both', ordered: true });
  // TypeORM getCount / getManyAndCount
  add({ sql: 'SELECT COUNT(DISTINCT("User"."id")) AS "cnt" FROM "users" "User" WHERE "User"."age" > 30', p: { text: 'SELECT COUNT(DISTINCT("User"."id")) AS "cnt" FROM "users" "User" WHERE "User"."age" > $1', values: [30] }, mode: 'both' });
  // string_agg / array_agg without ORDER BY inside (elements compared as sets; the binary
  // variants run where every element is the same)
  add({ sql: "SELECT city, string_agg(name, ', '), array_agg(age), array_agg(id) FILTER (WHERE age > 30) FROM users GROUP BY city ORDER BY city NULLS FIRST", mode: 'both', ordered: true, listCols: [1, 2, 3] });
  add({ sql: 'SELECT string_agg(name, $1) FROM users WHERE age > 40', p: { text: 'SELECT string_agg(name, $1) FROM users WHERE age > $2', values: [';', 40] }, mode: 'both', listCols: [0] });
  add({ sql: "SELECT array_agg(1), string_agg('x', ''), array_agg(ARRAY[2, 3]), count(*) FROM users WHERE id IN (1, 2, 3, 4, 5, 6)", mode: 'both' });
  // aggregates cast to a type (count(*)::int is what node-postgres users write to get a number)
  add({ sql: 'SELECT count(*)::int, sum(age)::int, max(age)::text, min(name)::varchar(3), CAST(count(age) AS bigint) FROM users', mode: 'both' });
  add({ sql: 'SELECT count(*)::int AS n, sum(amount)::numeric(12,1), sum(amount)::int, sum(amount)::float8, max(amount)::int, min(created)::text FROM orders', mode: 'both' });
  add({ sql: 'SELECT city, count(*)::int AS n, sum(age)::bigint, max(name)::text FROM users GROUP BY city ORDER BY 2 DESC, 1 NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'SELECT user_id, count(*)::numeric FROM orders GROUP BY user_id ORDER BY count(*)::numeric DESC, user_id LIMIT 4', mode: 'both', ordered: true });
  add({ sql: 'SELECT sum(age)::int, max(age)::int FROM users WHERE id > 100000', mode: 'both' });
  add({ sql: 'SELECT city, count(*)::int FROM users GROUP BY city HAVING count(*)::int > 1 ORDER BY 1', mode: 'both', ordered: true });
  add({ sql: "SELECT id, array_agg(name), string_agg(city, '; ') FROM users WHERE id < 10 GROUP BY id ORDER BY id", mode: 'both', ordered: true });
  // ---- writes by key and without key, RETURNING
  add({ sql: 'UPDATE users SET age = age + 1 WHERE id = 3 RETURNING id, age' });
  add({ sql: '', p: { text: 'UPDATE users SET age = age + $2 WHERE id = $1 RETURNING id, age', values: [4, 2] } });
  add({ sql: "UPDATE users SET name = 'x' || name WHERE age > 50" });
  add({ sql: "UPDATE users SET city = 'Oslo' WHERE id IN (11, 12, 13) RETURNING id, city" });
  add({ sql: 'UPDATE orders SET amount = amount + 1 WHERE amount > 95 RETURNING user_id, id, amount' });
  add({ sql: 'DELETE FROM orders WHERE user_id = 7 AND id = 1 RETURNING *' });
  add({ sql: '', p: { text: 'DELETE FROM orders WHERE user_id = $1 RETURNING id', values: [8] } });
  add({ sql: 'DELETE FROM orders WHERE amount < 10' });
  add({ sql: 'DELETE FROM events WHERE payload IS NULL' });
  add({ sql: "INSERT INTO users VALUES (100, 'z', 33, 'Rome') RETURNING *" });
  add({ sql: "INSERT INTO users VALUES (100, 'z2', 34, 'Oslo') ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING id, name" });
  add({ sql: "INSERT INTO users VALUES (101, 'n', 1, NULL) ON CONFLICT DO NOTHING" });
  add({ sql: 'INSERT INTO orders SELECT id + 1000, user_id, amount, created FROM orders WHERE user_id = 9' });
  add({ sql: 'INSERT INTO orders (id, user_id, amount, created) SELECT id + 2000, user_id, amount, created FROM orders WHERE amount > 90' });
  add({ sql: 'INSERT INTO users SELECT * FROM users WHERE id = 5 ON CONFLICT (id) DO NOTHING' });
  add({ sql: 'UPDATE cities SET country = lower(country) WHERE name = \'Oslo\'' });
  add({ sql: 'DELETE FROM orders o USING users u WHERE o.user_id = u.id AND u.age IS NULL' });
  add({ sql: 'SELECT * FROM users ORDER BY id', mode: 'both', ordered: true });
  add({ sql: 'SELECT * FROM orders ORDER BY user_id, id', mode: 'both', ordered: true });
  add({ sql: 'SELECT * FROM events ORDER BY key, seq', mode: 'both', ordered: true });
  add({ sql: 'SELECT * FROM cities ORDER BY name', mode: 'both', ordered: true });
  // ---- errors
  add({ sql: "INSERT INTO users VALUES (1, 'dup', 1, 'Paris')" });                                  // 23505
  add({ sql: '', p: { text: 'INSERT INTO users (id, name) VALUES ($1, $2)', values: [2, 'dup'] } }); // 23505
  add({ sql: 'SELECT 1/0' });                                                                        // 22012
  add({ sql: 'SELECT id / 0 FROM users WHERE id = 2', mode: 'both' });                             // 22012
  add({ sql: 'SELECT age / (age - age) FROM users', mode: 'both' });                               // 22012 on every shard
  add({ sql: 'SELEC 1' });                                                                            // 42601
  add({ sql: 'SELECT * FROM users WHERE' });                                                          // 42601
  add({ sql: 'SELECT * FROM nosuch' });                                                               // 42P01
  add({ sql: 'SELECT nosuch FROM users', mode: 'both' });                                           // 42703
  add({ sql: 'SELECT nosuch FROM users WHERE id = 1', mode: 'both' });                              // 42703
  add({ sql: 'UPDATE users SET nosuch = 1' });                                                        // 42703
  add({ sql: 'SELECT count(*) FROM users', mode: 'both' });

  // ---- unsupported by design (0A000, message names the form)
  const U = (sql: string, re: RegExp, mode: Step['mode'] = 'both'): void => add({ sql, unsupported: re, mode });
  // refused before session 22 (the reason was `_was`); now answered by the split into a merged inner query and an outer one (finalize.ts)
  const F = (sql: string, _was: RegExp): void => { add({ sql, mode: 'both' }); };
  // refused before session 22 (the reason was `_was`); now answered by running the subquery first (subqueries.ts)
  const SQ = (sql: string, _was: RegExp): void => { add({ sql, mode: 'both' }); };
  // refused before session 23 (the reason was `_was`); now answered on one shard over the rows of its
  // tables read first (materialize.ts): those columns come from VALUES (no source column)
  const M = (sql: string, _was: RegExp): void => { add({ sql, mode: 'both' }); };
  // a select list of subqueries that merge as aggregates (SQLAlchemy's exists(), counts in one round trip)
  add({ sql: 'SELECT (SELECT sum(age) FROM users), (SELECT sum(amount) FROM orders)', mode: 'both' });
  add({ sql: "SELECT EXISTS (SELECT 1 FROM users WHERE name = 'u7') AS anon_1", p: { text: 'SELECT EXISTS (SELECT 1 FROM users WHERE name = $1) AS anon_1', values: ['u7'] } });
  add({ sql: "SELECT EXISTS (SELECT * FROM users WHERE name = 'nobody'), NOT EXISTS (SELECT 1 FROM orders WHERE amount > 1000), NOT EXISTS (SELECT 1 FROM users WHERE age > 20)", mode: 'both' });
  add({ sql: 'SELECT (SELECT count(*) FROM users WHERE age > 30) AS n, (SELECT max(amount) FROM orders) AS m, (SELECT min(name) FROM users) AS first', mode: 'both' });
  SQ('SELECT EXISTS (SELECT city FROM users GROUP BY city HAVING count(*) > 3)', /subquery over sharded table "users"/);
  SQ('SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM cities)', /subquery over sharded table|reference/);
  SQ('SELECT (SELECT avg(age) FROM users)', /subquery over sharded table "users"/);
  SQ('SELECT * FROM users WHERE age > (SELECT avg(age) FROM users)', /subquery over sharded table/);
  // uncorrelated subqueries not joined on the key: run first, their rows written in (session 22, router/subqueries.ts)
  add({ sql: "SELECT name FROM users WHERE age IN (SELECT age FROM users WHERE city = 'Rome') ORDER BY name", mode: 'both', ordered: true });
  add({ sql: 'SELECT count(*), sum(amount) FROM orders WHERE amount > (SELECT max(age) FROM users) OR user_id = ANY (ARRAY(SELECT id FROM users WHERE age > 50))', mode: 'both' });
  add({ sql: 'SELECT name FROM users WHERE NOT EXISTS (SELECT 1 FROM orders WHERE orders.amount > 1000000) AND age > (SELECT avg(age) FROM users WHERE age > 1000) ORDER BY name', mode: 'both', ordered: true });
  add({ sql: 'SELECT city, count(*) FROM users WHERE age < (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY age) FROM users) GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'SELECT (SELECT round(avg(amount), 1) FROM orders) AS mean, (SELECT count(*) FROM users WHERE age > (SELECT avg(age) FROM users)) AS older', mode: 'both' });
  add({ sql: "SELECT name FROM users WHERE age = (SELECT age FROM users WHERE city = 'Paris')", mode: 'both' });
  add({ sql: 'SELECT id FROM users WHERE id IN (SELECT user_id FROM orders WHERE amount > (SELECT avg(amount) FROM orders)) ORDER BY id', mode: 'both', ordered: true });
  // CTEs over sharded tables: one used once is a derived table; others run first (as PostgreSQL materializes them)
  add({ sql: 'WITH big AS (SELECT * FROM orders WHERE amount > 10) SELECT user_id % 3 AS r, count(*), sum(amount) FROM big GROUP BY 1 ORDER BY 1', mode: 'both', ordered: true });
  add({ sql: 'WITH c AS (SELECT city, count(*) AS n FROM users GROUP BY city) SELECT city, n FROM c WHERE n > 1 ORDER BY city NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'WITH a AS (SELECT id, age FROM users WHERE age > 40) SELECT count(*), sum(b.age) FROM a JOIN a b ON a.id = b.id', mode: 'both' });
  add({ sql: 'WITH m AS MATERIALIZED (SELECT max(amount) AS x FROM orders) SELECT count(*) FROM orders, m WHERE amount = m.x', mode: 'both' });
  add({ sql: "SELECT name FROM users WHERE age > (SELECT avg(age) FROM users WHERE city = 'Paris') ORDER BY name",
    p: { text: 'SELECT name FROM users WHERE age > (SELECT avg(age) FROM users WHERE city = $1) ORDER BY name', values: ['Paris'] }, mode: 'both', ordered: true });
  M('SELECT name, (SELECT count(*) FROM users u WHERE u.city = c.name) FROM cities c', /subquery over sharded table "users"/);
  // session 23: reads no merge answers run on one shard over the rows of their tables read first
  // (materialize.ts); conditions of a table's own columns go into its read, never across an outer join
  const RF = (sql: string, ordered = true): void => { add({ sql, mode: 'both', ordered }); };
  RF('SELECT u.name, o.amount FROM users u JOIN orders o ON o.id = u.id WHERE u.age > 40 AND o.amount > 20 ORDER BY 1, 2');
  RF('SELECT u.city, count(*), sum(o.amount) FROM users u LEFT JOIN orders o ON o.id = u.id AND o.amount > 30 WHERE o.amount IS NULL OR u.age BETWEEN 30 AND 50 GROUP BY u.city ORDER BY 1 NULLS FIRST');
  RF('SELECT u.id, o.id AS oid FROM users u LEFT JOIN orders o ON o.id = u.id WHERE o.amount IS NULL AND u.id < 20 ORDER BY 1, 2');
  // an outer join that keeps the rows of a reference table: each shard kept them all (fixed in session 23)
  RF('SELECT c.name, count(u.id), min(u.age) FROM cities c LEFT JOIN users u ON u.city = c.name GROUP BY c.name ORDER BY 1');
  RF('SELECT c.name, u.id FROM users u RIGHT JOIN cities c ON u.city = c.name AND u.age > 50 ORDER BY 1, 2 NULLS FIRST');
  RF('SELECT c.name, u.id FROM cities c FULL JOIN users u ON u.city = c.name AND u.id < 4 WHERE u.id IS NULL OR u.id < 4 ORDER BY 1 NULLS FIRST, 2 NULLS FIRST');
  RF('SELECT u.id, o.user_id FROM orders o RIGHT JOIN users u ON o.id = u.id + 100 WHERE o.created IS NULL AND u.age BETWEEN 20 AND 40 ORDER BY 1, 2');
  RF('SELECT id, name, rank() OVER (ORDER BY age DESC NULLS LAST, id) FROM users WHERE age BETWEEN 25 AND 45 AND city IS NOT NULL ORDER BY 3');
  RF("SELECT id, lag(name) OVER w, sum(age) OVER (w ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM users WHERE (city = 'Paris' OR city = 'Rome') AND id < 25 WINDOW w AS (ORDER BY id) ORDER BY id");
  RF('SELECT city FROM users WHERE age > 30 INTERSECT SELECT name FROM cities ORDER BY 1');
  RF('SELECT user_id FROM orders EXCEPT SELECT id FROM users WHERE age > 30 ORDER BY 1');
  RF('(SELECT id FROM users WHERE age > 50 ORDER BY id LIMIT 2) UNION ALL (SELECT user_id FROM orders ORDER BY amount DESC, id LIMIT 2) ORDER BY 1');
  RF('SELECT max(id) FROM users UNION ALL SELECT count(*) FROM orders', false);
  RF('SELECT city, age > 40 AS old, count(*) FROM users GROUP BY ROLLUP (city, age > 40) ORDER BY 1 NULLS FIRST, 2 NULLS FIRST', false);
  RF('SELECT city, count(*), grouping(city) FROM users GROUP BY GROUPING SETS ((city), ()) ORDER BY 1 NULLS FIRST, 3');
  RF('SELECT u.name, (SELECT count(*) FROM orders o WHERE o.id = u.id) FROM users u WHERE u.id < 10 ORDER BY 1');
  RF('SELECT u.id, o.amount FROM users u JOIN orders o ON o.id = u.id AND o.amount > 30 AND u.age < 45 ORDER BY 1, 2');
  RF('SELECT u.id, o.amount FROM users u LEFT JOIN orders o ON o.id = u.id AND o.amount BETWEEN 20 AND 60 AND u.age > 30 WHERE u.id < 25 ORDER BY 1, 2 NULLS FIRST');
  // Prisma's count with skip / take (columns named "public"."users"."id"): the derived table runs first
  add({ sql: 'SELECT COUNT(*) FROM (SELECT "public"."users"."id" FROM "public"."users" WHERE 1=1 ORDER BY "public"."users"."id" ASC OFFSET 5) AS "sub"',
    p: { text: 'SELECT COUNT(*) FROM (SELECT "public"."users"."id" FROM "public"."users" WHERE 1=1 ORDER BY "public"."users"."id" ASC LIMIT $1 OFFSET $2) AS "sub"', values: [10, 5] }, mode: 'both' });
  RF('SELECT u.id, x.amount FROM users u, LATERAL (SELECT amount FROM orders o WHERE o.id = u.id ORDER BY amount DESC LIMIT 1) x ORDER BY 1');
  RF('WITH RECURSIVE r(id, depth) AS (SELECT id, 1 FROM users WHERE id = 1 UNION ALL SELECT u.id, r.depth + 1 FROM users u JOIN r ON u.id = r.id + 1 WHERE r.depth < 5) SELECT * FROM r ORDER BY 1');
  RF('SELECT DISTINCT ON (city) city, name, count(*) OVER (PARTITION BY city) FROM users ORDER BY city, name');
  RF('SELECT count(*) FROM users WHERE id IN (SELECT id FROM users ORDER BY age DESC NULLS LAST, id LIMIT 3) OR age IS NULL', false);
  RF('SELECT o.user_id, count(*) FROM orders o JOIN (SELECT DISTINCT city, age FROM users) d ON d.age = o.id GROUP BY 1 ORDER BY 1');
  add({ sql: 'SELECT u.name, o.amount FROM users u JOIN orders o ON o.id = u.id WHERE u.age > 40 AND o.amount > 20 ORDER BY 1, 2',
    p: { text: 'SELECT u.name, o.amount FROM users u JOIN orders o ON o.id = u.id WHERE u.age > $1 AND o.amount > $2 ORDER BY 1, 2', values: [40, 20] }, ordered: true });
  add({ sql: 'SELECT id, row_number() OVER (ORDER BY name) FROM users WHERE age > 30 ORDER BY 2',
    p: { text: 'SELECT id, row_number() OVER (ORDER BY name) FROM users WHERE age > $1 ORDER BY 2', values: [30] }, ordered: true });
  // a character(n) column read first keeps its length (format_type with the modifier)
  add({ sql: 'SELECT id FROM users WHERE name::char(5) IN (SELECT name::char(5) FROM users WHERE age > 45) ORDER BY id', mode: 'both', ordered: true });
  RF("SELECT name::char(6) AS c6, amount FROM users u JOIN orders o ON o.id = u.id WHERE u.id < 5 ORDER BY 1, 2");
  // expressions over aggregates: an inner query merged, the rest evaluated by a server (session 22, router/finalize.ts)
  add({ sql: 'SELECT sum(DISTINCT age) + 1 FROM users', mode: 'both' });
  add({ sql: 'SELECT city, round(avg(age), 2), count(*) * 10 FROM users WHERE age > 21 GROUP BY city HAVING count(*) > 1 ORDER BY 2 DESC NULLS LAST, city LIMIT 3',
    p: { text: 'SELECT city, round(avg(age), $1), count(*) * 10 FROM users WHERE age > $2 GROUP BY city HAVING count(*) > $3 ORDER BY 2 DESC NULLS LAST, city LIMIT $4', values: [2, 21, 1, 3] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT city, round(avg(age), 2) AS avg_age, coalesce(sum(age), 0) * 100 / count(*) AS pct, max(age) - min(age) FROM users GROUP BY city ORDER BY avg_age DESC NULLS LAST, city NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'SELECT count(*) FILTER (WHERE age > 30) * 1.0 / count(*), avg(age)::numeric(10,2), coalesce(sum(age) FILTER (WHERE age > 1000), 0) FROM users', mode: 'both' });
  add({ sql: "SELECT coalesce(city, '?') || ': ' || count(*) FROM users GROUP BY city ORDER BY 1", mode: 'both', ordered: true });
  add({ sql: 'SELECT user_id, sum(amount) / nullif(count(*), 0) AS mean FROM orders GROUP BY user_id HAVING sum(amount) * 2 > 100 ORDER BY sum(amount) DESC, user_id LIMIT 4 OFFSET 1', mode: 'both', ordered: true });
  add({ sql: 'SELECT city, rank() OVER (ORDER BY count(*) DESC, city NULLS FIRST), sum(sum(age)) OVER () FROM users GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'SELECT DISTINCT count(*) > 1 FROM users GROUP BY city', mode: 'both' });
  add({ sql: "SELECT to_char(date_trunc('month', created), 'YYYY-MM') AS month, sum(amount)::int FROM orders GROUP BY date_trunc('month', created) ORDER BY date_trunc('month', created)", mode: 'both', ordered: true });
  add({ sql: 'SELECT user_id % 3 AS r, (avg(amount) * 2)::numeric(12,3) FROM orders WHERE amount > 10 GROUP BY user_id % 3 ORDER BY r', mode: 'both', ordered: true });
  add({ sql: 'SELECT city, count(*) + 1 FROM users WHERE age > 1000 GROUP BY city', mode: 'both' });
  add({ sql: 'SELECT count(*) + 1, sum(age) IS NULL FROM users WHERE age > 1000', mode: 'both' });
  add({ sql: 'SELECT sum(age) / 0 FROM users', mode: 'both' });
  M('SELECT city, name, count(*) + 1 FROM users GROUP BY city', /expressions over aggregates across shards/);
  F('SELECT city FROM users GROUP BY city HAVING avg(DISTINCT age) > 1', /avg\(DISTINCT\) in HAVING that is not in the select list/);
  M('SELECT sum(DISTINCT age ORDER BY age) FROM users', /sum\(DISTINCT\) across shards|aggregate sum/);
  M('SELECT u.name, o.amount FROM users u JOIN orders o ON o.id = u.id WHERE u.id = 3', /join of sharded tables \("users", "orders"\) not on their shard keys/);
  add({ sql: 'SELECT u.name, o.amount FROM users u JOIN orders o ON o.id = u.id WHERE u.id = 3', p: { text: 'SELECT u.name, o.amount FROM users u JOIN orders o ON o.id = u.id WHERE u.id = $1', values: [3] } });
  M('SELECT id, row_number() OVER (ORDER BY id) FROM users', /window functions across shards/);
  // grouped by the shard key: every group on one shard, any aggregate exact there (session 21)
  add({ sql: "SELECT user_id, string_agg(id::text, ',' ORDER BY id DESC), count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) FROM orders GROUP BY user_id ORDER BY user_id", mode: 'both', ordered: true });
  add({ sql: 'SELECT user_id, json_object_agg(id, amount ORDER BY id), corr(amount, id) FROM orders GROUP BY 1 HAVING count(*) > 1 ORDER BY 1', mode: 'both', ordered: true });
  add({ sql: 'SELECT user_id AS u, array_agg(DISTINCT amount ORDER BY amount) FROM orders GROUP BY u ORDER BY count(*) DESC, u LIMIT 5', p: { text: 'SELECT user_id AS u, array_agg(DISTINCT amount ORDER BY amount) FROM orders GROUP BY u ORDER BY count(*) DESC, u LIMIT $1', values: [5] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT key, seq, count(*), mode() WITHIN GROUP (ORDER BY payload) FROM events GROUP BY key, seq', mode: 'both' });
  add({ sql: 'SELECT count(*), min(amount) FROM orders GROUP BY user_id HAVING sum(amount) > 50', mode: 'both' });
  add({ sql: "SELECT city, string_agg(name, ',' ORDER BY name) FROM users GROUP BY city ORDER BY 1", mode: 'both', ordered: true });
  // windows partitioned by the shard key: each partition is on one shard (session 21)
  add({ sql: 'SELECT user_id, id, amount, row_number() OVER (PARTITION BY user_id ORDER BY id) AS rn, sum(amount) OVER (PARTITION BY user_id) AS total FROM orders ORDER BY user_id, id', mode: 'both', ordered: true });
  add({ sql: 'SELECT user_id, id, rank() OVER w, lag(amount) OVER (w ORDER BY id) FROM orders WINDOW w AS (PARTITION BY user_id, created) ORDER BY 1, 2', mode: 'both', ordered: true });
  add({ sql: 'SELECT o.user_id, o.id, first_value(o.amount) OVER (PARTITION BY o.user_id ORDER BY o.amount DESC, o.id) FROM orders o WHERE o.amount > 10 ORDER BY 3 DESC, 1, 2 LIMIT 7', p: { text: 'SELECT o.user_id, o.id, first_value(o.amount) OVER (PARTITION BY o.user_id ORDER BY o.amount DESC, o.id) FROM orders o WHERE o.amount > $1 ORDER BY 3 DESC, 1, 2 LIMIT $2', values: [10, 7] }, mode: 'both', ordered: true });
  add({ sql: 'SELECT key, seq, count(*) OVER (PARTITION BY key) FROM events', mode: 'both' });
  add({ sql: 'SELECT user_id, id FROM orders ORDER BY row_number() OVER (PARTITION BY user_id ORDER BY id DESC), user_id, id LIMIT 5', mode: 'both', ordered: true });
  M('SELECT user_id, row_number() OVER (PARTITION BY amount ORDER BY id, user_id, created) FROM orders', /window functions across shards/);
  // ... also in a derived table: the latest row per key, the top 2 per key
  add({ sql: 'SELECT * FROM (SELECT o.user_id, o.id, o.amount, row_number() OVER (PARTITION BY user_id ORDER BY id DESC) AS rn FROM orders o) s WHERE rn = 1 ORDER BY user_id', mode: 'both', ordered: true });
  add({ sql: 'SELECT user_id, amount FROM (SELECT user_id, amount, rank() OVER w AS r FROM orders WINDOW w AS (PARTITION BY user_id ORDER BY amount DESC, id)) x WHERE r <= 2 ORDER BY user_id, amount DESC LIMIT 10', mode: 'both', ordered: true });
  add({ sql: 'SELECT count(*), sum(n) FROM (SELECT row_number() OVER (PARTITION BY user_id) AS n FROM orders) s', mode: 'both' });
  M('SELECT count(*) FROM (SELECT row_number() OVER (ORDER BY id) FROM orders) s', /not joined to the outer query on the shard key|window/);
  M('SELECT user_id, row_number() OVER w FROM orders WINDOW w AS (ORDER BY id, user_id, created, amount)', /window functions across shards/);
  add({ sql: 'SELECT user_id, count(*), rank() OVER (PARTITION BY user_id ORDER BY count(*)) FROM orders GROUP BY user_id ORDER BY 1', mode: 'both', ordered: true });
  F('SELECT created, count(*), rank() OVER (PARTITION BY created) FROM orders GROUP BY created', /window functions across shards/);
  add({ sql: 'SELECT user_id, created, count(*) OVER (PARTITION BY user_id) FROM orders GROUP BY created, user_id HAVING count(*) > 0', mode: 'both' });
  M('SELECT id FROM users UNION SELECT user_id FROM orders', /UNION across shards/);
  M('SELECT id FROM users UNION ALL SELECT 1', /set operations mixing sharded and non-sharded/);
  M('SELECT u.id FROM users u JOIN orders o ON o.id = u.id', /cross-shard join/);
  add({ sql: 'SELECT count(*) FROM (SELECT * FROM users WHERE age > 30) x', mode: 'both' });   // a derived table whose rows are each from one shard: merged (was refused)
  // string_agg / array_agg with ORDER BY inside: the shards' lists merged by their sort keys (session 21)
  add({ sql: "SELECT string_agg(name, ', ' ORDER BY name) FROM users", mode: 'both' });
  add({ sql: "SELECT city, string_agg(name, ';' ORDER BY age DESC NULLS LAST, name), array_agg(id ORDER BY id DESC) FROM users GROUP BY city ORDER BY city NULLS FIRST", mode: 'both', ordered: true });
  add({ sql: 'SELECT array_agg(age ORDER BY age NULLS FIRST) FILTER (WHERE id < 20), array_agg(name ORDER BY upper(name) DESC) FROM users', mode: 'both' });
  add({ sql: 'SELECT string_agg(name, $1 ORDER BY id) FROM users WHERE age > $2', p: { text: 'SELECT string_agg(name, $1 ORDER BY id) FROM users WHERE age > $2', values: [' | ', 30] }, mode: 'both' });
  add({ sql: 'SELECT array_agg(amount ORDER BY created, id, amount), string_agg(id::text, \',\' ORDER BY amount DESC, id, user_id) FROM orders', mode: 'both' });
  add({ sql: "SELECT string_agg(name, ',' ORDER BY name) FROM users WHERE age > 1000", mode: 'both' });
  // ... and with DISTINCT inside: the union of the shards' distinct values, in order, once each
  add({ sql: "SELECT string_agg(DISTINCT name, ',' ORDER BY name), array_agg(DISTINCT city), string_agg(DISTINCT city, ', ') FROM users", mode: 'both' });
  add({ sql: 'SELECT array_agg(DISTINCT age ORDER BY age DESC), string_agg(DISTINCT city, $1 ORDER BY city DESC) FROM users', p: { text: 'SELECT array_agg(DISTINCT age ORDER BY age DESC), string_agg(DISTINCT city, $1 ORDER BY city DESC) FROM users', values: [' / '] }, mode: 'both' });
  add({ sql: 'SELECT city, array_agg(DISTINCT age) FILTER (WHERE age > 30), array_agg(DISTINCT amount) FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY city ORDER BY 1 NULLS FIRST', mode: 'both', ordered: true });
  F("SELECT city FROM users GROUP BY city HAVING string_agg(name, ',' ORDER BY name) <> ''", /in HAVING across shards/);
  F('SELECT city FROM users GROUP BY city ORDER BY stddev(age)', /ORDER BY a variance or standard deviation not in the select list across shards/);
  F('SELECT city FROM users GROUP BY city HAVING variance(age) > 1', /variance or standard deviation in HAVING that is not in the select list/);
  M('SELECT stddev(DISTINCT age) FROM users', /aggregate stddev across shards/);
  M('SELECT jsonb_agg(age ORDER BY age) FROM users', /aggregate jsonb_agg across shards/);
  // json_agg: ", \n " between arrays and composites, ", " between the rest (session 21)
  add({ sql: 'SELECT json_agg(age) FROM users WHERE age > 30', mode: 'both', listCols: [0] });
  add({ sql: 'SELECT city, json_agg(u) AS people, count(*) FROM users u GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true, listCols: [1] });
  add({ sql: 'SELECT json_agg(ARRAY[id, age]) FILTER (WHERE age > 40), json_agg(jsonb_build_object(\'n\', name)) FILTER (WHERE id < 9) FROM users', mode: 'both', listCols: [0, 1] });
  add({ sql: 'SELECT json_agg(age) FROM users WHERE age > 1000', mode: 'both' });
  M('SELECT json_agg(age ORDER BY age) FROM users', /aggregate json_agg across shards/);
  // json_object_agg (members together) and jsonb_object_agg (one per key, jsonb's key order) (session 21)
  add({ sql: 'SELECT json_object_agg(id, age) FROM users WHERE id < 20', mode: 'both', listCols: [0] });
  add({ sql: 'SELECT jsonb_object_agg(id, name), jsonb_object_agg(city, 1) FILTER (WHERE city IS NOT NULL) FROM users', mode: 'both' });
  add({ sql: 'SELECT city, jsonb_object_agg(name, age) FILTER (WHERE age > 30), json_object_agg(name, id) FROM users GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true, listCols: [2] });
  add({ sql: 'SELECT jsonb_object_agg(id, name), json_object_agg(id, name) FROM users WHERE id < 0', mode: 'both' });
  M('SELECT jsonb_object_agg(id, name ORDER BY id) FROM users', /aggregate jsonb_object_agg across shards/);
  // corr / covar / regr_*: the shards' Youngs-Cramer states combined (float: compared to 12 digits) (session 21)
  add({ sql: 'SELECT corr(age, id), covar_pop(age, id), covar_samp(age, id), regr_slope(age, id), regr_intercept(age, id), regr_r2(age, id), regr_count(age, id) FROM users', mode: 'both', floatCols: [0, 1, 2, 3, 4, 5] });
  add({ sql: 'SELECT city, regr_avgx(age, id), regr_avgy(age, id), regr_sxx(age, id), regr_syy(age, id), regr_sxy(age, id) FILTER (WHERE id < 25), corr(amount, id) FROM users u LEFT JOIN LATERAL (SELECT 1.5::float8 AS amount) x ON true GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true, floatCols: [1, 2, 3, 4, 5, 6] });
  add({ sql: 'SELECT corr(age, id), covar_samp(age, id), regr_slope(age, age) FROM users WHERE id IN (1, 2)', mode: 'both', floatCols: [0, 1, 2] });
  F('SELECT city FROM users GROUP BY city HAVING corr(age, id) > 0', /corr\(\) in HAVING across shards/);
  // percentile_cont / percentile_disc / mode(): every shard's sorted values merged (session 21)
  add({ sql: 'SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY age), percentile_disc(0.25) WITHIN GROUP (ORDER BY age DESC), mode() WITHIN GROUP (ORDER BY city) FROM users', mode: 'both' });
  add({ sql: 'SELECT city, percentile_cont(0.9) WITHIN GROUP (ORDER BY age) FILTER (WHERE id > 3) AS p90, percentile_disc(0.5) WITHIN GROUP (ORDER BY name) FROM users GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true });
  add({ sql: 'SELECT percentile_disc($1) WITHIN GROUP (ORDER BY id) FROM users', p: { text: 'SELECT percentile_disc($1) WITHIN GROUP (ORDER BY id) FROM users', values: [0.3] } });
  add({ sql: 'SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY amount), percentile_disc(0.5) WITHIN GROUP (ORDER BY amount), percentile_cont(0) WITHIN GROUP (ORDER BY amount), percentile_disc(1) WITHIN GROUP (ORDER BY created) FROM orders', mode: 'both' });
  add({ sql: 'SELECT percentile_cont(1.5) WITHIN GROUP (ORDER BY age) FROM users', mode: 'both' });
  add({ sql: 'SELECT mode() WITHIN GROUP (ORDER BY name DESC) FROM users', mode: 'both' });
  add({ sql: 'SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY age), mode() WITHIN GROUP (ORDER BY age) FROM users WHERE age > 1000', mode: 'both' });
  add({ sql: 'SELECT percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY age), percentile_disc(ARRAY[0, 0.5, 1]) WITHIN GROUP (ORDER BY name) FROM users', mode: 'both' });
  add({ sql: 'SELECT city, percentile_disc(ARRAY[0.1, 0.9]) WITHIN GROUP (ORDER BY age DESC) FROM users GROUP BY city ORDER BY city NULLS FIRST', mode: 'both', ordered: true });
  M('SELECT percentile_cont(0.1 + 0.2) WITHIN GROUP (ORDER BY age) FROM users', /percentile_cont of an expression fraction across shards/);
  F('SELECT city FROM users GROUP BY city HAVING bit_or(age) > 1', /bit_or in HAVING across shards/);
  add({ sql: 'SELECT avg(n)::numeric(10,3) FROM uuids', mode: 'both' });
  F('SELECT count(*)::float8 FROM users', /count\(\) cast to float8 across shards/);
  // each shard would build these from its own rows (a view pgring then read from one shard gave a third of the rows)
  // a row-local view that shows the key needs the definition in ZooKeeper (this proxy has a file;
  // atomic-statements.test.ts runs views with ZooKeeper); one that combines rows is refused anyway
  U('CREATE VIEW users_v AS SELECT id, name FROM users WHERE age > 30', /CREATE VIEW over sharded tables without ZooKeeper/, 'simple');
  add({ sql: 'DROP VIEW IF EXISTS users_v', mode: 'simple' });   // made (and registered) where the definition is in ZooKeeper
  U('CREATE VIEW users_c AS SELECT city, count(*) FROM users GROUP BY city', /CREATE VIEW over sharded table "users"/, 'simple');
  // unique only per shard without the key: a duplicate name on another shard would get through
  U('CREATE UNIQUE INDEX users_name_u ON users (name)', /a unique index on sharded table "users" that does not include its shard key column "id"/, 'simple');
  U('ALTER TABLE users ADD CONSTRAINT users_city_u UNIQUE (city)', /a UNIQUE constraint on sharded table "users" that does not include its shard key column "id"/);
  U('ALTER TABLE users ADD COLUMN email text UNIQUE', /a UNIQUE constraint on sharded table "users"/, 'simple');
  add({ sql: 'CREATE UNIQUE INDEX users_id_name_u ON users (id, name)', mode: 'simple' });
  add({ sql: 'DROP INDEX users_id_name_u', mode: 'simple' });
  // derived tables over sharded tables (SQLAlchemy's Query.count(), Django's count of a distinct
  // queryset, paginators): when each derived row comes from one shard, the outer query merges
  add({ sql: 'SELECT count(*) FROM (SELECT id FROM users WHERE age > 30) s', mode: 'both' });
  add({ sql: "SELECT count(*) AS count_1 FROM (SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.city = 'Oslo') AS anon_1", p: { text: 'SELECT count(*) AS count_1 FROM (SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.city = $1) AS anon_1', values: ['Oslo'] } });
  add({ sql: 'SELECT max(a.age), count(*), sum(a.amount) FROM (SELECT u.age, o.amount FROM users u JOIN orders o ON o.user_id = u.id) a', mode: 'both' });
  add({ sql: 'SELECT count(*) FROM (SELECT DISTINCT id, name FROM users) d', mode: 'both' });
  add({ sql: 'SELECT count(*), sum(t) FROM (SELECT user_id, sum(amount) AS t FROM orders GROUP BY user_id) g', mode: 'both' });
  add({ sql: 'SELECT s.city, count(*) FROM (SELECT city FROM users WHERE age > 20) s GROUP BY s.city ORDER BY 1 NULLS FIRST', mode: 'both' });
  add({ sql: 'SELECT x.name FROM (SELECT id, name FROM users WHERE id = 3) x', p: { text: 'SELECT x.name FROM (SELECT id, name FROM users WHERE id = $1) x', values: [3] } });
  add({ sql: 'SELECT n FROM (SELECT name AS n FROM users WHERE age > 40) q ORDER BY n LIMIT 3', mode: 'both' });
  add({ sql: 'SELECT count(*) FROM (SELECT * FROM (SELECT id FROM users WHERE age > 30) a) b', mode: 'both' });
  M('SELECT count(*) FROM (SELECT DISTINCT city FROM users) d', /subquery over sharded table "users" not joined/);
  M('SELECT count(*) FROM (SELECT id FROM users ORDER BY id LIMIT 5) d', /subquery over sharded table "users" not joined/);
  M('SELECT count(*) FROM (SELECT city, count(*) FROM users GROUP BY city) g', /subquery over sharded table "users" not joined/);
  M('SELECT count(*) FROM (SELECT id FROM users) a, (SELECT user_id FROM orders) b', /subquery over sharded table/);
  // a foreign key to a sharded table holds only between co-located rows (each shard finds its own rows of "users" only)
  U('ALTER TABLE orders ADD CONSTRAINT orders_id_fk FOREIGN KEY (id) REFERENCES users (id)', /a FOREIGN KEY to sharded table "users" that does not pair the shard key columns/, 'simple');
  U('CREATE TABLE user_notes (n int, user_id bigint REFERENCES users (id))', /a FOREIGN KEY from a table that is not sharded to sharded table "users"/, 'simple');
  add({ sql: 'ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID', mode: 'simple' });
  add({ sql: 'ALTER TABLE orders DROP CONSTRAINT orders_user_fk', mode: 'simple' });
  U('CREATE TABLE users_copy AS SELECT * FROM users', /CREATE TABLE AS over sharded table "users"/, 'simple');
  // a subquery joined on the key runs shard by shard: with LIMIT each shard took its own 3 rows (9 updated)
  M('SELECT count(*) FROM users WHERE id IN (SELECT id FROM users ORDER BY id LIMIT 3)', /a subquery with LIMIT or OFFSET over sharded table "users"/);
  // (session 23) such a subquery in a write runs first, merged, and the write gets its rows as keys
  add({ sql: 'UPDATE users SET age = age + 1 WHERE id IN (SELECT id FROM users ORDER BY age DESC NULLS LAST, id LIMIT 3) RETURNING id, age', mode: 'simple' });
  add({ sql: 'DELETE FROM orders WHERE (user_id, id) IN (SELECT user_id, id FROM orders ORDER BY amount DESC, user_id, id LIMIT 2) RETURNING user_id, id', mode: 'simple' });
  M('SELECT count(*) FROM users WHERE id IN (SELECT DISTINCT ON (city) id FROM users ORDER BY city, id)', /a subquery with DISTINCT ON over sharded table "users"/);
  add({ sql: 'SELECT count(*) FROM users WHERE id IN (SELECT id FROM users WHERE age > 30)', mode: 'both' });
  // an integer key compared with a numeric constant: PostgreSQL compares numerically (pgring said 22P02)
  add({ sql: 'SELECT id, name FROM users WHERE id = 3.0', mode: 'simple' });
  add({ sql: 'SELECT count(*) FROM users WHERE id IN (3.0, 4e0, 5.5, 7)', mode: 'simple' });
  U('CREATE MATERIALIZED VIEW users_mv AS SELECT count(*) FROM users', /CREATE MATERIALIZED VIEW over sharded table "users"/, 'simple');
  U('SELECT * INTO users_into FROM users', /SELECT INTO over sharded table "users"/, 'simple');
  // no value and no default for the key: 23502, as PostgreSQL's NOT NULL says (pgring evaluates the
  // default of a key left out of the column list, in both protocols)
  add({ sql: "INSERT INTO users (name) VALUES ('nokey')", p: { text: 'INSERT INTO users (name) VALUES ($1)', values: ['nokey'] } });
  // rows whose shard only their values tell: pgring reads them and inserts them by key (session 18; was 0A000)
  add({ sql: 'INSERT INTO users (id, name) SELECT id + 500, name FROM users', mode: 'simple' });
  add({ sql: "INSERT INTO users (id, name, age) SELECT g, 'gen ' || g, 20.6 FROM generate_series(900, 905) g RETURNING id, age", mode: 'simple' });
  add({ sql: "INSERT INTO users (id, name) SELECT g, 'none' FROM generate_series(1, 0) g RETURNING id", mode: 'simple' });
  add({ sql: 'SELECT count(*), sum(id) FROM users WHERE id > 500', mode: 'both' });
  // rows a LIMIT, an aggregate or a window chooses: read merged, then inserted by key (session 23; was 0A000)
  add({ sql: 'INSERT INTO orders SELECT id + 1000, user_id, amount, created FROM orders ORDER BY amount DESC, user_id, id LIMIT 3 RETURNING id, user_id, amount', mode: 'simple', ordered: true });
  add({ sql: 'INSERT INTO orders (id, user_id, amount) SELECT 2000 + row_number() OVER (ORDER BY id), id, age FROM users WHERE age > 50 RETURNING id, user_id, amount', mode: 'simple' });
  add({ sql: 'INSERT INTO orders (id, user_id, amount) SELECT 3000, user_id, sum(amount) FROM orders WHERE id < 1000 GROUP BY user_id RETURNING id, user_id, amount', mode: 'simple' });
  add({ sql: 'SELECT id, user_id, amount, created FROM orders WHERE id >= 1000 ORDER BY id, user_id', mode: 'both', ordered: true });
  // a char(n) value read and written back keeps its length (was cut to its first character)
  add({ sql: "INSERT INTO users (id, name) SELECT id + 700, name::char(8) FROM users WHERE id < 4 RETURNING id, name", mode: 'simple' });
  add({ sql: 'SELECT id, name FROM users WHERE id > 700 ORDER BY id', mode: 'both', ordered: true });
  U("INSERT INTO cities SELECT DISTINCT city, 'XX' FROM users WHERE city IS NOT NULL ON CONFLICT DO NOTHING", /writing a reference table/, 'simple');
  add({ sql: 'UPDATE users SET age = (SELECT max(age) FROM users WHERE id < 3) WHERE id = 5', mode: 'simple' });
  U("MERGE INTO users u USING (VALUES (1, 'm')) v(id, name) ON u.id = v.id WHEN MATCHED THEN UPDATE SET name = v.name", /MERGE into a sharded table/, 'simple');
  // keys in unjoined sharded tables on different shards: cross-shard join (fine when on one shard)
  const spread = [...keysOn('bigint', Array.from({ length: 30 }, (_, i) => String(i + 1))).values()];
  M(`SELECT u.name, o.amount FROM users u, orders o WHERE u.id = ${spread[0]![0]} AND o.user_id = ${spread[1]![0]}`, /cross-shard join/);
  add({ sql: `SELECT u.name, o.id FROM users u, orders o WHERE u.id = ${spread[0]![0]} AND o.user_id = ${spread[0]![1]} ORDER BY o.id`, mode: 'both', ordered: true });
  return S;
}

export function compare(want: Outcome, got: Outcome, st: Step): string | null {
  if (!want.ok || !got.ok) {
    if (!want.ok && !got.ok) return want.code === got.code ? null : `error ${want.code} (${want.message}) expected, got ${got.code} (${got.message})`;
    return `expected ${JSON.stringify(want)}\n    got ${JSON.stringify(got)}`;
  }
  if (want.command !== got.command || want.rowCount !== got.rowCount) return `tag ${want.command} ${want.rowCount} expected, got ${got.command} ${got.rowCount}`;
  if (JSON.stringify(want.fields) !== JSON.stringify(got.fields)) return `columns ${want.fields.join(',')} expected, got ${got.fields.join(',')}`;
  if (st.countOnly) return want.rows.length === got.rows.length ? null : `${want.rows.length} rows expected, got ${got.rows.length}`;
  const lists = (rows: string[]): string[] => !st.listCols && !st.floatCols ? rows : rows.map((r) => {
    const row = JSON.parse(r) as (string | number | null)[];
    for (const c of st.floatCols ?? []) if (row[c] !== null) row[c] = Number(row[c]).toPrecision(12);
    for (const c of st.listCols ?? []) {
      const v = row[c];
      // json_agg puts ", \n " before arrays and composites: the elements as a set, and how many such separators
      const json = (x: string): string => `[${x.slice(1, -1).split(/, (?:\n )?/).sort().join(', ')}] ${x.split(', \n ').length - 1}`;
      // json_object_agg prints `{ "k" : v, … }`: its members as a set
      if (typeof v === 'string') row[c] = v.startsWith('{ ') ? `{ ${v.slice(2, -2).split(', ').sort().join(', ')} }` : v.startsWith('{') ? `{${v.slice(1, -1).split(',').sort().join(',')}}` : v.startsWith('[') ? json(v) : v.split(/[,;] ?/).sort().join('|');
    }
    return JSON.stringify(row);
  });
  const a = st.ordered ? lists(want.rows) : lists(want.rows).sort(), b = st.ordered ? lists(got.rows) : lists(got.rows).sort();
  if (JSON.stringify(a) !== JSON.stringify(b)) return `rows differ${st.ordered ? ' (ordered)' : ''}:\n      want ${a.join(' ')}\n      got  ${b.join(' ')}`;
  return null;
}

