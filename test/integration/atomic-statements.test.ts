// Statements that go to several shards outside a transaction are one statement for the client:
// COPY ... FROM STDIN and DDL through a 3-shard pgring, with and without ZooKeeper. A COPY is one
// statement: a row that one shard refuses must leave no row on any shard. pgring
// used to run each shard's part of the COPY in its own autocommit transaction, so a duplicate key
// on one shard failed the COPY for the client while the other shards kept their rows (a client
// that loads the file again then doubles them). COPY into a reference table went through the
// row splitter and failed ("cannot find shard key column"); every shard must get every row.
// DDL that PostgreSQL refuses on one shard (a CHECK constraint a row there violates, a table that
// exists there) used to be applied on the other shards, so the shards' schemas drifted apart.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { from as copyFrom } from 'pg-copy-streams';
import { uniqueName } from '../helpers/env';
import { baseConfig, client, RunningProxy, startProxy, withClient } from '../helpers/proxy';
import { psql } from '../helpers/tools';
import { WireClient } from '../helpers/wire';
import { ClusterInfo } from '../../src/local/cluster';
import { threeShards, type ThreeShards } from '../helpers/three-shards';

let cluster: ClusterInfo;
let ports: number[];
let db: string;
let withZk: RunningProxy;
let noZk: RunningProxy;
let shards: ThreeShards;

const tables = [{ name: 'items', column: 'id', type: 'integer' as const, columns: ['id', 'note'] }, { name: 'tickets', column: 'tenant', type: 'integer' as const, columns: ['id', 'tenant', 't'] },
  { name: 'serials', column: 'id', type: 'bigint' as const }, { name: 'uu', column: 'id', type: 'uuid' as const }, { name: 'idt', column: 'id', type: 'bigint' as const },
  { name: 'nod', column: 'id', type: 'integer' as const }, { name: 'rn', column: 'id', type: 'integer' as const },
  { name: 'lc', column: 'id', type: 'integer' as const }, { name: 'events', column: 'tenant', type: 'integer' as const }, { name: 'sc', column: 'id', type: 'integer' as const, columns: ['a', 'id', 'v'] }];

before(async () => {
  shards = await threeShards('copyin', tables);
  ({ cluster, ports, db, withZk, noZk } = shards);
});

after(async () => { await shards?.stop(); });

const onShards = (sql: string): Promise<string[]> => shards.onShards(sql);
const onEach = (sql: string): Promise<void> => shards.onEach(sql);
async function reset(): Promise<void> { await onEach('TRUNCATE items, codes'); }
function lines(from: number, to: number): string {
  let s = '';
  for (let i = from; i <= to; i++) s += `${i}\trow ${i}\n`;
  return s;
}

for (const variant of ['with ZooKeeper (two-phase commit)', 'without ZooKeeper'] as const) {
  const proxy = (): RunningProxy => (variant === 'without ZooKeeper' ? noZk : withZk);

  describe(`COPY FROM STDIN over 3 shards, ${variant}`, () => {
    it('loads every row onto the shard that owns it, and COPY n counts them', async () => {
      await reset();
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await pipeline(Readable.from([lines(1, 300)]), c.query(copyFrom('COPY items FROM STDIN')));
        const held = (await onShards('SELECT count(*) FROM items')).map(Number);
        assert.equal(held.reduce((a, b) => a + b, 0), 300);
        assert.ok(held.every((n) => n > 0), `rows per shard: ${held}`);
      } finally { await c.end(); }
      const sum = await psql(proxy().port, db, 'SELECT count(*), sum(id) FROM items', ['-At']);
      assert.equal(sum.stdout.trim(), `300|${(300 * 301) / 2}`);
    });

    it('a row refused by one shard leaves no row on any shard (autocommit COPY is atomic)', async () => {
      await reset();
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await c.query("INSERT INTO items VALUES (150, 'already there')");
        await assert.rejects(pipeline(Readable.from([lines(1, 300)]), c.query(copyFrom('COPY items FROM STDIN'))), (e: Error & { code?: string }) => e.code === '23505');
        // the session goes on, outside a transaction
        assert.equal((await c.query('SELECT count(*) AS n FROM items')).rows[0].n, '1');
      } finally { await c.end(); }
      assert.deepEqual((await onShards('SELECT count(*) FROM items')).map(Number).reduce((a, b) => a + b, 0), 1);
      assert.deepEqual(await onShards(`SELECT count(*) FROM pg_prepared_xacts WHERE database = '${db}'`), ['0', '0', '0']);
    });

    it('a malformed row (bad key) fails the COPY with its SQLSTATE and leaves nothing', async () => {
      await reset();
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await assert.rejects(pipeline(Readable.from([lines(1, 100) + 'abc\tbad key\n' + lines(101, 200)]), c.query(copyFrom('COPY items FROM STDIN'))), (e: Error & { code?: string }) => e.code === '22P02');
      } finally { await c.end(); }
      assert.equal((await onShards('SELECT count(*) FROM items')).map(Number).reduce((a, b) => a + b, 0), 0);
    });

    it('a statement pipelined right after CopyDone sees the committed rows', async () => {
      await reset();
      const w = await WireClient.connect(proxy().port, db);
      try {
        w.send([serialize.query('COPY items FROM STDIN'), serialize.copyData(Buffer.from(lines(1, 90))), serialize.copyDone(), serialize.query('SELECT count(*) FROM items')]);
        const got = await w.until(2, 20000);
        assert.deepEqual(got.filter((m) => m.name === 'commandComplete').map((m) => m.tag), ['COPY 90', 'SELECT 1']);
        assert.deepEqual(got.find((m) => m.name === 'dataRow')?.values, ['90']);
        assert.deepEqual(got.filter((m) => m.name === 'readyForQuery').map((m) => m.status), ['I', 'I']);
      } finally { w.close(); }
    });

    it('inside a transaction a failed COPY fails the transaction; COMMIT rolls every shard back', async () => {
      await reset();
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await c.query("INSERT INTO items VALUES (42, 'x')");
        await c.query('BEGIN');
        await c.query("INSERT INTO items VALUES (1000, 'in the transaction')");
        await assert.rejects(pipeline(Readable.from([lines(1, 100)]), c.query(copyFrom('COPY items FROM STDIN'))), (e: Error & { code?: string }) => e.code === '23505');
        const end = await c.query('COMMIT');
        assert.equal(end.command, 'ROLLBACK');
      } finally { await c.end(); }
      assert.equal((await onShards('SELECT count(*) FROM items')).map(Number).reduce((a, b) => a + b, 0), 1);
    });

    it('a reference table gets every row on every shard, and COPY n counts them once', async () => {
      await reset();
      const w = await WireClient.connect(proxy().port, db);
      try {
        const rows = Array.from({ length: 50 }, (_, i) => `${i + 1},"label ${i + 1}"\n`).join('');
        w.send([serialize.query('COPY codes FROM STDIN (FORMAT csv)'), serialize.copyData(Buffer.from(rows)), serialize.copyDone()]);
        const got = await w.until(1, 20000);
        assert.deepEqual(got.filter((m) => m.name === 'commandComplete').map((m) => m.tag), ['COPY 50']);
      } finally { w.close(); }
      assert.deepEqual(await onShards('SELECT count(*) || \':\' || sum(code) FROM codes'), ['50:1275', '50:1275', '50:1275']);
      // a duplicate on every shard: the COPY fails everywhere and the table keeps its 50 rows
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await assert.rejects(pipeline(Readable.from(['100\tnew\n50\tagain\n']), c.query(copyFrom('COPY codes FROM STDIN'))), (e: Error & { code?: string }) => e.code === '23505');
      } finally { await c.end(); }
      assert.deepEqual(await onShards('SELECT count(*) FROM codes'), ['50', '50', '50']);
    });
  });
}

