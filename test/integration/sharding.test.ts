// Sharding over 3 real shards with the ring in a real ZooKeeper: pgbench -i places
// every row on the shard that owns its key (checked on each shard with PostgreSQL's
// own hash), pgbench -S works in every query mode, a second proxy configured with
// nothing but the ZooKeeper address routes identically, `pgring ring status` reports.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { psqlAt, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, createDatabase, dropDatabase, RunningProxy, startProxy, withClient } from '../helpers/proxy';
import { pgbenchSummary, runTool } from '../helpers/tools';
import { pgbenchTables, placement } from '../helpers/sharding';
import { ClusterInfo } from '../../src/local/cluster';
import { freePort } from '../../src/local/proc';

let cluster: ClusterInfo;
let a: RunningProxy;
let b: RunningProxy | null = null;
let db: string;
let zkCluster: string;
let ports: number[];

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 3).map((p) => p.port);
  db = uniqueName('shard');
  zkCluster = uniqueName('ring');
  createDatabase(ports, db);
  a = await startProxy(await baseConfig(cluster, 3, {
    zookeeper: { connect: cluster.zk, cluster: zkCluster },
    sharding: { tables: pgbenchTables },
    locks: { mode: 'off' },
  }));
});

after(async () => {
  await b?.stop();
  await a?.stop();
  dropDatabase(ports, db);
});

describe('sharding over 3 shards', () => {
  it('pgbench -i -s 3 through pgring puts every row on the shard that owns its key', async () => {
    const r = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(a.port), '-U', 'postgres', '-i', '-s', '3', '-q', db]);
    assert.equal(r.code, 0, r.stderr);
    const ring = a.proxy.ring;
    const expected: Record<string, [string, number]> = { pgbench_accounts: ['aid', 300000], pgbench_tellers: ['tid', 30], pgbench_branches: ['bid', 3] };
    for (const [table, [column, total]] of Object.entries(expected)) {
      const p = placement(ring, ports, db, table, column);
      assert.deepEqual(p.map((x) => x.misplaced), [0, 0, 0], `${table}: rows on a shard that does not own them`);
      assert.equal(p.reduce((s, x) => s + x.held, 0), total, `${table}: total rows`);
      if (total >= 30) assert.ok(p.every((x) => x.held > 0), `${table}: every shard holds rows`);
    }
    // no duplicates: primary keys hold per shard and the totals add up exactly
    const viaProxy = await withClient(a.port, db, async (c) => (await c.query('SELECT count(*) AS n FROM pgbench_accounts')).rows[0]);
    assert.equal(viaProxy.n, '300000');
  });

  for (const mode of ['simple', 'extended', 'prepared']) {
    it(`pgbench -S -M ${mode} over 3 shards: no failures`, async () => {
      const r = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(a.port), '-U', 'postgres', '-S', '-M', mode, '-c', '4', '-j', '2', '-t', '250', db]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const s = pgbenchSummary(r.stdout);
      assert.equal(s.processed, 1000);
      assert.equal(s.failed, 0);
    });
  }

  it('routes point queries to the owning shard and merges scatter queries', async () => {
    await withClient(a.port, db, async (c) => {
      for (const aid of [1, 2, 3, 77, 1000, 299999]) {
        const r = await c.query('SELECT aid, inet_server_port() AS port FROM pgbench_accounts WHERE aid = $1', [aid]);
        assert.equal(r.rows.length, 1);
        assert.equal(r.rows[0].port, ports[a.proxy.ctx.shards.shardForKey('integer', String(aid))]);
      }
      const top = await c.query('SELECT aid FROM pgbench_accounts ORDER BY aid DESC LIMIT 3');
      assert.deepEqual(top.rows.map((r) => r.aid), [300000, 299999, 299998]);
      const agg = await c.query('SELECT count(*) AS n, min(aid) AS lo, max(aid) AS hi, sum(abalance) AS s FROM pgbench_accounts');
      assert.deepEqual(agg.rows[0], { n: '300000', lo: 1, hi: 300000, s: '0' });
      const per = await c.query('SELECT bid, count(*) AS n FROM pgbench_accounts GROUP BY bid ORDER BY bid');
      assert.deepEqual(per.rows, [{ bid: 1, n: '100000' }, { bid: 2, n: '100000' }, { bid: 3, n: '100000' }]);
      const hinted = await c.query(`/* pgring: shard=s2 */ SELECT inet_server_port() AS port`);
      assert.equal(hinted.rows[0].port, ports[1]);
      await c.query(`SET pgring.shard_key = '77'`);
      const viaSet = await c.query('SELECT inet_server_port() AS port');
      assert.equal(viaSet.rows[0].port, ports[a.proxy.ctx.shards.shardForKey('integer', '77')]);
      await c.query('RESET pgring.shard_key');
    });
  });

  it('a second proxy with only the ZooKeeper address picks up the same ring', async () => {
    b = await startProxy({
      listen: { host: '127.0.0.1', port: await freePort() },
      metrics: { enabled: false },
      logLevel: 'silent',
      users: [{ name: 'postgres', auth: 'trust', admin: true }],
      zookeeper: { connect: cluster.zk, cluster: zkCluster },
      health: { runChecks: false },
      locks: { mode: 'off' },
      sharding: { tables: pgbenchTables },
    });
    assert.equal(b.proxy.ring.version, a.proxy.ring.version);
    assert.deepEqual(b.proxy.ring.shares(), a.proxy.ring.shares());
    await withClient(b.port, db, async (c) => {
      for (const aid of [5, 50, 500, 5000]) {
        const r = await c.query('SELECT inet_server_port() AS port FROM pgbench_accounts WHERE aid = $1', [aid]);
        assert.equal(r.rows[0].port, ports[a.proxy.ctx.shards.shardForKey('integer', String(aid))]);
      }
    });
  });

  it('pgring ring status prints the version, shards, shares and live backends', () => {
    const main = path.resolve(__dirname, '../../src/cli/main.js');
    const r = spawnSync(process.execPath, [main, 'ring', 'status', '--zk', cluster.zk, '--cluster', zkCluster, '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const st = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
    assert.equal(st.version, 1);
    assert.deepEqual(st.shards.map((s: { shard: string }) => s.shard), ['s1', 's2', 's3']);
    const total = st.shards.reduce((s: number, x: { share: number }) => s + x.share, 0);
    assert.ok(Math.abs(total - 100) < 1e-6);
    for (const s of st.shards) assert.equal(s.live.length, 1, `${s.shard} has a live backend`);
  });
});
