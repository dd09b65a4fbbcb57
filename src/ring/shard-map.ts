// Adapts the ring (key -> ring shard) to the proxy's shard indexes (config/topology
// order), turning invalid key text into a PostgreSQL error.
import type { KeyType } from '../config/types';
import { PgError, SQLSTATE } from '../protocol/errors';
import type { ShardMap } from '../frontend/routing';
import { KeyValueError } from './hash';
import { Ring } from './ring';

export class RingShardMap implements ShardMap {
  private readonly toTopology: Int32Array;
  constructor(readonly ring: Ring, readonly topologyNames: readonly string[]) {
    this.toTopology = new Int32Array(ring.shardNames.length);
    ring.shardNames.forEach((n, i) => {
      const t = topologyNames.indexOf(n);
      if (t < 0) throw new Error(`ring shard "${n}" has no backends configured`);
      this.toTopology[i] = t;
    });
  }
  get shardCount(): number { return this.topologyNames.length; }
  shardIndex(name: string): number { return this.topologyNames.indexOf(name); }
  shardForKey(type: KeyType, text: string): number {
    try { return this.toTopology[this.ring.shardForKey(type, text)]!; } catch (e) { throw keyError(e); }
  }
  shardForBinaryKey(type: KeyType, buf: Buffer): number {
    try { return this.toTopology[this.ring.shardForKeyBinary(type, buf)]!; } catch (e) { throw keyError(e); }
  }
}

function keyError(e: unknown): Error {
  if (e instanceof KeyValueError) return new PgError(e.code || SQLSTATE.InvalidTextRepresentation, e.message);
  return e as Error;
}
