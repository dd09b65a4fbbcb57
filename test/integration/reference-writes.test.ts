// Writes pgring completes itself over 3 shards before they run (session 18): INSERT ... SELECT
// whose rows only their values place (pgring reads them and inserts them by key), INSERTs and
// UPDATEs of a reference table whose defaults and time functions each shard would evaluate
// differently (evaluated once), and a multi-shard write in session pooling (one transaction
// although the session holds its connections already).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { baseConfig, RunningProxy, startProxy, withClient } from '../helpers/proxy';
import { runTool } from '../helpers/tools';
import { WireClient } from '../helpers/wire';
import { serialize } from 'pg-protocol';
import { threeShards, type ThreeShards } from '../helpers/three-shards';
import type { ClusterInfo } from '../../src/local/cluster';

let cluster: ClusterInfo;
let db: string;
let withZk: RunningProxy;
let noZk: RunningProxy;
let shards: ThreeShards;
const tables = [{ name: 'items', column: 'id', type: 'integer' as const, columns: ['id', 'note'] }];

before(async () => {
  shards = await threeShards('refwrites', tables);
  ({ cluster, db, withZk, noZk } = shards);
});

after(async () => { await shards?.stop(); });

const onShards = (sql: string): Promise<string[]> => shards.onShards(sql);
const onEach = (sql: string): Promise<void> => shards.onEach(sql);
async function reset(): Promise<void> { await onEach('TRUNCATE items, codes'); }

for (const variant of ['with ZooKeeper (two-phase commit)', 'without ZooKeeper'] as const) {
  const proxy = (): RunningProxy => (variant === 'without ZooKeeper' ? noZk : withZk);

  describe(`INSERT ... SELECT whose rows only their values place, over 3 shards, ${variant}`, () => {
    it('generated rows, a reference table, a set operation and a scan of the sharded table itself land on their shards, atomically', async () => {
      // Before: 0A000 "INSERT ... SELECT into sharded table with a shard key that is not a constant
      // or a co-located shard key column" for the most common way to fill a table with test data.
      await reset();
      await onEach("INSERT INTO codes VALUES (1, 'one'), (2, 'two'), (3, 'three')");
      const placed = async (ids: number[]): Promise<void> => {
        for (const id of ids) {
          const shard = proxy().proxy.ctx.shards.shardForKey('integer', String(id));
          assert.deepEqual(await onShards(`SELECT count(*) FROM items WHERE id = ${id}`), [0, 1, 2].map((i) => (i === shard ? '1' : '0')), `row ${id}`);
        }
      };
      await withClient(proxy().port, db, async (c) => {
        const g = await c.query("INSERT INTO items SELECT g, 'gen ' || g FROM generate_series(1, 30) g RETURNING id");
        assert.equal(g.rowCount, 30);
        assert.deepEqual(g.rows.map((r) => r.id), Array.from({ length: 30 }, (_, i) => i + 1), 'RETURNING in the order of the rows');
        await placed([1, 2, 3, 17, 30]);
        assert.equal((await c.query('INSERT INTO items (note, id) SELECT label, code + 100 FROM codes')).rowCount, 3);
        await placed([101, 102, 103]);
        assert.equal((await c.query("INSERT INTO items SELECT 200, 'a' UNION ALL SELECT 201, 'b'")).rowCount, 2);
        // a scan of the sharded table itself (every shard's rows, placed by their new keys)
        assert.equal((await c.query("INSERT INTO items SELECT id + 1000, 'copy of ' || id FROM items WHERE id <= 10")).rowCount, 10);
        await placed([1001, 1005, 1010]);
        // assignment casts as INSERT ... SELECT applies them (numeric 4999.6 -> 5000)
        await c.query("INSERT INTO items SELECT 4999.6, 'rounded'");
        assert.equal((await c.query('SELECT note FROM items WHERE id = 5000 AND note = $1', ['rounded'])).rowCount, 1);
        await placed([5000]);
        // nothing to insert
        const none = await c.query('INSERT INTO items SELECT g, null FROM generate_series(1, 0) g RETURNING id, note');
        assert.equal(none.rowCount, 0);
        assert.deepEqual(none.fields.map((f) => f.name), ['id', 'note']);
        // a duplicate key on one shard: no row of the statement stays anywhere
        await assert.rejects(c.query("INSERT INTO items SELECT g, 'dup' FROM generate_series(2000, 2010) g UNION ALL SELECT 3, 'dup'"), (e: Error & { code?: string }) => e.code === '23505');
        assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE note = 'dup'")).rows[0].n, 0);
        // inside a transaction: seen by it, gone with its ROLLBACK
        await c.query('BEGIN');
        await c.query("INSERT INTO items SELECT g, 'tx' FROM generate_series(3000, 3005) g");
        assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE note = 'tx'")).rows[0].n, 6);
        await c.query('ROLLBACK');
        assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE note = 'tx'")).rows[0].n, 0);
        // more rows than pgring places itself: refused, with a hint
        await assert.rejects(c.query("INSERT INTO items SELECT g, 'big' FROM generate_series(10000, 60001) g"), (e: Error & { code?: string }) => e.code === '0A000' && /more than 50000 rows/.test(e.message));
        // the extended protocol is still refused (its parameters would have to be bound into the SELECT)
        await assert.rejects(c.query("INSERT INTO items SELECT g, $1 FROM generate_series(1, 2) g", ['x']), (e: Error & { code?: string }) => e.code === '0A000');
      });
    });
  });
}

