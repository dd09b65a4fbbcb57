// SHOW RING: the ring this proxy routes with: version, vnodes, seed, and per shard
// its weight, points on the circle and share.
import { cols, pct, resultSet } from './result';
import type { AdminCommand } from './types';

export const showRing: AdminCommand = {
  name: 'SHOW RING',
  help: 'the active ring: version, hash, vnodes, seed, points and share per shard',
  run: ({ proxy }) => {
    const ring = proxy.ring;
    const d = ring.definition;
    const shares = new Map(ring.version === 0 ? [] : ring.shares().map((s) => [s.name, s.percent] as const));
    const rows = d.shards.map((s) => [
      ring.version, d.hash, d.vnodes, String(d.seed), s.name, s.weight, Math.round(d.vnodes * s.weight), pct(shares.get(s.name) ?? 0), ring.pointCount,
    ]);
    return resultSet(cols('version:int8', 'hash', 'vnodes:int8', 'seed:int8', 'shard', 'weight:numeric', 'points:int8', 'share_pct:numeric', 'total_points:int8'), rows);
  },
};
