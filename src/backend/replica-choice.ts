// Which server answers a read that may go to a replica (pure: unit-tested).
//
// A replica is eligible when it is live, is not the shard's primary, its replay is within the
// lag bounds, and (read-your-writes) it has replayed at least `minLsn`. Among eligible servers
// the one with the fewest outstanding requests wins (ties: the first listed). With policy
// 'any' the live primary competes too. No eligible server: the primary.
export type ReadsPolicy = 'primary' | 'replica' | 'any';

export interface ReadCandidate {
  id: string;
  /** replayed WAL position (bytes), null when unknown */
  lsn: number | null;
  /** replay delay reported by the replica (ms), null when unknown */
  lagMs: number | null;
  outstanding: number;
}

export interface ReadBounds {
  /** the primary's latest WAL position (bytes), null when unknown */
  primaryLsn: number | null;
  maxLagBytes: number;
  maxLagMs: number;
  /** read-your-writes: the replica must have replayed this far; null: no write to wait for */
  minLsn: number | null;
}

/** Bytes a replica is behind the primary (0 when ahead: the primary's sample is older), null when unknown. */
export function lagBytes(primaryLsn: number | null, lsn: number | null): number | null {
  if (primaryLsn === null || lsn === null) return null;
  return Math.max(0, primaryLsn - lsn);
}

export function eligible(c: ReadCandidate, b: ReadBounds): boolean {
  if (c.lsn === null) return false;
  const bytes = lagBytes(b.primaryLsn, c.lsn);
  if (bytes === null || bytes > b.maxLagBytes) return false;
  if (c.lagMs === null || c.lagMs > b.maxLagMs) return false;
  if (b.minLsn !== null && c.lsn < b.minLsn) return false;
  return true;
}

/** The replica to read from, 'primary', per policy and bounds. */
export function chooseReader(policy: ReadsPolicy, replicas: ReadCandidate[], primaryOutstanding: number | null, b: ReadBounds): string | 'primary' {
  if (policy === 'primary') return 'primary';
  let best: ReadCandidate | null = null;
  for (const c of replicas) if (eligible(c, b) && (!best || c.outstanding < best.outstanding)) best = c;
  if (!best) return 'primary';
  if (policy === 'any' && primaryOutstanding !== null && primaryOutstanding < best.outstanding) return 'primary';
  return best.id;
}
