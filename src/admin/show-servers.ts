// SHOW SERVERS: one row per server connection (PgBouncer's columns where they mean
// the same; `link` is the pid pgring gave the client that holds it).
import type { ClientSession } from '../frontend/client';
import { cols, fmtTime, resultSet } from './result';
import type { AdminCommand } from './types';

export const showServers: AdminCommand = {
  name: 'SHOW SERVERS',
  help: 'server connections: shard, backend, state, linked client, transaction status, bytes',
  run: ({ proxy }) => {
    const rows = [];
    for (const p of proxy.ctx.topology.allPools()) {
      for (const c of p.all) {
        const owner = c.owner as ClientSession | null;
        rows.push([
          'S', p.cred.user, p.cred.database, owner ? 'active' : 'idle', p.target.host, p.target.port,
          c.socket.localAddress ?? null, c.socket.localPort ?? null, fmtTime(c.createdAt), fmtTime(c.lastUsed),
          c.pid, owner && typeof owner.pid === 'number' ? owner.pid : null, p.target.shardName, c.status,
          c.bytesIn, c.bytesOut, c.prepared.size,
        ]);
      }
    }
    return resultSet(cols('type', 'user', 'database', 'state', 'addr', 'port:int8', 'local_addr', 'local_port:int8',
      'connect_time', 'request_time', 'remote_pid:int8', 'link:int8', 'shard', 'tx_status', 'bytes_in:int8', 'bytes_out:int8',
      'prepared_statements:int8'), rows);
  },
};
