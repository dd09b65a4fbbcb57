// Differential test: one list of SQL statements runs through the `pg` driver against a plain
// PostgreSQL server (the reference, cluster server 4) and against pgring over three shards
// (servers 1-3), in the simple and (where sensible) the extended protocol; reads also as a named
// statement with binary results (node-pg `binary: true`). Results must agree: rows
// (order-insensitive unless the statement orders without ties), the RowDescription (names,
// types, sizes, modifiers, formats, column numbers; table OIDs only as zero / non-zero),
// command tags (command + rowCount) and SQLSTATE codes of errors. ORM statement shapes
// (Prisma, TypeORM, Sequelize, SQLAlchemy, Django) are written from their documented SQL;
// row-limited portals are compared message by message through a raw wire client. Forms pgring refuses by design
// are listed explicitly: they must fail with 0A000 and a message naming the form.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import type { ShardMap } from '../../src/frontend/routing';
import type { KeyType } from '../../src/config/types';
import { buildSteps as stepsFor, compare, EXT_VARIANTS, keysOnShards, run, Step, TABLES, UUIDS } from '../helpers/differential-steps';
import { serialize } from 'pg-protocol';
import { WireClient } from '../helpers/wire';

let cluster: Awaited<ReturnType<typeof testCluster>>;
let proxy: RunningProxy;
let db: string;
let plainPort: number;
let shardPorts: number[];
let plain: pg.Client;
let viaProxy: pg.Client;
let shards: ShardMap;

const buildSteps = (): Step[] => stepsFor(shards);
const keysOn = (type: KeyType, candidates: string[]) => keysOnShards(shards, type, candidates);

before(async () => {
  cluster = await testCluster();
  plainPort = cluster.pg[3]!.port;
  shardPorts = cluster.pg.slice(0, 3).map((p) => p.port);
  db = uniqueName('diff');
  createDatabase([...shardPorts, plainPort], db);
  proxy = await startProxy(await baseConfig(cluster, 3, { sharding: { tables: TABLES } }));
  shards = proxy.proxy.ctx.shards;
  plain = new pg.Client({ host: '127.0.0.1', port: plainPort, user: 'postgres', database: db });
  viaProxy = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'postgres', database: db });
  await plain.connect();
  await viaProxy.connect();
});

after(async () => {
  await plain?.end().catch(() => undefined);
  await viaProxy?.end().catch(() => undefined);
  await proxy?.stop();
  dropDatabase([...shardPorts, plainPort], db);
});

