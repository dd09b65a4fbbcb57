// Read routing over real streaming replicas (pg_basebackup, synchronous replication): reads
// with reads=replica land on the replicas (pg_stat_database there), a client always reads its
// own committed writes, a replica that lags past the bound or is stopped is skipped, and the
// policy comes from SET, startup options and hints. Runs its own cluster (it stops servers).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { LocalCluster, ClusterInfo } from '../../src/local/cluster';
import { sleep } from '../../src/local/proc';
import { baseConfig, RunningProxy, startProxy } from '../helpers/proxy';

let lc: LocalCluster;
let info: ClusterInfo;
let proxy: RunningProxy;
const db = 'postgres';

async function connect(opts: Partial<pg.ClientConfig> = {}, database = db): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'postgres', database, ...opts });
  await c.connect();
  return c;
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 20000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`${what} within ${ms} ms`);
    await sleep(200);
  }
}

/** A key that routes to shard `i`. */
function keyOn(i: number, from = 0): number {
  for (let k = from; ; k++) if (proxy.proxy.ctx.shards.shardForKey('integer', String(k)) === i) return k;
}

/** pg_is_in_recovery() of the server that answers a read of key `k` with reads=replica (a new connection). */
async function recOf(k: number): Promise<boolean | undefined> {
  const c = await connect({ options: '-c pgring.reads=replica' });
  try { return (await c.query('SELECT pg_is_in_recovery() AS rec FROM kv WHERE id = $1', [k])).rows[0]?.rec; } finally { await c.end().catch(() => undefined); }
}

async function insert(k: number): Promise<void> {
  const c = await connect();
  try { await c.query('INSERT INTO kv VALUES ($1, $2)', [k, 'k']); } finally { await c.end(); }
}

const xacts = (p: { psql(sql: string): string }) => Number(p.psql(`SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'`).trim());

