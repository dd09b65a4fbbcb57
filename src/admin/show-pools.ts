// SHOW POOLS: one row per server connection pool (shard, backend, database, server user),
// with PgBouncer's column names where the meaning is the same.
//   cl_active   clients holding a server connection of this pool now
//   cl_waiting  clients queued for a connection of this pool
//   sv_active / sv_idle / sv_login   linked / idle / connecting server connections
//   sv_used, sv_tested               always 0 (pgring does not run server checks)
//   maxwait, maxwait_us              age of the oldest queued client (seconds + microsecond part)
import type { Pool } from '../backend/pool';
import { cols, resultSet } from './result';
import type { AdminCommand } from './types';

export const showPools: AdminCommand = {
  name: 'SHOW POOLS',
  help: 'server connection pools: cl_active, cl_waiting, sv_active, sv_idle, sv_used, sv_login, maxwait, pool_mode',
  run: ({ proxy }) => {
    const cfg = proxy.config;
    const linked = new Map<Pool, number>();
    for (const s of proxy.ctx.sessions.values()) for (const l of s.attachedLinks) linked.set(l.pool, (linked.get(l.pool) ?? 0) + 1);
    const rows = proxy.ctx.topology.allPools().map((p) => {
      const s = p.snapshot();
      const user = cfg.users.find((u) => (u.serverUser ?? u.name) === p.cred.user);
      const waitUs = s.maxWaitMs * 1000;
      return [
        p.cred.database, p.cred.user, p.target.shardName, `${p.target.host}:${p.target.port}`,
        linked.get(p) ?? 0, s.waiting, s.active, s.idle, 0, 0, s.connecting,
        Math.floor(waitUs / 1e6), waitUs % 1e6, user?.poolMode ?? cfg.pool.mode, p.opts.maxSize,
      ];
    });
    return resultSet(cols('database', 'user', 'shard', 'backend', 'cl_active:int8', 'cl_waiting:int8', 'sv_active:int8', 'sv_idle:int8',
      'sv_used:int8', 'sv_tested:int8', 'sv_login:int8', 'maxwait:int8', 'maxwait_us:int8', 'pool_mode', 'pool_size:int8'), rows);
  },
};
