// SHOW BACKENDS: every PostgreSQL server behind the proxy, its liveness and connections.
import { cols, fmtTime, resultSet } from './result';
import type { AdminCommand } from './types';

export const showBackends: AdminCommand = {
  name: 'SHOW BACKENDS',
  help: 'backends: shard, host, port, role, up/down, last check, error, server connections',
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
        rows.push([t.shards[i]!.name, b.host, b.port, b.role, b.healthy ? 'up' : 'down', fmtTime(b.checkedAt), b.error ?? null, active, idle, login, waiting]);
      }
    }
    return resultSet(cols('shard', 'host', 'port:int8', 'role', 'state', 'checked_at', 'error', 'sv_active:int8', 'sv_idle:int8', 'sv_login:int8', 'cl_waiting:int8'), rows);
  },
};