for (const variant of ['with ZooKeeper (two-phase commit)', 'without ZooKeeper'] as const) {
  const proxy = (): RunningProxy => (variant === 'without ZooKeeper' ? noZk : withZk);

  describe(`INSERT into a reference table with volatile defaults over 3 shards, ${variant}`, () => {
    it('every shard gets the same uuid, timestamp and serial values', async () => {
      // Before, each shard evaluated gen_random_uuid(), clock_timestamp() and the sequence itself:
      // the copies of a reference table had other ids and times on every shard.
      const t = `refd_${variant.startsWith('with') ? 'z' : 'n'}`;
      await withClient(proxy().port, db, async (c) => {
        await c.query(`DROP TABLE IF EXISTS ${t}`);
        await c.query(`CREATE TABLE ${t} (id uuid DEFAULT gen_random_uuid() PRIMARY KEY, name text, at timestamptz DEFAULT clock_timestamp(), n serial, k int DEFAULT 7, g bigint GENERATED ALWAYS AS IDENTITY)`);
        const r = await c.query(`INSERT INTO ${t} (name) VALUES ('a'), ('b') RETURNING name, n, k, g`);
        assert.deepEqual(r.rows, [{ name: 'a', n: 1, k: 7, g: '1' }, { name: 'b', n: 2, k: 7, g: '2' }]);
        await c.query(`INSERT INTO ${t} VALUES (DEFAULT, 'c')`);
        await c.query(`INSERT INTO ${t} (name, at) VALUES ('d', DEFAULT); INSERT INTO ${t} (name) VALUES ('e')`);
        await c.query('BEGIN');
        await c.query(`INSERT INTO ${t} (id, name, n) VALUES ('00000000-0000-0000-0000-000000000001', 'f', 100)`);
        await c.query('COMMIT');
        // the extended protocol (what ORMs send): parameters, a named statement bound twice, DEFAULT
        const e = await c.query({ text: `INSERT INTO ${t} (name) VALUES ($1) RETURNING n, g`, values: ['g'] });
        assert.deepEqual(e.rows, [{ n: 6, g: '7' }]);
        for (const name of ['h', 'i']) await c.query({ name: 'refins', text: `INSERT INTO ${t} (name, at) VALUES ($1, DEFAULT), ($1 || '2', '2026-01-01')`, values: [name] });
        // function calls written in the VALUES (simple protocol)
        await c.query(`INSERT INTO ${t} (id, name, at, n) VALUES (gen_random_uuid(), 'j' || 'k', clock_timestamp() + interval '1 day', nextval('${t}_n_seq') + 1000)`);
        // INSERT ... SELECT: the rows read once, then their defaults as above
        const sel = await c.query(`INSERT INTO ${t} (name) SELECT 'sel' || g FROM generate_series(1, 3) g RETURNING name`);
        assert.deepEqual(sel.rows.map((r) => r.name), ['sel1', 'sel2', 'sel3']);
        await c.query(`INSERT INTO ${t} (name, at) SELECT name || '-copy', now() FROM ${t} WHERE name IN ('a', 'b')`);
        // UPDATE with the time functions (each shard's transaction started at another time)
        await c.query(`UPDATE ${t} SET at = now() + interval '1 hour', k = k + 1 WHERE name <> 'a'`);
        await c.query('BEGIN');
        await c.query(`UPDATE ${t} SET at = CURRENT_TIMESTAMP WHERE name = 'a'`);
        await c.query('COMMIT');
        const copies = await onShards(`SELECT md5(string_agg(x::text, ',' ORDER BY name)) FROM ${t} x`);
        assert.equal(new Set(copies).size, 1, `the shards' copies differ: ${copies.join(' ')}`);
        assert.equal((await c.query(`SELECT count(DISTINCT id)::int AS n FROM ${t}`)).rows[0].n, 17);
        await c.query(`DROP TABLE ${t}`);
      });
    });

    it('COPY after INSERTs numbers the copied rows as PostgreSQL does, alike on every shard', async () => {
      // An INSERT's defaults are evaluated on the first shard only, so only its sequences moved;
      // each shard fills a COPY's defaults itself. Before: `COPY t (v)` after two INSERTed rows
      // failed with 23505 (id 1 already exists) on the other shards, where PostgreSQL copies them.
      const t = `refc_${variant.startsWith('with') ? 'z' : 'n'}`;
      const copy = async (rows: string[]): Promise<void> => {
        const r = await runTool('psql', ['-X', '-h', '127.0.0.1', '-p', String(proxy().port), '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1', '-c', `COPY ${t} (v) FROM STDIN`], { input: rows.map((x) => x + '\n').join('') });
        assert.equal(r.code, 0, r.stderr);
      };
      await withClient(proxy().port, db, async (c) => {
        await c.query(`DROP TABLE IF EXISTS ${t}; DROP SEQUENCE IF EXISTS ${t}_own`);
        await c.query(`CREATE SEQUENCE ${t}_own START 500`);
        await c.query(`CREATE TABLE ${t} (id serial PRIMARY KEY, v text, g int GENERATED BY DEFAULT AS IDENTITY, o bigint DEFAULT nextval('${t}_own'))`);
        await c.query(`INSERT INTO ${t} (v) VALUES ('a'), ('b')`);
        await copy(['c', 'd']);
        await c.query({ text: `INSERT INTO ${t} (v) VALUES ($1)`, values: ['e'] });
        await copy(['f']);
        const rows = (await c.query(`SELECT id, v, g, o FROM ${t} ORDER BY id`)).rows.map((r) => `${r.id}${r.v}${r.g}:${r.o}`);
        assert.deepEqual(rows, ['1a1:500', '2b2:501', '3c3:502', '4d4:503', '5e5:504', '6f6:505']);
        const copies = await onShards(`SELECT string_agg(id || v || g || ':' || o, ',' ORDER BY id) FROM ${t}`);
        assert.deepEqual(copies, [0, 1, 2].map(() => rows.join(',')), 'every shard has the same rows');
        await c.query(`DROP TABLE ${t}; DROP SEQUENCE ${t}_own`);
      });
    });

    it('function calls in a prepared INSERT\'s VALUES and time functions in a prepared UPDATE\'s SET are evaluated once', async () => {
      // The extended protocol (pgx, JDBC, asyncpg): before, each shard computed gen_random_uuid() and
      // now() itself, so the copies of a row had three ids.
      const t = `refx_${variant.startsWith('with') ? 'z' : 'n'}`;
      await withClient(proxy().port, db, async (c) => {
        await c.query(`DROP TABLE IF EXISTS ${t}`);
        await c.query(`CREATE TABLE ${t} (id uuid PRIMARY KEY, name text, at timestamptz, n int, u uuid DEFAULT gen_random_uuid(), s serial)`);
        await c.query({ text: `INSERT INTO ${t} (id, name, at) VALUES (gen_random_uuid(), $1, now())`, values: ['a'] });
        for (const name of ['b', 'c']) await c.query({ name: 'refx', text: `INSERT INTO ${t} (id, name, at, n) VALUES (gen_random_uuid(), $1, clock_timestamp(), (random() * 1000)::int) RETURNING id`, values: [name] });
        await c.query({ text: `INSERT INTO ${t} (id, name, n) VALUES (gen_random_uuid(), $1, 1), (md5(random()::text)::uuid, $2 || 'x', random() * 10)`, values: ['d', 'e'] });
        await c.query('BEGIN');
        await c.query({ text: `UPDATE ${t} SET at = now() + interval '1 day', name = $1 WHERE name = $2`, values: ['a2', 'a'] });
        await c.query({ text: `INSERT INTO ${t} (id, name, at) VALUES (gen_random_uuid(), $1, now())`, values: ['f'] });
        await c.query('COMMIT');
        const copies = await onShards(`SELECT count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY s)) FROM ${t} x`);
        assert.equal(new Set(copies).size, 1, `the shards' copies differ: ${copies.join(' ')}`);
        assert.match(copies[0]!, /^6:/);
        const r = await c.query(`SELECT count(DISTINCT id)::int AS ids, count(DISTINCT u)::int AS us, count(*) FILTER (WHERE name = 'a2' AND at > now())::int AS updated FROM ${t}`);
        assert.deepEqual(r.rows[0], { ids: 6, us: 6, updated: 1 });
        await c.query(`DROP TABLE ${t}`);
      });
    });

    it('a volatile function in an UPDATE / DELETE of a reference table is refused, not computed by each shard', async () => {
      // Before: each shard computed random() / gen_random_uuid() / clock_timestamp() itself and the
      // copies of the table differed without an error (session 23, volatile-writes.ts).
      const t = `refv_${variant.startsWith('with') ? 'z' : 'n'}`;
      await withClient(proxy().port, db, async (c) => {
        await c.query(`DROP TABLE IF EXISTS ${t}`);
        await c.query(`CREATE TABLE ${t} (k text PRIMARY KEY, v text, at timestamptz, u uuid)`);
        await c.query(`INSERT INTO ${t} VALUES ('a', 'x', now(), gen_random_uuid()), ('b', 'y', now(), gen_random_uuid())`);
        const refused = (e: { code?: string; message: string }): boolean => e.code === '0A000' && new RegExp(`volatile function \\w+\\(\\) in a write to reference table "${t}"`).test(e.message);
        await assert.rejects(c.query(`UPDATE ${t} SET v = random()::text WHERE k = 'a'`), refused);
        await assert.rejects(c.query({ text: `UPDATE ${t} SET u = gen_random_uuid() WHERE k = $1`, values: ['a'] }), refused);
        await assert.rejects(c.query(`DELETE FROM ${t} WHERE random() < 0.5`), refused);
        await assert.rejects(c.query(`INSERT INTO ${t} VALUES ('a', 'z') ON CONFLICT (k) DO UPDATE SET at = clock_timestamp()`), refused);
        // in a transaction the refusal fails it, as an error of PostgreSQL's would
        await c.query('BEGIN');
        await assert.rejects(c.query({ text: `UPDATE ${t} SET v = $1 || random()::text`, values: ['p'] }), refused);
        await assert.rejects(c.query('SELECT 1'), (e: { code?: string }) => e.code === '25P02');
        await c.query('ROLLBACK');
        // deterministic writes, time functions, a user's own function (VOLATILE by default) and RETURNING go through
        await c.query(`CREATE OR REPLACE FUNCTION ${t}_twice(text) RETURNS text AS 'SELECT $1 || $1' LANGUAGE sql`);
        await c.query(`UPDATE ${t} SET v = ${t}_twice(upper(v)), at = now() WHERE k = 'a'`);
        await c.query({ text: `UPDATE ${t} SET v = lower($1) WHERE k = 'b' RETURNING random() < 2 AS r`, values: ['Q'] });
        const copies = await onShards(`SELECT string_agg(k || v || at::text || u::text, ',' ORDER BY k) FROM ${t}`);
        assert.equal(new Set(copies).size, 1, `the shards' copies differ: ${copies.join(' ')}`);
        assert.match(copies[0]!, /^aXX.*,bq/);
        await c.query(`DROP TABLE ${t}`);
        await c.query(`DROP FUNCTION ${t}_twice(text)`);
      });
    });

    it('COPY that leaves out columns with volatile defaults gives every shard the same values', async () => {
      // Each shard evaluated gen_random_uuid(), now(), clock_timestamp(), random() for the rows it
      // copied: the copies of a row had three ids and times (on the demo, without an error).
      const t = `refv_${variant.startsWith('with') ? 'z' : 'n'}`;
      const port = proxy().port;
      const psqlIn = (sql: string, input: string, around: [string, string] | null = null) => runTool('psql', ['-X', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1',
        ...(around ? ['-c', around[0], '-c', sql, '-c', around[1]] : ['-c', sql])], { input });
      const same = async (): Promise<string> => {
        const copies = await onShards(`SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, ',' ORDER BY s), '')) FROM ${t} x`);
        assert.equal(new Set(copies).size, 1, `the shards' copies differ: ${copies.join(' ')}`);
        return copies[0]!;
      };
      await withClient(port, db, async (c) => {
        await c.query(`DROP TABLE IF EXISTS ${t}`);
        await c.query(`CREATE TABLE ${t} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text, n int, at timestamptz DEFAULT clock_timestamp(), t0 timestamptz DEFAULT now(), r float8 DEFAULT random(), label text DEFAULT 'x' || random()::text, s serial)`);
        // text format, autocommit; a name with a tab, a backslash and a newline
        let r = await psqlIn(`COPY ${t} (name, n) FROM STDIN`, 'a\t1\nb\\tc\\\\d\\ne\t2\n\\N\t3\n');
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^COPY 3$/m);
        assert.match(await same(), /^3:/);
        assert.deepEqual((await c.query(`SELECT name, n FROM ${t} ORDER BY s`)).rows, [{ name: 'a', n: 1 }, { name: 'b\tc\\d\ne', n: 2 }, { name: null, n: 3 }]);
        // CSV with a header (HEADER MATCH checks it against the column list), quotes, a newline inside a field
        r = await psqlIn(`COPY ${t} (name, n) FROM STDIN (FORMAT csv, HEADER match)`, 'name,n\n"multi\nline, ""quoted""",4\nplain,5\n');
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^COPY 2$/m);
        assert.equal((await c.query(`SELECT name FROM ${t} WHERE n = 4`)).rows[0].name, 'multi\nline, "quoted"');
        // inside a transaction (now(): the transaction's, on every shard)
        r = await psqlIn(`COPY ${t} (name, n) FROM STDIN (DELIMITER '|')`, 'in|6\ntx|7\n', ['BEGIN', 'COMMIT']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(await same(), /^7:/);
        // more rows than one chunk (5,000) of the proxy's: three chunks, one count
        const many = Array.from({ length: 12001 }, (_, i) => `m${i}\t${i}\n`).join('');
        r = await psqlIn(`COPY ${t} (name, n) FROM STDIN`, many);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^COPY 12001$/m);
        assert.match(await same(), /^12008:/);
        assert.equal((await c.query(`SELECT count(DISTINCT id)::int AS n FROM ${t}`)).rows[0].n, 12008);
        // a bad row in the third chunk: nothing of the COPY stays, and the error names its line
        const bad = Array.from({ length: 11000 }, (_, i) => (i === 10499 ? 'bad\tx\n' : `b${i}\t${i}\n`)).join('');
        r = await psqlIn(`COPY ${t} (name, n) FROM STDIN`, bad);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /invalid input syntax for type integer: "x"/);
        assert.match(r.stderr, /line 10500/);
        assert.match(await same(), /^12008:/);
        // binary format cannot be completed: refused, not copied differently on each shard
        await assert.rejects(c.query(`COPY ${t} (name) FROM STDIN (FORMAT binary)`), (e: Error & { code?: string }) => e.code === '0A000' && /binary COPY into reference table/.test(e.message));
        // CopyFail from the client: 57014, nothing copied; the session goes on
        const w = await WireClient.connect(port, db);
        try {
          w.send([serialize.query(`COPY ${t} (name, n) FROM STDIN`)]);
          w.send([serialize.copyData(Buffer.from('f1\t1\n')), serialize.copyFail('client gave up'), serialize.query('SELECT 1')]);
          const got = await w.until(2, 20000);
          const err = got.find((m) => m.name === 'error');
          assert.equal(err?.code, '57014');
          assert.deepEqual(got.filter((m) => m.name === 'readyForQuery').map((m) => m.status), ['I', 'I']);
          assert.deepEqual(got.find((m) => m.name === 'dataRow')?.values, ['1']);
        } finally { w.close(); }
        assert.match(await same(), /^12008:/);
        await c.query(`DROP TABLE ${t}`);
      });
    });
  });
}

