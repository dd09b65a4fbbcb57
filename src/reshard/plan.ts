// Pure resharding arithmetic: the next ring for add / remove / rebalance, the arcs whose owner
// changes between two rings (only those move), and the SQL row filters selecting them.
import type { KeyType } from '../config/types';
import { Arc, hashSql, Ring, RingDefinition, signedRanges } from '../ring/ring';

export type RingChange =
  | { kind: 'add'; name: string; weight: number }
  | { kind: 'remove'; name: string }
  | { kind: 'rebalance'; weights: Record<string, number> };

export class PlanError extends Error {
  constructor(message: string) { super(message); this.name = 'PlanError'; }
}

/** The ring after `change` (same vnodes, seed and hash; version left to the store). */
export function nextRing(cur: RingDefinition, change: RingChange): RingDefinition {
  const shards = cur.shards.map((s) => ({ ...s }));
  if (change.kind === 'add') {
    if (shards.some((s) => s.name === change.name)) throw new PlanError(`shard "${change.name}" is already in the ring (version ${cur.version})`);
    if (!(change.weight > 0)) throw new PlanError('--weight must be a positive number');
    shards.push({ name: change.name, weight: change.weight });
  } else if (change.kind === 'remove') {
    const i = shards.findIndex((s) => s.name === change.name);
    if (i < 0) throw new PlanError(`shard "${change.name}" is not in the ring (version ${cur.version})`);
    if (shards.length === 1) throw new PlanError(`shard "${change.name}" is the last shard of the ring`);
    shards.splice(i, 1);
  } else {
    for (const [name, w] of Object.entries(change.weights)) {
      const s = shards.find((x) => x.name === name);
      if (!s) throw new PlanError(`shard "${name}" is not in the ring (version ${cur.version})`);
      if (!(w > 0)) throw new PlanError(`weight of shard "${name}" must be a positive number`);
      s.weight = w;
    }
  }
  return { ...cur, version: cur.version + 1, shards };
}

/** Rows of the key-hash ranges [lo, hi] (signed int8, inclusive, as decimal strings) move from source to target. */
export interface Move { source: string; target: string; ranges: { lo: string; hi: string }[]; percent: number }

interface OwnedArc extends Arc { owner: string }

function ownedArcs(ring: Ring): OwnedArc[] {
  const out: OwnedArc[] = [];
  ring.shardNames.forEach((name, i) => { for (const a of ring.arcs(i)) out.push({ ...a, owner: name }); });
  return out.sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
}

/** The arcs whose owner differs between `from` and `to`, grouped by source -> target pair. */
export function computeMoves(from: RingDefinition, to: RingDefinition): Move[] {
  const a = ownedArcs(new Ring(from));
  const b = ownedArcs(new Ring(to));
  const pairs = new Map<string, { source: string; target: string; arcs: Arc[] }>();
  let i = 0, j = 0;
  let pos = 0n;
  // Both lists tile [0, 2^64): walk them together, cutting at every boundary of either.
  while (i < a.length && j < b.length) {
    const end = a[i]!.end < b[j]!.end ? a[i]!.end : b[j]!.end;
    if (a[i]!.owner !== b[j]!.owner && end > pos) {
      const k = `${a[i]!.owner}\u0000${b[j]!.owner}`;
      let p = pairs.get(k);
      if (!p) pairs.set(k, p = { source: a[i]!.owner, target: b[j]!.owner, arcs: [] });
      const last = p.arcs[p.arcs.length - 1];
      if (last && last.end === pos) last.end = end; else p.arcs.push({ start: pos, end });
    }
    pos = end;
    if (a[i]!.end === end) i++;
    if (b[j]!.end === end) j++;
  }
  const TWO64 = 18446744073709551616;
  return [...pairs.values()].sort((x, y) => (x.source + x.target).localeCompare(y.source + y.target)).map((p) => {
    let len = 0n;
    for (const arc of p.arcs) len += arc.end - arc.start;
    return {
      source: p.source, target: p.target,
      ranges: signedRanges(p.arcs).map((r) => ({ lo: r.start.toString(), hi: (r.end - 1n).toString() })),
      percent: (Number(len) / TWO64) * 100,
    };
  });
}

/** A boolean SQL expression true for rows whose key hash lies in one of `ranges` (row filter of a publication). */
export function rangeFilterSql(column: string, type: KeyType, seed: number, ranges: { lo: string; hi: string }[]): string {
  if (ranges.length === 0) return 'false';
  const h = hashSql(column, type, BigInt(seed));
  return `(${ranges.map((r) => `${h} BETWEEN ${r.lo}::int8 AND ${r.hi}::int8`).join(' OR ')})`;
}

/** For the proxies' write gate: does this key change owner between the two rings? */
export class MovingKeys {
  private readonly a: Ring;
  private readonly b: Ring;
  constructor(from: RingDefinition, to: RingDefinition) { this.a = new Ring(from); this.b = new Ring(to); }
  moves(type: KeyType, text: string): boolean {
    return this.a.shardNames[this.a.shardForKey(type, text)] !== this.b.shardNames[this.b.shardForKey(type, text)];
  }
}