before(async () => {
  lc = new LocalCluster({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-replicas-')), shards: 2, replicas: 1 });
  info = await lc.start();
  proxy = await startProxy(await baseConfig(info, 2, {
    shards: info.pg.map((p, i) => ({ name: p.name, backends: [{ port: p.port }, { port: info.replicas![i]!.port, role: 'replica' }] })),
    zookeeper: { connect: info.zk, cluster: 'replica-routing', sessionTimeoutMs: 10000 },
    sharding: { tables: [{ name: 'kv', column: 'id', type: 'integer' }] },
    health: { intervalMs: 200, timeoutMs: 1000 },
    pool: { connectTimeoutMs: 1000 },
    locks: { mode: 'off' },
    replicaMaxLagBytes: 256 * 1024,
    replicaMaxLagMs: 2000,
  }));
  const c = await connect();
  await c.query('CREATE TABLE kv (id int PRIMARY KEY, v text)');
  await c.end();
});

after(async () => {
  await proxy?.stop();
  // immediate: a primary whose synchronous standby is gone must not hold the test up
  for (const pgs of lc ? [...lc.pgs, ...lc.replicas.flat()] : []) { try { pgs.stop('immediate'); } catch { /* gone */ } }
  await lc?.stop();
  fs.rmSync(lc.opts.dir, { recursive: true, force: true });
});

describe('streaming replicas', () => {
  it('are synchronous standbys, and SHOW BACKENDS shows their role, WAL position and replay lag', async () => {
    for (let i = 0; i < 2; i++) assert.match(lc.pgs[i]!.psql('SELECT sync_state FROM pg_stat_replication').trim(), /^sync$/);
    const a = await connect({}, 'pgring');
    try {
      const rows = await eventually('replicas with a replay lag', async () => {
        const r = (await a.query('SHOW BACKENDS')).rows;
        return r.filter((x) => x.role === 'replica').every((x) => x.replay_lag_bytes !== null && x.lsn !== null) ? r : undefined;
      });
      assert.equal(rows.length, 4);
      for (const r of rows) {
        assert.equal(r.state, 'up');
        if (r.role === 'replica') { assert.ok(Number(r.replay_lag_bytes) >= 0); assert.ok(Number(r.replay_lag_s) >= 0); }
      }
      assert.deepEqual(rows.map((r) => r.role).sort(), ['primary', 'primary', 'replica', 'replica']);
    } finally { await a.end(); }
  });

  it('reads=replica (startup options) lands on the replicas, counted in their pg_stat_database; the default stays on primaries', async () => {
    const k0 = keyOn(0), k1 = keyOn(1);
    const w = await connect();
    await w.query('INSERT INTO kv VALUES ($1, $2), ($3, $4)', [k0, 'a', k1, 'b']).catch(async () => {
      await w.query('INSERT INTO kv VALUES ($1, $2)', [k0, 'a']); await w.query('INSERT INTO kv VALUES ($1, $2)', [k1, 'b']);
    });
    await w.end();
    await sleep(1500); // the reader below has not written: its reads do not wait for anything
    const before = [xacts(lc.replicas[0]![0]!), xacts(lc.replicas[1]![0]!)];
    const r = await connect({ options: '-c pgring.reads=replica' });
    let onReplica = 0;
    for (let i = 0; i < 50; i++) {
      const row = (await r.query('SELECT v, pg_is_in_recovery() AS rec FROM kv WHERE id = $1', [i % 2 ? k1 : k0])).rows[0];
      assert.equal(row.v, i % 2 ? 'b' : 'a');
      if (row.rec) onReplica++;
    }
    await r.end();
    assert.equal(onReplica, 50);
    // Statistics reach pg_stat_database when the replica's backends report them (idle: within ~10 s).
    await eventually('the replicas count the reads', async () => {
      const after = [xacts(lc.replicas[0]![0]!), xacts(lc.replicas[1]![0]!)];
      return after[0]! - before[0]! >= 25 && after[1]! - before[1]! >= 25 ? true : undefined;
    }, 20000);
    const d = await connect();
    assert.equal((await d.query('SELECT pg_is_in_recovery() AS rec FROM kv WHERE id = $1', [k0])).rows[0].rec, false);
    await d.end();
  });

  it('SET pgring.reads and the hint choose per session and per statement; a bad value is 22023', async () => {
    const c = await connect();
    try {
      const rec = async (sql: string) => (await c.query(sql)).rows[0].rec as boolean;
      assert.equal(await rec('SELECT pg_is_in_recovery() AS rec'), false);
      assert.equal(await rec('/* pgring: reads=replica */ SELECT pg_is_in_recovery() AS rec'), true);
      await c.query('SET pgring.reads = replica');
      assert.equal(await rec('SELECT pg_is_in_recovery() AS rec'), true);
      assert.equal(await rec('/* pgring: reads=primary */ SELECT pg_is_in_recovery() AS rec'), false);
      // inside a transaction block reads stay on the primary
      await c.query('BEGIN');
      assert.equal(await rec('SELECT pg_is_in_recovery() AS rec'), false);
      await c.query('COMMIT');
      await assert.rejects(c.query('SET pgring.reads = sometimes'), (e: { code?: string; message: string }) => e.code === '22023' && /pgring\.reads/.test(e.message));
      await c.query('RESET pgring.reads');
      assert.equal(await rec('SELECT pg_is_in_recovery() AS rec'), false);
    } finally { await c.end(); }
  });

  it('read-your-writes: a client with reads=replica always reads what it just committed', async () => {
    const c = await connect({ options: '-c pgring.reads=replica' });
    let fromReplica = 0;
    try {
      for (let i = 0; i < 40; i++) {
        const k = keyOn(i % 2, 1000 + i * 7);
        await c.query('INSERT INTO kv VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v', [k, `w${i}`]);
        // 0-400 ms later: before or after the next heartbeat sample of the primary's WAL position
        await sleep((i * 97) % 400);
        const row = (await c.query('SELECT v, pg_is_in_recovery() AS rec FROM kv WHERE id = $1', [k])).rows[0];
        assert.equal(row?.v, `w${i}`, `read ${i} after its write`);
        if (row.rec) fromReplica++;
      }
    } finally { await c.end(); }
    assert.ok(fromReplica > 0, 'some reads after writes were served by replicas that had replayed them');
    console.log(`# read-your-writes: ${fromReplica}/40 reads after a write served by a replica`);
  });

  it('a replica lagging past replicaMaxLagBytes is skipped, and used again once it caught up', async () => {
    const k0 = keyOn(0, 5000);
    const rep = lc.replicas[0]![0]!;
    await insert(k0);
    await eventually('reads of the key served by the replica', async () => recOf(k0).then((r) => (r === true ? true : undefined)), 10000);
    rep.psql('SELECT pg_wal_replay_pause()');
    try {
      // about 1 MB of WAL written on the primary directly: the replica receives it, does not replay it
      lc.pgs[0]!.psql(`INSERT INTO kv SELECT g, repeat('y', 500) FROM generate_series(300000, 301999) g ON CONFLICT DO NOTHING`);
      await eventually('the lagging replica is skipped', async () => recOf(k0).then((r) => (r === false ? true : undefined)), 10000);
      const a = await connect({}, 'pgring');
      const row = (await a.query('SHOW BACKENDS')).rows.find((x) => Number(x.port) === rep.port);
      await a.end();
      assert.ok(Number(row.replay_lag_bytes) > 256 * 1024, `lag ${row.replay_lag_bytes}`);
      rep.psql('SELECT pg_wal_replay_resume()');
      await eventually('the replica is used again', async () => recOf(k0).then((r) => (r === true ? true : undefined)), 15000);
    } finally { rep.psql('SELECT pg_wal_replay_resume()'); }
  });

  it('a stopped replica is skipped (reads go to the primary) and used again when it is back', async () => {
    const k1 = keyOn(1, 7000);
    const rep = lc.replicas[1]![0]!;
    await insert(k1);
    await eventually('reads of the key served by the replica', async () => recOf(k1).then((r) => (r === true ? true : undefined)), 10000);
    try {
      rep.stop('fast');
      // reads only: the primary's synchronous commits wait for its only standby while it is stopped.
      // A statement on a pooled connection the stop killed fails (as a restarted server's would); retried.
      await eventually('reads served by the primary', async () => recOf(k1).then((r) => (r === false ? true : undefined)), 10000);
      for (let i = 0; i < 10; i++) assert.equal(await recOf(k1), false);
      rep.start();
      await eventually('the replica is used again', async () => recOf(k1).then((r) => (r === true ? true : undefined)), 20000);
    } finally { if (!rep.running()) rep.start(); }
  });
});
