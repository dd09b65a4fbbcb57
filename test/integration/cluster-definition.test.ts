// The cluster definition lives in ZooKeeper: proxy A is configured with the sharded tables,
// proxy B with nothing but the ZooKeeper address. Both must route identically (every statement
// of the differential test, pgbench -i and TPC-B), a proxy whose file contradicts the cluster
// refuses to start naming the difference, `pgring table ...` through A's config is in force on
// B, a reference table converted to sharded keeps each row on exactly the shard the ring names,
// and a CancelRequest sent to B cancels a query running through A.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { killAtExit } from '../../src/local/exit-cleanup';
import { stopOwnCluster, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, dropDatabase, RawConfig, RunningProxy, startProxy, withClient } from '../helpers/proxy';
import { pgbenchSummary, psql, runTool } from '../helpers/tools';
import { pgbenchTables } from '../helpers/sharding';
import type { Ring } from '../../src/ring/ring';
import type { KeyType } from '../../src/config/types';
import { buildSteps, compare, run, TABLES } from '../helpers/differential-steps';
import { ClusterInfo } from '../../src/local/cluster';
import { freePort } from '../../src/local/proc';
import { cancelPacket, proxyNumberOf } from '../../src/cluster/cancel-peers';

let cluster: ClusterInfo;
let ports: number[];
let zkCluster: string;
let a: RunningProxy;
let b: RunningProxy;
let configA: string;
const dbs: string[] = [];

const main = path.resolve(__dirname, '../../src/cli/main.js');
/** Runs the pgring CLI without blocking this process (the proxies under test live in it). */
function cli(...args: string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = killAtExit(spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('exit', (status) => { clearTimeout(t); resolve({ status, out }); });
  });
}

// The proxies under test run in this process: SQL on the shards goes through async psql, never
// spawnSync, which would stall their ZooKeeper sessions.
async function sqlAt(port: number, db: string, q: string): Promise<string> {
  const r = await psql(port, db, q, ['-Atq']);
  if (r.code !== 0) throw new Error(`psql on ${port}: ${r.stderr}`);
  return r.stdout.trim();
}

async function db(prefix: string): Promise<string> {
  const name = uniqueName(prefix);
  dbs.push(name);
  await Promise.all(ports.map((p) => sqlAt(p, 'postgres', `CREATE DATABASE ${name}`)));
  return name;
}

/** For each shard: rows of `table` it holds, and how many of those the ring gives to another shard. */
function placement(ring: Ring, d: string, table: string, column: string, type: KeyType = 'integer'): Promise<{ held: number; misplaced: number }[]> {
  return Promise.all(ports.map(async (port, i) => {
    const [held, misplaced] = (await sqlAt(port, d, `SELECT count(*), count(*) FILTER (WHERE NOT (${ring.sqlPredicate(i, column, type)})) FROM ${table}`)).split('|').map(Number);
    return { held: held!, misplaced: misplaced! };
  }));
}

/** A config naming only ZooKeeper, listen and users: no shards, no sharding section. */
async function zkOnly(): Promise<RawConfig> {
  return {
    listen: { host: '127.0.0.1', port: await freePort() },
    metrics: { enabled: false },
    logLevel: 'silent',
    users: [{ name: 'postgres', auth: 'trust', admin: true }],
    zookeeper: { connect: cluster.zk, cluster: zkCluster },
  };
}

async function until(what: string, ok: () => boolean, timeoutMs = 10000): Promise<number> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 3).map((p) => p.port);
  zkCluster = uniqueName('clusterdef');
  const rawA = await baseConfig(cluster, 3, {
    zookeeper: { connect: cluster.zk, cluster: zkCluster },
    sharding: { tables: [...TABLES, ...pgbenchTables] },
    locks: { mode: 'all' },
  });
  configA = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-def-')), 'proxy.json');
  fs.writeFileSync(configA, JSON.stringify(rawA));
  a = await startProxy(rawA);
  b = await startProxy(await zkOnly());
});

after(async () => {
  await b?.stop();
  await a?.stop();
  for (const d of dbs) dropDatabase(ports, d);
  await stopOwnCluster();
});

