// SHOW SHARDS: each shard with its ring share, backends, liveness and roles.
import { cols, pct, resultSet } from './result';
import type { AdminCommand } from './types';

export const showShards: AdminCommand = {
  name: 'SHOW SHARDS',
  help: 'shards: ring share %, backends host:port, live/down, roles',
  run: ({ proxy }) => {
    const t = proxy.ctx.topology;
    const ring = proxy.ring;
    const shares = new Map(ring.version === 0 ? [] : ring.shares().map((s) => [s.name, s.percent] as const));
    const weights = new Map(ring.definition.shards.map((s) => [s.name, s.weight] as const));
    const rows = t.shards.map((s, i) => {
      const bs = t.backends[i] ?? [];
      return [
        s.name, weights.get(s.name) ?? s.weight, pct(shares.get(s.name) ?? 0), weights.has(s.name),
        bs.map((b) => `${b.host}:${b.port}`).join(','), t.isUp(i) ? 'live' : 'down',
        bs.map((b) => b.role).join(','), bs.filter((b) => b.healthy).length, bs.length,
      ];
    });
    return resultSet(cols('name', 'weight:numeric', 'share_pct:numeric', 'in_ring:bool', 'backends', 'state', 'role', 'live_backends:int8', 'backend_count:int8'), rows);
  },
};
