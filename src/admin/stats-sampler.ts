// Totals per (database, shard) for SHOW STATS, and the averages over the last
// stats period (PgBouncer's avg_* columns): totals are sampled every period, and an
// average is the difference between now and the sample one to two periods old.
import type { Pool } from '../backend/pool';

export interface Totals { xact: number; query: number; recv: number; sent: number; xactTimeUs: number; queryTimeUs: number; waitTimeUs: number }

export const STATS_PERIOD_MS = 15000;

export function statsKey(p: Pool): string { return `${p.cred.database}\u0000${p.target.shardName}`; }

export function totalsOf(pools: Pool[]): Map<string, Totals> {
  const m = new Map<string, Totals>();
  for (const p of pools) {
    const k = statsKey(p);
    let t = m.get(k);
    if (!t) { t = { xact: 0, query: 0, recv: 0, sent: 0, xactTimeUs: 0, queryTimeUs: 0, waitTimeUs: 0 }; m.set(k, t); }
    const s = p.stats;
    t.xact += s.totalXact;
    t.query += s.totalQuery;
    // Received from clients = forwarded to servers; sent to clients = read from servers.
    t.recv += s.bytesOut;
    t.sent += s.bytesIn;
    t.xactTimeUs += s.totalXactTimeUs;
    t.queryTimeUs += s.totalQueryTimeUs;
    t.waitTimeUs += s.totalWaitMs * 1000;
  }
  return m;
}

export interface Averages { xact: number; query: number; recv: number; sent: number; xactTimeUs: number; queryTimeUs: number; waitTimeUs: number }

export class StatsSampler {
  private older = new Map<string, Totals>();
  private olderAt: number;
  private newer = new Map<string, Totals>();
  private newerAt: number;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly pools: () => Pool[], private readonly periodMs = STATS_PERIOD_MS) {
    this.olderAt = this.newerAt = Date.now();
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.periodMs);
    this.timer.unref();
  }

  stop(): void { if (this.timer) clearInterval(this.timer); this.timer = null; }

  tick(): void {
    this.older = this.newer;
    this.olderAt = this.newerAt;
    this.newer = totalsOf(this.pools());
    this.newerAt = Date.now();
  }

  averages(key: string, cur: Totals): Averages {
    const old = this.older.get(key);
    const secs = Math.max(0.001, (Date.now() - this.olderAt) / 1000);
    const d = (f: keyof Totals) => cur[f] - (old?.[f] ?? 0);
    const dx = d('xact'), dq = d('query');
    return {
      xact: Math.round(d('xact') / secs), query: Math.round(dq / secs),
      recv: Math.round(d('recv') / secs), sent: Math.round(d('sent') / secs),
      xactTimeUs: dx > 0 ? Math.round(d('xactTimeUs') / dx) : 0,
      queryTimeUs: dq > 0 ? Math.round(d('queryTimeUs') / dq) : 0,
      waitTimeUs: dx > 0 ? Math.round(d('waitTimeUs') / dx) : 0,
    };
  }
}
