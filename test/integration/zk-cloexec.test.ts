// Child processes do not inherit pgring's ZooKeeper connections.
//
// The `zookeeper` package configures its C client without --with-sock-cloexec, so every process
// pgring (or a test) started while a handle was open inherited the ZooKeeper socket: pg_ctl's
// postmaster, pgbackrest, psql. A handle closed in pgring then stayed open in the child, and the
// epoll registration of its socket outlived the descriptor number in pgring's event loop: the
// next handle that got the same number never saw its connect complete and never sent its
// handshake ("ZooKeeper ... not reachable", the server logging the connection with session
// 0x0). backup.test.js met it after restarting a shard with pg_ctl. scripts/patch-zookeeper.js
// opens the sockets close-on-exec; without it the first check fails on its first child and the
// second in every round.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { ChildProcess, spawn } from 'node:child_process';
import { stopOwnCluster, testCluster } from '../helpers/env';
import { ClusterInfo } from '../../src/local/cluster';
import { sleep } from '../../src/local/proc';
import { Zk } from '../../src/cluster/zk';

let cluster: ClusterInfo;
const children: ChildProcess[] = [];
before(async () => { cluster = await testCluster(); });
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await stopOwnCluster();
});

/** A long-lived child with no stdio: every descriptor it holds beyond 0-2 was inherited. */
async function child(): Promise<ChildProcess> {
  const c = spawn('sleep', ['300'], { stdio: 'ignore' });
  children.push(c);
  await sleep(100);
  return c;
}

function socketsOf(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  return fs.readdirSync(dir).map((f) => { try { return fs.readlinkSync(`${dir}/${f}`); } catch { return ''; } }).filter((l) => l.startsWith('socket:'));
}

describe('ZooKeeper sockets and child processes', () => {
  it('a child started while handles are connected holds none of their sockets', async () => {
    const handles = await Promise.all([0, 1, 2].map(() => Zk.connect({ connect: cluster.zk, sessionTimeoutMs: 6000 })));
    try {
      const c = await child();
      assert.deepEqual(socketsOf(c.pid!), [], 'the child inherited sockets');
    } finally {
      await Promise.all(handles.map((h) => h.close()));
    }
  });

  it('a handle opened after one a child outlived connects', async () => {
    for (let round = 0; round < 3; round++) {
      const first = await Zk.connect({ connect: cluster.zk, sessionTimeoutMs: 6000 });
      await child();
      await first.close();
      await sleep(300);
      const next = new Zk({ connect: cluster.zk, sessionTimeoutMs: 6000 });
      try {
        await next.waitConnected(10000);
      } catch (e) {
        assert.fail(`round ${round}: the next handle did not connect: ${(e as Error).message}`);
      } finally {
        await next.close();
      }
    }
  });
});
