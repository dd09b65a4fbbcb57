// A shard whose primary is down serves plain SELECTs from a live replica (a real hot standby,
// streaming from the primary), while writes get 57P03 naming the shard; when the primary is
// back, writes go to it again. Runs its own primary and standby (it stops the primary).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { LocalPostgres } from '../../src/local/postgres';
import { chownPostgres, freePort, pgBin, runAsPostgres, sleep } from '../../src/local/proc';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, RunningProxy, startProxy, withClient } from '../helpers/proxy';

let dir: string;
let primary: LocalPostgres;
let standby: LocalPostgres;
let proxy: RunningProxy;
const db = 'postgres';

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 20000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`${what} within ${ms} ms`);
    await sleep(200);
  }
}

const errorOf = async (sql: string, params: unknown[] = []): Promise<pg.DatabaseError | null> =>
  withClient(proxy.port, db, async (c) => { try { await c.query(sql, params); return null; } catch (e) { return e as pg.DatabaseError; } });

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-replica-'));
  chownPostgres(dir);
  primary = new LocalPostgres({ dir: path.join(dir, 'primary'), port: await freePort(), extraConf: ['wal_level = replica', 'max_wal_senders = 5'] });
  primary.init();
  primary.setHba(['local all all trust', 'host all all 127.0.0.1/32 trust', 'host replication all 127.0.0.1/32 trust']);
  primary.start();
  const standbyPort = await freePort();
  const standbyDir = path.join(dir, 'standby');
  fs.mkdirSync(standbyDir); chownPostgres(standbyDir);
  runAsPostgres(pgBin('pg_basebackup'), ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', path.join(standbyDir, 'data'), '-R', '-X', 'stream']);
  standby = new LocalPostgres({ dir: standbyDir, port: standbyPort, extraConf: [`primary_conninfo = 'host=127.0.0.1 port=${primary.port} user=postgres'`, 'hot_standby = on'] });
  standby.start();
  const cluster = await testCluster();
  proxy = await startProxy(await baseConfig(cluster, 1, {
    shards: [{ name: 's1', backends: [{ host: '127.0.0.1', port: primary.port, role: 'primary' }, { host: '127.0.0.1', port: standbyPort, role: 'replica' }] }],
    zookeeper: { connect: cluster.zk, cluster: uniqueName('replica'), sessionTimeoutMs: 10000 },
    health: { intervalMs: 250, timeoutMs: 500 },
    pool: { connectTimeoutMs: 1000 },
    locks: { mode: 'off' },
  }));
  await withClient(proxy.port, db, async (c) => {
    await c.query('CREATE TABLE kv (id int PRIMARY KEY, v text)');
    await c.query("INSERT INTO kv VALUES (1, 'a'), (2, 'b'), (3, 'c')");
  });
  await eventually('the standby replays the rows', async () => (standby.psql('SELECT count(*) FROM kv').trim() === '3' ? true : undefined));
});

after(async () => {
  await proxy?.stop();
  standby?.stop('immediate');
  primary?.stop('immediate');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('reads from a replica while the primary is down', () => {
  it('serves SELECTs from the standby, refuses writes with 57P03 naming the shard, and writes again once the primary is back', async () => {
    primary.stop('immediate');
    const err = await eventually('writes refused with 57P03', async () => {
      const e = await errorOf("INSERT INTO kv VALUES (4, 'd')");
      return e?.code === '57P03' ? e : undefined;
    });
    assert.match(err.message, /shard "s1" is unavailable/);
    await withClient(proxy.port, db, async (c) => {
      assert.equal((await c.query('SELECT v FROM kv WHERE id = 2')).rows[0].v, 'b'); // simple protocol
      assert.equal((await c.query('SELECT v FROM kv WHERE id = $1', [3])).rows[0].v, 'c'); // extended protocol
      assert.equal((await c.query('SELECT count(*)::int AS n FROM kv')).rows[0].n, 3);
      assert.equal((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r, true);
    });
    assert.equal((await errorOf('UPDATE kv SET v = $1 WHERE id = $2', ['x', 1]))?.code, '57P03');
    primary.start();
    await eventually('writes reach the primary again', async () => ((await errorOf("INSERT INTO kv VALUES (4, 'd')")) === null ? true : undefined));
    await withClient(proxy.port, db, async (c) => {
      assert.equal((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r, false);
      assert.equal((await c.query('SELECT count(*)::int AS n FROM kv')).rows[0].n, 4);
    });
  });
});
