// INSERT into a sharded table whose column list leaves out the shard key (`id bigserial`,
// `id uuid DEFAULT gen_random_uuid()`, an identity column): PostgreSQL fills the key from the
// column's default, but the row's shard depends on the key, so pgring must know it first. In the
// simple protocol pgring evaluates the default on the first shard (a sequence there hands out
// its range: 1, 2, ... with frontend/sequences.ts), one value per row, adds the column and the
// values to the statement, and runs that as a keyed INSERT (split when the rows go to several
// shards). The extended protocol still refuses the form (0A000): its Bind would need a parameter
// the client did not send.
import { PgError, SQLSTATE } from '../protocol/errors';
import { query } from '../protocol/messages';
import { tokenize } from '../router/lexer';
import type { RoutedStatement } from '../router/router';
import type { ClientSession } from './client';
import type { Link } from './session-types';
import { quoteIdent, quoteLiteral } from './session-util';

/** Where the column list and each VALUES row of an INSERT end (offsets of their ')'), or null. */
export interface KeySlots { colsClose: number; rowCloses: number[]; overriding: boolean }

export function keySlots(sql: string): KeySlots | null {
  const toks = tokenize(sql);
  if (toks[0]?.lower !== 'insert') return null;
  const open = toks.findIndex((t) => t.depth === 0 && t.text === '(');
  if (open < 0) return null;
  let j = open + 1;
  while (j < toks.length && !(toks[j]!.text === ')' && toks[j]!.depth === 0)) j++;
  if (j >= toks.length) return null;
  const colsClose = toks[j]!.start;
  let v = j + 1;
  let overriding = false;
  while (v < toks.length && !(toks[v]!.depth === 0 && toks[v]!.lower === 'values')) {
    if (toks[v]!.depth === 0 && toks[v]!.lower === 'overriding') overriding = true;
    v++;
  }
  const rowCloses: number[] = [];
  let k = v + 1;
  while (k < toks.length && toks[k]!.text === '(' && toks[k]!.depth === 0) {
    let e = k + 1;
    while (e < toks.length && !(toks[e]!.text === ')' && toks[e]!.depth === 0)) e++;
    if (e >= toks.length) return null;
    rowCloses.push(toks[e]!.start);
    k = e + 1;
    if (k < toks.length && toks[k]!.text === ',' && toks[k]!.depth === 0) k++; else break;
  }
  return rowCloses.length ? { colsClose, rowCloses, overriding } : null;
}

/** The INSERT with the key column and one value per row added (`values`: SQL literals). */
export function withKeyColumn(sql: string, slots: KeySlots, column: string, values: string[], overridingSystem: boolean): string {
  let out = sql;
  for (let r = slots.rowCloses.length - 1; r >= 0; r--) out = `${out.slice(0, slots.rowCloses[r])}, ${values[r]}${out.slice(slots.rowCloses[r])}`;
  const over = overridingSystem && !slots.overriding ? ' OVERRIDING SYSTEM VALUE' : '';
  return `${out.slice(0, slots.colsClose)}, ${quoteIdent(column)})${over}${out.slice(slots.colsClose + 1)}`;
}

interface KeyDefault { expr: string; always: boolean }
/** Defaults read from the catalog, per database and table; forgotten at any DDL through this proxy. */
const known = new Map<string, KeyDefault | null>();
export function forgetKeyDefaults(): void { if (known.size) known.clear(); }

async function defaultOf(s: ClientSession, link: Link, table: string, column: string): Promise<KeyDefault | null> {
  const k = `${s.database}\u0000${table}\u0000${column}`;
  if (known.has(k)) return known.get(k)!;
  const rows = await s.servers.queryRows(link, `SELECT a.attidentity, pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = ${quoteLiteral(table)}::pg_catalog.regclass AND a.attname = ${quoteLiteral(column)} AND NOT a.attisdropped`);
  const r = rows[0];
  let def: KeyDefault | null = null;
  if (r && (r[0] === 'a' || r[0] === 'd')) def = { expr: `pg_catalog.nextval(pg_catalog.pg_get_serial_sequence(${quoteLiteral(table)}, ${quoteLiteral(column)}))`, always: r[0] === 'a' };
  else if (r && r[1]) def = { expr: r[1], always: false };
  if (known.size > 1000) known.clear();
  known.set(k, def);
  return def;
}

/** Whether this session fills in a left-out shard key for `stmt` (several shards, no explicit routing). */
export function fillsKeyDefault(s: ClientSession, stmt: RoutedStatement): boolean {
  return stmt.plan.keyDefault === true && s.txStatus !== 'E' && s.ctx.shards.shardCount > 1 && s.routeShard === null && s.routeShardKey === null && !stmt.hint && !stmt.plan.hint;
}

/** Runs an INSERT that leaves out the shard key column with the key's default values added. */
export async function insertWithKeyDefault(s: ClientSession, stmt: RoutedStatement): Promise<void> {
  const next = await withKeyDefault(s, stmt);
  await s.simple.runSimple(next, query(next.sql, s.codec), [next]);
}

/** The INSERT with its shard key column and the default's values added, planned. */
export async function withKeyDefault(s: ClientSession, stmt: RoutedStatement): Promise<RoutedStatement> {
  const plan = stmt.plan;
  const table = plan.table!, column = plan.keyColumn!;
  const refuse = (): PgError => new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${plan.scatterUnsupported ?? `INSERT into sharded table "${table}" without a value for its shard key column`} is not supported`);
  const slots = keySlots(stmt.sql);
  if (!slots) throw refuse();
  const link = await s.servers.link(0);
  const def = await defaultOf(s, link, table, column);
  if (!def) throw new PgError('23502', `null value in shard key column "${column}" of relation "${table}" cannot be routed`, { detail: `The INSERT gives no value for "${column}", and the column has no default.` });
  const rows = await s.servers.queryRows(link, `SELECT ${def.expr} FROM pg_catalog.generate_series(1, ${slots.rowCloses.length})`);
  if (rows.length !== slots.rowCloses.length || rows.some((r) => r[0] === null)) {
    throw new PgError('23502', `null value in shard key column "${column}" of relation "${table}" cannot be routed`, { detail: `The default of "${column}" gave NULL.` });
  }
  const sql = withKeyColumn(stmt.sql, slots, column, rows.map((r) => quoteLiteral(r[0]!)), def.always);
  const next = s.router.plan(sql);
  if (next.length !== 1 || next[0]!.plan.keyDefault || next[0]!.plan.keys === null) throw refuse();
  return next[0]!;
}