describe('cluster definition in ZooKeeper', () => {
  it('a proxy configured with only ZooKeeper routes by the cluster definition', () => {
    assert.equal(b.proxy.definition.version, a.proxy.definition.version);
    assert.deepEqual(b.proxy.definition.sharded.map((t) => t.name), [...TABLES, ...pgbenchTables].map((t) => t.name));
  });

  it('both proxies give identical results for every statement of the differential test', async () => {
    const [dbA, dbB] = [await db('defa'), await db('defb')];
    const ca = client(a.port, dbA), cb = client(b.port, dbB);
    await ca.connect(); await cb.connect();
    try {
      const steps = buildSteps(a.proxy.ctx.shards);
      const failures: string[] = [];
      let compared = 0;
      for (const st of steps) {
        const forms: boolean[] = st.mode === 'both' ? [false, true] : st.mode === 'ext' || (st.p && st.mode !== 'simple') ? [true] : [false];
        for (const ext of forms) {
          const want = await run(ca, st.sql, ext, st.p);
          const got = await run(cb, st.sql, ext, st.p);
          compared++;
          const diff = compare(want, got, st);
          if (diff) failures.push(`${ext ? 'ext' : 'simple'}: ${st.sql || st.p?.text}\n    ${diff}`);
        }
      }
      assert.ok(compared >= 80, `${compared} comparisons`);
      assert.deepEqual(failures, []);
      // B placed the sharded rows as the ring says: each users row on its owner only.
      const ring = a.proxy.ring;
      for (const d of [dbA, dbB]) {
        const p = await placement(ring, d, 'users', 'id', 'bigint');
        assert.deepEqual(p.map((x) => x.misplaced), [0, 0, 0], `${d}: users rows on a shard that does not own them`);
      }
      // CREATE TABLE cities through the proxies registered it as a reference table for both.
      await until('cities registered on B', () => b.proxy.definition.reference.includes('cities'));
    } finally { await ca.end(); await cb.end(); }
  });

  it('pgbench -i through each proxy places rows as the ring says; TPC-B through both keeps the balances', async () => {
    const [dbA, dbB] = [await db('benchA'), await db('benchB')];
    for (const [p, d] of [[a, dbA], [b, dbB]] as const) {
      const r = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', '-i', '-s', '1', '-q', d]);
      assert.equal(r.code, 0, r.stderr);
    }
    const ring = a.proxy.ring;
    for (const [table, column] of [['pgbench_accounts', 'aid'], ['pgbench_tellers', 'tid'], ['pgbench_branches', 'bid']] as const) {
      const pa = await placement(ring, dbA, table, column), pb = await placement(ring, dbB, table, column);
      assert.deepEqual(pb, pa, `${table}: rows per shard through B equal those through A`);
      assert.deepEqual(pb.map((x) => x.misplaced), [0, 0, 0], `${table}: no row on a shard that does not own it`);
    }
    assert.deepEqual((await placement(ring, dbB, 'pgbench_accounts', 'aid')).reduce((s, x) => s + x.held, 0), 100000);
    const tpcb = (port: number) => runTool('pgbench', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-n', '-c', '2', '-j', '1', '-t', '40', dbB]);
    const [ra, rb] = await Promise.all([tpcb(a.port), tpcb(b.port)]);
    for (const r of [ra, rb]) {
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.equal(pgbenchSummary(r.stdout).failed, 0);
    }
    await withClient(a.port, dbB, async (c) => {
      const one = async (sql: string) => (await c.query(sql)).rows[0].v as string;
      const h = await one('SELECT sum(delta) AS v FROM pgbench_history');
      const r = { h, n: await one('SELECT count(*) AS v FROM pgbench_history'), a: await one('SELECT sum(abalance) AS v FROM pgbench_accounts'),
        t: await one('SELECT sum(tbalance) AS v FROM pgbench_tellers'), b: await one('SELECT sum(bbalance) AS v FROM pgbench_branches') };
      assert.equal(r.n, '160');
      assert.equal(r.a, r.h); assert.equal(r.t, r.h); assert.equal(r.b, r.h);
    });
    // and B reads what A wrote, key by key
    await withClient(b.port, dbA, async (c) => {
      const r = await c.query('SELECT aid, inet_server_port() AS port FROM pgbench_accounts WHERE aid = ANY($1::int[])', [[2, 77, 99999]]);
      assert.equal(r.rows.length, 3);
      for (const row of r.rows) assert.equal(row.port, ports[a.proxy.ctx.shards.shardForKey('integer', String(row.aid))]);
    });
  });

  it('a proxy whose file contradicts the cluster definition refuses to start and names the difference', async () => {
    const raw = { ...(await zkOnly()), sharding: { tables: [{ name: 'users', column: 'name', type: 'text' }, ...TABLES.slice(1), ...pgbenchTables] } };
    await assert.rejects(startProxy(raw), (e: Error) => {
      assert.match(e.message, /sharding differs from the cluster definition/);
      assert.match(e.message, /table users: the file shards it by name text; the cluster by id bigint/);
      return true;
    });
    const r = await cli('proxy', '--config', writeConfig({ ...(await zkOnly()), sharding: { tables: TABLES } }));
    assert.notEqual(r.status, 0);
    assert.match(r.out, /the cluster shards pgbench_accounts by aid integer/);
  });

  it('pgring table reference / shard / forget through A\'s config are in force on B', async () => {
    const ref = await cli('table', 'reference', 'colors', '--config', configA);
    assert.equal(ref.status, 0, ref.out);
    const ms = await until('colors on B', () => b.proxy.definition.reference.includes('colors'));
    console.log(`# table reference colors: in force on B after ${ms} ms`);
    const bad = await cli('table', 'shard', 'users', '--column', 'name', '--type', 'text', '--config', configA);
    assert.notEqual(bad.status, 0);
    assert.match(bad.out, /already sharded by id bigint: changing the shard key/);
    const forget = await cli('table', 'forget', 'colors', '--config', configA);
    assert.equal(forget.status, 0, forget.out);
    await until('colors forgotten on B', () => !b.proxy.definition.reference.includes('colors'));
    const list = await cli('table', 'list', '--json', '--config', configA);
    assert.equal(list.status, 0, list.out);
    const d = JSON.parse(list.out.slice(list.out.indexOf('{')));
    assert.equal(d.version, b.proxy.definition.version);
    await withClient(b.port, 'pgring', async (c) => {
      const r = await c.query('SHOW TABLES');
      assert.deepEqual(r.rows.filter((x) => x.kind === 'sharded').map((x) => x.table), [...TABLES, ...pgbenchTables].map((t) => t.name));
      assert.ok(r.rows.some((x) => x.table === 'cities' && x.kind === 'reference'));
    });
  });

  it('converting a reference table to sharded leaves each row on exactly the shard the ring names', async () => {
    const d = await db('conv');
    await withClient(a.port, d, async (c) => {
      await c.query('CREATE TABLE items (id int primary key, v text)');
      await c.query("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 300) g");
    });
    await until('items registered on B', () => b.proxy.definition.reference.includes('items'));
    // A session on B prepared a named INSERT while items was a reference table.
    const cb = client(b.port, d);
    await cb.connect();
    const ins = (id: number) => cb.query({ name: 'ins_item', text: 'INSERT INTO items (id, v) VALUES ($1, $2)', values: [id, `v${id}`] });
    await ins(301);
    for (const port of ports) assert.equal(await sqlAt(port, d, 'SELECT count(*) FROM items'), '301', 'a reference table is on every shard');
    const r = await cli('table', 'shard', 'items', '--column', 'id', '--type', 'integer', '--batch', '50', '--config', configA);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /deleted \d+ rows of items owned by other shards/);
    // the statement prepared before the change now routes by the key
    for (const id of [302, 303, 304, 305]) await ins(id);
    await cb.end();
    const p = await placement(a.proxy.ring, d, 'items', 'id');
    assert.deepEqual(p.map((x) => x.misplaced), [0, 0, 0]);
    assert.equal(p.reduce((s, x) => s + x.held, 0), 305, 'each row on exactly one shard');
    assert.ok(p.every((x) => x.held > 0));
    assert.ok(b.proxy.definition.sharded.some((t) => t.name === 'items'));
    await withClient(b.port, d, async (c) => {
      assert.equal((await c.query('SELECT count(*) AS n FROM items')).rows[0].n, '305');
      const one = await c.query('SELECT v, inet_server_port() AS port FROM items WHERE id = 123');
      assert.deepEqual(one.rows, [{ v: 'v123', port: ports[b.proxy.ctx.shards.shardForKey('integer', '123')] }]);
    });
  });

  it('converting a reference table to sharded gives each shard its own range of serial and identity ids', async () => {
    // Before, the copies of the sequences went on counting alike: the next INSERT on each shard
    // took id 4, so ids repeated across shards (a lookup by id found several rows).
    const d = await db('convseq');
    const tenants = [0, 1, 2].map((sh) => { let k = 1; while (a.proxy.ctx.shards.shardForKey('integer', String(k)) !== sh) k++; return k; });
    await withClient(a.port, d, async (c) => {
      await c.query('CREATE TABLE tix (id bigserial, tenant int NOT NULL, n serial, g bigint GENERATED BY DEFAULT AS IDENTITY, PRIMARY KEY (tenant, id))');
      await c.query(`INSERT INTO tix (tenant) VALUES (${tenants.join('), (')})`);
    });
    await until('tix registered on B', () => b.proxy.definition.reference.includes('tix'));
    const r = await cli('table', 'shard', 'tix', '--column', 'tenant', '--type', 'integer', '--config', configA);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /sequences .*tix_id_seq.* now count in the shard's own range/);
    await withClient(b.port, d, async (c) => {
      for (let i = 0; i < 2; i++) await c.query(`INSERT INTO tix (tenant) VALUES (${tenants.join('), (')})`);
      const q = await c.query('SELECT count(*) AS rows, count(DISTINCT id) AS ids, count(DISTINCT n) AS ns, count(DISTINCT g) AS gs FROM tix');
      assert.deepEqual(q.rows[0], { rows: '9', ids: '9', ns: '9', gs: '9' });
      // shard 0 keeps its numbering; the others count in their own ranges
      const first = await c.query('SELECT id, n FROM tix WHERE tenant = $1 ORDER BY id', [tenants[0]]);
      assert.deepEqual(first.rows.map((x) => [x.id, x.n]), [['1', 1], ['4', 4], ['5', 5]]);
      const second = await c.query('SELECT id, n FROM tix WHERE tenant = $1 ORDER BY id', [tenants[1]]);
      assert.deepEqual(second.rows.map((x) => [x.id, x.n]), [['2', 2], [String(2n ** 48n + 1n), 2 ** 27 + 1], [String(2n ** 48n + 2n), 2 ** 27 + 2]]);
    });
  });

  it('a CancelRequest sent to proxy B cancels a query running through proxy A', async () => {
    const c = client(a.port, 'postgres');
    await c.connect();
    try {
      const key = c as unknown as { processID: number; secretKey: number };
      assert.notEqual(proxyNumberOf(key.secretKey), 0, 'the secret names the issuing proxy');
      const q = c.query('SELECT pg_sleep(8)').then(() => null, (e: { code?: string }) => e.code ?? 'none');
      await new Promise((r) => setTimeout(r, 300));
      await sendCancel(b.port, key.processID, key.secretKey);
      assert.equal(await q, '57014');
      // unknown keys are ignored (as PostgreSQL does) and break nothing
      await sendCancel(b.port, key.processID + 1, key.secretKey);
      await sendCancel(a.port, 1, 12345);
      assert.equal((await c.query('SELECT 1 AS x')).rows[0].x, 1);
    } finally { await c.end(); }
  });

  it('pgring ring init writes definition version 1 from the config file', async () => {
    const name = uniqueName('ringinit');
    const f = writeConfig(await baseConfig(cluster, 3, { zookeeper: { connect: cluster.zk, cluster: name }, sharding: { tables: TABLES, referenceTables: ['cities'] } }));
    const r = await cli('ring', 'init', '--config', f);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /cluster definition version 1 is active \(4 sharded, 1 reference tables; unknown tables: reference\)/);
    const list = await cli('table', 'list', '--json', '--zk', cluster.zk, '--cluster', name);
    const d = JSON.parse(list.out.slice(list.out.indexOf('{')));
    assert.equal(d.version, 1);
    assert.deepEqual(d.sharded, TABLES);
    assert.deepEqual(d.reference, ['cities']);
    const again = await cli('table', 'shard', 'users', '--column', 'id', '--type', 'bigint', '--zk', cluster.zk, '--cluster', name);
    assert.equal(again.status, 0, again.out);
    assert.match(again.out, /definition version 1 unchanged/);
  });

  it('unknownTables "reject" refuses tables the definition does not name, naming the command that registers them', async () => {
    const name = uniqueName('reject');
    const raw = await baseConfig(cluster, 3, { zookeeper: { connect: cluster.zk, cluster: name }, sharding: { tables: TABLES, referenceTables: ['cities'], unknownTables: 'reject' } });
    const p = await startProxy(raw);
    try {
      const d = await db('rej');
      await sqlAt(ports[0]!, d, 'CREATE TABLE stray (x int)');
      await withClient(p.port, d, async (c) => {
        await assert.rejects(c.query('SELECT * FROM stray'), (e: { code?: string; message: string }) => {
          assert.equal(e.code, '0A000');
          assert.match(e.message, /table "stray", which the cluster definition does not name .*pgring table reference stray/);
          return true;
        });
        await c.query('CREATE TABLE made_here (x int)'); // a table created through the proxy is registered
        await until('made_here registered', () => p.proxy.definition.reference.includes('made_here'));
        await c.query('INSERT INTO made_here VALUES (1)');
        assert.equal((await c.query('SELECT count(*) AS n FROM pg_class WHERE relname = \'made_here\'')).rows[0].n, '1', 'catalogs are not refused');
      });
    } finally { await p.stop(); }
  });
});

function writeConfig(raw: RawConfig): string {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-def-')), 'proxy.json');
  fs.writeFileSync(f, JSON.stringify(raw));
  return f;
}

function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(cancelPacket(pid, secret)));
    s.on('error', reject);
    s.on('close', () => resolve());
    s.resume();
  });
}

