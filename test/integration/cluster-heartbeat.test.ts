// Backend heartbeats against a PostgreSQL of our own (stopped and restarted) and the
// MembershipWatcher on another session; shard records.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testCluster, stopOwnCluster, uniqueName } from '../helpers/env';
import { LocalPostgres } from '../../src/local/postgres';
import { spawnSync } from 'node:child_process';
import { chownPostgres, freePort, isRoot, pgBin, sleep } from '../../src/local/proc';
import { ZkSession } from '../../src/cluster/session';
import { Layout } from '../../src/cluster/layout';
import { BackendHeartbeat } from '../../src/cluster/heartbeat';
import { getShard, listShards, MembershipWatcher, putShard, removeShard } from '../../src/cluster/registry';

let connect = '';
let pg: LocalPostgres;
const sessions: ZkSession[] = [];
const quiet = { warn: () => undefined };
async function session(): Promise<ZkSession> {
  const s = new ZkSession({ connect, sessionTimeoutMs: 6000, logger: quiet });
  sessions.push(s);
  await s.start();
  return s;
}
async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Starts PostgreSQL without handing it our open descriptors: the native ZooKeeper client's
 * sockets were not close-on-exec, and a postmaster holding copies of them kept their epoll
 * registrations alive after we closed them, which broke later ZooKeeper connections that
 * reused the fd numbers (seen as "connection timed out"). scripts/patch-zookeeper.js now opens
 * them close-on-exec (zk-cloexec.test.ts); other descriptors are still not the child's business.
 */
function startPgClean(p: LocalPostgres): void {
  p.init();
  const ctl = [pgBin('pg_ctl'), '-D', p.dataDir, '-l', p.logFile, '-w', '-t', '60', 'start'].map((a) => `'${a}'`).join(' ');
  const script = `for f in /proc/$$/fd/*; do n=\${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done 2>/dev/null; exec ${isRoot ? 'runuser -u postgres -- ' : ''}${ctl}`;
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', cwd: '/tmp' });
  if (r.status !== 0) throw new Error(`pg_ctl start failed: ${r.stderr || r.stdout}`);
}

before(async () => {
  connect = (await testCluster()).zk;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-hb-'));
  chownPostgres(dir);
  pg = new LocalPostgres({ dir: path.join(dir, 'pg'), port: await freePort() });
  startPgClean(pg);
});
after(async () => {
  for (const s of sessions) await s.close();
  pg?.stop('immediate');
  await stopOwnCluster();
});

test('shard records are persistent and replaceable', async () => {
  const layout = new Layout(uniqueName('hb_shards'));
  const a = await session();
  await putShard(a, layout, { name: 's1', weight: 1 });
  await putShard(a, layout, { name: 's2', weight: 2, note: 'x' });
  await putShard(a, layout, { name: 's1', weight: 3 });
  assert.deepEqual(await getShard(a, layout, 's1'), { name: 's1', weight: 3 });
  assert.deepEqual((await listShards(a, layout)).map((s) => s.name), ['s1', 's2']);
  assert.equal(await removeShard(a, layout, 's2'), true);
  assert.equal(await removeShard(a, layout, 's2'), false);
  assert.equal(await getShard(a, layout, 's2'), null);
});

