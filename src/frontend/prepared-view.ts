// pg_prepared_statements as the client would see it on PostgreSQL. A client's protocol-level
// statements live on the servers under pgring's shared names (prepared.ts: `pgring_<n>`, shared
// with every client that prepared the same text), so the server's view lists those names, other
// clients' statements and none of the client's own (drivers' test suites count and read this
// view: Npgsql, psycopg, DBD::Pg). A statement that reads the view has each reference replaced by
// a derived table: the server's own SQL-level statements (PREPARE pins the session, so they are
// the client's), plus one row per statement the client prepared with Parse, by the client's
// name and text, with the server copy's parameter types and plan counts where the connection
// has it. PostgreSQL evaluates the rest of the query (WHERE, count, ORDER BY) as usual.
// The set is taken when the statement is planned: at each simple Query and Parse.
import type { ClientStatement } from './prepared';
import type { SessionShared } from './shared';
import { applyEdits } from './reference-defaults';
import { dollarQuote as dollar } from './session-util';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const pg: { parseSync(sql: string): { stmts?: { stmt: unknown }[] } } = require('libpg-query');

type N = Record<string, unknown>;


/** The derived table that stands for the view (PostgreSQL 14+; 16 adds result_types). */
export function viewTable(stmts: Iterable<ClientStatement>, serverVersionNum: number): string {
  const rows: string[] = [];
  for (const cs of stmts) {
    if (cs.clientName === '' || cs.serverName === '') continue;
    const at = new Date(cs.preparedAt ?? Date.now()).toISOString();
    rows.push(`(${dollar(cs.clientName)}::text, ${dollar(cs.sql)}::text, '${at}'::timestamptz, '${cs.serverName}'::text, '{${cs.types.join(',')}}'::oid[]::regtype[])`);
  }
  const own = 'SELECT v.* FROM pg_catalog.pg_prepared_statement() v WHERE v.from_sql';
  if (rows.length === 0) return `(${own})`;
  const result = serverVersionNum >= 160000 ? ' s.result_types,' : '';
  return `(${own} UNION ALL SELECT c.name, c.statement, c.prepare_time, COALESCE(s.parameter_types, c.parameter_types),${result} false,`
    + ' COALESCE(s.generic_plans, 0), COALESCE(s.custom_plans, 0)'
    + ` FROM (VALUES ${rows.join(', ')}) c(name, statement, prepare_time, server, parameter_types)`
    + ' LEFT JOIN pg_catalog.pg_prepared_statement() s ON s.name = c.server AND NOT s.from_sql)';
}

const NAME = /^(?:(?:pg_catalog|"pg_catalog")\s*\.\s*)?(?:pg_prepared_statements|"pg_prepared_statements")/i;

/**
 * `sql` with every reference to pg_prepared_statements replaced by `table`, or null when there is
 * none pgring can place (then the statement runs as it is and shows the server's rows).
 */
export function withPreparedView(sql: string, table: string): string | null {
  let tree: unknown;
  try { tree = pg.parseSync(sql); } catch { return null; }
  const b = Buffer.from(sql, 'utf8');
  const ctes = new Set<string>();
  const refs: N[] = [];
  const walk = (x: unknown): void => {
    if (Array.isArray(x)) { for (const e of x) walk(e); return; }
    if (x === null || typeof x !== 'object') return;
    const o = x as N;
    const rv = o.RangeVar as N | undefined;
    if (rv && rv.relname === 'pg_prepared_statements' && !rv.catalogname && (!rv.schemaname || rv.schemaname === 'pg_catalog')) refs.push(rv);
    const cte = o.CommonTableExpr as N | undefined;
    if (cte && typeof cte.ctename === 'string') ctes.add(cte.ctename);
    for (const v of Object.values(o)) walk(v);
  };
  walk(tree);
  const edits: { at: number; del: number; text: string }[] = [];
  for (const rv of refs) {
    if (!rv.schemaname && ctes.has('pg_prepared_statements')) continue;   // a CTE of that name (approximation: any scope)
    const at = rv.location as number;
    const m = NAME.exec(b.toString('latin1', at, at + 80));
    if (typeof at !== 'number' || at < 0 || !m) return null;
    edits.push({ at, del: m[0].length, text: rv.alias ? table : `${table} pg_prepared_statements` });
  }
  return edits.length ? applyEdits(b, edits) : null;
}

/** `sql` reading this client's own statements instead of the view (null when there is no reference pgring can place). */
export function withClientStatements(s: Pick<SessionShared, 'stmts' | 'serverVersionNum'>, sql: string): string | null {
  return withPreparedView(sql, viewTable(s.stmts.values(), s.serverVersionNum));
}
