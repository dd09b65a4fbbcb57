// INSERT INTO sharded SELECT … that the shards cannot run where they are: the key is computed
// (`SELECT g, … FROM generate_series(1, 1000) g`), the rows come from a reference table, another
// relation's `*`, a set operation, or a sharded table not co-located with the target. Each row's
// shard is known only from its values, so pgring reads the rows (on the shard that has them, or
// on every shard for a plain scan of sharded tables), as SQL literals typed like the SELECT's
// columns (`'5'::integer`, so the INSERT applies the same assignment casts as INSERT … SELECT),
// and runs a multi-row INSERT … VALUES, split by key like any other (one distributed transaction;
// RETURNING in row order). Citus calls this INSERT … SELECT through the coordinator. Simple
// protocol only; at most MAX_ROWS rows (COPY is the tool for bulk loads).
import { PgError, SQLSTATE } from '../protocol/errors';
import { tokenize } from '../router/lexer';
import type { RoutedStatement } from '../router/router';
import type { ClientSession } from './client';
import { routeShards } from './routing';
import { typedLiteral } from '../router/subqueries';
import { readRows } from './subqueries';
import { typedRowsSql } from './typed-literals';

export const MAX_ROWS = 50000;

/** Whether this session places the rows of `stmt` itself (several shards, no explicit routing). */
export function insertsViaProxy(s: ClientSession, stmt: RoutedStatement): boolean {
  return stmt.plan.insertVia !== undefined && s.txStatus !== 'E' && s.ctx.shards.shardCount > 1 && s.routeShard === null && s.routeShardKey === null && !stmt.hint && !stmt.plan.hint;
}

/** `INSERT INTO t [(cols)] [OVERRIDING …]` | the SELECT | `[ON CONFLICT …] [RETURNING …]`, or null. */
export function insertParts(sql: string): { head: string; select: string; tail: string } | null {
  const toks = tokenize(sql);
  if (toks[0]?.lower !== 'insert' || toks[1]?.lower !== 'into') return null;
  let i = 2;
  // the target (schema.name, quoted names) and its alias
  while (i < toks.length && toks[i]!.depth === 0 && !['(', 'as', 'overriding', 'select', 'values', 'with', 'table', 'default'].includes(toks[i]!.lower)) i++;
  if (toks[i]?.lower === 'as') i += 2;
  // a column list (not a parenthesized SELECT)
  if (toks[i]?.text === '(' && !['select', 'with', 'values', 'table', '('].includes(toks[i + 1]?.lower ?? '')) {
    let j = i + 1;
    while (j < toks.length && !(toks[j]!.text === ')' && toks[j]!.depth === 0)) j++;
    i = j + 1;
  }
  if (toks[i]?.lower === 'overriding') i += 3;
  const start = toks[i];
  if (!start || !['select', 'values', 'with', 'table', '('].includes(start.lower)) return null;
  let e = i;
  while (e < toks.length) {
    const t = toks[e]!;
    if (t.depth === 0 && (t.lower === 'returning' || t.text === ';' || (t.lower === 'on' && toks[e + 1]?.lower === 'conflict'))) break;
    e++;
  }
  const end = e < toks.length ? toks[e]!.start : sql.length;
  let tail = sql.slice(end).trim();
  if (tail.endsWith(';')) tail = tail.slice(0, -1);
  return { head: sql.slice(0, start.start).trim(), select: sql.slice(start.start, end).trim(), tail };
}

function refused(stmt: RoutedStatement): PgError {
  return new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${stmt.plan.scatterUnsupported ?? stmt.plan.unsupported ?? 'this INSERT ... SELECT'} is not supported`);
}

/** A key constant of each key type (the zero-row INSERT names one to be routed somewhere). */
const ANY_KEY: Record<string, string> = { uuid: "'00000000-0000-0000-0000-000000000000'", text: "''", varchar: "''" };

/** The INSERT with the SELECT's rows as VALUES (read through this session's transaction), planned. */
export async function insertSelectValues(s: ClientSession, stmt: RoutedStatement): Promise<RoutedStatement> {
  const via = stmt.plan.insertVia!;
  const parts = insertParts(stmt.sql);
  if (!parts || via.keyIdx >= via.n) throw refused(stmt);
  const planned = s.router.plan(parts.select);
  const sel = planned.length === 1 ? planned[0]! : null;
  if (!sel || sel.plan.command !== 'select' || sel.plan.write || sel.plan.parseError !== undefined) throw refused(stmt);
  const route = s.routing.route(sel, null, null);
  const shards = routeShards(route, s.ctx.shards.shardCount);
  const tooMany = `pgring: INSERT ... SELECT of more than ${MAX_ROWS} rows into sharded table "${stmt.plan.table}" whose rows pgring must place itself is not supported`;
  const m = sel.plan.merge;
  const rows: string[] = [];
  if (shards.length > 1 && (!m || m.orderBy.length || m.aggregates.length || m.groupBy.length || m.distinct || m.distinctOn || m.having || m.limit !== null || m.offset !== null || m.hiddenColumns || m.shardSql !== undefined)) {
    // not a plain scan (LIMIT, ORDER BY, aggregates, a window…): the rows are read merged, as a
    // SELECT over several shards is answered (its subqueries and tables read first if need be)
    const read = await readRows(s, sel, MAX_ROWS, tooMany);
    if (!read || read.types.length !== via.n) throw refused(stmt);
    for (const r of read.rows) rows.push(`(${r.map((v, i) => typedLiteral(v, read.types[i]!)).join(', ')})`);
  } else {
    // the rows of each shard, side by side (a plain scan)
    s.simple.checkSupported(sel, route);
    const read = typedRowsSql(parts.select, via.n, MAX_ROWS + 1);
    for (const sh of shards) {
      const link = await s.servers.link(sh);
      for (const r of await s.servers.queryRows(link, read)) rows.push(r[0]!);
      if (rows.length > MAX_ROWS) throw new PgError(SQLSTATE.FeatureNotSupported, tooMany, { hint: 'Insert in smaller parts, or load the rows with COPY.' });
    }
  }
  const sql = rows.length
    ? `${parts.head} VALUES ${rows.join(', ')}${parts.tail ? ` ${parts.tail}` : ''}`
    // nothing to insert: a statement that inserts nothing, for the answer (RETURNING's columns, INSERT 0 0)
    : `${parts.head} SELECT ${Array.from({ length: via.n }, (_, i) => (i === via.keyIdx ? ANY_KEY[stmt.plan.keyType ?? ''] ?? "'0'" : 'NULL')).join(', ')} WHERE false${parts.tail ? ` ${parts.tail}` : ''}`;
  const next = s.router.plan(sql);
  if (next.length !== 1 || next[0]!.plan.insertVia || next[0]!.plan.keys === null) throw refused(stmt);
  return next[0]!;
}
