// A shard stopped and restarted while pgring serves, and ZooKeeper restarted while
// pgring serves reads. Runs its own cluster (it stops servers).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { LocalCluster, ClusterInfo } from '../../src/local/cluster';
import { sleep } from '../../src/local/proc';
import { baseConfig, RunningProxy, startProxy, withClient } from '../helpers/proxy';

let lc: LocalCluster;
let info: ClusterInfo;
let proxy: RunningProxy;
const db = 'postgres';

before(async () => {
  lc = new LocalCluster({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-failover-')), shards: 3 });
  info = await lc.start();
  proxy = await startProxy(await baseConfig(info, 3, {
    zookeeper: { connect: info.zk, cluster: 'failover', sessionTimeoutMs: 10000 },
    sharding: { tables: [{ name: 'kv', column: 'id', type: 'integer' }] },
    health: { intervalMs: 250, timeoutMs: 500 },
    pool: { connectTimeoutMs: 1000 },
    locks: { mode: 'off' },
  }));
  await withClient(proxy.port, db, async (c) => {
    await c.query('CREATE TABLE kv (id int primary key, v text)');
    for (let i = 0; i < 60; i++) await c.query('INSERT INTO kv VALUES ($1, $2)', [i, `v${i}`]);
  });
});

after(async () => {
  await proxy?.stop();
  await lc?.stop();
  fs.rmSync(lc.opts.dir, { recursive: true, force: true });
});

function keysOn(shard: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < 60; i++) if (proxy.proxy.ctx.shards.shardForKey('integer', String(i)) === shard) out.push(i);
  return out;
}

async function read(c: pg.Client, id: number): Promise<string> {
  return (await c.query('SELECT v FROM kv WHERE id = $1', [id])).rows[0]?.v;
}

describe('failures while serving', () => {
  it('a stopped shard fails fast with its name, other shards keep working, and it comes back without a restart', async () => {
    const onS2 = keysOn(1), onS1 = keysOn(0), onS3 = keysOn(2);
    assert.ok(onS2.length && onS1.length && onS3.length);
    const version = proxy.proxy.ring.version;
    lc.pgs[1]!.stop('fast');
    await sleep(800); // a few heartbeats
    await withClient(proxy.port, db, async (c) => {
      const t0 = Date.now();
      await assert.rejects(read(c, onS2[0]!), (e: { code?: string; message: string }) => /^(08|57P0)/.test(e.code ?? '') && /"s2"/.test(e.message));
      assert.ok(Date.now() - t0 < 1000, `failed within a second (${Date.now() - t0} ms)`);
      assert.equal(await read(c, onS1[0]!), `v${onS1[0]}`);
      assert.equal(await read(c, onS3[0]!), `v${onS3[0]}`);
    });
    assert.equal(proxy.proxy.ring.version, version, 'the ring does not change when a backend dies');
    lc.pgs[1]!.start();
    const deadline = Date.now() + 15000;
    let ok = false;
    while (Date.now() < deadline && !ok) {
      ok = await withClient(proxy.port, db, async (c) => (await read(c, onS2[0]!)) === `v${onS2[0]}`).catch(() => false);
      if (!ok) await sleep(200);
    }
    assert.ok(ok, 'shard s2 serves again');
  });

  it('reads keep working while ZooKeeper restarts, and the proxy reconnects', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'postgres', database: db });
    await c.connect();
    try {
      await lc.zk.stop();
      for (let i = 0; i < 60; i += 7) assert.equal(await read(c, i), `v${i}`);
      await sleep(1500);
      for (let i = 1; i < 60; i += 7) assert.equal(await read(c, i), `v${i}`);
      await lc.zk.start();
      const deadline = Date.now() + 20000;
      while (proxy.proxy.coordinator!.session.state !== 'connected' && Date.now() < deadline) await sleep(100);
      assert.equal(proxy.proxy.coordinator!.session.state, 'connected');
      for (let i = 2; i < 60; i += 7) assert.equal(await read(c, i), `v${i}`);
    } finally { await c.end(); }
  });
});
