// pgbench and psql through pgring on one shard: initialisation, select-only and
// TPC-B in every query mode with 8 clients, then row counts and balances checked.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { psqlAt, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { pgbenchSummary, psql, runTool } from '../helpers/tools';

let proxy: RunningProxy;
let db: string;
let port0: number;

before(async () => {
  const cluster = await testCluster();
  port0 = cluster.pg[0]!.port;
  db = uniqueName('bench');
  createDatabase([port0], db);
  proxy = await startProxy(await baseConfig(cluster, 1, { pool: { maxSize: 10 } }));
});

after(async () => {
  await proxy?.stop();
  dropDatabase([port0], db);
});

const conn = () => ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres'];

describe('psql and pgbench through pgring', () => {
  it('psql runs queries, meta-commands and reports errors', async () => {
    const r = await psql(proxy.port, db, 'SELECT 40 + 2 AS answer', ['-At']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '42');
    const script = await runTool('psql', [...conn(), '-d', db, '-X', '-At', '-v', 'ON_ERROR_STOP=1'], {
      input: 'CREATE TABLE t (id int primary key, v text);\nINSERT INTO t VALUES (1, \'a\'), (2, \'b\');\n\\copy t TO STDOUT\nSELECT count(*) FROM t;\n\\d t\n',
    });
    assert.equal(script.code, 0, script.stderr);
    assert.match(script.stdout, /1\ta\n2\tb\n2\n/);
    assert.match(script.stdout, /id\|integer/);
    const bad = await psql(proxy.port, db, 'SELECT * FROM missing_table');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /relation "missing_table" does not exist/);
  });

  it('pgbench -i initialises through pgring', async () => {
    const r = await runTool('pgbench', [...conn(), '-i', '-s', '2', '-q', db]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(psqlAt(port0, 'SELECT count(*) FROM pgbench_accounts', db).trim(), '200000');
    assert.equal(psqlAt(port0, 'SELECT count(*) FROM pgbench_branches', db).trim(), '2');
  });

  for (const mode of ['simple', 'extended', 'prepared']) {
    it(`pgbench -S -M ${mode} with 8 clients: no failures`, async () => {
      const r = await runTool('pgbench', [...conn(), '-S', '-M', mode, '-c', '8', '-j', '2', '-t', '300', db]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const s = pgbenchSummary(r.stdout);
      assert.equal(s.processed, 2400);
      assert.equal(s.failed, 0);
    });

    it(`pgbench TPC-B -M ${mode} with 8 clients: no failures, balances add up`, async () => {
      const sumsSql = `SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches)`;
      const before = psqlAt(port0, sumsSql, db).trim().split('|').map(Number);
      const r = await runTool('pgbench', [...conn(), '-M', mode, '-c', '8', '-j', '2', '-t', '100', db]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const s = pgbenchSummary(r.stdout);
      assert.equal(s.processed, 800);
      assert.equal(s.failed, 0);
      // pgbench truncates pgbench_history before each run: it holds exactly this run's transactions.
      const [count, delta] = psqlAt(port0, 'SELECT count(*), coalesce(sum(delta), 0) FROM pgbench_history', db).trim().split('|').map(Number);
      assert.equal(count, 800);
      const sums = psqlAt(port0, sumsSql, db).trim().split('|').map(Number).map((v, i) => String(v - before[i]!));
      sums.push(String(delta));
      assert.equal(new Set(sums).size, 1, `balances differ: ${sums.join(', ')}`);
    });
  }
});
