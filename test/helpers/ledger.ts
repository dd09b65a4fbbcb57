// The TPC-B ledger invariant, checked directly on the shards after pgbench ran through pgring:
//   Σabalance = Σtbalance = Σbbalance = Σhistory.delta   (every committed transaction kept all
//                                                          of its statements, a failed one none)
//   history rows = transactions pgbench reported as committed (none lost, none extra)
//   no prepared transaction left on any shard, no lock znode left in ZooKeeper.
// Generic: any shards (ports or pg client configs), any database, any ZooKeeper cluster name.
import { lockNodes, unaccountedLocks } from './tpcb';
import pg from 'pg';
import { sleep } from '../../src/local/proc';

export type ShardRef = number | pg.ClientConfig;

export interface LedgerTotals { abalance: number; tbalance: number; bbalance: number; delta: number; historyRows: number }

export interface LedgerOptions {
  /** every shard holding pgbench tables (ports on 127.0.0.1 as superuser postgres, or client configs) */
  shards: ShardRef[];
  db: string;
  /** ZooKeeper connect string and pgring cluster name: lock znodes are looked for there */
  zk?: string;
  cluster?: string;
  /** transactions pgbench reported as committed (sum over the pgbench runs) */
  committed: number;
  /** totals before the runs (a database already used by earlier runs); default: all zero */
  baseline?: LedgerTotals;
  /** how long prepared transactions and lock znodes may take to go (recovery, lock leases); default 30 s */
  settleMs?: number;
  /** history rows may exceed `committed` by at most this (commits whose outcome the client could not learn); default 0 */
  unknownOutcomes?: number;
  /** proxies still running: they keep idle lock buckets (locks.leaseMs 0), so a lock znode is
   *  a problem only when none of them lists it in SHOW LOCKS */
  proxyPorts?: number[];
}

export interface LedgerReport extends LedgerTotals {
  committed: number;
  prepared: string[];
  lockNodes: string[];
  problems: string[];
}

function clientConfig(s: ShardRef, db: string): pg.ClientConfig {
  return typeof s === 'number' ? { host: '127.0.0.1', port: s, user: 'postgres', database: db } : { ...s, database: s.database ?? db };
}

async function onShard<T>(s: ShardRef, db: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client(clientConfig(s, db));
  c.on('error', () => undefined);
  await c.connect();
  try { return await fn(c); } finally { await c.end().catch(() => undefined); }
}

/** Sums of the four pgbench tables over all shards. */
export async function ledgerTotals(shards: ShardRef[], db: string): Promise<LedgerTotals> {
  const sql = `SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::int8 AS a, (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::int8 AS t,
    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::int8 AS b, (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8 AS d,
    (SELECT count(*) FROM pgbench_history)::int8 AS n`;
  const out: LedgerTotals = { abalance: 0, tbalance: 0, bbalance: 0, delta: 0, historyRows: 0 };
  for (const s of shards) {
    const r = await onShard(s, db, async (c) => (await c.query(sql)).rows[0] as Record<string, string>);
    out.abalance += Number(r.a); out.tbalance += Number(r.t); out.bbalance += Number(r.b);
    out.delta += Number(r.d); out.historyRows += Number(r.n);
  }
  return out;
}

/** Prepared transactions of `db` on the shards (gids). */
export async function preparedTransactions(shards: ShardRef[], db: string): Promise<string[]> {
  const all = await Promise.all(shards.map((s) => onShard(s, db, async (c) =>
    (await c.query('SELECT gid FROM pg_prepared_xacts WHERE database = current_database()')).rows.map((r) => r.gid as string))));
  return all.flat();
}

/** Lock znodes (bucket/node) under the cluster's locks directory. */
export const lockZnodes = lockNodes;

async function settle<T>(read: () => Promise<T[]>, ms: number): Promise<T[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (v.length === 0 || Date.now() > deadline) return v;
    await sleep(250);
  }
}

/** Waits for prepared transactions and lock znodes to go, then checks the invariant; never throws on a violation. */
export async function checkLedger(o: LedgerOptions): Promise<LedgerReport> {
  const settleMs = o.settleMs ?? 30000;
  const prepared = await settle(() => preparedTransactions(o.shards, o.db), settleMs);
  const lockNodes = o.zk && o.cluster ? await settle(() => (o.proxyPorts?.length ? unaccountedLocks(o.zk!, o.cluster!, o.proxyPorts) : lockZnodes(o.zk!, o.cluster!)), settleMs) : [];
  const now = await ledgerTotals(o.shards, o.db);
  const base = o.baseline ?? { abalance: 0, tbalance: 0, bbalance: 0, delta: 0, historyRows: 0 };
  const d: LedgerTotals = {
    abalance: now.abalance - base.abalance, tbalance: now.tbalance - base.tbalance, bbalance: now.bbalance - base.bbalance,
    delta: now.delta - base.delta, historyRows: now.historyRows - base.historyRows,
  };
  const problems: string[] = [];
  if (!(d.abalance === d.tbalance && d.tbalance === d.bbalance && d.bbalance === d.delta)) {
    problems.push(`sums differ: Σabalance ${d.abalance}, Σtbalance ${d.tbalance}, Σbbalance ${d.bbalance}, Σhistory.delta ${d.delta}`);
  }
  const extra = d.historyRows - o.committed;
  if (extra < 0 || extra > (o.unknownOutcomes ?? 0)) {
    problems.push(`history rows ${d.historyRows} vs committed transactions ${o.committed}${o.unknownOutcomes ? ` (+ up to ${o.unknownOutcomes} of unknown outcome)` : ''}`);
  }
  if (prepared.length) problems.push(`prepared transactions left: ${prepared.join(', ')}`);
  if (lockNodes.length) problems.push(`lock znodes left: ${lockNodes.join(', ')}`);
  return { ...d, committed: o.committed, prepared, lockNodes, problems };
}

/** checkLedger, throwing one error that lists every violation. */
export async function assertLedger(o: LedgerOptions): Promise<LedgerReport> {
  const r = await checkLedger(o);
  if (r.problems.length) throw new Error(`ledger invariant violated:\n- ${r.problems.join('\n- ')}`);
  return r;
}
