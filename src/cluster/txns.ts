// Two-phase-commit decisions in ZooKeeper: persistent records under txns/, written after every
// shard answered PREPARE TRANSACTION and before the first COMMIT PREPARED. A proxy keeps one
// rolling record txns/<proxy>_log-<hex> listing its decided transactions still in phase two
// (`txids`; group commit, src/txn/decision-batch.ts); a record without `txids` is
// txns/<proxy>_<txid> and decides that one transaction (the earlier layout, still read). A record
// of the proxy that names the txid is the commit decision: recovery commits the prepared
// transactions of a dead proxy that have one and rolls back those that have none.
//
// Global transaction ids: pgring_<cluster>_<proxy>_<txid>_<shard> where <cluster>, <proxy> and <shard> are escaped
// (%, _ and characters outside [A-Za-z0-9.:-] as %hh) so that the id parses back exactly.
import type { Layout } from './layout';
import { decodeJson, encodeJson, isZkError, Zk } from './zk';

export const GID_PREFIX = 'pgring_';

export interface DecisionRecord {
  proxy: string;
  /** the transaction's id, or (with `txids`) the record's name: `log-<hex>`, a proxy's rolling record (src/txn/decision-batch.ts) */
  txid: string;
  /** every shard's gid of every transaction it decides */
  gids: { shard: string; gid: string }[];
  at: number;
  /** the transactions it decides (absent: `txid` alone) */
  txids?: string[];
}

/** The transactions a record decides (commit). */
export function recordTxids(rec: DecisionRecord): string[] {
  return Array.isArray(rec.txids) ? rec.txids : [rec.txid];
}

/** Whether a record decides the commit of `proxy`'s transaction `txid`. */
export function recordDecides(rec: DecisionRecord, proxy: string, txid: string): boolean {
  return rec.proxy === proxy && recordTxids(rec).includes(txid);
}

export function escapePart(s: string): string {
  return s.replace(/[^A-Za-z0-9.:-]/g, (c) => {
    const b = Buffer.from(c, 'utf8');
    return [...b].map((x) => '%' + x.toString(16).padStart(2, '0')).join('');
  });
}

export function unescapePart(s: string): string {
  return decodeURIComponent(s);
}

/**
 * The PostgreSQL global transaction id of one shard's part of a distributed commit:
 * pgring_<cluster>_<proxy>_<txid>_<shard>. The cluster name keeps pgring clusters that
 * share PostgreSQL servers from finishing each other's in-doubt transactions.
 */
export function makeGid(cluster: string, proxy: string, txid: string, shard: string): string {
  if (!/^[0-9a-z]+$/.test(txid)) throw new Error(`bad txid ${txid}`);
  const gid = `${GID_PREFIX}${escapePart(cluster)}_${escapePart(proxy)}_${txid}_${escapePart(shard)}`;
  if (gid.length >= 200) throw new Error(`global transaction id too long (${gid.length} >= 200): ${gid}`);
  return gid;
}

export function parseGid(gid: string): { cluster: string; proxy: string; txid: string; shard: string } | null {
  if (!gid.startsWith(GID_PREFIX)) return null;
  const parts = gid.slice(GID_PREFIX.length).split('_');
  if (parts.length !== 4 || !/^[0-9a-z]+$/.test(parts[2]!)) return null;
  try {
    return { cluster: unescapePart(parts[0]!), proxy: unescapePart(parts[1]!), txid: parts[2]!, shard: unescapePart(parts[3]!) };
  } catch { return null; }
}

/** The znode name of a decision (a single path segment; `txid` is a txid, or `log-<hex>` for a proxy's rolling record). */
export function decisionName(proxy: string, txid: string): string {
  return `${escapePart(proxy)}_${txid}`;
}

export function parseDecisionName(name: string): { proxy: string; txid: string } | null {
  const i = name.lastIndexOf('_');
  if (i <= 0) return null;
  try { return { proxy: unescapePart(name.slice(0, i)), txid: name.slice(i + 1) }; } catch { return null; }
}

