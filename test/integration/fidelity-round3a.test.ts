// Protocol fidelity, third round (issue 20, items 1, 2, 6 and PREPARE TRANSACTION after
// temporary objects): the same wire sequences run directly on PostgreSQL and through pgring
// (ZooKeeper configured, locks.mode all, two shards where locks matter) and must answer alike.
// - No rows under a stale RowDescription: a statement prepared before DDL that changed its
//   result columns gets 0A000 on another pooled server connection (postgres.js's sequence).
// - DEALLOCATE of protocol-level statements in every form; SQL EXECUTE of one.
// - A pipeline whose first statement fails skips the CREATE (no lock taken, none left) and
//   answers COMMIT as PostgreSQL does, in both pool modes; session pooling shows one pid.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { psqlAt, stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { ClusterInfo } from '../../src/local/cluster';
import { WireClient, WireMsg } from '../helpers/wire';

let cluster: ClusterInfo;
let ports: number[];
let directDb: string;
let db: string;
let tx: RunningProxy;
let session: RunningProxy;
let one: RunningProxy;
let oneSession: RunningProxy;
const clients: pg.Client[] = [];

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 2).map((p) => p.port);
  directDb = uniqueName('fid3a_direct');
  db = uniqueName('fid3a');
  createDatabase([ports[0]!], directDb);
  createDatabase(ports, db);
  const cfg = async (mode: string, shards = 2) => baseConfig(cluster, shards, {
    zookeeper: { connect: cluster.zk, cluster: uniqueName('fid3a'), sessionTimeoutMs: 6000 },
    locks: { mode: 'all', timeoutMs: 20000 },
    pool: { mode, maxSize: 4, queueTimeoutMs: 20000 },
  });
  tx = await startProxy(await cfg('transaction'));
  session = await startProxy(await cfg('session'));
  one = await startProxy(await cfg('transaction', 1));
  oneSession = await startProxy(await cfg('session', 1));
});

after(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  await tx?.stop().catch(() => undefined);
  await session?.stop().catch(() => undefined);
  await one?.stop().catch(() => undefined);
  await oneSession?.stop().catch(() => undefined);
  dropDatabase(ports, db);
  psqlAt(ports[0]!, `DROP DATABASE IF EXISTS ${directDb} WITH (FORCE)`);
  await stopOwnCluster();
});

async function open(port: number, database = db): Promise<pg.Client> {
  const c = client(port, database);
  c.on('error', () => undefined);
  await c.connect();
  clients.push(c);
  return c;
}

const P = (text: string, name = '') => serialize.parse({ name, text, types: [] });
const B = (statement = '', values: string[] = []) => serialize.bind({ statement, portal: '', values });
const E = () => serialize.execute({ portal: '' });
const D = (name: string) => serialize.describe({ type: 'S', name });
const S = () => serialize.sync();
const Q = (text: string) => serialize.query(text);
const PBE = (text: string) => [P(text), B(), E()];

/** What a client compares: message kinds, SQLSTATEs, tags, statuses, row values. */
function shape(msgs: WireMsg[]): string[] {
  return msgs.filter((m) => m.name !== 'notice' && m.name !== 'parameterDescription').map((m) => [m.name, m.code ?? m.tag ?? m.status ?? (m.types ? m.types.join(',') : '') ?? '', m.values ? JSON.stringify(m.values) : ''].join(' ').trim());
}

async function run(port: number, database: string, steps: { send: Buffer[]; rfq: number }[]): Promise<string[][]> {
  const c = await WireClient.connect(port, database);
  try {
    const out: string[][] = [];
    for (const st of steps) { c.send(st.send); out.push(shape(await c.until(st.rfq, 15000))); }
    return out;
  } finally { c.close(); }
}

/** The lock buckets a session of `p` holds (SHOW LOCKS on the admin console). */
async function heldLocks(p: RunningProxy): Promise<unknown[]> {
  const a = await open(p.port, 'pgring');
  try { return (await a.query('SHOW LOCKS')).rows.filter((r) => r.holder !== null && r.holder !== ''); } finally { await a.end(); clients.splice(clients.indexOf(a), 1); }
}