for (const variant of ['with ZooKeeper (two-phase commit)', 'without ZooKeeper'] as const) {
  const proxy = (): RunningProxy => (variant === 'without ZooKeeper' ? noZk : withZk);

  describe(`DDL over 3 shards outside a transaction, ${variant}`, () => {
    it('a constraint that rows of one shard violate is added on no shard', async () => {
      await reset();
      await onEach('ALTER TABLE items DROP CONSTRAINT IF EXISTS small');
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await c.query(`INSERT INTO items VALUES ${Array.from({ length: 30 }, (_, i) => `(${i + 1}, 'r')`).join(', ')}`);
        await c.query("INSERT INTO items VALUES (1000, 'too big')");
        await assert.rejects(c.query('ALTER TABLE items ADD CONSTRAINT small CHECK (id < 500)'), (e: Error & { code?: string }) => e.code === '23514');
        assert.deepEqual(await onShards("SELECT count(*) FROM pg_constraint WHERE conname = 'small'"), ['0', '0', '0']);
        // fixed data: the same statement now succeeds everywhere, and nothing is left prepared
        await c.query('DELETE FROM items WHERE id = 1000');
        await c.query('ALTER TABLE items ADD CONSTRAINT small CHECK (id < 500)');
        assert.deepEqual(await onShards("SELECT count(*) FROM pg_constraint WHERE conname = 'small'"), ['1', '1', '1']);
        await c.query('ALTER TABLE items DROP CONSTRAINT small');
      } finally { await c.end(); }
      assert.deepEqual(await onShards(`SELECT count(*) FROM pg_prepared_xacts WHERE database = '${db}'`), ['0', '0', '0']);
    });

    it('a CREATE TABLE one shard refuses creates the table on no shard', async () => {
      const name = uniqueName('ddl');
      const port = ports[1]!;
      const d = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: db });
      await d.connect();
      await d.query(`CREATE TABLE ${name} (a int)`);   // on the second shard only
      await d.end();
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await assert.rejects(c.query(`CREATE TABLE ${name} (a int, b text)`), (e: Error & { code?: string }) => e.code === '42P07');
      } finally { await c.end(); }
      assert.deepEqual(await onShards(`SELECT count(*) FROM pg_class WHERE relname = '${name}'`), ['0', '1', '0']);
      assert.deepEqual(await onShards(`SELECT count(*) FROM pg_attribute WHERE attrelid = (SELECT oid FROM pg_class WHERE relname = '${name}') AND attname = 'b'`), ['0', '0', '0']);
      await onEach(`DROP TABLE IF EXISTS ${name}`);
    });

    it('statements PostgreSQL refuses in a transaction block still run (CREATE INDEX CONCURRENTLY, VACUUM)', async () => {
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await c.query('CREATE INDEX CONCURRENTLY items_note ON items (note)');
        assert.deepEqual(await onShards("SELECT count(*) FROM pg_class WHERE relname = 'items_note'"), ['1', '1', '1']);
        await c.query('DROP INDEX CONCURRENTLY items_note');
        await c.query('VACUUM items');
        await c.query('CREATE TABLE ok_ddl (a int PRIMARY KEY)');
        await c.query('DROP TABLE ok_ddl');
      } finally { await c.end(); }
      assert.deepEqual(await onShards("SELECT count(*) FROM pg_class WHERE relname IN ('items_note', 'ok_ddl')"), ['0', '0', '0']);
      assert.deepEqual(await onShards(`SELECT count(*) FROM pg_prepared_xacts WHERE database = '${db}'`), ['0', '0', '0']);
    });
  });
}

