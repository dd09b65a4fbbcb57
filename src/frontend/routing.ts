// Turns a planned statement (src/router) plus Bind parameters and session hints
// into the set of shards it must run on. One routing value carries what the
// response path needs: direct (one shard), multi (some shards) or all.
import type { KeyType } from '../config/types';
import { PgError, SQLSTATE } from '../protocol/errors';

export type Route = { kind: 'direct'; shard: number } | { kind: 'multi'; shards: number[] } | { kind: 'all' };

// One frozen route per shard for the common case (routes are never changed after they are made).
const directs: Route[] = [];
/** The route to one shard (shared, frozen: no object per statement). */
export function directRoute(shard: number): Route {
  return directs[shard] ?? (directs[shard] = Object.freeze({ kind: 'direct', shard }) as Route);
}

/** What the frontend needs to know of the ring. */
export interface ShardMap {
  readonly shardCount: number;
  shardIndex(name: string): number;
  shardForKey(type: KeyType, text: string): number;
  shardForBinaryKey(type: KeyType, buf: Buffer): number;
}

/** Maps a list of key values to the sorted set of shards owning them. */
export function shardsForKeys(map: ShardMap, type: KeyType, keys: (string | null)[]): Route {
  if (keys.length === 1) { const k = keys[0] as string | null; return directRoute(k === null ? 0 : map.shardForKey(type, k)); } // the common case: no Set
  const seen = new Set<number>();
  for (const k of keys) {
    if (k === null) continue;         // `key = NULL` matches nothing; any shard answers correctly
    seen.add(map.shardForKey(type, k));
  }
  if (seen.size === 0) return directRoute(0);
  if (seen.size === 1) return directRoute(seen.values().next().value as number);
  return { kind: 'multi', shards: [...seen].sort((a, b) => a - b) };
}

export function routeShards(route: Route, shardCount: number): number[] {
  if (route.kind === 'direct') return [route.shard];
  if (route.kind === 'multi') return route.shards;
  return Array.from({ length: shardCount }, (_, i) => i);
}

export function shardByName(map: ShardMap, name: string): number {
  const i = map.shardIndex(name);
  if (i < 0) throw new PgError(SQLSTATE.InvalidParameterValue, `pgring: unknown shard "${name}"`, { hint: 'see SHOW SHARDS on the admin console' });
  return i;
}
