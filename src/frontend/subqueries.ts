// Uncorrelated subqueries over sharded tables, run first (router/subqueries.ts finds them): each
// runs on its own as any SELECT over several shards (merged), in the client's transaction, and its
// rows replace it in the statement as typed literals; the statement is then planned again. A CTE
// used once is first written in as a derived table (no rows moved), as PostgreSQL inlines it.
import { B, F } from '../protocol/codes';
import { PgError, SQLSTATE, parseErrorFields } from '../protocol/errors';
import { decodeDataRow, parseMsg, query, syncMsg, targeted } from '../protocol/messages';
import { parseRowDescription } from '../router/merge';
import type { RoutedStatement } from '../router/router';
import { cteBodies, inlineCtes, subqueriesOf, valuesText } from '../router/subqueries';
import type { ClientSession } from './client';
import { exchange, runFinalized } from './finalize';
import { routeShards, type Route } from './routing';

/** Rows a subquery may give to be written into the statement (config sharding.readFirstMaxRows). */
const maxRows = (s: ClientSession): number => s.ctx.config.sharding.readFirstMaxRows ?? 10000;
/** Subqueries replaced in one statement at most (each round finds them again in the new text). */
const MAX_ROUNDS = 32;
/** Errors of a subquery run on its own that mean it refers to the outer statement. */
const OUTER_REFERENCE = new Set(['42703', '42P01']);

/** format_type of type OIDs, per database (user types have OIDs of their database). */
const typeNameCache = new Map<string, string>();

/** `stmt` with its subqueries over sharded tables replaced by their rows; throws 0A000 (the
 *  planner's reason) when one cannot be run on its own. */
