// The consistent-hash ring: an immutable, pure structure built from a
// RingDefinition (the JSON document kept in ZooKeeper).
//
// Circle: unsigned 64-bit coordinates [0, 2^64). A key's coordinate is its
// PostgreSQL seeded hash (see hash.ts) reinterpreted as unsigned, so int8
// hashes 0 .. 2^63-1 come first, then -2^63 .. -1. Each shard gets
// round(vnodes * weight) points at hashtextextended(`${name}#${i}`, seed)
// (also reinterpreted as unsigned). A coordinate belongs to the shard of the
// first point clockwise with point >= coordinate, wrapping past 2^64-1 to the
// smallest point. So the point P_j owns the half-open arc [P_{j-1} + 1, P_j + 1)
// and the smallest point also owns [P_last + 1, 2^64).
import type { KeyType } from '../config/types';
import {
  hashTextParts, keyHashParts, keyHashPartsBinary, lastHashHi, lastHashLo,
  int8FromParts, seedParts, TWO64,
} from './hash';

export const RING_HASH_V1 = 'pg-hashint8extended-v1';

export interface RingShardDefinition { name: string; weight: number }

/** The ring's definition; also the JSON document stored in ZooKeeper. */
export interface RingDefinition {
  version: number;
  shards: RingShardDefinition[];
  vnodes: number;
  seed: number;
  hash: 'pg-hashint8extended-v1';
}

/** A half-open range [start, end) of unsigned circle coordinates; end may be 2^64. */
export interface Arc { start: bigint; end: bigint }

export interface ShardShare { name: string; percent: number }

export class RingDefinitionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RingDefinitionError';
  }
}

const TWO63 = 1n << 63n;

/** Validates a ring definition (throws RingDefinitionError) and returns a normalized copy. */
export function validateRingDefinition(def: unknown): RingDefinition {
  const d = def as Partial<RingDefinition> | null;
  if (!d || typeof d !== 'object') throw new RingDefinitionError('ring definition must be an object');
  if (!Number.isSafeInteger(d.version) || (d.version as number) < 0) throw new RingDefinitionError('ring version must be a non-negative integer');
  if (!Number.isSafeInteger(d.vnodes) || (d.vnodes as number) < 1 || (d.vnodes as number) > 1_000_000) {
    throw new RingDefinitionError('ring vnodes must be an integer between 1 and 1000000');
  }
  if (!Number.isSafeInteger(d.seed)) throw new RingDefinitionError('ring seed must be a safe integer');
  if (d.hash !== RING_HASH_V1) throw new RingDefinitionError(`unsupported ring hash ${JSON.stringify(d.hash)} (expected "${RING_HASH_V1}")`);
  if (!Array.isArray(d.shards) || d.shards.length === 0) throw new RingDefinitionError('ring must have at least one shard');
  if (d.shards.length > 65535) throw new RingDefinitionError('too many shards');
  const seen = new Set<string>();
  let total = 0;
  const shards = d.shards.map((s, i) => {
    if (!s || typeof s.name !== 'string' || s.name.length === 0) throw new RingDefinitionError(`shard #${i} must have a non-empty name`);
    if (seen.has(s.name)) throw new RingDefinitionError(`duplicate shard name "${s.name}"`);
    seen.add(s.name);
    if (typeof s.weight !== 'number' || !Number.isFinite(s.weight) || s.weight < 0) {
      throw new RingDefinitionError(`shard "${s.name}" weight must be a finite number >= 0`);
    }
    total += Math.round((d.vnodes as number) * s.weight);
    return { name: s.name, weight: s.weight };
  });
  if (total === 0) throw new RingDefinitionError('ring has no points (all weights round to 0 vnodes)');
  if (total > 10_000_000) throw new RingDefinitionError('ring has too many points');
  return { version: d.version as number, shards, vnodes: d.vnodes as number, seed: d.seed as number, hash: RING_HASH_V1 };
}

export class Ring {
  readonly definition: Readonly<RingDefinition>;
  readonly shardNames: readonly string[];
  readonly seed: bigint;
  private readonly seedHi: number;
  private readonly seedLo: number;
  // Points sorted by unsigned coordinate (hi, lo); pointShard = owning shard index.
  private readonly pointHi: Uint32Array;
  private readonly pointLo: Uint32Array;
  private readonly pointShard: Uint16Array;
  private readonly n: number;
  // bucket[b] = index of the first point whose top `bucketBits` bits are >= b
  // (b = 0 .. 2^bucketBits); narrows the binary search to a few points.
  private readonly bucket: Uint32Array;
  private readonly bucketShift: number;
  private arcsCache: Arc[][] | null = null;

