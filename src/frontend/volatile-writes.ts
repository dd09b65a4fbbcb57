// A write to a reference table runs on every shard, and each shard evaluates a volatile function in
// it by itself: `UPDATE settings SET token = gen_random_uuid()`, `SET v = random()`, `DELETE … WHERE
// random() < 0.1`, `SET n = nextval('s')`, an extension's uuid_generate_v4(). The copies then hold
// different values (or rows), without an error, and reads answer from whichever shard they go to.
// As Citus refuses volatile functions in such writes, pgring answers 0A000 naming the function.
// Not affected: INSERT … VALUES items and reference-table defaults (evaluated once on one shard,
// reference-defaults.ts), the time functions (now(), current_timestamp…: evaluated once in an
// UPDATE's SET, the same for every row of a shard otherwise), RETURNING (answered from one shard).
// Which functions are volatile is read from pg_proc once per database and name.
import { PgError, SQLSTATE } from '../protocol/errors';
import type { RoutedStatement } from '../router/router';
import type { ClientSession } from './client';
import { STABLE_TIME } from './reference-defaults';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const pg: { parseSync(sql: string): { stmts?: { stmt: any }[] } } = require('libpg-query');


/** One row: the names among $1 of volatile functions of PostgreSQL itself or of an extension
 *  (comma-separated). A function the user created is left alone: CREATE FUNCTION makes every
 *  function VOLATILE unless told otherwise, so most of them are deterministic all the same. */
export const VOLATILE_SQL = "SELECT coalesce(pg_catalog.string_agg(DISTINCT p.proname::pg_catalog.text, ','), '') FROM pg_catalog.pg_proc p WHERE p.proname = ANY ($1::pg_catalog.text[]) AND p.provolatile = 'v' AND (p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e'))";

/** Per database: function name -> volatile (any overload). */
const known = new Map<string, Map<string, boolean>>();
const parsed = new Map<string, { names: string[]; table: string }>();

function read(sql: string): { names: string[]; table: string } {
  let r = parsed.get(sql);
  if (r) return r;
  let st: any;
  try { st = pg.parseSync(sql).stmts?.[0]?.stmt; } catch { st = null; }
  const w = st?.UpdateStmt ?? st?.DeleteStmt ?? st?.InsertStmt;
  const body = st?.InsertStmt ? { onConflict: st.InsertStmt.onConflictClause } : w;
  const found = new Set<string>();
  const walk = (x: any): void => {
    if (x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(walk); return; }
    if (x.FuncCall) {
      const n: string | undefined = (x.FuncCall.funcname ?? []).map((f: any) => f.String?.sval).pop();
      if (n && !STABLE_TIME.has(n)) found.add(n);   // the time functions differ only by the transactions' start
    }
    for (const [k, v] of Object.entries(x)) if (k !== 'returningList' && k !== 'returningClause') walk(v);
  };
  if (body) walk(body);
  r = { names: [...found], table: w?.relation?.relname ?? '?' };
  if (parsed.size > 1000) parsed.clear();
  parsed.set(sql, r);
  return r;
}

/** The functions an UPDATE / DELETE (or an INSERT's ON CONFLICT DO UPDATE) of a reference table
 *  calls where every shard evaluates them itself; [] when none (pure, cached by text). */
export function calledFunctions(sql: string): string[] { return read(sql).names; }

/** A reference-table write over several shards that calls functions: worth the check. */
export function needsVolatileCheck(s: ClientSession, stmt: RoutedStatement): boolean {
  const p = stmt.plan;
  return p.target === 'reference' && p.write && s.txStatus !== 'E' && (p.command === 'update' || p.command === 'delete' || p.command === 'insert')
    && s.ctx.shards.shardCount > 1 && s.routeShard === null && s.routeShardKey === null && !stmt.hint?.shard && !p.hint?.shard
    && p.parseError === undefined && calledFunctions(stmt.sql).length > 0;
}

/** The names whose volatility this database has not told yet. */
export function unknownNames(s: ClientSession, names: string[]): string[] {
  const m = known.get(s.database);
  return m ? names.filter((n) => !m.has(n)) : names;
}

/** Records the answer of VOLATILE_SQL for `asked`. */
export function rememberVolatile(s: ClientSession, asked: string[], answer: string | null): void {
  let m = known.get(s.database);
  if (!m) known.set(s.database, (m = new Map()));
  if (m.size > 10000) m.clear();
  const v = new Set((answer ?? '').split(',').filter(Boolean));
  for (const n of asked) m.set(n, v.has(n));
}

/** `$1` of VOLATILE_SQL: a text[] literal of the names. */
export function namesParam(names: string[]): string {
  return `{${names.map((n) => `"${n.replace(/["\\]/g, (c) => `\\${c}`)}"`).join(',')}}`;
}

/** Throws 0A000 when `stmt` calls a function known to be volatile. */
export function checkKnown(s: ClientSession, stmt: RoutedStatement): void {
  const m = known.get(s.database);
  const bad = calledFunctions(stmt.sql).find((n) => m?.get(n) === true);
  if (bad) {
    throw new PgError(SQLSTATE.FeatureNotSupported,
      `pgring: volatile function ${bad}() in a write to reference table "${read(stmt.sql).table}" is not supported (every shard would compute its own value, and the copies of the table would differ)`,
      { hint: 'Compute the value first (SELECT it, then write the constant), or use a sharded table.' });
  }
}

/** Simple protocol: asks a shard about unknown names (outside the client's unit), then checks. */
export async function checkVolatile(s: ClientSession, stmt: RoutedStatement): Promise<void> {
  const ask = unknownNames(s, calledFunctions(stmt.sql));
  if (ask.length) {
    const link = await s.servers.link(s.routing.preferredShard());
    const rows = await s.servers.queryRows(link, VOLATILE_SQL.replace('$1', `'${namesParam(ask).replace(/'/g, "''")}'`));
    rememberVolatile(s, ask, rows[0]?.[0] ?? null);
  }
  checkKnown(s, stmt);
}