describe('no rows under a stale RowDescription after DDL (item 1)', () => {
  /** postgres.js: named statement prepared and described; the table re-created with another shape
   *  by another client; the statement runs again on a server connection other than the one that
   *  prepared it (that one is held in another client's transaction). */
  async function staleCase(select: string, recreate: string): Promise<{ direct: string[][]; proxied: string[][] }> {
    const results: string[][][] = [];
    for (const [port, database, pooled] of [[ports[0]!, directDb, false], [one.port, db, true]] as const) {
      const other = await open(port, database);
      await other.query('DROP TABLE IF EXISTS test; CREATE TABLE test (x int); INSERT INTO test VALUES (1)');
      const c = await WireClient.connect(port, database);
      const out: string[][] = [];
      c.send([P(select, 'q1'), D('q1'), B('q1'), E(), P('select pg_backend_pid()'), B(), E(), S()]);
      const first = await c.until(1, 15000);
      const pidRow = first.filter((m) => m.name === 'dataRow').at(-1)!;
      out.push(shape(first.filter((m) => m !== pidRow)));
      const pidA = Number(pidRow.values![0]);
      const holders: pg.Client[] = [];
      if (pooled) {
        // Hold the server connection that prepared q1 in another client's open transaction.
        for (let i = 0; i < 3; i++) {
          const h = await open(port, database);
          await h.query('BEGIN');
          const pid = (await h.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
          if (pid === pidA) { holders.push(h); break; }
          await h.query('COMMIT');
        }
        assert.equal(holders.length, 1, 'the connection that prepared q1 is held');
      }
      await other.query(`DROP TABLE test; ${recreate}`);
      c.send([B('q1'), E(), S()]);
      out.push(shape(await c.until(1, 15000)));
      // The driver re-prepares: the new shape, with its own description.
      c.send([serialize.close({ type: 'S', name: 'q1' }), P(select, 'q1'), D('q1'), B('q1'), E(), S()]);
      out.push(shape(await c.until(1, 15000)));
      for (const h of holders) await h.query('COMMIT');
      c.close();
      results.push(out);
    }
    return { direct: results[0]!, proxied: results[1]! };
  }

  it('select *: the table re-created with two columns gets 0A000, then the re-prepared statement the new rows', async () => {
    const { direct, proxied } = await staleCase('select * from test', 'CREATE TABLE test (a int, b bool); INSERT INTO test VALUES (2, true)');
    assert.ok(direct[1]!.some((l) => l === 'error 0A000'), JSON.stringify(direct));
    assert.deepEqual(proxied, direct);
  });

  it('an explicit column list whose type changed gets 0A000 too', async () => {
    const { direct, proxied } = await staleCase('select x from test', 'CREATE TABLE test (x text, b bool); INSERT INTO test VALUES (\'2\', true)');
    assert.ok(direct[1]!.some((l) => l === 'error 0A000'), JSON.stringify(direct));
    assert.deepEqual(proxied, direct);
  });

  it('where PostgreSQL keeps the shape, the statement runs as directly (its columns compared, not failed)', async () => {
    const { direct, proxied } = await staleCase('select x from test', 'CREATE TABLE test (x int, b bool); INSERT INTO test VALUES (3, true)');
    assert.ok(direct[1]!.includes('dataRow  ["3"]'), JSON.stringify(direct));
    assert.deepEqual(proxied, direct);
  });
});

describe('more than 32,767 parameters (postgres.js\'s "big query body")', () => {
  it('a Parse declaring 40,000 parameter types and its Bind of 40,000 values answer as directly (counts are unsigned)', async () => {
    const n = 40000;
    const types: number[] = new Array<number>(n).fill(23);
    const values: string[] = new Array<string>(n).fill('1');
    const outcomes: string[][] = [];
    // (no Describe: pg-protocol's parser reads a ParameterDescription's count as signed)
    for (const [port, database] of [[ports[0]!, directDb], [one.port, db]] as const) {
      const c = await WireClient.connect(port, database);
      try {
        c.send([serialize.parse({ name: 'big', text: `select $1::int + $${n}::int as s`, types }),
          serialize.bind({ statement: 'big', portal: '', values }), E(), S()]);
        outcomes.push(shape(await c.until(1, 30000)));
      } finally { c.close(); }
    }
    assert.deepEqual(outcomes[0]!.filter((l) => l.startsWith('dataRow')), ['dataRow  ["2"]']);
    assert.deepEqual(outcomes[1], outcomes[0]);
  });
});

describe('a statement prepared before DDL whose columns did not change (postgres.js in a transaction)', () => {
  /** Prepared and described, the table changed by another client (`ddl`), then `after` sent. */
  async function afterDdl(port: number, database: string, select: string, ddl: string, after: (t: string) => Buffer[], rfq: number, t: string): Promise<string[]> {
    const other = await open(port, database);
    await other.query(`DROP TABLE IF EXISTS ${t}; CREATE TABLE ${t} (x int); INSERT INTO ${t} VALUES (1), (2)`);
    const c = await WireClient.connect(port, database);
    try {
      c.send([P(select.replace('$t', t), 'q1'), D('q1'), B('q1'), E(), S()]);
      await c.until(1, 15000);
      await other.query(ddl.replaceAll('$t', t));
      c.send(after(t));
      return shape(await c.until(rfq, 15000));
    } finally { c.close(); await other.end(); clients.splice(clients.indexOf(other), 1); }
  }
  let n = 0;
  const cases: [string, string, string, (t: string) => Buffer[], number][] = [
    // postgres.js: `copy test from stdin` then its cached `select 1 from test` in sql.begin()
    ['DROP + CREATE of the same shape, then the statement inside BEGIN … COMMIT', 'select 1 as one from $t', 'DROP TABLE $t; CREATE TABLE $t (x int); INSERT INTO $t VALUES (5)',
      () => [Q('BEGIN'), B('q1'), E(), S(), Q('COMMIT')], 3],
    ['ADD COLUMN: an explicit column list keeps its columns; Describe of the statement again', 'select x from $t order by x', 'ALTER TABLE $t ADD COLUMN y int',
      () => [D('q1'), B('q1'), E(), S()], 1],
    ['ADD COLUMN: select * gets 0A000 inside a transaction, which then fails', 'select * from $t order by x', 'ALTER TABLE $t ADD COLUMN y int',
      () => [Q('BEGIN'), B('q1'), E(), S(), Q('COMMIT')], 3],
    // the INSERT before it attached a server to the transaction: COMMIT must not commit it
    ['ADD COLUMN: select * gets 0A000 after an INSERT in the transaction; COMMIT rolls the INSERT back', 'select * from $t order by x', 'ALTER TABLE $t ADD COLUMN y int',
      (t) => [Q('BEGIN'), Q(`INSERT INTO ${t} VALUES (9)`), B('q1'), E(), S(), Q('COMMIT'), Q(`SELECT count(*) FROM ${t}`)], 5],
    ['the column the statement reads dropped: the error of analysing it again (42703)', 'select x from $t', 'ALTER TABLE $t DROP COLUMN x, ADD COLUMN z int',
      () => [B('q1'), E(), S(), P('select 1'), B(), E(), S()], 2],
  ];
  for (const [name, select, ddl, after, rfq] of cases) {
    for (const [mode, proxy] of [['transaction', () => one], ['session', () => oneSession]] as const) {
      it(`${mode} pooling: ${name}`, async () => {
        const t = `fid3_rv${++n}`;
        const direct = await afterDdl(ports[0]!, directDb, select, ddl, after, rfq, t);
        const proxied = await afterDdl(proxy().port, db, select, ddl, after, rfq, t);
        assert.deepEqual(proxied, direct);
      });
    }
  }
});

describe('DDL that changes no statement\'s result columns (item 1, drivers re-run)', () => {
  // DBD::Pg's prepare_cached catalog lookups died with pgring's 0A000 after
  // `CREATE TEMP TABLE .. AS SELECT .. FROM pg_class`, `COMMENT ON` and `DROP OPERATOR`: PostgreSQL keeps them.
  for (const mode of ['transaction', 'session'] as const) {
    it(`${mode} pooling: statements over a table that DDL only read (CREATE TABLE AS, INHERITS, COMMENT, INDEX) run as directly (also after DROP OPERATOR)`, async () => {
      const outcomes: string[][] = [];
      for (const [port, database] of [[ports[0]!, directDb], [mode === 'transaction' ? one.port : oneSession.port, db]] as const) {
        const c = await open(port, database);
        const suffix = mode.slice(0, 1);
        await c.query(`DROP TABLE IF EXISTS fid3_child_${suffix}, fid3_parent_${suffix}; CREATE TABLE fid3_parent_${suffix} (a int); INSERT INTO fid3_parent_${suffix} VALUES (7)`);
        const lookup = { name: 'lookup', text: 'SELECT 1 AS one FROM pg_catalog.pg_class c WHERE c.relname = $1', values: ['pg_class'] };
        const parent = { name: 'parent', text: `SELECT * FROM fid3_parent_${suffix}`, values: [] };
        const out: string[] = [];
        const runBoth = async () => {
          for (const q of [lookup, parent]) {
            try { out.push(`${q.name} ${JSON.stringify((await c.query(q)).rows)}`); } catch (e) { out.push(`${q.name} ${(e as { code?: string }).code}`); }
          }
        };
        await runBoth();
        await c.query('CREATE TEMP TABLE fid3_tmp AS SELECT relname FROM pg_class LIMIT 1');
        await c.query(`CREATE TABLE fid3_child_${suffix} (b int) INHERITS (fid3_parent_${suffix})`);
        await c.query(`COMMENT ON COLUMN fid3_parent_${suffix}.a IS 'x'`);
        await c.query(`CREATE INDEX ON fid3_parent_${suffix} (a)`);
        await c.query('CREATE OPERATOR #@# (leftarg = int, rightarg = int, procedure = int4eq)');
        await c.query('DROP OPERATOR #@# (int, int)');
        await runBoth();
        await c.end(); clients.splice(clients.indexOf(c), 1);
        outcomes.push(out);
      }
      assert.deepEqual(outcomes[0], ['lookup [{"one":1}]', 'parent [{"a":7}]', 'lookup [{"one":1}]', 'parent [{"a":7}]']);
      assert.deepEqual(outcomes[1], outcomes[0]);
    });
  }
});

describe('a pipeline whose first statement fails (item 6)', () => {
  let n = 0;
  /** Variants of psycopg's pipeline: the failing SELECT, a CREATE TABLE, COMMIT, in one or more units. */
  const variants: [string, (t: string) => { send: Buffer[]; rfq: number }[]][] = [
    ['extended BEGIN, select error, create, commit, one Sync', (t) => [{ send: [...PBE('begin'), ...PBE('select error'), ...PBE(`create table ${t} (a int)`), ...PBE('commit'), S()], rfq: 1 }]],
    ['simple BEGIN, then select error, create, commit, one Sync', (t) => [{ send: [Q('BEGIN'), ...PBE('select error'), ...PBE(`create table ${t} (a int)`), ...PBE('commit'), S()], rfq: 2 }]],
    ['no BEGIN: select error, create, commit, one Sync', (t) => [{ send: [...PBE('select error'), ...PBE(`create table ${t} (a int)`), ...PBE('commit'), S()], rfq: 1 }]],
    ['BEGIN; select error, create (Sync); commit (Sync)', (t) => [{ send: [Q('BEGIN'), ...PBE('select error'), ...PBE(`create table ${t} (a int)`), S(), ...PBE('commit'), S()], rfq: 3 }]],
    ['BEGIN; select error (Sync); create, commit (Sync)', (t) => [{ send: [Q('BEGIN'), ...PBE('select error'), S(), ...PBE(`create table ${t} (a int)`), ...PBE('commit'), S()], rfq: 3 }]],
    ['simple only: BEGIN; select error; create; commit', (t) => [{ send: [Q('BEGIN'), Q('select error'), Q(`create table ${t} (a int)`), Q('commit')], rfq: 4 }]],
    ['a multi-statement string', (t) => [{ send: [Q(`BEGIN; select error; create table ${t} (a int); commit`), Q('commit')], rfq: 2 }]],
  ];
  for (const [mode, proxy] of [['transaction', () => tx], ['session', () => session]] as const) {
    for (const [name, steps] of variants) {
      it(`${mode} pooling: ${name}`, async () => {
        const t = `fid6_${++n}`;
        const direct = await run(ports[0]!, directDb, steps(t));
        const proxied = await run(proxy().port, db, steps(t));
        assert.deepEqual(proxied, direct);
        assert.ok(!JSON.stringify(direct).includes('CREATE TABLE'), 'the CREATE is skipped');
        assert.deepEqual(await heldLocks(proxy()), [], 'no lock outlives its transaction');
        // The skipped CREATE left nothing behind on any shard; the name is free.
        const c = await open(proxy().port);
        try {
          await c.query(`create table ${t} (a int)`);
          await c.query(`drop table ${t}`);
        } finally { await c.end(); clients.splice(clients.indexOf(c), 1); }
      });
    }
  }
});

describe('session pooling shows one pid (item 6)', () => {
  it('one shard: BackendKeyData, NotificationResponse and pg_backend_pid() agree', async () => {
    const c = await WireClient.connect(oneSession.port, db);
    try {
      c.send([Q('LISTEN fid6; SELECT pg_backend_pid(); NOTIFY fid6')]);
      const got = await c.until(1, 15000);
      const pid = Number(got.find((m) => m.name === 'dataRow')!.values![0]);
      const note = got.find((m) => m.name === 'notification');
      assert.ok(note, JSON.stringify(got));
      assert.equal(note.pid, pid);
      assert.equal(c.backendKey?.pid, pid);
    } finally { c.close(); }
  });

  it('two shards: NotificationResponse carries the BackendKeyData pid', async () => {
    const c = await WireClient.connect(session.port, db);
    try {
      c.send([Q('LISTEN fid6b; NOTIFY fid6b')]);
      const note = (await c.until(1, 15000)).find((m) => m.name === 'notification');
      assert.equal(note?.pid, c.backendKey?.pid);
    } finally { c.close(); }
  });
});

describe('DEALLOCATE and EXECUTE of protocol-level statements (item 2)', () => {
  const parsed = (...names: string[]) => ({ send: [...names.map((n) => P(`select '${n}'::text`, n)), S()], rfq: 1 });
  const bindS = (name: string) => ({ send: [B(name), E(), S()], rfq: 1 });
  const cases: [string, { send: Buffer[]; rfq: number }[]][] = [
    ['simple DEALLOCATE and DEALLOCATE PREPARE', [parsed('s1', 's2'), { send: [Q('DEALLOCATE s1')], rfq: 1 }, { send: [Q('DEALLOCATE PREPARE s2')], rfq: 1 }, bindS('s1'), bindS('s2')]],
    ['inside a multi-statement string', [parsed('s1', 's2', 's3'), { send: [Q('select 1; DEALLOCATE s1; DEALLOCATE PREPARE s2')], rfq: 1 }, bindS('s1'), bindS('s2'), bindS('s3')]],
    ['through Parse/Bind/Execute (psycopg 3 evicting _pg3_0)', [parsed('_pg3_0', '_pg3_1'), { send: [...PBE('DEALLOCATE _pg3_0'), S()], rfq: 1 }, bindS('_pg3_0'), bindS('_pg3_1')]],
    ['DEALLOCATE ALL through Parse/Bind/Execute', [parsed('s1', 's2'), { send: [...PBE('DEALLOCATE ALL'), S()], rfq: 1 }, bindS('s1'), bindS('s2')]],
    ['DEALLOCATE ALL as a simple query', [parsed('s1', 's2'), { send: [Q('DEALLOCATE ALL')], rfq: 1 }, bindS('s1')]],
    ['an unknown name still gets 26000 in every form', [{ send: [Q('DEALLOCATE nope')], rfq: 1 }, { send: [...PBE('DEALLOCATE nope'), S()], rfq: 1 }, { send: [Q('select 1; DEALLOCATE nope')], rfq: 1 }]],
    ['SQL EXECUTE of a protocol-level statement (asyncpg test_prepare_explicitly_named)', [
      { send: [serialize.parse({ name: 'foobar', text: 'select $1::text', types: [] }), S()], rfq: 1 },
      { send: [Q("EXECUTE foobar('test')")], rfq: 1 },
      { send: [P("EXECUTE foobar('ext')"), D(''), B(), E(), S()], rfq: 1 },
      { send: [serialize.parse({ name: 'ex', text: "EXECUTE foobar('named')", types: [] }), B('ex'), E(), S()], rfq: 1 },
    ]],
    ['SQL EXECUTE of a protocol-level INSERT (a write: locked, then released)', [
      { send: [Q('create table fid2x (a int)')], rfq: 1 },
      { send: [serialize.parse({ name: 'ins', text: 'insert into fid2x values ($1::int)', types: [] }), S()], rfq: 1 },
      { send: [Q('EXECUTE ins(5)')], rfq: 1 },
      { send: [Q('BEGIN'), Q('EXECUTE ins(6)'), Q('COMMIT')], rfq: 3 },
      { send: [Q('select count(*) from fid2x')], rfq: 1 },
      { send: [Q('drop table fid2x')], rfq: 1 },
    ]],
  ];
  for (const [name, steps] of cases) {
    for (const [mode, proxy] of [['transaction', () => tx], ['session', () => session]] as const) {
      it(`${mode} pooling: ${name}`, async () => {
        const direct = await run(ports[0]!, directDb, steps);
        const proxied = await run(proxy().port, db, steps);
        assert.deepEqual(proxied, direct);
        assert.deepEqual(await heldLocks(proxy()), [], 'no lock outlives its transaction');
      });
    }
  }
});

describe('PREPARE TRANSACTION of a transaction over several shards (postgres.js\'s sql.prepare)', () => {
  // postgres.js sends it in the extended protocol; it went to one shard, which prepared its part
  // while the other's stayed open, and the client waited for ever
  for (const ext of [false, true]) {
    it(`${ext ? 'extended' : 'simple'} protocol: refused with 0A000, the transaction rolled back, nothing prepared anywhere`, async () => {
      const t = `fid_ptx_${ext ? 'e' : 's'}`;
      const gid = `fid_ptx_gid_${ext ? 'e' : 's'}`;
      const stmt = (q: string): Buffer[] => (ext ? [P(q), B(), E(), S()] : [Q(q)]);
      const out = await run(tx.port, db, [
        { send: [Q(`DROP TABLE IF EXISTS ${t}; CREATE TABLE ${t} (a int)`)], rfq: 1 },
        { send: [Q('BEGIN')], rfq: 1 },
        { send: stmt(`INSERT INTO ${t} VALUES (1)`), rfq: 1 },   // a table the ring does not know: on both shards
        { send: stmt(`PREPARE TRANSACTION '${gid}'`), rfq: 1 },
        { send: [Q(`SELECT count(*) FROM ${t}`)], rfq: 1 },
      ]);
      assert.ok(out[3]!.includes('error 0A000'), JSON.stringify(out[3]));
      assert.equal(out[3]!.at(-1), 'readyForQuery I');
      assert.ok(out[4]!.includes('dataRow  ["0"]'), JSON.stringify(out[4]));
      for (const port of ports) assert.equal(psqlAt(port, `SELECT count(*) FROM pg_prepared_xacts WHERE gid = '${gid}'`, db).trim(), '0');
    });
  }
});

describe('COMMIT / ROLLBACK PREPARED of the client\'s own prepared transaction over two shards (XA)', () => {
  // A transaction on one shard prepared by the client; another session finishes it. Nothing in
  // the statement names the shard: pgring finds the one holding the gid.
  for (const ext of [false, true]) {
    for (const finish of ['COMMIT', 'ROLLBACK'] as const) {
      it(`${ext ? 'extended' : 'simple'} protocol: ${finish} PREPARED reaches the shard that has it; an unknown gid gets 42704`, async () => {
        const t = `fid_xa_${ext ? 'e' : 's'}_${finish[0]}`;
        const gid = `${t}_gid`;
        const stmt = (q: string): Buffer[] => (ext ? [P(q), B(), E(), S()] : [Q(q)]);
        const setup = await run(tx.port, db, [
          { send: [Q(`DROP TABLE IF EXISTS ${t}; CREATE TABLE ${t} (a int)`)], rfq: 1 },
          { send: [Q('BEGIN')], rfq: 1 },
          { send: [Q(`/* pgring: shard=s2 */ INSERT INTO ${t} VALUES (7)`)], rfq: 1 },
          { send: [Q(`PREPARE TRANSACTION '${gid}'`)], rfq: 1 },
        ]);
        assert.ok(setup[3]!.includes('commandComplete PREPARE TRANSACTION'), JSON.stringify(setup[3]));
        assert.equal(psqlAt(ports[1]!, `SELECT count(*) FROM pg_prepared_xacts WHERE gid = '${gid}'`, db).trim(), '1');
        // another session (the transaction manager's recovery) finishes it, then asks again
        const out = await run(tx.port, db, [
          { send: stmt(`${finish} PREPARED '${gid}'`), rfq: 1 },
          { send: stmt(`${finish} PREPARED '${gid}'`), rfq: 1 },
        ]);
        assert.ok(out[0]!.includes(`commandComplete ${finish} PREPARED`), JSON.stringify(out[0]));
        assert.ok(out[1]!.includes('error 42704'), JSON.stringify(out[1]));
        for (const port of ports) assert.equal(psqlAt(port, `SELECT count(*) FROM pg_prepared_xacts WHERE gid = '${gid}'`, db).trim(), '0');
        assert.equal(psqlAt(ports[1]!, `SELECT count(*) FROM ${t}`, db).trim(), finish === 'COMMIT' ? '1' : '0');
        assert.equal(psqlAt(ports[0]!, `SELECT count(*) FROM ${t}`, db).trim(), '0');
      });
    }
  }
});

describe('PREPARE TRANSACTION after temporary objects (item 7, part)', () => {
  let g = 0;
  const cases: [string, (gid: string) => string[]][] = [
    ['a temporary table created in the transaction', (gid) => ['BEGIN', 'CREATE TEMP TABLE fid7a (a int)', `PREPARE TRANSACTION '${gid}'`, 'select 1']],
    ['a temporary table of the session written in the transaction', (gid) => ['CREATE TEMP TABLE fid7b (a int)', 'BEGIN', 'INSERT INTO fid7b VALUES (1)', `PREPARE TRANSACTION '${gid}'`, 'select count(*) from fid7b']],
    ['a temporary table of the session read in the transaction', (gid) => ['CREATE TEMP TABLE fid7c (a int)', 'BEGIN', 'select * from fid7c', `PREPARE TRANSACTION '${gid}'`]],
    ['pg_temp named explicitly', (gid) => ['BEGIN', 'CREATE TABLE pg_temp.fid7d (a int)', `PREPARE TRANSACTION '${gid}'`]],
    // pg_regress temp.sql's corner case: a fresh session creates its temporary namespace here; a
    // reused server connection already has one (a previous client made it) and would not refuse.
    ['current_schema() with pg_temp first in search_path', (gid) => ["SET search_path TO 'pg_temp'", 'BEGIN', "SELECT current_schema() ~ 'pg_temp' AS is_temp_schema", `PREPARE TRANSACTION '${gid}'`, 'RESET search_path']],
  ];
  for (const [mode, proxy] of [['transaction, one shard', () => one], ['transaction, two shards', () => tx], ['session', () => session]] as const) {
    for (const [name, sqls] of cases) {
      it(`${mode}: ${name}`, async () => {
        // Every server connection of the proxy has made its temporary namespace already.
        const warm = await Promise.all([0, 1, 2].map(() => open(proxy().port)));
        await Promise.all(warm.map(async (c) => { await c.query('CREATE TEMP TABLE fid7_warm (a int)'); await c.query('DROP TABLE fid7_warm'); }));
        for (const c of warm) { await c.end(); clients.splice(clients.indexOf(c), 1); }
        const gids = [`fid7_${++g}`, `fid7_${++g}`];
        try {
          const direct = await run(ports[0]!, directDb, sqls(gids[0]!).map((q) => ({ send: [Q(q)], rfq: 1 })));
          const proxied = await run(proxy().port, db, sqls(gids[1]!).map((q) => ({ send: [Q(q)], rfq: 1 })));
          assert.ok(JSON.stringify(direct).includes('0A000'), JSON.stringify(direct));
          assert.deepEqual(proxied, direct);
        } finally {
          for (const p of ports) psqlAt(p, `SELECT pg_catalog.count(*) FROM (SELECT 1 FROM pg_prepared_xacts WHERE gid IN ('${gids[0]}', '${gids[1]}')) x`);
          for (const p of ports) for (const gid of gids) { try { psqlAt(p, `ROLLBACK PREPARED '${gid}'`); } catch { /* not prepared */ } }
        }
      });
    }
  }
});