  constructor(def: RingDefinition) {
    const d = validateRingDefinition(def);
    this.definition = Object.freeze({ ...d, shards: Object.freeze(d.shards.map((s) => Object.freeze(s))) as RingShardDefinition[] });
    this.shardNames = Object.freeze(d.shards.map((s) => s.name));
    this.seed = BigInt(d.seed);
    [this.seedHi, this.seedLo] = seedParts(this.seed);

    const counts = d.shards.map((s) => Math.round(d.vnodes * s.weight));
    const total = counts.reduce((a, b) => a + b, 0);
    const hi = new Uint32Array(total);
    const lo = new Uint32Array(total);
    const sh = new Uint16Array(total);
    const idx = new Uint32Array(total);
    let k = 0;
    for (let s = 0; s < counts.length; s++) {
      const name = d.shards[s].name;
      for (let i = 0; i < counts[s]; i++, k++) {
        hashTextParts(`${name}#${i}`, this.seedHi, this.seedLo);
        hi[k] = lastHashHi();
        lo[k] = lastHashLo();
        sh[k] = s;
        idx[k] = i;
      }
    }
    // Deterministic order; ties (practically impossible) broken by shard index then point index.
    const order = Array.from({ length: total }, (_, j) => j);
    order.sort((x, y) => (hi[x] - hi[y]) || (lo[x] - lo[y]) || (sh[x] - sh[y]) || (idx[x] - idx[y]));
    this.pointHi = new Uint32Array(total);
    this.pointLo = new Uint32Array(total);
    this.pointShard = new Uint16Array(total);
    for (let j = 0; j < total; j++) {
      this.pointHi[j] = hi[order[j]];
      this.pointLo[j] = lo[order[j]];
      this.pointShard[j] = sh[order[j]];
    }
    this.n = total;
    const bits = Math.max(4, Math.min(16, Math.ceil(Math.log2(total)) + 2));
    this.bucketShift = 32 - bits;
    const nb = 1 << bits;
    this.bucket = new Uint32Array(nb + 1);
    let j = 0;
    for (let b = 0; b <= nb; b++) {
      while (j < total && (this.pointHi[j] >>> this.bucketShift) < b) j++;
      this.bucket[b] = j;
    }
  }

  static fromJSON(json: string | unknown): Ring {
    return new Ring((typeof json === 'string' ? JSON.parse(json) : json) as RingDefinition);
  }

  toJSON(): RingDefinition {
    return { ...this.definition, shards: this.definition.shards.map((s) => ({ ...s })) };
  }

  get version(): number { return this.definition.version; }
  get pointCount(): number { return this.n; }

  /** Index of a shard by name, or -1. */
  shardIndex(name: string): number { return this.shardNames.indexOf(name); }

  /** Shard index for an unsigned coordinate given as 32-bit halves. */
  shardForParts(hi: number, lo: number): number {
    const PH = this.pointHi;
    const PL = this.pointLo;
    // Points in later buckets are all greater, so the answer is within
    // [bucket[b], bucket[b + 1]] (the upper end meaning "first of a later bucket").
    const b = hi >>> this.bucketShift;
    let l = this.bucket[b];
    let r = this.bucket[b + 1];
    while (l < r) {
      const m = (l + r) >>> 1;
      const ph = PH[m];
      if (ph < hi || (ph === hi && PL[m] < lo)) l = m + 1;
      else r = m;
    }
    return this.pointShard[l === this.n ? 0 : l];
  }

  /** Shard index for a coordinate: the signed int8 hash (as keyCoordinate returns) or its unsigned form (accepts [-2^63, 2^64)). */
  shardFor(coordinate: bigint): number {
    if (coordinate < -TWO63 || coordinate >= TWO64) throw new RangeError(`ring coordinate out of range: ${coordinate}`);
    const u = coordinate < 0n ? coordinate + TWO64 : coordinate;
    return this.shardForParts(Number(u >> 32n), Number(u & 0xffffffffn));
  }

  /** Shard index for a key value in text form (throws KeyValueError on invalid input). */
  shardForKey(type: KeyType, text: string): number {
    keyHashParts(type, text, this.seedHi, this.seedLo);
    return this.shardForParts(lastHashHi(), lastHashLo());
  }

  /** Shard index for a binary-format Bind parameter value. */
  shardForKeyBinary(type: KeyType, buf: Uint8Array): number {
    keyHashPartsBinary(type, buf, this.seedHi, this.seedLo);
    return this.shardForParts(lastHashHi(), lastHashLo());
  }

  /** The key's coordinate under this ring's seed, as a signed int8 (what PostgreSQL computes). */
  coordinate(type: KeyType, text: string): bigint {
    keyHashParts(type, text, this.seedHi, this.seedLo);
    return int8FromParts(lastHashHi(), lastHashLo());
  }

  /** Sorted, merged, half-open unsigned arcs owned by a shard (empty if it has no points). */
  arcs(shardIndex: number): Arc[] {
    this.checkShard(shardIndex);
    return this.allArcs()[shardIndex].map((a) => ({ start: a.start, end: a.end }));
  }

