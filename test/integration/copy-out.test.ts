// COPY ... TO STDOUT, pg_dump and cursors through a 3-shard pgring. COPY TO of a sharded table
// used to answer with the first shard's rows only (the other shards' CopyData were dropped while
// "COPY n" counted them all), so pg_dump through pgring silently dumped a third of each sharded
// table; and FETCH went to the lowest shard of the transaction, not to the one its DECLARE ran on.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { psqlAt, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, createDatabase, dropDatabase, RunningProxy, startProxy, withClient } from '../helpers/proxy';
import { psql, runTool } from '../helpers/tools';
import { pgbenchTables } from '../helpers/sharding';
import { WireClient } from '../helpers/wire';
import { serialize } from 'pg-protocol';
import { ClusterInfo } from '../../src/local/cluster';
import { chownPostgres, pgBin } from '../../src/local/proc';

let cluster: ClusterInfo;
let a: RunningProxy;
let db: string;
let restored: string;
let ports: number[];
let tmp: string;

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 3).map((p) => p.port);
  db = uniqueName('copyout');
  restored = uniqueName('restored');
  createDatabase(ports, db);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-copyout-'));
  chownPostgres(tmp);
  a = await startProxy(await baseConfig(cluster, 3, { sharding: { tables: pgbenchTables }, locks: { mode: 'off' } }));
  const r = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(a.port), '-U', 'postgres', '-i', '-s', '1', '-q', db]);
  assert.equal(r.code, 0, r.stderr);
  // balances that differ per row, so that sums catch a lost or doubled row
  const u = await psql(a.port, db, 'UPDATE pgbench_accounts SET abalance = aid % 97');
  assert.equal(u.code, 0, u.stderr);
});

after(async () => {
  await a?.stop();
  dropDatabase(ports, db);
  try { psqlAt(ports[0]!, `DROP DATABASE IF EXISTS ${restored}`); } catch { /* not created */ }
  fs.rmSync(tmp, { recursive: true, force: true });
});