export function decisionPath(layout: Layout, proxy: string, txid: string): string {
  return `${layout.txns}/${decisionName(proxy, txid)}`;
}

/** Writes the commit decision (persistent). NODEEXISTS counts as written. */
export async function writeDecision(zk: Zk, layout: Layout, rec: DecisionRecord): Promise<void> {
  const path = decisionPath(layout, rec.proxy, rec.txid);
  try {
    await zk.create(path, encodeJson(rec), 'persistent');
  } catch (e) {
    if (isZkError(e, 'NODEEXISTS')) return;
    if (isZkError(e, 'NONODE')) { await zk.mkdirp(layout.txns); await zk.create(path, encodeJson(rec), 'persistent'); return; }
    throw e;
  }
}

/**
 * Writes a whole record, replacing what is there (a proxy's rolling decision log,
 * src/txn/decision-batch.ts: only its own proxy writes it). `exists`: try a set first.
 */
export async function writeDecisionLog(zk: Zk, layout: Layout, rec: DecisionRecord, exists: boolean): Promise<void> {
  const path = decisionPath(layout, rec.proxy, rec.txid);
  const data = encodeJson(rec);
  if (exists) {
    try { await zk.set(path, data, -1); return; } catch (e) { if (!isZkError(e, 'NONODE')) throw e; }
  }
  try {
    await zk.create(path, data, 'persistent');
  } catch (e) {
    if (isZkError(e, 'NODEEXISTS')) { await zk.set(path, data, -1); return; }
    if (isZkError(e, 'NONODE')) { await zk.mkdirp(layout.txns); await zk.create(path, data, 'persistent'); return; }
    throw e;
  }
}

export async function readDecision(zk: Zk, layout: Layout, proxy: string, txid: string): Promise<DecisionRecord | null> {
  const path = decisionPath(layout, proxy, txid);
  try {
    return decodeJson<DecisionRecord>((await zk.get(path)).data, path);
  } catch (e) {
    if (isZkError(e, 'NONODE')) return null;
    throw e;
  }
}

/** Deletes a record; with `version`, only that version (BADVERSION: it changed meanwhile, kept; false). */
export async function deleteDecision(zk: Zk, layout: Layout, proxy: string, txid: string, version = -1): Promise<boolean> {
  try { await zk.delete(decisionPath(layout, proxy, txid), version); return true; } catch (e) {
    if (isZkError(e, 'NONODE')) return true;
    if (isZkError(e, 'BADVERSION')) return false;
    throw e;
  }
}

/**
 * The txids of `proxy` that some decision record decides (group commit: a record may name
 * several). Read it only once `proxy` can no longer write decisions (its node is gone), or for
 * transactions whose decision write has finished.
 */
export async function decidedTxids(zk: Zk, layout: Layout, proxy: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const { rec } of await listDecisions(zk, layout, proxy)) {
    if (rec && rec.proxy === proxy) for (const t of recordTxids(rec)) out.add(t);
  }
  return out;
}

/** Every decision record (name and content); with `proxy`, only that proxy's. */
export async function listDecisions(zk: Zk, layout: Layout, proxy?: string): Promise<{ name: string; rec: DecisionRecord; version: number }[]> {
  let names: string[];
  try { names = await zk.children(layout.txns); } catch (e) { if (isZkError(e, 'NONODE')) return []; throw e; }
  const out: { name: string; rec: DecisionRecord; version: number }[] = [];
  for (const name of names) {
    if (proxy !== undefined && parseDecisionName(name)?.proxy !== proxy) continue;
    const path = `${layout.txns}/${name}`;
    try { const { data, stat } = await zk.get(path); out.push({ name, rec: decodeJson<DecisionRecord>(data, path), version: stat.version }); } catch (e) {
      if (isZkError(e, 'NONODE')) continue;
      if (e instanceof Error && /bad JSON/.test(e.message)) continue;
      throw e;
    }
  }
  return out;
}