describe('differential: pgring over 3 shards vs plain PostgreSQL', () => {
  it('gives the same results for every statement', async () => {
    const steps = buildSteps();
    assert.ok(steps.length >= 80, `${steps.length} statements`);
    const failures: string[] = [];
    let compared = 0, unsupported = 0;
    for (const st of steps) {
      const forms: boolean[] = st.mode === 'both' ? [false, true] : st.mode === 'ext' || (st.p && st.mode !== 'simple') ? [true] : [false];
      for (const ext of forms) {
        const label = `${ext ? 'ext' : 'simple'}: ${ext && st.p ? `${st.p.text} ${JSON.stringify(st.p.values)}` : st.sql}`;
        const got = await run(viaProxy, st.sql, ext, st.p);
        if (st.unsupported) {
          unsupported++;
          if (got.ok || got.code !== '0A000' || !st.unsupported.test(got.message)) failures.push(`${label}\n    expected 0A000 ${st.unsupported}, got ${JSON.stringify(got)}`);
          continue;
        }
        const want = await run(plain, st.sql, ext, st.p);
        compared++;
        const diff = compare(want, got, st);
        if (diff) failures.push(`${label}\n    ${diff}`);
        if (!ext || !st.mode || st.mode !== 'both' || st.listCols) continue;
        // the other extended-protocol variants of a read: binary results, named statements
        for (const v of EXT_VARIANTS.slice(1)) {
          compared++;
          const d = compare(await run(plain, st.sql, true, st.p, v), await run(viaProxy, st.sql, true, st.p, v), st);
          if (d) failures.push(`${label} ${JSON.stringify(v)}\n    ${d}`);
        }
      }
    }
    console.log(`differential: ${steps.length} statements, ${compared} comparisons, ${unsupported} expected-unsupported`);
    assert.deepEqual(failures, []);
  });

  it('savepoints in a transaction over several shards behave as on one server', async () => {
    const sp = [...keysOn('bigint', Array.from({ length: 30 }, (_, i) => String(7000 + i))).values()].map((ks) => ks[0]!);
    assert.equal(sp.length, 3);
    const steps: Step[] = [
      { sql: 'BEGIN' },
      { sql: 'SAVEPOINT first' },                                            // before any shard is in the transaction
      { sql: `INSERT INTO users VALUES (${sp[0]}, 'a', 1, NULL)` },
      { sql: 'SAVEPOINT one' },
      { sql: `INSERT INTO users VALUES (${sp[1]}, 'b', 1, NULL)` },           // a second shard joins after the savepoint
      { sql: 'ROLLBACK TO SAVEPOINT one' },                                   // undoes it on that shard too
      { sql: `INSERT INTO users VALUES (${sp[2]}, 'c', 1, NULL)` },
      { sql: 'SAVEPOINT "Two"' },
      { sql: `INSERT INTO users VALUES (${sp[0]}, 'dup', 1, NULL)` },         // 23505 on one shard: transaction aborted
      { sql: 'SELECT 1' },                                                    // 25P02
      { sql: 'ROLLBACK TO "Two"' },                                           // healthy again (psql ON_ERROR_ROLLBACK does this)
      { sql: `INSERT INTO users VALUES (${sp[1]}, 'd', 1, NULL)` },
      { sql: 'RELEASE SAVEPOINT "Two"' },
      { sql: 'ROLLBACK TO SAVEPOINT "Two"' },                                 // 3B001: released
      { sql: 'ROLLBACK TO SAVEPOINT first' },                                 // undoes everything, on every shard
      { sql: `INSERT INTO users VALUES (${sp[2]}, 'e', 1, NULL)` },
      { sql: 'COMMIT' },
      { sql: 'SELECT id, name FROM users WHERE id >= 7000 ORDER BY id' },
    ];
    const failures: string[] = [];
    for (const st of steps) {
      const d = compare(await run(plain, st.sql, false), await run(viaProxy, st.sql, false), st);
      if (d) failures.push(`${st.sql}\n    ${d}`);
    }
    await run(plain, 'DELETE FROM users WHERE id >= 7000', false);
    await run(viaProxy, 'DELETE FROM users WHERE id >= 7000', false);
    assert.deepEqual(failures, []);
  });

  it('a statement failing on one shard changes nothing on the others', async () => {
    const spread = [...keysOn('bigint', Array.from({ length: 30 }, (_, i) => String(5000 + i))).values()].map((ks) => ks[0]!);
    const steps: Step[] = [
      { sql: `INSERT INTO users VALUES (${spread[0]}, 'a', 1, NULL)` },
      { sql: `INSERT INTO users VALUES (${spread[1]}, 'b', 1, NULL), (${spread[0]}, 'dup', 1, NULL)` }, // 23505 on one shard only
      { sql: `UPDATE users SET age = 100 / (id - ${spread[2]}) WHERE id >= 5000`, mode: 'both' },      // succeeds: no row ${spread[2]} yet
      { sql: `INSERT INTO users VALUES (${spread[2]}, 'c', 1, NULL)` },
      { sql: `INSERT INTO users VALUES (${spread[1]}, 'd', 1, NULL)` },
      // 22012 on one shard only, in the simple and in the extended protocol (Parse/Bind/Execute/Sync, one unit)
      { sql: `UPDATE users SET age = 100 / (id - ${spread[2]}) WHERE id >= 5000`, mode: 'both' },
      { sql: `DELETE FROM users WHERE id >= 5000 AND 100 / (id - ${spread[2]}) > 0`, mode: 'both' },
      { sql: `UPDATE users SET age = age + 1 WHERE id >= 5000`, mode: 'both' },                          // succeeds on every shard
      { sql: 'SELECT * FROM users WHERE id >= 5000', mode: 'both' },
    ];
    const failures: string[] = [];
    for (const st of steps) for (const ext of st.mode === 'both' ? [false, true] : [false]) {
      const d = compare(await run(plain, st.sql, ext), await run(viaProxy, st.sql, ext), st);
      if (d) failures.push(`${st.sql}\n    ${d}`);
    }
    await run(plain, 'DELETE FROM users WHERE id >= 5000', false);
    await run(viaProxy, 'DELETE FROM users WHERE id >= 5000', false);
    assert.deepEqual(failures, []);
  });

  it('portals with row limits (Execute max_rows, PortalSuspended) give the messages of a server, text and binary', async () => {
    const cases: { text: string; values: string[] }[] = [
      { text: 'SELECT city, count(*), avg(age) FROM users GROUP BY city ORDER BY city NULLS FIRST', values: [] },
      { text: 'SELECT name FROM users WHERE age > $1 ORDER BY age DESC NULLS LAST, id LIMIT $2 OFFSET $3', values: ['25', '7', '2'] },
      { text: 'SELECT id, name FROM users ORDER BY id', values: [] },
      { text: 'SELECT avg(amount) FROM orders WHERE amount > $1', values: ['10'] },
    ];
    const plainW = await WireClient.connect(plainPort, db);
    const proxyW = await WireClient.connect(proxy.port, db);
    const failures: string[] = [];
    try {
      for (const c of cases) for (const binary of [false, true]) {
        const unit = [
          serialize.parse({ name: '', text: c.text, types: [] }),
          serialize.describe({ type: 'S', name: '' }),
          serialize.bind({ portal: 'p1', statement: '', values: c.values, binary }),
          serialize.describe({ type: 'P', name: 'p1' }),
          serialize.execute({ portal: 'p1', rows: 3 }),
          serialize.execute({ portal: 'p1', rows: 3 }),
          serialize.execute({ portal: 'p1', rows: 0 }),
          serialize.execute({ portal: 'p1', rows: 2 }),
          serialize.sync(),
        ];
        plainW.send(unit); proxyW.send(unit);
        const want = JSON.stringify(await plainW.until(1, 5000).catch((e: Error) => `plain: ${e.message}`));
        const got = JSON.stringify(await proxyW.until(1, 5000).catch((e: Error) => `pgring: ${e.message}`));
        if (want !== got) failures.push(`${c.text} binary=${binary}\n    want ${want}\n    got  ${got}`);
        if (failures.length) break;
        // a named portal in a transaction block, fetched in several units (a cursor as drivers use it)
        const units = [
          [serialize.query('BEGIN')],
          [serialize.parse({ name: 'cur_s', text: c.text, types: [] }), serialize.bind({ portal: 'cur', statement: 'cur_s', values: c.values, binary }),
            serialize.execute({ portal: 'cur', rows: 2 }), serialize.sync()],
          [serialize.execute({ portal: 'cur', rows: 2 }), serialize.sync()],
          [serialize.describe({ type: 'P', name: 'cur' }), serialize.execute({ portal: 'cur', rows: 100 }), serialize.close({ type: 'P', name: 'cur' }), serialize.close({ type: 'S', name: 'cur_s' }), serialize.sync()],
          [serialize.query('COMMIT')],
        ];
        for (const [i, u] of units.entries()) {
          plainW.send(u); proxyW.send(u);
          const w = JSON.stringify(await plainW.until(1, 5000).catch((e: Error) => `plain unit ${i}: ${e.message}`));
          const g = JSON.stringify(await proxyW.until(1, 5000).catch((e: Error) => `pgring unit ${i}: ${e.message}`));
          if (w !== g) failures.push(`${c.text} binary=${binary} transaction unit ${i}\n    want ${w}\n    got  ${g}`);
          if (failures.length) break;
        }
        if (failures.length) break;
      }
    } finally { plainW.close(); proxyW.close(); }
    assert.deepEqual(failures, []);
  });

  it('multi-row INSERT with parameters whose rows go to different shards: split per shard, one transaction, RETURNING in statement order', async () => {
    const ks = [...keysOn('bigint', Array.from({ length: 60 }, (_, i) => String(8000 + i))).values()];
    assert.equal(ks.length, 3);
    // rows interleaved over the three shards; Sequelize bulkCreate / Prisma createMany / Django bulk_create shapes
    const ids = [ks[0]![0], ks[1]![0], ks[2]![0], ks[0]![1], ks[2]![1], ks[1]![1]].map(Number);
    const vals = (list: number[], tag: string): unknown[] => list.flatMap((id, j) => [id, `${tag}${j}`, j]);
    const rowsSql = (n: number, first = 1): string => Array.from({ length: n }, (_, j) => `($${first + 3 * j}, $${first + 3 * j + 1}, $${first + 3 * j + 2}, NULL)`).join(', ');
    const ins = (list: number[], tag: string, tail = ''): Step => ({ sql: '', p: { text: `INSERT INTO "users" ("id","name","age","city") VALUES ${rowsSql(list.length)}${tail}`, values: vals(list, tag) }, ordered: true });
    const steps: Step[] = [
      ins(ids.slice(0, 3), 'seq', ' RETURNING "id","name","age"'),                            // Sequelize bulkCreate
      ins(ids.slice(3), 'dj', ' RETURNING "users"."id"'),                                      // Django bulk_create
      ins([ids[0]! + 100, ids[1]! + 100], 'dup'),
      ins([ids[2]! + 200, ids[0]!], 'clash'),                                                  // 23505 on one shard: the other shard's row must not stay
      { sql: '', p: { text: 'INSERT INTO users (id, name, age) VALUES ($2, $1, $3), ($4, $1, $3), ($5, $1, $3) ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING id, name', values: ['upd', ids[0], 7, ids[1], ids[2]! + 300] }, ordered: true },
      { sql: `INSERT INTO users (id, name) VALUES (${ids[2]! + 400}, 'simple-a'), (${ids[0]! + 400}, 'simple-b'), (${ids[1]! + 400}, 'simple-c') RETURNING id, name`, ordered: true },
      { sql: `SELECT id, name, age FROM users WHERE id >= 8000 ORDER BY id`, mode: 'both', ordered: true },
    ];
    const failures: string[] = [];
    await run(plain, 'BEGIN', false); await run(viaProxy, 'BEGIN', false);
    for (const v of EXT_VARIANTS) {
      // in an explicit transaction, then (after ROLLBACK) as autocommit statements
      for (const inTx of [true, false]) {
        if (!inTx) { await run(plain, 'ROLLBACK', false); await run(viaProxy, 'ROLLBACK', false); }
        for (const st of steps) for (const ext of st.mode === 'both' ? [false, true] : [!!st.p]) {
          if (inTx && !st.p && !ext) continue; // the simple-protocol insert runs once, in autocommit
          const d = compare(await run(plain, st.sql, ext, st.p, v), await run(viaProxy, st.sql, ext, st.p, v), st);
          if (d) failures.push(`${JSON.stringify(v)} inTx=${inTx} ${st.p?.text ?? st.sql}\n    ${d}`);
          if (inTx && d === null && !(await run(viaProxy, 'SELECT 1', false)).ok) { await run(plain, 'ROLLBACK', false); await run(viaProxy, 'ROLLBACK', false); await run(plain, 'BEGIN', false); await run(viaProxy, 'BEGIN', false); }
        }
        for (const c of [plain, viaProxy]) await run(c, 'DELETE FROM users WHERE id >= 8000', false);
      }
      await run(plain, 'BEGIN', false); await run(viaProxy, 'BEGIN', false);
    }
    await run(plain, 'ROLLBACK', false); await run(viaProxy, 'ROLLBACK', false);
    assert.deepEqual(failures, []);
  });
});