for (const variant of ['with ZooKeeper (two-phase commit)', 'without ZooKeeper'] as const) {
  const proxy = (): RunningProxy => (variant === 'without ZooKeeper' ? noZk : withZk);

  describe(`a query string of several statements over 3 shards, ${variant}`, () => {
    /** Keys 1..n on three different shards. */
    function spread(): number[] {
      const seen = new Map<number, number>();
      for (let k = 1; seen.size < 3; k++) { const sh = proxy().proxy.ctx.shards.shardForKey('integer', String(k)); if (!seen.has(sh)) seen.set(sh, k); }
      return [...seen.values()];
    }

    it('is one implicit transaction: a failing statement leaves none of the string behind, as in PostgreSQL', async () => {
      await reset();
      const [k1, k2, k3] = spread();
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await c.query(`INSERT INTO items VALUES (${k3}, 'there')`);
        await assert.rejects(c.query(`INSERT INTO items VALUES (${k1}, 'a'); INSERT INTO items VALUES (${k2}, 'b'); INSERT INTO items VALUES (${k3}, 'dup')`),
          (e: Error & { code?: string }) => e.code === '23505');
        assert.equal((await onShards('SELECT count(*) FROM items')).map(Number).reduce((a, b) => a + b, 0), 1);
        // without an error every statement commits, and the session is outside a transaction again
        await c.query(`INSERT INTO items VALUES (${k1}, 'a'); UPDATE items SET note = 'b' WHERE id = ${k3}; INSERT INTO items VALUES (${k2}, 'c')`);
        assert.equal((await c.query('SELECT count(*) AS n FROM items')).rows[0].n, '3');
        const st = await psql(proxy().port, db, `INSERT INTO items VALUES (${k1 + 3000}, 'x'); SELECT 1/0; INSERT INTO items VALUES (${k2 + 3000}, 'y')`);
        assert.match(st.stderr, /division by zero/);
        assert.equal((await c.query(`SELECT count(*) AS n FROM items WHERE id > 3000`)).rows[0].n, '0');
      } finally { await c.end(); }
      assert.deepEqual(await onShards(`SELECT count(*) FROM pg_prepared_xacts WHERE database = '${db}'`), ['0', '0', '0']);
    });

    it('with its own COMMIT the statements before it stay committed, as in PostgreSQL', async () => {
      await reset();
      const [k1, k2] = spread();
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await c.query(`INSERT INTO items VALUES (${k2}, 'there')`);
        await assert.rejects(c.query(`BEGIN; INSERT INTO items VALUES (${k1}, 'a'); COMMIT; INSERT INTO items VALUES (${k2}, 'dup')`), (e: Error & { code?: string }) => e.code === '23505');
        assert.equal((await c.query(`SELECT count(*) AS n FROM items WHERE id = ${k1}`)).rows[0].n, '1');
      } finally { await c.end(); }
    });
  });
}

for (const variant of ['with ZooKeeper (two-phase commit)', 'without ZooKeeper'] as const) {
  const proxy = (): RunningProxy => (variant === 'without ZooKeeper' ? noZk : withZk);

  describe(`sequences created over 3 shards, ${variant}`, () => {
    it('bigserial and bigint identity ids do not repeat across shards; the first shard counts from 1', async () => {
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await c.query('DROP TABLE IF EXISTS tickets');
        await c.query('CREATE TABLE tickets (id bigserial, tenant int, t text, PRIMARY KEY (tenant, id))');
        await c.query(`INSERT INTO tickets (tenant, t) VALUES ${Array.from({ length: 30 }, (_, i) => `(${i + 1}, 'x')`).join(', ')}`);
        for (let i = 1; i <= 6; i++) await c.query('INSERT INTO tickets (tenant, t) VALUES ($1, $2)', [i, 'y']);
        const ids = (await c.query('SELECT id FROM tickets')).rows.map((r) => BigInt(r.id));
        assert.equal(ids.length, 36);
        assert.equal(new Set(ids.map(String)).size, 36, 'ids repeat across shards');
        const mins = (await onShards('SELECT min(id) FROM tickets')).map(BigInt);
        assert.equal(mins[0], 1n);
        for (let k = 1; k < 3; k++) assert.ok(mins[k]! >= (BigInt(k) << 48n) + 1n && mins[k]! < (BigInt(k + 1) << 48n), `shard ${k + 1} ids start at ${mins[k]}`);
        // an identity column added later: the rows it adds next get numbers of their shard's range
        // (the existing rows were numbered by the ALTER itself, from 1 on every shard)
        await c.query('ALTER TABLE tickets ADD COLUMN n bigint GENERATED BY DEFAULT AS IDENTITY');
        await c.query(`INSERT INTO tickets (tenant, t) VALUES ${Array.from({ length: 30 }, (_, i) => `(${i + 1}, 'z')`).join(', ')}`);
        const ns = (await c.query("SELECT n FROM tickets WHERE t = 'z'")).rows.map((r) => String(r.n));
        assert.equal(new Set(ns).size, 30);
        // and a sequence of its own
        await c.query('DROP SEQUENCE IF EXISTS own_seq');
        await c.query('CREATE SEQUENCE own_seq');
        assert.deepEqual((await onShards("SELECT nextval('own_seq')")).map(BigInt), [1n, (1n << 48n) + 1n, (2n << 48n) + 1n]);
        await c.query('DROP SEQUENCE own_seq');
        // serial (integer) ids: 16 ranges of 2^27, shard 0 keeps its start and ends at 2^27 (Prisma's,
        // TypeORM's and Sequelize's default ids; before: 1, 1, 1 on the three shards)
        await c.query('DROP TABLE tickets');
        const made = await c.query('CREATE TABLE tickets (id serial, tenant int, t text, PRIMARY KEY (tenant, id))');
        assert.equal(made.command, 'CREATE');   // one answer, as one server gives (not the shards' range DO as well)
        await c.query(`INSERT INTO tickets (tenant, t) VALUES ${Array.from({ length: 30 }, (_, i) => `(${i + 1}, 'x')`).join(', ')}`);
        const ids4 = (await c.query('SELECT id FROM tickets')).rows.map((r) => String(r.id));
        assert.equal(new Set(ids4).size, 30, 'serial ids repeat across shards');
        assert.deepEqual(await onShards("SELECT seqmin || '-' || seqmax FROM pg_sequence WHERE seqrelid = 'tickets_id_seq'::regclass"),
          [`1-${1 << 27}`, `${(1 << 27) + 1}-${2 ** 28}`, `${2 ** 28 + 1}-${3 * 2 ** 27}`]);
        // a reference table's serial ids count alike on every shard (its INSERTs run on all of them)
        await c.query('DROP TABLE IF EXISTS refseq');
        await c.query('CREATE TABLE refseq (id bigserial PRIMARY KEY, n serial, v text)');
        await c.query("INSERT INTO refseq (v) VALUES ('a'), ('b'), ('c')");
        assert.deepEqual(await onShards("SELECT string_agg(id || '/' || n, ',' ORDER BY id) FROM refseq"), ['1/1,2/2,3/3', '1/1,2/2,3/3', '1/1,2/2,3/3']);
        await c.query('DROP TABLE refseq');
        // DDL in the extended protocol (JDBC, pgx: every statement is Parse/Bind/Execute) too, outside and inside a transaction
        await c.query({ text: 'CREATE SEQUENCE own_seq', queryMode: 'extended' } as pg.QueryConfig);
        assert.deepEqual((await onShards("SELECT nextval('own_seq')")).map(BigInt), [1n, (1n << 48n) + 1n, (2n << 48n) + 1n]);
        await c.query('DROP SEQUENCE own_seq');
        await c.query('BEGIN');
        await c.query({ text: 'CREATE SEQUENCE own_seq', queryMode: 'extended' } as pg.QueryConfig);
        await c.query('COMMIT');
        assert.deepEqual((await onShards("SELECT nextval('own_seq')")).map(BigInt), [1n, (1n << 48n) + 1n, (2n << 48n) + 1n]);
        await c.query('DROP SEQUENCE own_seq');
        await c.query('DROP TABLE tickets');
      } finally { await c.end(); }
      assert.deepEqual(await onShards(`SELECT count(*) FROM pg_prepared_xacts WHERE database = '${db}'`), ['0', '0', '0']);
    });
  });
}

