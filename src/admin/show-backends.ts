// SHOW BACKENDS: every PostgreSQL server behind the proxy, its liveness and connections.
import { cols, fmtTime, resultSet } from './result';
import type { AdminCommand } from './types';
import { formatLsn } from '../backend/lsn';

export const showBackends: AdminCommand = {
  name: 'SHOW BACKENDS',
  help: 'backends: shard, host, port, role, up/down/fenced, last check, error, server connections, WAL position, replay lag',
  run: ({ proxy }) => {
    const t = proxy.ctx.topology;
    const pools = t.allPools();
    const rows = [];
    for (let i = 0; i < t.shards.length; i++) {
      for (const b of t.backends[i] ?? []) {
        let active = 0, idle = 0, login = 0, waiting = 0;
        for (const p of pools) {
          if (p.target.shard !== i || p.target.host !== b.host || p.target.port !== b.port) continue;
          const s = p.snapshot();
          active += s.active; idle += s.idle; login += s.connecting; waiting += s.waiting;
        }
        // fenced: claims to be a primary but the shard record (failover epoch) names another
        const state = !b.healthy ? 'down' : t.isFenced(i, b) ? 'fenced' : 'up';
        const lagMs = b.role === 'replica' ? b.lagMs ?? null : null;
        rows.push([t.shards[i]!.name, b.host, b.port, b.role, state, fmtTime(b.checkedAt), b.error ?? null, active, idle, login, waiting,
          b.lsn != null ? formatLsn(b.lsn) : null, t.lagBytesOf(i, b), lagMs === null ? null : (lagMs / 1000).toFixed(3), t.designated[i]?.epoch ?? 0]);
      }
    }
    return resultSet(cols('shard', 'host', 'port:int8', 'role', 'state', 'checked_at', 'error', 'sv_active:int8', 'sv_idle:int8', 'sv_login:int8', 'cl_waiting:int8',
      'lsn', 'replay_lag_bytes:int8', 'replay_lag_s:numeric', 'epoch:int8'), rows);
  },
};
