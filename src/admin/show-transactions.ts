// SHOW TRANSACTIONS: client transactions in flight on more than one shard (the ones
// that will commit with two-phase commit).
import { cols, fmtTime, resultSet } from './result';
import type { AdminCommand } from './types';

export const showTransactions: AdminCommand = {
  name: 'SHOW TRANSACTIONS',
  help: 'in-flight multi-shard transactions: client, shards, start, duration, last statement',
  run: ({ proxy }) => {
    const now = Date.now();
    const shardName = (i: number) => proxy.ctx.topology.shards[i]?.name ?? String(i);
    const rows = [];
    for (const s of proxy.ctx.sessions.values()) {
      const links = s.attachedLinks;
      if (s.admin || links.length < 2) continue;
      const busy = links.some((l) => l.queue.length > 0);
      if (s.txStatus === 'I' && !busy) continue;
      const start = Math.min(...links.map((l) => l.txStart));
      rows.push([s.pid, s.user, s.database, s.txStatus, links.map((l) => shardName(l.shard)).join(','), links.length,
        links.map((l) => `${shardName(l.shard)}:${l.conn.pid}`).join(','), fmtTime(start), now - start, s.lastQuery.slice(0, 200)]);
    }
    return resultSet(cols('pid:int8', 'user', 'database', 'tx_status', 'shards', 'shard_count:int8', 'server_pids', 'xact_start', 'duration_ms:int8', 'last_query'), rows);
  },
};