for (const variant of ['with ZooKeeper (two-phase commit)', 'without ZooKeeper'] as const) {
  const proxy = (): RunningProxy => (variant === 'without ZooKeeper' ? noZk : withZk);

  describe(`INSERT without the shard key column over 3 shards, ${variant}`, () => {
    it('the key column\'s default gives the keys (bigserial, uuid DEFAULT, identity ALWAYS), as on one server', async () => {
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await c.query('DROP TABLE IF EXISTS serials, uu, idt, nod');
        await c.query('CREATE TABLE serials (id bigserial PRIMARY KEY, note text)');
        assert.deepEqual((await c.query("INSERT INTO serials (note) VALUES ('a') RETURNING id")).rows, [{ id: '1' }]);
        assert.deepEqual((await c.query("INSERT INTO serials (note) VALUES ('b'), ('c'), ('d') RETURNING id, note")).rows, [{ id: '2', note: 'b' }, { id: '3', note: 'c' }, { id: '4', note: 'd' }]);
        assert.equal((await c.query('SELECT note FROM serials WHERE id = 3')).rows[0].note, 'c');
        const held = (await onShards('SELECT count(*) FROM serials')).map(Number);
        assert.equal(held.reduce((x, y) => x + y, 0), 4);
        assert.ok(held.filter((n) => n > 0).length >= 2, `rows per shard ${held}`);
        // in a transaction: rolled back with it
        await c.query('BEGIN');
        await c.query("INSERT INTO serials (note) VALUES ('gone')");
        await c.query('ROLLBACK');
        assert.equal((await c.query('SELECT count(*) AS n FROM serials')).rows[0].n, '4');
        await c.query('CREATE TABLE uu (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), note text)');
        const ids = (await c.query("INSERT INTO uu (note) VALUES ('x'), ('y') RETURNING id")).rows.map((r) => r.id as string);
        assert.equal(ids.length, 2);
        for (const [i, id] of ids.entries()) assert.equal((await c.query('SELECT note FROM uu WHERE id = $1', [id])).rows[0]?.note, ['x', 'y'][i]);
        await c.query('CREATE TABLE idt (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text)');
        assert.deepEqual((await c.query("INSERT INTO idt (note) VALUES ('p'), ('q') RETURNING id")).rows, [{ id: '1' }, { id: '2' }]);
        // no default: the key would be NULL, which no shard owns
        await c.query('CREATE TABLE nod (id int PRIMARY KEY, note text)');
        await assert.rejects(c.query("INSERT INTO nod (note) VALUES ('q')"), (e: Error & { code?: string }) => e.code === '23502');
        // in a query string of several statements too, which stays one transaction
        await c.query("INSERT INTO serials (note) VALUES ('m1'); INSERT INTO serials (note) VALUES ('m2'), ('m3')");
        assert.equal((await c.query("SELECT count(*) AS n FROM serials WHERE note LIKE 'm%'")).rows[0].n, '3');
        await assert.rejects(c.query("INSERT INTO serials (note) VALUES ('m4'); INSERT INTO nod (note) VALUES ('x')"), (e: Error & { code?: string }) => e.code === '23502');
        assert.equal((await c.query("SELECT count(*) AS n FROM serials WHERE note = 'm4'")).rows[0].n, '0');
        await c.query('DROP TABLE serials, uu, idt, nod');
      } finally { await c.end(); }
    });

    it('the extended protocol too (bind parameters, named statements, binary formats, pipelines), as on one server', async () => {
      const c = client(proxy().port, db);
      await c.connect();
      type E = Error & { code?: string };
      try {
        await c.query('DROP TABLE IF EXISTS serials, uu, idt, nod');
        await c.query('CREATE TABLE serials (id bigserial PRIMARY KEY, note text, n int)');
        assert.deepEqual((await c.query('INSERT INTO serials (note) VALUES ($1) RETURNING id', ['a'])).rows, [{ id: '1' }]);
        assert.deepEqual((await c.query('INSERT INTO serials (note, n) VALUES ($1, $2), ($3, $2), ($4, 7) RETURNING id, note, n', ['b', 5, 'c', 'd'])).rows,
          [{ id: '2', note: 'b', n: 5 }, { id: '3', note: 'c', n: 5 }, { id: '4', note: 'd', n: 7 }]);
        // a named statement, bound again: the next values each time
        for (const [i, note] of ['e', 'f'].entries()) {
          assert.deepEqual((await c.query({ name: 'ins_serial', text: 'INSERT INTO serials (note) VALUES ($1) RETURNING id, note', values: [note] })).rows, [{ id: String(5 + i), note }]);
        }
        assert.equal((await c.query('SELECT note FROM serials WHERE id = $1', [3])).rows[0].note, 'c');
        const held = (await onShards('SELECT count(*) FROM serials')).map(Number);
        assert.equal(held.reduce((x, y) => x + y, 0), 6);
        assert.ok(held.filter((n) => n > 0).length >= 2, `rows per shard ${held}`);
        // in a transaction: rolled back with it
        await c.query('BEGIN');
        await c.query('INSERT INTO serials (note) VALUES ($1)', ['gone']);
        assert.equal((await c.query('SELECT count(*) AS n FROM serials')).rows[0].n, '7');
        await c.query('ROLLBACK');
        assert.equal((await c.query('SELECT count(*) AS n FROM serials')).rows[0].n, '6');
        await c.query('CREATE TABLE uu (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), note text)');
        const ids = (await c.query('INSERT INTO uu (note) VALUES ($1), ($2) RETURNING id', ['x', 'y'])).rows.map((r) => r.id as string);
        for (const [i, id] of ids.entries()) assert.equal((await c.query('SELECT note FROM uu WHERE id = $1', [id])).rows[0]?.note, ['x', 'y'][i]);
        await c.query('CREATE TABLE idt (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text)');
        assert.deepEqual((await c.query('INSERT INTO idt (note) VALUES ($1), ($2) RETURNING id', ['p', 'q'])).rows, [{ id: '1' }, { id: '2' }]);
        // no default: 23502; a default that fails: its error; the session goes on
        await c.query('CREATE TABLE nod (id int PRIMARY KEY, note text)');
        await assert.rejects(c.query('INSERT INTO nod (note) VALUES ($1)', ['q']), (e: E) => e.code === '23502');
        await c.query('DROP TABLE nod');
        await c.query('CREATE TABLE nod (id int PRIMARY KEY DEFAULT (1 / 0), note text)');
        await assert.rejects(c.query('INSERT INTO nod (note) VALUES ($1)', ['q']), (e: E) => e.code === '22012');
        assert.equal((await c.query('SELECT count(*) AS n FROM serials WHERE note = $1', ['a'])).rows[0].n, '1');
      } finally { await c.end(); }
      // A pipeline: the client's unnamed statements around it stay, a binary parameter keeps its
      // format, and a failure later in the unit undoes the row, as PostgreSQL's implicit transaction.
      const w = await WireClient.connect(proxy().port, db);
      try {
        const four = Buffer.alloc(4); four.writeInt32BE(44);
        w.send([
          serialize.parse({ text: 'SELECT max(id) FROM serials' }), serialize.bind({}), serialize.execute({}),
          serialize.parse({ name: 'p1', text: 'INSERT INTO serials (note, n) VALUES ($1, $2) RETURNING id, n', types: [25, 23] }),
          serialize.bind({ statement: 'p1', values: [Buffer.from('bin'), four], valueMapper: (v: unknown) => v as Buffer }),
          serialize.execute({}),
          serialize.bind({}), serialize.execute({}),
          serialize.sync(),
          serialize.bind({ statement: 'p1', values: ['rolled back', '1'] }), serialize.execute({}),
          serialize.parse({ text: 'SELECT 1/0' }), serialize.bind({}), serialize.execute({}),
          serialize.sync(),
        ]);
        const got = await w.until(2, 20000);
        // the rolled-back 'gone' used up 7, as on one server; the second unit's row is sent, then undone
        assert.deepEqual(got.filter((m) => m.name === 'dataRow').map((m) => m.values), [['6'], ['8', '44'], ['8'], ['9', '1']]);
        assert.deepEqual(got.filter((m) => m.name === 'error').map((m) => m.code), ['22012']);
        assert.deepEqual(got.filter((m) => m.name === 'readyForQuery').map((m) => m.status), ['I', 'I']);
      } finally { w.close(); }
      const c2 = client(proxy().port, db);
      await c2.connect();
      try {
        assert.deepEqual((await c2.query("SELECT id, note, n FROM serials WHERE id >= 7 OR note = 'rolled back' ORDER BY id")).rows, [{ id: '8', note: 'bin', n: 44 }]);
        await c2.query('DROP TABLE serials, uu, idt, nod');
      } finally { await c2.end(); }
    });
  });
}