export async function withSubqueryResults(s: ClientSession, stmt: RoutedStatement, ext = false): Promise<RoutedStatement> {
  let sql = stmt.sql;
  let materialize = stmt.plan.materialize === true;
  // a CTE or a table whose rows were written in: its columns lose their source column
  let sources = false;
  const skip = new Set<string>();
  for (let round = 0; round < MAX_ROUNDS; round++) {
    let replaced = false;
    // a CTE used once becomes a derived table, which the planner may answer as it is (no rows moved)
    // (unless the derived table cannot be answered as it is: then the CTE runs first, below)
    const inlined = inlineCtes(sql);
    const asDerived = inlined === null ? null : s.router.plan(inlined);
    if (asDerived?.length === 1 && !asDerived[0]!.plan.unsupported && !asDerived[0]!.plan.scatterUnsupported) { sql = inlined!; replaced = true; }
    // a CTE over sharded tables used more than once (or MATERIALIZED): run once, as PostgreSQL would
    // (its body becomes the query of its rows); else a subquery expression, replaced with its parentheses
    const ctes = replaced ? [] : cteBodies(sql).filter((c) => !c.usesOther).map((c) => ({ ...c, inner: true, selfContained: true }));
    const links = replaced ? [] : subqueriesOf(sql).map((at) => ({ ...at, inner: false }));
    for (const at of [...ctes, ...links]) {
      if (skip.has(at.text)) continue;
      // in a transaction only a subquery that cannot refer to the outer statement (an error would
      // abort the client's transaction); a CTE's body never can
      const rows = s.txStatus === 'I' || at.selfContained ? await runFirst(s, at.text, ext) : null;
      if (rows === null) { skip.add(at.text); continue; }
      const values = valuesText(rows.types, rows.names, rows.rows);
      sql = sql.slice(0, at.start) + (at.inner ? values.slice(1, -1) : values) + sql.slice(at.end);
      replaced = true;
      sources ||= at.inner;
      break;   // the text moved: find them again
    }
    // last resort for a read no merge answers: its derived tables and set-operation arms, then its
    // sharded tables, read first (materialize.ts)
    for (const at of replaced || !materialize ? [] : s.router.tableReads(sql)) {
      if (skip.has(at.text)) continue;
      const rows = await runFirst(s, at.text, ext, tableLimit(at.text, maxRows(s)));
      if (rows === null) { skip.add(at.text); continue; }
      sql = sql.slice(0, at.start) + valuesText(rows.types, rows.names, rows.rows) + at.as + sql.slice(at.end);
      replaced = true;
      sources = true;
      break;
    }
    if (!replaced) break;
    const next = s.router.plan(sql);
    if (next.length !== 1) break;
    if (!next[0]!.plan.subqueries) {
      // the simple protocol's RowDescription is PostgreSQL's for the client's text (the extended
      // protocol's Describe went to a server with it)
      if (sources && !ext && stmt.plan.command === 'select') next[0]!.rowDescription = await describeOwn(s, stmt.sql) ?? undefined;
      return next[0]!;
    }
    materialize = next[0]!.plan.materialize === true;
  }
  const why = stmt.plan.subqueries ?? stmt.plan.scatterUnsupported ?? 'this subquery across shards';
  throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${why} is not supported`,
    why.startsWith('subquery') ? { hint: 'A subquery that refers to the outer query must be joined to it on the shard key; one that does not is run first.' } : undefined);
}

/** `q` with its subqueries (or the tables of a read no merge answers, also one whose keys span
 *  shards) read first, and its route then; `q` and `route` as they are when nothing needs to be. */
export async function withReadsFirst(s: ClientSession, q: RoutedStatement, route: Route, ext = false): Promise<{ q: RoutedStatement; route: Route }> {
  if (!q.plan.subqueries && !(q.plan.materialize && q.plan.scatterUnsupported)) return { q, route };
  const next = await withSubqueryResults(s, q, ext);
  return { q: next, route: s.routing.route(next, null, null) };
}

/** The refusal of a table read first that has more rows than pgring writes into a statement. */
function tableLimit(text: string, max: number): string {
  return `pgring: a query across shards that pgring answers on one shard over the rows it reads first (${text.length > 200 ? `${text.slice(0, 200)}…` : text}) would read more than ${max} rows`;
}

/** `text` run on its own when it is a read of sharded tables; null when it is not, or cannot run. */
async function runFirst(s: ClientSession, text: string, ext: boolean, tooMany?: string): ReturnType<typeof subqueryRows> {
  const planned = s.router.plan(text);
  const q = planned.length === 1 ? planned[0]! : null;
  if (!q || q.plan.command !== 'select' || q.plan.write || q.plan.target !== 'sharded') return null;
  return subqueryRows(s, q, ext, tooMany);
}

/** The rows of the SELECT `q` (text) and its columns' type names, read as a subquery run first is:
 *  merged over its shards, its own subqueries and tables read first; null when it cannot run so. */
export function readRows(s: ClientSession, q: RoutedStatement, max: number, tooMany: string): ReturnType<typeof subqueryRows> {
  return subqueryRows(s, q, false, tooMany, max);
}

/** The rows (text) and column type names of the SELECT `q` run over its shards, or null when it
 *  cannot run on its own (it refers to the outer statement, or pgring cannot answer it). */
async function subqueryRows(s: ClientSession, q: RoutedStatement, ext: boolean, tooMany?: string, max = maxRows(s)): Promise<{ types: string[]; names: string[]; rows: (string | null)[][] } | null> {
  if (q.plan.subqueries) q = await withSubqueryResults(s, q, ext);
  const route = s.routing.route(q, null, null);
  const multi = route.kind !== 'direct' && s.ctx.shards.shardCount > 1;
  if (q.plan.unsupported || (multi && q.plan.scatterUnsupported)) return null;
  const msgs = await new Promise<Buffer[]>((resolve, reject) => {
    const capture = (m: Buffer[]): Buffer[] => { resolve(m); return []; };
    const shards = routeShards(route, s.ctx.shards.shardCount);
    // inside a client's extended-protocol unit (ext) the shards' connections join it (its Sync goes to them too)
    const run = q.plan.finalize && multi
      ? runFinalized(s, q, route, { after: capture, partOfMany: true, ext, describe: ext })
      : s.scatter.scatterSimple(q, query(q.sql, s.codec), shards, true, undefined, undefined, capture, ext);
    run.catch(reject);
  });
  const err = msgs.find((m) => m[0] === B.ErrorResponse);
  if (err) {
    const f = parseErrorFields(err);
    if (s.txStatus === 'I' && OUTER_REFERENCE.has(f.C ?? '')) return null;
    throw new PgError(f.C ?? SQLSTATE.InternalError, f.M ?? 'subquery failed', { detail: f.D, hint: f.H });
  }
  const rd = msgs.find((m) => m[0] === B.RowDescription);
  if (!rd) return null;
  const rows = msgs.filter((m) => m[0] === B.DataRow);
  if (rows.length > max) {
    throw new PgError(SQLSTATE.FeatureNotSupported, tooMany ?? `pgring: a subquery over several shards that returns more than ${max} rows is not supported`,
      { hint: tooMany ? 'Narrow the query with conditions on each table, or join the tables on the shard key (sharding.readFirstMaxRows sets the limit).' : 'Join the tables on the shard key, or narrow the subquery (sharding.readFirstMaxRows sets the limit).' });
  }
  const fields = parseRowDescription(rd);
  return { types: await typeNames(s, fields.map((f) => [f.typeOid, f.typmod])), names: fields.map((f) => f.name), rows: rows.map(decodeDataRow) };
}

/** The names of column types with their modifiers (format_type: `character(84)`, `numeric(10,2)`;
 *  without the modifier a bpchar literal would be cut to one character), read once per database
 *  from a shard's catalog. */
async function typeNames(s: ClientSession, types: [oid: number, typmod: number][]): Promise<string[]> {
  const key = ([o, m]: [number, number]): string => `${s.database}\0${o}\0${m}`;
  const missing = types.filter((t, i) => !typeNameCache.has(key(t)) && types.findIndex((u) => key(u) === key(t)) === i);
  if (missing.length) {
    const link = await s.servers.link(s.routing.preferredShard());
    const rows = await s.servers.queryRows(link, `SELECT t.o, t.m, pg_catalog.format_type(t.o, t.m) FROM (VALUES ${missing.map(([o, m]) => `(${o}::oid, ${m})`).join(', ')}) AS t(o, m)`);
    for (const [oid, mod, name] of rows) if (oid && mod && name) typeNameCache.set(key([Number(oid), Number(mod)]), name);
  }
  return types.map((t) => {
    const name = typeNameCache.get(key(t));
    if (!name) throw new PgError(SQLSTATE.InternalError, `pgring: the type ${t[0]} of a subquery's column is unknown`);
    return name;
  });
}

/** The RowDescription of `sql` on a server (Parse and Describe of the unnamed statement), or null.
 *  An error there is the client's statement's own (the same text fails the same way in
 *  PostgreSQL; in a transaction it fails it, as the statement would have): thrown. */
async function describeOwn(s: ClientSession, sql: string): Promise<Buffer | null> {
  const link = await s.servers.link(s.routing.preferredShard());
  const got = await exchange(s, link, false, Buffer.concat([parseMsg('', sql, [], s.codec), targeted(F.Describe, 'S', ''), syncMsg]));
  const err = got.find((m) => m[0] === B.ErrorResponse);
  if (err) {
    const f = parseErrorFields(err);
    throw new PgError(f.C ?? SQLSTATE.InternalError, f.M ?? 'describe failed', { detail: f.D, hint: f.H });
  }
  return got.find((m) => m[0] === B.RowDescription) ?? null;
}