const SUMS = 'SELECT count(*), sum(aid), sum(abalance) FROM pgbench_accounts';
/** The proxy runs in this process: a client of it must never be run synchronously. */
function run(bin: string, args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(pgBin(bin), args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('close', (status) => resolve({ status, stderr }));
  });
}
async function viaProxy(sql: string): Promise<string> {
  const r = await psql(a.port, db, sql, ['-At']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

describe('COPY TO STDOUT over 3 shards', () => {
  it('every shard holds a part of the table (the test is meaningful)', () => {
    const held = ports.map((p) => Number(psqlAt(p, 'SELECT count(*) FROM pgbench_accounts', db)));
    assert.ok(held.every((n) => n > 0 && n < 100000), `rows per shard: ${held}`);
  });

  it('text: every row of every shard, once, and COPY n counts them', async () => {
    const r = await psql(a.port, db, 'COPY pgbench_accounts TO STDOUT');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 100000);
    const aids = new Set(lines.map((l) => Number(l.split('\t')[0])));
    assert.equal(aids.size, 100000);
    const total = ports.reduce((s, p) => s + Number(psqlAt(p, 'SELECT sum(abalance) FROM pgbench_accounts', db)), 0);
    assert.equal(lines.reduce((s, l) => s + Number(l.split('\t')[2]), 0), total);
    const tag = await psql(a.port, db, '\\copy pgbench_accounts to /dev/null');
    assert.match(tag.stdout, /COPY 100000/);
  });

  it('csv with HEADER: the header line once', async () => {
    for (const sql of ['COPY pgbench_accounts TO STDOUT WITH (FORMAT csv, HEADER)', 'COPY pgbench_accounts TO STDOUT WITH CSV HEADER', 'COPY (SELECT aid, abalance FROM pgbench_accounts) TO STDOUT (FORMAT csv, HEADER true)']) {
      const r = await psql(a.port, db, sql);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, 100001, sql);
      assert.equal(lines.filter((l) => l.startsWith('aid,')).length, 1, sql);
      assert.ok(lines[0]!.startsWith('aid,'), sql);
    }
  });

  it('binary: one header and one trailer; PostgreSQL itself loads the stream', async () => {
    const file = path.join(tmp, 'accounts.bin');
    const empty = path.join(tmp, 'empty.bin');
    for (const [sql, out] of [['COPY pgbench_accounts TO STDOUT (FORMAT binary)', file], ['COPY (SELECT * FROM pgbench_accounts WHERE aid < 0) TO STDOUT (FORMAT binary)', empty]] as const) {
      const r = await run('psql', ['-h', '127.0.0.1', '-p', String(a.port), '-U', 'postgres', '-d', db, '-X', '-v', 'ON_ERROR_STOP=1', '-o', out, '-c', sql]);
      assert.equal(r.status, 0, r.stderr);
      fs.chmodSync(out, 0o644);
    }
    assert.equal(fs.readFileSync(file).subarray(0, 11).toString('latin1'), 'PGCOPY\n\xff\r\n\0');
    assert.equal(fs.statSync(empty).size, 21, 'no rows: the header and the trailer only');
    const p = ports[0]!;
    psqlAt(p, 'DROP TABLE IF EXISTS copy_back; CREATE TABLE copy_back (aid int, bid int, abalance int, filler char(84))', db);
    psqlAt(p, `COPY copy_back FROM '${file}' (FORMAT binary)`, db);
    psqlAt(p, `COPY copy_back FROM '${empty}' (FORMAT binary)`, db);
    assert.equal(psqlAt(p, 'SELECT count(*), sum(aid), sum(abalance) FROM copy_back', db).trim(), await viaProxy(SUMS));
    psqlAt(p, 'DROP TABLE copy_back', db);
  });

  it('expressions over aggregates (finalize.ts) at the wire: pipelined units, an error in a unit, row-limited portals', async () => {
    const { serialize } = await import('pg-protocol');
    const c = await WireClient.connect(a.port, db);
    const q = 'SELECT aid % 3 AS r, count(*) * 2 AS n FROM pgbench_accounts GROUP BY aid % 3 ORDER BY r';
    try {
      c.send([
        // unit 1: a named statement, Describe of the portal, every row
        serialize.parse({ name: 'f1', text: q }), serialize.bind({ portal: 'p1', statement: 'f1' }), serialize.describe({ type: 'P', name: 'p1' }), serialize.execute({ portal: 'p1' }), serialize.sync(),
        // unit 2: the outer query fails; PostgreSQL skips the rest of the unit
        serialize.parse({ text: 'SELECT sum(abalance) / 0 FROM pgbench_accounts' }), serialize.bind({}), serialize.execute({}),
        serialize.parse({ text: 'SELECT 1' }), serialize.bind({}), serialize.execute({}), serialize.sync(),
        // a simple query right behind it
        serialize.query('SELECT count(*) + 1 AS c FROM pgbench_accounts'),
        // in a transaction: a portal read two rows at a time
        serialize.query('BEGIN'),
        serialize.bind({ portal: 'p2', statement: 'f1' }), serialize.execute({ portal: 'p2', rows: 2 }), serialize.execute({ portal: 'p2', rows: 2 }), serialize.sync(),
        serialize.query('COMMIT'),
        // the client's unnamed statement on the shards survives pgring's own Parse of the outer query
        serialize.parse({ text: 'SELECT count(*) FROM pgbench_tellers' }), serialize.bind({}), serialize.execute({}),
        serialize.bind({ portal: 'p3', statement: 'f1' }), serialize.execute({ portal: 'p3' }),
        serialize.bind({}), serialize.execute({}), serialize.sync(),
      ]);
      const got = await c.until(7, 30000);
      // in PostgreSQL's order: COMMIT answered before the next unit's ParseComplete (a COMMIT
      // deferred behind requests in flight once let the next message overtake its commit)
      const commit = got.findIndex((m) => m.tag === 'COMMIT');
      const lastParse = got.map((m) => m.name).lastIndexOf('parseComplete');
      assert.ok(commit >= 0 && commit < lastParse, JSON.stringify(got.map((m) => m.name)));
      const names = got.map((m) => m.name);
      const rows = got.filter((m) => m.name === 'dataRow').map((m) => (m.values ?? []).join(':'));
      assert.deepEqual(rows, ['0:66666', '1:66668', '2:66666', '100001', '0:66666', '1:66668', '2:66666', '10', '0:66666', '1:66668', '2:66666', '10'], JSON.stringify(got));
      assert.equal(got.filter((m) => m.name === 'error').length, 1, JSON.stringify(got));
      assert.equal(got.find((m) => m.name === 'error')?.code, '22012');
      assert.equal(names.filter((n) => n === 'portalSuspended').length, 1, JSON.stringify(names));
      assert.deepEqual(got.filter((m) => m.name === 'commandComplete').map((m) => m.tag), ['SELECT 3', 'SELECT 1', 'BEGIN', 'SELECT 1', 'COMMIT', 'SELECT 1', 'SELECT 3', 'SELECT 1']);
      assert.deepEqual(got.filter((m) => m.name === 'readyForQuery').map((m) => m.status), ['I', 'I', 'I', 'T', 'T', 'I', 'I']);
    } finally { c.close(); }
  });

  it('subqueries not joined on the key (subqueries.ts): run first, in the client\'s transaction; correlated ones over the rows read first', async () => {
    await withClient(a.port, db, async (c) => {
      const q = (sql: string): Promise<unknown[][]> => c.query({ text: sql, rowMode: 'array' }).then((r) => r.rows as unknown[][]);
      // pgbench_accounts' balances are aid % 97: the accounts above the one of aid 95 are those of aid % 97 = 96
      assert.deepEqual(await q('SELECT count(*) FROM pgbench_accounts WHERE abalance > (SELECT abalance FROM pgbench_accounts WHERE aid = 95)'), [['1030']]);
      await c.query('BEGIN');
      await c.query('UPDATE pgbench_accounts SET abalance = 1000 WHERE aid = 96');
      // qualified by its own table: run first in this transaction, so it sees the update
      assert.deepEqual(await q('SELECT count(*) FROM pgbench_accounts a WHERE a.abalance >= (SELECT p.abalance - 904 FROM pgbench_accounts p WHERE p.aid = 96)'), [['1030']]);
      // a correlated one: the rows of its table that its own conditions select are read first, in
      // this transaction (materialize.ts; the update of aid 96 makes the branch's maximum 1000)
      assert.deepEqual(await q('SELECT count(*) FROM pgbench_tellers t WHERE (SELECT max(a.abalance) FROM pgbench_accounts a WHERE a.bid = t.bid AND a.aid < 100) = 1000'), [['10']]);
      // an unqualified column might be the outer statement's: not tried inside a transaction, and
      // the whole table is more than pgring reads first
      await assert.rejects(c.query('SELECT count(*) FROM pgbench_tellers t WHERE t.tbalance < (SELECT max(abalance) FROM pgbench_accounts)'),
        (e: { code?: string; message: string }) => e.code === '0A000' && /\(SELECT \* FROM pgbench_accounts\) would read more than 10000 rows/.test(e.message));
      await c.query('ROLLBACK');
      // outside a transaction it is tried and runs first
      assert.deepEqual(await q('SELECT count(*) FROM pgbench_tellers t WHERE t.tbalance < (SELECT max(abalance) FROM pgbench_accounts)'), [['10']]);
      assert.deepEqual(await q('SELECT count(*) FROM pgbench_tellers t WHERE (SELECT max(a.abalance) FROM pgbench_accounts a WHERE a.bid = t.bid AND a.aid < 100) = 1000'), [['0']]);
      await assert.rejects(c.query('SELECT count(*) FROM pgbench_tellers t WHERE t.tbalance < (SELECT max(a.abalance) FROM pgbench_accounts a WHERE a.bid = t.bid)'),
        (e: { code?: string; message: string }) => e.code === '0A000' && /would read more than 10000 rows/.test(e.message));
      // in a transaction: the RowDescription is PostgreSQL's for the client's text (source table and
      // column), and an error of the statement is its own, failing the transaction
      await c.query('BEGIN');
      const ranked = await c.query('SELECT tid, rank() OVER (ORDER BY tid DESC) FROM pgbench_tellers WHERE tid < 4');
      assert.equal(ranked.rowCount, 3);
      assert.ok(ranked.fields[0]!.tableID > 0 && ranked.fields[0]!.columnID === 1, JSON.stringify(ranked.fields[0]));
      await assert.rejects(c.query('SELECT nosuch, rank() OVER (ORDER BY tid) FROM pgbench_tellers WHERE tid < 4'), (e: { code?: string }) => e.code === '42703');
      await assert.rejects(c.query('SELECT 1'), (e: { code?: string }) => e.code === '25P02');
      await c.query('ROLLBACK');
      // in a multi-statement string too (session 23; was 0A000 "… in a multi-statement string")
      const multi = await c.query('SELECT 1 AS one; SELECT count(*) FROM pgbench_tellers t WHERE t.tbalance < (SELECT max(a.abalance) FROM pgbench_accounts a WHERE a.aid < 100); SELECT aid, rank() OVER (ORDER BY abalance DESC, aid) AS r FROM pgbench_accounts WHERE aid < 5 ORDER BY r') as unknown as { rows: unknown[] }[];
      assert.deepEqual(multi.map((r) => r.rows), [[{ one: 1 }], [{ count: '10' }], [{ aid: 4, r: '1' }, { aid: 3, r: '2' }, { aid: 2, r: '3' }, { aid: 1, r: '4' }]]);
      // a write whose subquery reads other shards: its keys come from the subquery's rows
      const r = await c.query('UPDATE pgbench_tellers SET tbalance = tbalance WHERE tid IN (SELECT aid FROM pgbench_accounts WHERE aid < 4)');
      assert.equal(r.rowCount, 3);
      assert.deepEqual(await q('SELECT abalance FROM pgbench_accounts WHERE aid = 96'), [[96]]);
    });
  });

  it('sharding.readFirstMaxRows bounds what a read first may give', async () => {
    const small = await startProxy(await baseConfig(cluster, 3, { sharding: { tables: pgbenchTables, readFirstMaxRows: 50 }, locks: { mode: 'off' } }));
    try {
      await withClient(small.port, db, async (c) => {
        const q = (n: number): string => `SELECT aid, row_number() OVER (ORDER BY abalance DESC, aid) AS r FROM pgbench_accounts WHERE aid <= ${n} ORDER BY r LIMIT 1`;
        assert.deepEqual((await c.query(q(50))).rows, [{ aid: 50, r: '1' }]);
        await assert.rejects(c.query(q(51)), (e: { code?: string; message: string; hint?: string }) => e.code === '0A000' && /would read more than 50 rows/.test(e.message) && /readFirstMaxRows/.test(e.hint ?? ''));
      });
    } finally { await small.stop(); }
  });

  it('extended protocol: the merged stream and COPY n', async () => {
    const { serialize } = await import('pg-protocol');
    const c = await WireClient.connect(a.port, db);
    try {
      c.send([serialize.parse({ text: 'COPY pgbench_tellers TO STDOUT' }), serialize.bind({}), serialize.execute({}), serialize.sync()]);
      const got = await c.until(1, 20000);
      assert.equal(got.filter((m) => m.name === 'copyOutResponse').length, 1);
      assert.equal(got.filter((m) => m.name === 'copyData').length, 10);
      assert.equal(got.filter((m) => m.name === 'copyDone').length, 1);
      assert.equal(got.find((m) => m.name === 'commandComplete')?.tag, 'COPY 10');
    } finally { c.close(); }
  });

  it('COPY (SELECT … ORDER BY / GROUP BY / LIMIT …) TO: the SELECT merged, written as PostgreSQL writes it', async () => {
    // Before: 0A000 (`\\copy (SELECT … ORDER BY …) TO 'report.csv' CSV HEADER` in psql). Compared byte
    // for byte with the same COPY against plain PostgreSQL holding the same rows.
    const plain = uniqueName('copyplain');
    createDatabase([ports[0]!], plain);
    try {
      const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(ports[0]), '-U', 'postgres', '-i', '-s', '1', '-q', plain]);
      assert.equal(init.code, 0, init.stderr);
      assert.equal((await psql(ports[0]!, plain, 'UPDATE pgbench_accounts SET abalance = aid % 97')).code, 0);
      const cases = [
        'COPY (SELECT * FROM pgbench_accounts ORDER BY aid LIMIT 50) TO STDOUT',
        'COPY (SELECT bid, count(*), sum(abalance), avg(abalance) FROM pgbench_accounts GROUP BY bid ORDER BY bid) TO STDOUT (FORMAT csv, HEADER)',
        `COPY (SELECT aid, 'a,b "q" ' || aid AS t, NULL::text AS n, E'x\\ty\\\\z\\n;' AS e FROM pgbench_accounts ORDER BY aid DESC LIMIT 5) TO STDOUT`,
        `COPY (SELECT aid, 'a;b "q" ' || aid AS t, NULL::text AS n, E'x\\ny' AS e, '' AS empty FROM pgbench_accounts ORDER BY aid DESC LIMIT 5) TO STDOUT (FORMAT csv, DELIMITER ';', NULL 'NULL', FORCE_QUOTE (aid), HEADER)`,
        "COPY (SELECT '' AS e, aid FROM pgbench_accounts ORDER BY aid LIMIT 2) TO STDOUT CSV",
        'COPY (SELECT count(*), sum(abalance) FROM pgbench_accounts) TO STDOUT',
        'COPY (SELECT DISTINCT abalance FROM pgbench_accounts WHERE aid < 500 ORDER BY 1 OFFSET 3) TO STDOUT (DELIMITER \'|\')',
        // expressions over aggregates: the inner query merged, the outer one evaluated by a server (finalize.ts)
        "COPY (SELECT 'branch ' || bid AS branch, round(avg(abalance), 3) AS mean, count(*) * 2 FROM pgbench_accounts GROUP BY bid HAVING count(*) > 1 ORDER BY count(*) DESC, bid) TO STDOUT (FORMAT csv, HEADER)",
        // what no merge answers: the tables read first, the SELECT run on one shard (session 23, materialize.ts)
        'COPY (SELECT aid, abalance, rank() OVER (ORDER BY abalance DESC, aid) FROM pgbench_accounts WHERE aid BETWEEN 90 AND 120 ORDER BY 3) TO STDOUT (FORMAT csv, HEADER)',
        'COPY (SELECT t.tid, a.aid FROM pgbench_tellers t JOIN pgbench_accounts a ON a.aid = t.tid * 7 WHERE a.aid < 100 ORDER BY 1) TO STDOUT',
      ];
      for (const sql of cases) {
        const want = await psql(ports[0]!, plain, sql);
        const got = await psql(a.port, db, sql);
        assert.equal(got.code, 0, `${sql}: ${got.stderr}`);
        assert.ok(want.stdout.length > 0, sql);
        assert.equal(got.stdout, want.stdout, sql);
      }
      // binary cannot be written by pgring: refused, as before
      await withClient(a.port, db, async (c) => {
        await assert.rejects(c.query('COPY (SELECT aid FROM pgbench_accounts ORDER BY aid) TO STDOUT (FORMAT binary)'), (e: { code?: string; message: string }) => e.code === '0A000' && /binary format across shards/.test(e.message));
        // written by the single-statement simple Query path only
        await assert.rejects(c.query('SELECT 1; COPY (SELECT aid FROM pgbench_accounts ORDER BY aid LIMIT 2) TO STDOUT'), (e: { code?: string; message: string }) => e.code === '0A000' && /multi-statement string/.test(e.message));
      });
    } finally {
      dropDatabase([ports[0]!], plain);
    }
  });

  it('what concatenation cannot answer is refused (0A000), not cut short; a key still routes', async () => {
    for (const sql of [`COPY pgbench_accounts TO '${path.join(tmp, 'x')}'`, 'COPY (SELECT aid FROM pgbench_accounts ORDER BY aid) TO STDOUT (FORMAT binary)']) {
      await withClient(a.port, db, async (c) => {
        await assert.rejects(c.query(sql), (e: { code?: string; message: string }) => e.code === '0A000' && /across shards/.test(e.message), sql);
      });
    }
    const one = await psql(a.port, db, 'COPY (SELECT aid FROM pgbench_accounts WHERE aid = 4242) TO STDOUT');
    assert.equal(one.stdout.trim(), '4242');
    const union = await psql(a.port, db, 'COPY (SELECT aid FROM pgbench_accounts WHERE aid < 3 UNION ALL SELECT tid FROM pgbench_tellers WHERE tid < 3) TO STDOUT');
    assert.deepEqual(union.stdout.trim().split('\n').map(Number).sort(), [1, 1, 2, 2]);
  });

  it('pg_dump through pgring dumps every row; the dump restores into plain PostgreSQL', async () => {
    const file = path.join(tmp, 'dump.sql');
    const r = await run('pg_dump', ['-h', '127.0.0.1', '-p', String(a.port), '-U', 'postgres', '-f', file, db]);
    assert.equal(r.status, 0, r.stderr);
    fs.chmodSync(file, 0o644);
    const rows: Record<string, number> = {};
    let table: string | null = null;
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (table === null) { const m = /^COPY public\.(\w+) /.exec(line); if (m) { table = m[1]!; rows[table] = 0; } continue; }
      if (line === '\\.') table = null; else rows[table]!++;
    }
    assert.deepEqual(rows, { pgbench_accounts: 100000, pgbench_branches: 1, pgbench_history: 0, pgbench_tellers: 10 });
    psqlAt(ports[0]!, `CREATE DATABASE ${restored}`);
    psqlAt(ports[0]!, `\\i ${file}`, restored);
    assert.equal(psqlAt(ports[0]!, SUMS, restored).trim(), await viaProxy(SUMS));
  });
});