describe('ALTER TABLE ... RENAME through pgring with ZooKeeper', () => {
  it('the cluster definition follows a renamed sharded table and a renamed shard key column', async () => {
    await withClient(withZk.port, db, async (c) => {
    await c.query('DROP TABLE IF EXISTS rn, rn2, rn3');
    await c.query('CREATE TABLE rn (id int PRIMARY KEY, v text)');
    await c.query("INSERT INTO rn VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e'), (6, 'f')");
    await c.query('ALTER TABLE rn RENAME TO rn2');
    // before: rn2 was unknown to the definition, read from one shard as a reference table (2 of 6 rows)
    assert.equal((await c.query('SELECT count(*) AS n FROM rn2')).rows[0].n, '6');
    assert.equal((await c.query('SELECT v FROM rn2 WHERE id = 5')).rows[0]?.v, 'e');
    await c.query('ALTER TABLE rn2 RENAME COLUMN id TO rid');
    await c.query("INSERT INTO rn2 (rid, v) VALUES (7, 'g'), (8, 'h')");
    assert.equal((await c.query('SELECT v FROM rn2 WHERE rid = 8')).rows[0]?.v, 'h');
    assert.equal((await c.query('SELECT count(*) AS n FROM rn2')).rows[0].n, '8');
    const shard = withZk.proxy.ctx.shards.shardForKey('integer', '8');
    assert.equal((await onShards('SELECT count(*) FROM rn2 WHERE rid = 8'))[shard], '1');
    // a rename rolled back leaves the definition alone
    await c.query('BEGIN');
    await c.query('ALTER TABLE rn2 RENAME TO rn3');
    await c.query('ROLLBACK');
    assert.equal((await c.query('SELECT count(*) AS n FROM rn2')).rows[0].n, '8');
    // and one committed in a transaction is followed at its COMMIT
    await c.query('BEGIN');
    await c.query('ALTER TABLE rn2 RENAME TO rn3');
    await c.query('COMMIT');
    assert.equal((await c.query('SELECT count(*) AS n FROM rn3')).rows[0].n, '8');
    // a rename undone by ROLLBACK TO leaves the definition alone
    await c.query('BEGIN');
    await c.query('SAVEPOINT s');
    await c.query('ALTER TABLE rn3 RENAME TO rn4');
    await c.query('ROLLBACK TO SAVEPOINT s');
    await c.query('COMMIT');
    assert.equal((await c.query('SELECT count(*) AS n FROM rn3')).rows[0].n, '8');
    // in a query string over several shards (one implicit transaction), and in the extended protocol
    await c.query('ALTER TABLE rn3 RENAME TO rn4; SELECT 1');
    assert.equal((await c.query('SELECT count(*) AS n FROM rn4')).rows[0].n, '8');
    await c.query({ text: 'ALTER TABLE rn4 RENAME TO rn3', queryMode: 'extended' } as pg.QueryConfig);
    assert.equal((await c.query('SELECT count(*) AS n FROM rn3')).rows[0].n, '8');
    await c.query('DROP TABLE rn3');
    });
  });
});