test('heartbeat marks a stopped PostgreSQL down and a restarted one up; node goes with the session', async () => {
  const layout = new Layout(uniqueName('hb'));
  const agent = await session();
  const proxy = await session();
  await putShard(proxy, layout, { name: 's1', weight: 1 });
  await putShard(proxy, layout, { name: 's2', weight: 1 });
  const mw = new MembershipWatcher(proxy, layout);
  const changes: number[] = [];
  mw.on('change', () => changes.push(Date.now()));
  await mw.start();
  assert.deepEqual([...mw.all().keys()], ['s1', 's2']);
  assert.equal(mw.isUp('s1'), false);

  const hb = new BackendHeartbeat({ session: agent, layout, shard: 's1', host: '127.0.0.1', port: pg.port, intervalMs: 200, timeoutMs: 1000 });
  await hb.start();
  assert.equal(hb.record.healthy, true);
  assert.equal(hb.record.role, 'primary');
  await waitFor(() => mw.isUp('s1'), 's1 up');
  const live = mw.live('s1');
  assert.equal(live.length, 1);
  assert.equal(live[0]!.addr, `127.0.0.1:${pg.port}`);
  assert.equal(live[0]!.role, 'primary');
  assert.equal(mw.isUp('s1', 'replica'), false);
  assert.equal(mw.isUp('s2'), false);
  const zkView = JSON.parse((await proxy.current().get(layout.backend('s1', `127.0.0.1:${pg.port}`))).data.toString());
  assert.equal(zkView.healthy, true);
  assert.equal(typeof zkView.checkedAt, 'number');

  const down = new Promise((r) => hb.once('down', r));
  pg.stop('fast');
  await down;
  await waitFor(() => !mw.isUp('s1'), 's1 down');
  const rec = mw.all().get('s1')![0]!;          // the znode stays, marked unhealthy
  assert.equal(rec.healthy, false);
  assert.ok(rec.error && rec.error.length > 0);

  const up = new Promise((r) => hb.once('up', r));
  startPgClean(pg);
  await up;
  await waitFor(() => mw.isUp('s1'), 's1 up again');

  // the agent's session ends: its ephemeral node and with it the backend vanish
  await agent.close();
  await waitFor(() => (mw.all().get('s1') ?? []).length === 0, 'backend gone with the session');
  assert.equal(mw.isUp('s1'), false);
  await hb.stop();
  mw.stop();
  assert.ok(changes.length >= 4);
});

test('heartbeat stop() removes the liveness node at once', async () => {
  const layout = new Layout(uniqueName('hb_stop'));
  const agent = await session();
  const proxy = await session();
  const mw = new MembershipWatcher(proxy, layout);
  await mw.start();
  const hb = new BackendHeartbeat({ session: agent, layout, shard: 's1', host: '127.0.0.1', port: pg.port, intervalMs: 200 });
  await hb.start();
  await waitFor(() => mw.isUp('s1'), 's1 up');
  await hb.stop();
  await waitFor(() => (mw.all().get('s1') ?? []).length === 0, 'node removed');
  mw.stop();
});

test('a liveness node deleted or overwritten by someone else is written again at the next beat', async () => {
  // A beat rewrites its own node with a versioned set (no exists first); a node that is gone
  // or at another version must take the full path again, not be left as it is.
  const layout = new Layout(uniqueName('hb_fix'));
  const agent = await session();
  const other = await session();
  const hb = new BackendHeartbeat({ session: agent, layout, shard: 's1', host: '127.0.0.1', port: pg.port, intervalMs: 150 });
  await hb.start();
  const node = layout.backend('s1', `127.0.0.1:${pg.port}`);
  const zk = other.current();
  const read = async () => { try { const r = await zk.get(node); return { rec: JSON.parse(r.data.toString()) as { healthy: boolean; checkedAt: number }, owner: r.stat.ephemeralOwner }; } catch { return null; } };
  await waitFor(async () => ((await read())?.rec.checkedAt ?? 0) > 0, 'first beats');
  // overwritten (another version): the next beats write the record again
  await zk.set(node, JSON.stringify({ bogus: true }), -1);
  await waitFor(async () => (await read())?.rec.healthy === true, 'record rewritten after a foreign set');
  // deleted: created again, in the agent's session
  await zk.delete(node, -1);
  await waitFor(async () => (await read())?.owner === agent.current().sessionId, 'node created again by the heartbeat');
  const t0 = (await read())!.rec.checkedAt;
  await waitFor(async () => ((await read())?.rec.checkedAt ?? 0) > t0, 'beats go on after the re-create');
  await hb.stop();
});
