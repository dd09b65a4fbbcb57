// SHOW CLIENTS: one row per logged-in client connection (PgBouncer's columns where
// they mean the same, plus pgring's: transaction status, attached shards, pins).
import { cols, fmtTime, resultSet } from './result';
import type { AdminCommand } from './types';

export const showClients: AdminCommand = {
  name: 'SHOW CLIENTS',
  help: 'client connections: user, database, state, address, times, wait, attached shards',
  run: ({ proxy, session: me }) => {
    const now = Date.now();
    const shardName = (i: number) => proxy.ctx.topology.shards[i]?.name ?? String(i);
    const rows = [...proxy.ctx.sessions.values()].map((s) => {
      const links = s.attachedLinks;
      const state = s.admin ? 'admin' : s.waitingSince > 0 ? 'waiting' : links.length ? 'active' : 'idle';
      const waitUs = s.waitingSince > 0 ? (now - s.waitingSince) * 1000 : 0;
      return [
        'C', s.user, s.database, state, s.socket.remoteAddress ?? null, s.socket.remotePort ?? null,
        s.socket.localAddress ?? null, s.socket.localPort ?? null, fmtTime(s.connectedAt), fmtTime(s.queryStart),
        Math.floor(waitUs / 1e6), waitUs % 1e6, 0, s.pid, links.map((l) => l.conn.pid).join(',') || null,
        s.tls, s.applicationName, s.txStatus, links.map((l) => shardName(l.shard)).join(',') || null,
        [...s.pins].join(',') || null, s === me ? '(this session)' : (s.lastQuery ? s.lastQuery.slice(0, 200) : null),
      ];
    });
    return resultSet(cols('type', 'user', 'database', 'state', 'addr', 'port:int8', 'local_addr', 'local_port:int8',
      'connect_time', 'request_time', 'wait:int8', 'wait_us:int8', 'close_needed:int8', 'pid:int8', 'link',
      'tls:bool', 'application_name', 'tx_status', 'shards', 'pins', 'last_query'), rows);
  },
};