describe('partitions of a sharded table, with ZooKeeper', () => {
  it('a partition created or attached through pgring is sharded by its parent\'s key: read on every shard, written on one', async () => {
    await withClient(withZk.port, db, async (c) => {
    await c.query('DROP TABLE IF EXISTS events, events_2027 CASCADE');
    await c.query('CREATE TABLE events (tenant int, ts date, v text) PARTITION BY RANGE (ts)');
    await c.query("CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')");
    // created on its own (a reference table then), attached later
    await c.query('CREATE TABLE events_2027 (tenant int, ts date, v text)');
    await c.query("ALTER TABLE events ATTACH PARTITION events_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')");
    // a partition that is partitioned itself, and its partition
    await c.query("CREATE TABLE events_2028 PARTITION OF events FOR VALUES FROM ('2028-01-01') TO ('2029-01-01') PARTITION BY LIST (v)");
    await c.query("CREATE TABLE events_2028_x PARTITION OF events_2028 FOR VALUES IN ('x')");
    await c.query("INSERT INTO events VALUES (1, '2026-05-01', 'a'), (2, '2026-06-01', 'b'), (3, '2027-02-01', 'c'), (4, '2027-03-01', 'd'), (5, '2026-01-02', 'e')");
    // before: read from one shard as a reference table (1 of 3 rows)
    assert.equal((await c.query('SELECT count(*) AS n FROM events_2026')).rows[0].n, '3');
    assert.equal((await c.query('SELECT count(*) AS n FROM events_2027')).rows[0].n, '2');
    // before: a write to the partition went to every shard (the row three times in events)
    await c.query("INSERT INTO events_2027 VALUES (6, '2027-04-04', 'f')");
    await c.query("INSERT INTO events_2028_x VALUES (7, '2028-01-05', 'x')");
    assert.equal((await c.query('SELECT count(*) AS n FROM events')).rows[0].n, '7');
    assert.equal((await onShards('SELECT count(*) FROM events')).map(Number).reduce((x, y) => x + y, 0), 7);
    assert.equal((await c.query('SELECT v FROM events_2027 WHERE tenant = $1', [6])).rows[0]?.v, 'f');
    const shard = withZk.proxy.ctx.shards.shardForKey('integer', '7');
    assert.equal((await onShards('SELECT count(*) FROM events_2028_x WHERE tenant = 7'))[shard], '1');
    await c.query('DROP TABLE events');
    });
  });
});