describe('a write over several shards in session pooling, outside a transaction', () => {
  it('is one transaction although the session holds its connections already', async () => {
    // Before, the connections a session held already (session pooling: all it ever used) did not
    // get the implicit transaction's BEGIN, so their part of the write committed on its own.
    const sp = await startProxy(await baseConfig(cluster, 3, { sharding: { tables, referenceTables: ['codes'] }, pool: { mode: 'session', maxSize: 5 } }));
    try {
      await reset();
      const keys = [0, 1, 2].map((sh) => { let k = 1; while (sp.proxy.ctx.shards.shardForKey('integer', String(k)) !== sh) k++; return k; });
      await withClient(sp.port, db, async (c) => {
        await c.query(`INSERT INTO items VALUES (${keys[2]}, 'first')`);
        assert.equal((await c.query('SELECT count(*)::int AS n FROM items')).rows[0].n, 1);   // holds all three now
        await assert.rejects(c.query(`INSERT INTO items VALUES (${keys[0]}, 'x'), (${keys[1]}, 'x'), (${keys[2]}, 'dup')`), (e: Error & { code?: string }) => e.code === '23505');
        assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE note = 'x'")).rows[0].n, 0);
        await assert.rejects(c.query(`INSERT INTO items SELECT g, 'y' FROM generate_series(${keys[2] + 1000}, ${keys[2] + 1010}) g UNION ALL SELECT ${keys[2]}, 'dup'`), (e: Error & { code?: string }) => e.code === '23505');
        assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE note = 'y'")).rows[0].n, 0);
        assert.equal((await c.query(`UPDATE items SET note = 'z'`)).rowCount, 1);
      });
    } finally { await sp.stop(); }
  });
});
