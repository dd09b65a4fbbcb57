// Which participants of a multi-shard COMMIT have anything to commit.
//
// A shard pgring sent a write to (Txn.writeShards) has. For the others pgring asks PostgreSQL:
// a transaction gets a transaction id at its first change (a row written or locked, a temporary
// table, DDL), also through a function called by a SELECT that pgring routed as a read, so
// `txid_current_if_assigned()` IS NULL means the shard has nothing to commit. Those commit with
// a plain COMMIT next to the others' commit (one phase, no prepared transaction, no decision
// record); when at most one participant wrote, that one's plain COMMIT is the whole commit.
// The question costs one round trip on those shards only; transactions that wrote everywhere
// (TPC-B) never ask.
import type { ClientSession, Link } from '../frontend/client';

export const XID_QUERY = 'SELECT pg_catalog.txid_current_if_assigned()';

/** Splits `links` into those with changes and those without (pure: the xid answers given). */
export function splitByXid(links: Link[], wrote: ReadonlySet<number>, xidOf: ReadonlyMap<Link, string | null>): { writers: Link[]; readers: Link[] } {
  const writers: Link[] = [];
  const readers: Link[] = [];
  for (const l of links) {
    if (wrote.has(l.shard) || !xidOf.has(l) || xidOf.get(l) !== null) writers.push(l);
    else readers.push(l);
  }
  return { writers, readers };
}

/**
 * Asks each participant pgring sent no write to whether it changed anything. Rejects with the
 * first failure (the server's transaction is then aborted: the caller rolls back).
 * `guard` wraps each request (the session may close meanwhile).
 */
export async function participantsThatWrote(session: ClientSession, links: Link[], wrote: ReadonlySet<number>, guard: <T>(p: Promise<T>) => Promise<T>): Promise<{ writers: Link[]; readers: Link[] }> {
  // A closed connection is left with the writers: its PREPARE fails and everything rolls back.
  const ask = links.filter((l) => !wrote.has(l.shard) && !l.conn.closed);
  const xidOf = new Map<Link, string | null>();
  if (ask.length) {
    const rows = await Promise.all(ask.map((l) => guard(session.servers.queryRows(l, XID_QUERY))));
    ask.forEach((l, i) => xidOf.set(l, rows[i]?.[0]?.[0] ?? null));
  }
  return splitByXid(links, wrote, xidOf);
}
