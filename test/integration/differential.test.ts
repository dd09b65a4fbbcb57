// Differential test: one list of SQL statements runs through the `pg` driver against a plain
// PostgreSQL server (the reference, cluster server 4) and against pgring over three shards
// (servers 1-3), in the simple and (where sensible) the extended protocol. Results must agree:
// rows (order-insensitive unless the statement orders without ties), column names and types,
// command tags (command + rowCount) and SQLSTATE codes of errors. Forms pgring refuses by design
// are listed explicitly: they must fail with 0A000 and a message naming the form.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import type { ShardMap } from '../../src/frontend/routing';
import { buildSteps as stepsFor, compare, EXT_PENDING, keysOnShards, run, Step, TABLES } from '../helpers/differential-steps';

let cluster: Awaited<ReturnType<typeof testCluster>>;
let proxy: RunningProxy;
let db: string;
let plainPort: number;
let shardPorts: number[];
let plain: pg.Client;
let viaProxy: pg.Client;
let shards: ShardMap;

const buildSteps = (): Step[] => stepsFor(shards);
const keysOn = (type: 'bigint', candidates: string[]) => keysOnShards(shards, type, candidates);

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
    let compared = 0, unsupported = 0, pending = 0;
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
        if (ext && !got.ok && got.code === '0A000' && EXT_PENDING.test(got.message) && want.ok) { pending++; continue; }
        compared++;
        const diff = compare(want, got, st);
        if (diff) failures.push(`${label}\n    ${diff}`);
      }
    }
    console.log(`differential: ${steps.length} statements, ${compared} comparisons, ${unsupported} expected-unsupported, ${pending} extended forms pending the caller`);
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

  it('multi-row INSERT whose rows go to different shards, extended protocol', { skip: 'TODO: client.ts answers 0A000 for a multi-row INSERT with rows for several shards in the extended protocol (insertSplit is used by the simple protocol only)' }, async () => {
    const spread = [...keysOn('bigint', Array.from({ length: 30 }, (_, i) => String(300 + i))).values()];
    const p = { text: 'INSERT INTO users VALUES ($1, $2, 1, NULL), ($3, $4, 2, NULL)', values: [Number(spread[0]![0]), 'a', Number(spread[1]![0]), 'b'] };
    assert.equal(compare(await run(plain, '', true, p), await run(viaProxy, '', true, p), { sql: p.text }), null);
  });
});