describe('views over sharded tables', () => {
  it('with ZooKeeper: a view whose rows each come from one shard and that shows the key is registered as sharded, followed by REPLACE and DROP', async () => {
    await reset();
    type E = Error & { code?: string };
    const sharded = (name: string): boolean => withZk.proxy.definition.sharded.some((t) => t.name === name);
    await withClient(withZk.port, db, async (c) => {
    await c.query('DROP VIEW IF EXISTS items_vv, items_v, items_agg');
    await c.query(`INSERT INTO items VALUES ${Array.from({ length: 9 }, (_, i) => `(${i + 1}, 'row ${i + 1}')`).join(', ')}`);
    await c.query('CREATE VIEW items_v AS SELECT id, note FROM items WHERE id > 2');
    assert.ok(sharded('items_v'));
    // before: refused (and before that, read from one shard as a reference table: a third of the rows)
    assert.equal((await c.query('SELECT count(*) AS n FROM items_v')).rows[0].n, '7');
    assert.equal((await c.query('SELECT note FROM items_v WHERE id = $1', [5])).rows[0]?.note, 'row 5');
    assert.deepEqual((await c.query('SELECT id FROM items_v ORDER BY id DESC LIMIT 2')).rows.map((r) => r.id), [9, 8]);
    await c.query('CREATE OR REPLACE VIEW items_v AS SELECT id, note, id * 2 AS d FROM items WHERE id > 4');
    assert.equal((await c.query('SELECT count(*) AS n FROM items_v')).rows[0].n, '5');
    // a view over the view, with the key renamed
    await c.query('CREATE VIEW items_vv (k, n, d) AS SELECT id, note, d FROM items_v WHERE d > 12');
    assert.equal(withZk.proxy.definition.sharded.find((t) => t.name === 'items_vv')?.column, 'k');
    assert.equal((await c.query('SELECT sum(k) AS s FROM items_vv')).rows[0].s, String(7 + 8 + 9));
    assert.equal((await c.query('SELECT n FROM items_vv WHERE k = 8')).rows[0]?.n, 'row 8');
    // rows combined across shards, or without the key: refused as before
    await assert.rejects(c.query('CREATE VIEW items_agg AS SELECT count(*) FROM items'), (e: E) => e.code === '0A000' && /CREATE VIEW over sharded table "items"/.test(e.message));
    await assert.rejects(c.query('CREATE VIEW items_agg AS SELECT note FROM items'), (e: E) => e.code === '0A000');
    await c.query('DROP VIEW items_vv, items_v');
    assert.ok(!sharded('items_v') && !sharded('items_vv'), 'dropped views stay in the definition');
    });
  });

  it('without ZooKeeper: refused (the file is the definition)', async () => {
    const c = client(noZk.port, db);
    await c.connect();
    try {
      await assert.rejects(c.query('CREATE VIEW items_v AS SELECT id, note FROM items'), (e: Error & { code?: string }) => e.code === '0A000' && /without ZooKeeper/.test(e.message));
    } finally { await c.end(); }
  });
});

describe('unique constraints on a sharded table', () => {
  it('one without the shard key is refused over several shards (each shard would check its own rows only); with the key it is made', async () => {
    type E = Error & { code?: string };
    await withClient(withZk.port, db, async (c) => {
    await c.query('DROP TABLE IF EXISTS nod');
    // before: created, and the same email went into two shards
    await assert.rejects(c.query('CREATE TABLE nod (id int PRIMARY KEY, email text UNIQUE)'), (e: E) => e.code === '0A000' && /a UNIQUE constraint on sharded table "nod" that does not include its shard key column "id"/.test(e.message));
    await assert.rejects(c.query('CREATE TABLE nod (id int, email text, PRIMARY KEY (email))'), (e: E) => e.code === '0A000' && /a PRIMARY KEY on sharded table "nod"/.test(e.message));
    await assert.rejects(c.query({ text: 'CREATE TABLE nod (id int, r int4range, EXCLUDE USING gist (r WITH &&))', queryMode: 'extended' } as pg.QueryConfig), (e: E) => e.code === '0A000' && /an EXCLUDE constraint/.test(e.message));
    assert.deepEqual(await onShards("SELECT count(*) FROM pg_class WHERE relname = 'nod'"), ['0', '0', '0']);
    await c.query('CREATE TABLE nod (id int, email text, PRIMARY KEY (id), UNIQUE (email, id))');
    await c.query("INSERT INTO nod VALUES (1, 'a@x'), (2, 'a@x')");
    // explicitly on one shard (SET pgring.shard), where it is what the user asks for
    await c.query("SET pgring.shard = 's1'");
    await c.query('CREATE UNIQUE INDEX nod_email_s1 ON nod (email)');
    await c.query('RESET pgring.shard');
    await c.query('DROP TABLE nod');
    });
  });
});

describe('ALTER TABLE ... ADD / DROP COLUMN and INSERT without a column list, with ZooKeeper', () => {
  it('the shard key is found at its new position: column lists read from the catalog and stated in the definition follow', async () => {
    await withClient(withZk.port, db, async (c) => {
    for (const t of ['lc', 'sc']) {
      await c.query(`DROP TABLE IF EXISTS ${t}`);
      await c.query(`CREATE TABLE ${t} (a int, id int PRIMARY KEY, v int)`);
      await c.query(`INSERT INTO ${t} VALUES (0, 1, 10)`);       // lc: pgring reads the columns from the catalog
      await c.query(`ALTER TABLE ${t} DROP COLUMN a`);
      // (id, v): before, pgring routed by the value at the old position (v = 7)
      await c.query(`INSERT INTO ${t} VALUES (5, 7), (6, 8)`);
      for (const k of [5, 6]) {
        const shard = withZk.proxy.ctx.shards.shardForKey('integer', String(k));
        assert.equal((await onShards(`SELECT count(*) FROM ${t} WHERE id = ${k}`))[shard], '1', `${t}: row ${k} not on its shard`);
      }
      await c.query(`ALTER TABLE ${t} ADD COLUMN w int`);
      await c.query(`INSERT INTO ${t} VALUES (9, 1, 2)`);
      assert.equal((await c.query(`SELECT v FROM ${t} WHERE id = 9`)).rows[0]?.v, 1);
      await c.query(`DROP TABLE ${t}`);
    }
    });
  });
});

