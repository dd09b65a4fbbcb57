// The TPC-B ledger: what every test that runs pgbench's TPC-B through pgring checks afterwards.
// Each committed transaction adds the same delta to one account, one teller and one branch, and
// inserts one history row with that delta, so over all shards
//   Σabalance = Σtbalance = Σbbalance = Σhistory.delta  and  history rows = committed transactions
// (as changes between two snapshots). Comparing the balances only with each other misses a
// committed transaction that lost its history row, or a failed one that left it behind.
import assert from 'node:assert/strict';
import pg from 'pg';
import { Zk } from '../../src/cluster/zk';
import { Layout } from '../../src/cluster/layout';
import { bucketDirName, encodeProxyForNode } from '../../src/cluster/locks';
import { sleep } from '../../src/local/proc';

/** Σabalance, Σtbalance, Σbbalance, Σdelta, history rows over all shards. */
export type Ledger = [number, number, number, number, number];

async function onShard<T extends pg.QueryResultRow>(port: number, db: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: db });
  await c.connect();
  try { return (await c.query<T>(sql)).rows; } finally { await c.end(); }
}

const LEDGER_SQL = `SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::int8 AS a,
  (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::int8 AS t,
  (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::int8 AS b,
  (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8 AS d,
  (SELECT count(*) FROM pgbench_history)::int8 AS n`;

export async function ledger(ports: number[], db: string): Promise<Ledger> {
  const out: Ledger = [0, 0, 0, 0, 0];
  for (const p of ports) {
    const r = (await onShard<Record<string, string>>(p, db, LEDGER_SQL))[0]!;
    (['a', 't', 'b', 'd', 'n'] as const).forEach((k, i) => { out[i] += Number(r[k]); });
  }
  return out;
}

/** gids of prepared transactions left in `db` on any shard. */
export async function preparedLeft(ports: number[], db: string): Promise<string[]> {
  const all = await Promise.all(ports.map((p) => onShard<{ gid: string }>(p, db, `SELECT gid FROM pg_prepared_xacts WHERE database = current_database()`)));
  return all.flat().map((r) => r.gid);
}

/** Lock znodes of a pgring cluster (bucket/node). */
export async function lockNodes(zkConnect: string, cluster: string): Promise<string[]> {
  const zk = await Zk.connect({ connect: zkConnect });
  try {
    const dir = new Layout(cluster).locks;
    const out: string[] = [];
    for (const b of await zk.children(dir).catch(() => [] as string[])) {
      for (const n of await zk.children(`${dir}/${b}`).catch(() => [] as string[])) out.push(`${b}/${n}`);
    }
    return out;
  } finally { await zk.close(); }
}

/**
 * Lock znodes that no running proxy accounts for: proxies keep idle buckets until another proxy
 * queues, so nodes may outlive a run, but each must be one its proxy lists in SHOW LOCKS (held or
 * acquiring). `proxyPorts`: every proxy of the cluster that is running.
 */
export async function unaccountedLocks(zkConnect: string, cluster: string, proxyPorts: number[]): Promise<string[]> {
  const known = new Set<string>();
  for (const port of proxyPorts) {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'pgring' });
    await c.connect();
    try {
      for (const r of (await c.query<{ bucket: string; proxy: string; state: string }>('SHOW LOCKS')).rows) {
        if (r.state === 'held' || r.state === 'acquiring' || r.state === 'releasing') known.add(`${bucketDirName(Number(r.bucket))}/${encodeProxyForNode(r.proxy)}`);
      }
    } finally { await c.end(); }
  }
  const nodes = await lockNodes(zkConnect, cluster);
  return nodes.filter((n) => { const [dir, name] = n.split('/'); return ![...known].some((k) => k.startsWith(`${dir}/`) && name!.startsWith(`${k.slice(dir!.length + 1)}-`)); });
}

export async function waitFor(what: string, cond: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/**
 * The whole ledger between two snapshots: the four sums moved together and the history grew by
 * exactly `committed` rows (or by at least that many when `atLeast`: transactions of a killed
 * proxy that recovery committed were never reported to their client).
 */
export function assertLedger(before: Ledger, after: Ledger, committed: number, what: string, atLeast = false): void {
  const d = after.map((v, i) => v - before[i]!);
  assert.equal(new Set(d.slice(0, 4)).size, 1, `${what}: Σabalance/Σtbalance/Σbbalance/Σdelta changes differ: ${d.slice(0, 4).join(', ')}`);
  if (atLeast) assert.ok(d[4]! >= committed, `${what}: history rows +${d[4]} < committed ${committed}`);
  else assert.equal(d[4], committed, `${what}: history rows +${d[4]} but pgbench committed ${committed}`);
}
