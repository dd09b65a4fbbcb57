// ZooKeeper helpers for integration tests (real ZooKeeper).
import { sleep } from '../../src/local/proc';
import { Zk } from '../../src/cluster/zk';

/**
 * Expires `zk`'s session server-side by connecting and closing a twin handle on the same
 * session id. The server drops the older connection of a session when the twin connects; if
 * the original handle reconnects before the twin's close is sent, the close is not sent: try
 * again. Returns when `zk` is dead or after 10 tries (callers assert `zk.dead`).
 */
export async function expireSession(zk: Zk, connect: string): Promise<void> {
  for (let i = 0; i < 10 && !zk.dead; i++) {
    const twin = new Zk({ connect, sessionId: zk.sessionId, sessionPassword: zk.sessionPassword, sessionTimeoutMs: 4000 });
    try { await twin.waitConnected(5000); } catch { /* retried */ }
    await twin.close();
    const deadline = Date.now() + 2000;
    while (!zk.dead && Date.now() < deadline) await sleep(20);
  }
}