describe('column lists read from the catalog, with two proxies', () => {
  it('a proxy reads them again after ADD / DROP COLUMN or CREATE TABLE through another proxy', async () => {
    // Before, the second proxy kept the list it had learned: after DROP COLUMN a through the
    // first, its INSERT without a column list took v for the shard key and put the row elsewhere.
    // (no sharding rules in its file: it takes the cluster's, which the tests above changed)
    const other = await startProxy(await baseConfig(cluster, 3, { zookeeper: withZk.proxy.config.zookeeper }));
    try {
      const caughtUp = async (): Promise<void> => {
        const want = withZk.proxy.definition.version;
        for (let i = 0; i < 200 && other.proxy.definition.version < want; i++) await new Promise((r) => setTimeout(r, 25));
        assert.ok(other.proxy.definition.version >= want, 'the second proxy did not see the new definition');
      };
      const shardOf = (k: number): number => withZk.proxy.ctx.shards.shardForKey('integer', String(k));
      // values whose shard differs from the key's: a row routed by the wrong column lands elsewhere
      const other3 = (k: number): number => { let v = k + 1; while (shardOf(v) === shardOf(k)) v++; return v; };
      const onItsShard = async (k: number): Promise<void> => {
        const shard = withZk.proxy.ctx.shards.shardForKey('integer', String(k));
        assert.equal((await onShards(`SELECT count(*) FROM lc WHERE id = ${k}`))[shard], '1', `row ${k} not on its shard`);
      };
      await withClient(withZk.port, db, async (a) => {
        await withClient(other.port, db, async (b) => {
          await a.query('DROP TABLE IF EXISTS lc');
          await a.query('CREATE TABLE lc (a int, id int PRIMARY KEY, v int)');
          await caughtUp();
          await b.query('INSERT INTO lc VALUES (0, 1, 10)');       // b reads (a, id, v) from the catalog
          await onItsShard(1);
          await a.query('ALTER TABLE lc DROP COLUMN a');
          await caughtUp();
          await b.query(`INSERT INTO lc VALUES (5, ${other3(5)}), (6, ${other3(6)})`);   // (id, v)
          await onItsShard(5);
          await onItsShard(6);
          assert.equal((await b.query('SELECT v FROM lc WHERE id = 6')).rows[0]?.v, other3(6));
          await a.query('DROP TABLE lc');
          await a.query('CREATE TABLE lc (v int, w int, id int PRIMARY KEY)');
          await caughtUp();
          await b.query(`INSERT INTO lc VALUES (1, ${other3(11)}, 11)`);        // (v, w, id)
          await onItsShard(11);
          await a.query('DROP TABLE lc');
        });
      });
    } finally {
      await other.stop();
    }
  });
});

for (const variant of ['with ZooKeeper (two-phase commit)', 'without ZooKeeper'] as const) {
  const proxy = (): RunningProxy => (variant === 'without ZooKeeper' ? noZk : withZk);

  describe(`SET TRANSACTION and SET LOCAL in a transaction over 3 shards, ${variant}`, () => {
    it('every shard the transaction reaches runs with them; the next transaction does not', async () => {
      await reset();
      const keys: number[] = [];
      for (let sh = 0; sh < 3; sh++) { let k = 1; while (proxy().proxy.ctx.shards.shardForKey('integer', String(k)) !== sh) k++; keys.push(k); }
      const c = client(proxy().port, db);
      await c.connect();
      try {
        await c.query(`INSERT INTO items VALUES ${keys.map((k) => `(${k}, 'x')`).join(', ')}`);
        const each = async (setting: string): Promise<string[]> => {
          const out: string[] = [];
          for (const k of keys) out.push((await c.query(`SELECT current_setting('${setting}') AS v FROM items WHERE id = $1`, [k])).rows[0].v);
          return out;
        };
        await c.query('BEGIN');
        await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
        await c.query("SET LOCAL statement_timeout = '12345ms'");
        // before: only the first shard had them (repeatable read there, read committed on the others)
        assert.deepEqual(await each('transaction_isolation'), ['repeatable read', 'repeatable read', 'repeatable read']);
        assert.deepEqual(await each('statement_timeout'), ['12345ms', '12345ms', '12345ms']);
        await c.query('COMMIT');
        assert.deepEqual(await each('transaction_isolation'), ['read committed', 'read committed', 'read committed']);
        assert.deepEqual(await each('statement_timeout'), ['0', '0', '0']);
        const onFirst = async (): Promise<void> => { await c.query('SELECT 1 FROM items WHERE id = $1', [keys[0]]); };
        // a SET LOCAL undone by ROLLBACK TO is not run on shards that join later
        await c.query('BEGIN');
        await onFirst();
        await c.query("SET LOCAL statement_timeout = '1111ms'");
        await c.query('SAVEPOINT s');
        await c.query("SET LOCAL statement_timeout = '2222ms'");
        await c.query('ROLLBACK TO SAVEPOINT s');
        assert.deepEqual(await each('statement_timeout'), ['1111ms', '1111ms', '1111ms']);
        await c.query('COMMIT');
        // shards that join run the SET LOCALs and SAVEPOINTs in their order: ROLLBACK TO then undoes the same on each
        await c.query('BEGIN');
        await onFirst();
        await c.query("SET LOCAL statement_timeout = '1111ms'");
        await c.query('SAVEPOINT s');
        await c.query("SET LOCAL statement_timeout = '2222ms'");
        assert.deepEqual(await each('statement_timeout'), ['2222ms', '2222ms', '2222ms']);
        await c.query('ROLLBACK TO SAVEPOINT s');
        assert.deepEqual(await each('statement_timeout'), ['1111ms', '1111ms', '1111ms']);
        await c.query('COMMIT');
        // a SET LOCAL in a released savepoint stays, also past a later ROLLBACK TO
        await c.query('BEGIN');
        await onFirst();
        await c.query('SAVEPOINT a');
        await c.query("SET LOCAL statement_timeout = '3333ms'");
        await c.query('RELEASE SAVEPOINT a');
        await c.query('SAVEPOINT b');
        await c.query('ROLLBACK TO SAVEPOINT b');
        assert.deepEqual(await each('statement_timeout'), ['3333ms', '3333ms', '3333ms']);
        await c.query('COMMIT');
      } finally { await c.end(); }
    });
  });
}
