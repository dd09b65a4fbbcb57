// Distributed deadlock detection, the pure part: a wait-for graph over the transactions of every
// proxy, built from what each proxy publishes (src/txn/deadlock-detector.ts), and its cycles.
//
// Edges: a transaction waiting for a ZooKeeper lock bucket waits for every transaction that holds
// that bucket; a transaction whose server backend waits for a row lock on a shard
// (pg_blocking_pids) waits for the transaction that owns the blocking backend. A cycle that runs
// through ZooKeeper and PostgreSQL alike (one transaction holds a bucket while its backend waits
// for a row another one locked; that one waits for the bucket) is visible to neither alone.
// Citus's distributed deadlock detector works the same way over its nodes' lock graphs.

export interface Backend { shard: string; pid: number }

export interface WaitingTxn {
  /** unique over the cluster: <proxy>/<session pid>/<transaction number> */
  id: string;
  proxy: string;
  /** when the transaction started (ms since the epoch): the youngest in a cycle is cancelled */
  started: number;
  /** buckets it holds */
  holds: number[];
  /** the bucket it waits for, or null */
  waitsBucket: number | null;
  /** its server backends (shard name, backend pid) */
  backends: Backend[];
  /** backends that block one of its backends on a row lock */
  blockedBy: Backend[];
}

export interface ProxyWaits { proxy: string; at: number; txns: WaitingTxn[] }

const bkey = (b: Backend) => `${b.shard}\u0000${b.pid}`;

/** Edges of the wait-for graph: txn id -> ids it waits for. */
export function waitGraph(all: ProxyWaits[]): Map<string, Set<string>> {
  const holders = new Map<number, string[]>();
  const ownerOf = new Map<string, string>();
  const txns: WaitingTxn[] = [];
  for (const p of all) {
    for (const t of p.txns) {
      txns.push(t);
      for (const b of t.holds) (holders.get(b) ?? holders.set(b, []).get(b)!).push(t.id);
      for (const be of t.backends) ownerOf.set(bkey(be), t.id);
    }
  }
  const g = new Map<string, Set<string>>();
  for (const t of txns) {
    const out = new Set<string>();
    if (t.waitsBucket !== null) for (const h of holders.get(t.waitsBucket) ?? []) if (h !== t.id) out.add(h);
    for (const be of t.blockedBy) { const o = ownerOf.get(bkey(be)); if (o && o !== t.id) out.add(o); }
    if (out.size) g.set(t.id, out);
  }
  return g;
}

/** The elementary cycles found by a depth-first search (each reported once, as txn ids). */
export function findCycles(g: Map<string, Set<string>>): string[][] {
  const cycles: string[][] = [];
  const done = new Set<string>();
  const seen = new Set<string>();
  for (const start of g.keys()) {
    if (done.has(start)) continue;
    const path: string[] = [];
    const onPath = new Map<string, number>();
    const visit = (n: string): void => {
      onPath.set(n, path.length);
      path.push(n);
      for (const m of g.get(n) ?? []) {
        const i = onPath.get(m);
        if (i !== undefined) {
          const cyc = path.slice(i);
          const key = [...cyc].sort().join('\u0000');
          if (!seen.has(key)) { seen.add(key); cycles.push(cyc); }
        } else if (!done.has(m)) visit(m);
      }
      path.pop();
      onPath.delete(n);
      done.add(n);
    };
    visit(start);
  }
  return cycles;
}

/**
 * The transaction a cycle loses: preferably one waiting for a ZooKeeper bucket (pgring ends that
 * wait itself with 40P01), the youngest of those (least work lost), ties broken by id so that
 * every proxy that sees the cycle picks the same one.
 */
export function chooseVictim(cycle: string[], byId: Map<string, WaitingTxn>): WaitingTxn | null {
  const members = cycle.map((id) => byId.get(id)).filter((t): t is WaitingTxn => !!t);
  if (!members.length) return null;
  const zk = members.filter((t) => t.waitsBucket !== null);
  const pool = zk.length ? zk : members;
  return pool.reduce((a, b) => (b.started > a.started || (b.started === a.started && b.id > a.id) ? b : a));
}