describe('cursors over 3 shards', () => {
  it('psycopg 3\'s server-side cursor messages (extended DECLARE with a parameter, Describe of the cursor, extended FETCH / MOVE / CLOSE) answered as PostgreSQL answers them', async () => {
    const { parse: P, bind: B, describe: D, execute: E, sync: S, query: Q } = serialize;
    const unit = (text: string, values: string[] = [], types: number[] = []) => [P({ text, types }), B({ values }), D({ type: 'P' }), E({}), S()];
    const run = async (port: number, table: string) => {
      const c = await WireClient.connect(port, db);
      const out: unknown[] = [];
      try {
        c.send([Q('BEGIN')]); await c.until(1, 10000);
        c.send(unit(`DECLARE "cc" SCROLL CURSOR FOR SELECT tid, bid FROM ${table} WHERE tid > $1 ORDER BY tid`, ['3'], [21]));
        out.push(await c.until(1, 30000));
        c.send([D({ type: 'P', name: 'cc' }), S()]); out.push(await c.until(1, 10000));
        for (const q of ['FETCH FORWARD 2 FROM "cc"', 'MOVE ABSOLUTE 5 FROM "cc"', 'FETCH FORWARD ALL FROM "cc"', 'FETCH BACKWARD 1 FROM "cc"', 'CLOSE "cc"', 'FETCH FORWARD 1 FROM "cc"']) {
          c.send(unit(q)); out.push(await c.until(1, 10000));
        }
        c.send([Q('ROLLBACK')]); out.push(await c.until(1, 10000));
        // an error in the DECLARE's query, then the session goes on
        c.send([Q('BEGIN')]); await c.until(1, 10000);
        c.send(unit(`DECLARE "bad" CURSOR FOR SELECT nope FROM ${table} WHERE tid > $1`, ['1'], [0]));
        out.push(await c.until(1, 30000));
        c.send([Q('ROLLBACK')]); out.push(await c.until(1, 10000));
      } finally { c.close(); }
      return out;
    };
    psqlAt(ports[0]!, 'DROP TABLE IF EXISTS tellers_wire; CREATE TABLE tellers_wire (tid int, bid int)', db);
    psqlAt(ports[0]!, `INSERT INTO tellers_wire VALUES ${Array.from({ length: 10 }, (_, i) => `(${i + 1}, 1)`).join(', ')}`, db);
    try {
      const direct = await run(ports[0]!, 'tellers_wire');
      const through = await run(a.port, 'pgbench_tellers');
      assert.deepEqual(through, direct);
      assert.ok(JSON.stringify(direct).includes('"FETCH 2"') && JSON.stringify(direct).includes('"dataRow"'), 'the scenario fetches rows');
    } finally { psqlAt(ports[0]!, 'DROP TABLE tellers_wire', db); }
  });

  it('psycopg 3 (Debian\'s python3-psycopg) iterates a named cursor over several shards', async (t) => {
    const py = '/usr/bin/python3';
    if (!fs.existsSync(py) || spawnSync(py, ['-c', 'import psycopg']).status !== 0) { t.skip('python3-psycopg is not installed'); return; }
    const script = [
      'import psycopg, sys',
      `with psycopg.connect("host=127.0.0.1 port=${a.port} user=postgres dbname=${db}") as conn:`,
      '    with conn.cursor(name="acc") as cur:',
      '        cur.execute("SELECT aid, abalance FROM pgbench_accounts WHERE aid <= %s AND abalance > %s ORDER BY aid", (3000, 50))',
      '        first = cur.fetchmany(7)',
      '        rest = cur.fetchall()',
      '    n = conn.execute("SELECT count(*) FROM pgbench_accounts WHERE aid <= 3000 AND abalance > 50").fetchone()[0]',
      '    print(len(first), len(first) + len(rest) == n, first[0][0] < first[1][0])',
    ].join('\n');
    // (spawned, not run in this process's event loop: the proxy answering it runs here)
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(py, ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '', stderr = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.stderr.on('data', (d) => { stderr += d; });
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '7 True True');
  });

  it('FETCH, MOVE and CLOSE go to the shard the DECLARE ran on, not the first shard of the transaction', async () => {
    const shardOf = (aid: number) => ports.findIndex((p) => psqlAt(p, `SELECT count(*) FROM pgbench_accounts WHERE aid = ${aid}`, db).trim() === '1');
    const first = 1;
    let other = 2;
    assert.ok(shardOf(first) >= 0);
    while (shardOf(other) === shardOf(first) && other < 100) other++;
    const [lo, hi] = shardOf(first) < shardOf(other) ? [first, other] : [other, first];
    await withClient(a.port, db, async (c) => {
      await c.query('BEGIN');
      await c.query(`SELECT abalance FROM pgbench_accounts WHERE aid = ${lo}`);
      await c.query(`DECLARE cur CURSOR FOR SELECT aid FROM pgbench_accounts WHERE aid = ${hi}`);
      assert.deepEqual((await c.query('FETCH NEXT FROM cur')).rows, [{ aid: hi }]);
      assert.equal((await c.query('MOVE NEXT IN cur')).rowCount, 0);
      await c.query('CLOSE cur');
      await c.query(`DECLARE cur2 CURSOR FOR SELECT aid FROM pgbench_accounts WHERE aid = ${hi}`);
      await c.query(`DECLARE cur3 CURSOR FOR SELECT aid FROM pgbench_accounts WHERE aid = ${lo}`);
      await c.query('CLOSE ALL');
      await assert.rejects(c.query('FETCH cur2'), (e: { code?: string }) => e.code === '34000');
      await c.query('ROLLBACK');
    });
  });

  it('a cursor over several shards: pgring keeps its rows and answers FETCH / MOVE like PostgreSQL', async () => {
    const plain = await psql(a.port, db, 'SELECT aid, abalance FROM pgbench_accounts', ['-At']);
    const fetched = await psql(a.port, db, 'SELECT aid, abalance FROM pgbench_accounts', ['-At', '-v', 'FETCH_COUNT=1000']);
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.equal(fetched.stdout.trim().split('\n').length, 100000);
    assert.deepEqual(fetched.stdout.trim().split('\n').sort(), plain.stdout.trim().split('\n').sort());
    const top = await psql(a.port, db, 'SELECT aid FROM pgbench_accounts ORDER BY abalance DESC, aid LIMIT 5', ['-At', '-v', 'FETCH_COUNT=2']);
    assert.equal(top.stdout.trim().split('\n').join(','), (await psql(a.port, db, 'SELECT aid FROM pgbench_accounts ORDER BY abalance DESC, aid LIMIT 5', ['-At'])).stdout.trim().split('\n').join(','));
    // every direction, against PostgreSQL itself on the same rows
    const steps = ['FETCH ALL c', 'FETCH BACKWARD 1 c', 'FETCH ABSOLUTE 3 c', 'MOVE FORWARD ALL c', 'FETCH PRIOR c', 'FETCH RELATIVE 0 c', 'FETCH FORWARD 0 c',
      'FETCH ABSOLUTE -2 c', 'MOVE BACKWARD ALL c', 'FETCH RELATIVE 2 c', 'FETCH ABSOLUTE 50 c', 'FETCH BACKWARD 4 c', 'FETCH 3 c', 'MOVE -1 c', 'FETCH NEXT c', 'FETCH LAST c', 'FETCH FIRST c'];
    const script = (from: string) => ['BEGIN', `DECLARE c SCROLL CURSOR FOR SELECT tid, bid FROM ${from} ORDER BY tid`, ...steps, 'CLOSE c', 'ROLLBACK'].map((x) => x + ';').join('\n');
    const through = await runTool('psql', ['-h', '127.0.0.1', '-p', String(a.port), '-U', 'postgres', '-d', db, '-X', '-v', 'ON_ERROR_STOP=1', '-f', '-'], { input: script('pgbench_tellers') });
    assert.equal(through.code, 0, through.stderr);
    psqlAt(ports[0]!, 'DROP TABLE IF EXISTS tellers_copy; CREATE TABLE tellers_copy AS SELECT tid, bid FROM pgbench_tellers WHERE false', db);
    psqlAt(ports[0]!, `INSERT INTO tellers_copy VALUES ${Array.from({ length: 10 }, (_, i) => `(${i + 1}, 1)`).join(', ')}`, db);
    const direct = await runTool('psql', ['-h', '127.0.0.1', '-p', String(ports[0]), '-U', 'postgres', '-d', db, '-X', '-v', 'ON_ERROR_STOP=1', '-f', '-'], { input: script('tellers_copy') });
    psqlAt(ports[0]!, 'DROP TABLE tellers_copy', db);
    assert.equal(through.stdout, direct.stdout);
  });

  it('cursors over several shards: transaction rules, WITH HOLD, pg_dump --inserts, a DECLARE bound with parameters', async () => {
    await withClient(a.port, db, async (c) => {
      await assert.rejects(c.query('DECLARE c CURSOR FOR SELECT * FROM pgbench_accounts'), (e: { code?: string }) => e.code === '25P01');
      await c.query('BEGIN');
      await c.query('DECLARE gone CURSOR FOR SELECT aid FROM pgbench_accounts');
      await c.query('DECLARE kept CURSOR WITH HOLD FOR SELECT aid FROM pgbench_accounts ORDER BY aid');
      await c.query('COMMIT');
      await assert.rejects(c.query('FETCH gone'), (e: { code?: string }) => e.code === '34000');
      assert.deepEqual((await c.query('FETCH 3 FROM kept')).rows, [{ aid: 1 }, { aid: 2 }, { aid: 3 }]);
      assert.equal((await c.query('MOVE FORWARD ALL IN kept')).rowCount, 99997);
      await c.query('CLOSE kept');
      // through the extended protocol, with a parameter (the pg driver binds it): pgring keeps the rows
      await c.query('BEGIN');
      await c.query('DECLARE x CURSOR FOR SELECT aid FROM pgbench_accounts WHERE abalance > $1 AND aid < $2 ORDER BY aid', [90, 500]);
      const want = (await c.query('SELECT aid FROM pgbench_accounts WHERE abalance > 90 AND aid < 500 ORDER BY aid')).rows;
      assert.ok(want.length > 5);
      assert.deepEqual((await c.query('FETCH ALL FROM x')).rows, want);
      await c.query('ROLLBACK');
      // a query no merge answers (a window over all rows): its table read first, the rows kept (session 23)
      await c.query('BEGIN');
      await c.query('UPDATE pgbench_accounts SET abalance = 500 WHERE aid = 3');
      await c.query('DECLARE w CURSOR FOR SELECT aid, rank() OVER (ORDER BY abalance DESC, aid) AS r FROM pgbench_accounts WHERE aid < 200 ORDER BY r');
      assert.deepEqual((await c.query('FETCH 2 FROM w')).rows, [{ aid: 3, r: '1' }, { aid: 96, r: '2' }]);
      await c.query('ROLLBACK');
    });
    const file = path.join(tmp, 'inserts.sql');
    const r = await run('pg_dump', ['-h', '127.0.0.1', '-p', String(a.port), '-U', 'postgres', '--inserts', '-t', 'pgbench_accounts', '-f', file, db]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('INSERT INTO public.pgbench_accounts ')).length, 100000);
  });
});