  /** Each shard's exact share of the circle, in percent. */
  shares(): ShardShare[] {
    const all = this.allArcs();
    return this.shardNames.map((name, s) => {
      let len = 0n;
      for (const a of all[s]) len += a.end - a.start;
      return { name, percent: (Number(len) / 18446744073709551616) * 100 };
    });
  }

  /**
   * A SQL boolean expression, evaluable by PostgreSQL, that is true exactly
   * for rows whose key `column` maps to this shard (NULL keys: never true).
   * `column` is inserted verbatim (a quoted identifier or any SQL expression
   * of the key type; see quoteIdent). The hash is computed once per row and
   * looked up with width_bucket() over the shard's arc boundaries in signed
   * int8 order: with sorted boundaries [s1, e1, s2, e2, ...] of the shard's
   * disjoint signed ranges [s_k, e_k), a hash is inside iff the number of
   * boundaries <= it is odd.
   */
  sqlPredicate(shardIndex: number, column: string, type: KeyType): string {
    this.checkShard(shardIndex);
    const expr = hashSql(column, type, this.seed);
    const ranges = signedRanges(this.allArcs()[shardIndex]);
    if (ranges.length === 0) return 'false';
    if (ranges.length === 1 && ranges[0].start === -TWO63 && ranges[0].end === TWO63) return `(${expr} IS NOT NULL)`;
    const bounds: string[] = [];
    for (const r of ranges) {
      bounds.push(r.start.toString());
      if (r.end !== TWO63) bounds.push(r.end.toString());
    }
    return `(width_bucket(${expr}, '{${bounds.join(',')}}'::int8[]) % 2 = 1)`;
  }

  private checkShard(shardIndex: number): void {
    if (!Number.isInteger(shardIndex) || shardIndex < 0 || shardIndex >= this.shardNames.length) {
      throw new RangeError(`no shard with index ${shardIndex}`);
    }
  }

  private allArcs(): Arc[][] {
    if (this.arcsCache) return this.arcsCache;
    const out: Arc[][] = this.shardNames.map(() => []);
    const n = this.n;
    const pt = (j: number) => (BigInt(this.pointHi[j]) << 32n) | BigInt(this.pointLo[j]);
    const add = (s: number, start: bigint, end: bigint) => {
      if (end <= start) return;
      const list = out[s];
      const last = list[list.length - 1];
      if (last && last.end === start) last.end = end;
      else list.push({ start, end });
    };
    // Walk the circle from 0 upwards: [0, P_0 + 1) belongs to point 0, then
    // [P_{j-1} + 1, P_j + 1) to point j, then [P_last + 1, 2^64) to point 0.
    let prevEnd = 0n;
    for (let j = 0; j < n; j++) {
      const end = pt(j) + 1n;
      add(this.pointShard[j], prevEnd, end);
      prevEnd = end;
    }
    add(this.pointShard[0], prevEnd, TWO64);
    this.arcsCache = out;
    return out;
  }
}

/** SQL expression computing the key's ring hash (signed int8) in PostgreSQL. */
export function hashSql(column: string, type: KeyType, seed: bigint): string {
  const s = `${seed}::int8`;
  switch (type) {
    case 'smallint':
    case 'integer':
    case 'bigint':
      return `hashint8extended((${column})::int8, ${s})`;
    case 'text':
    case 'varchar':
      // COLLATE "C": always deterministic, so the hash is over the bytes as in hashTextExtended.
      return `hashtextextended(((${column})::text COLLATE "C"), ${s})`;
    case 'uuid':
      return `uuid_hash_extended((${column})::uuid, ${s})`;
    default:
      throw new RangeError(`unsupported key type: ${String(type)}`);
  }
}

/** Quotes an SQL identifier (always, so case and special characters survive). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A folded name as the cluster definition writes it: plain when lower case and simple, else quoted. */
export function definitionName(n: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(n) ? n : quoteIdent(n);
}

/**
 * Converts sorted unsigned arcs into sorted, merged, disjoint signed int8
 * ranges [start, end) with -2^63 <= start < end <= 2^63.
 */
export function signedRanges(arcs: readonly Arc[]): Arc[] {
  const parts: Arc[] = [];
  for (const a of arcs) {
    if (a.end <= TWO63) parts.push({ start: a.start, end: a.end });
    else if (a.start >= TWO63) parts.push({ start: a.start - TWO64, end: a.end - TWO64 });
    else {
      parts.push({ start: a.start, end: TWO63 });
      parts.push({ start: -TWO63, end: a.end - TWO64 });
    }
  }
  parts.sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
  const out: Arc[] = [];
  for (const p of parts) {
    const last = out[out.length - 1];
    if (last && last.end === p.start) last.end = p.end;
    else out.push(p);
  }
  return out;
}
