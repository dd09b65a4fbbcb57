// INSERT into a sharded table whose column list leaves out the shard key (`id bigserial`,
// `id uuid DEFAULT gen_random_uuid()`, an identity column): PostgreSQL fills the key from the
// column's default, but the row's shard depends on the key, so pgring must know it first. In the
// simple protocol pgring evaluates the default on the first shard (a sequence there hands out
// its range: 1, 2, ... with frontend/sequences.ts), one value per row, adds the column and the
// values to the statement, and runs that as a keyed INSERT (split when the rows go to several
// shards). In the extended protocol (ORMs with bind parameters) pgring runs, at the client's Bind,
// the catalog query and the default on the first shard inside the client's unit (named statements
// of its own, nothing synced), binds a statement with the key column added as parameters after
// the client's, and appends the values to the client's Bind.
import { PgError, SQLSTATE } from '../protocol/errors';
import { F } from '../protocol/codes';
import { parseMsg, query, Writer, type BindInfo } from '../protocol/messages';
import { lex, tokenize } from '../router/lexer';
import type { RoutedStatement } from '../router/router';
import type { ClientSession } from './client';
import type { Link } from './session-types';
import { makeStatement, type ClientStatement } from './prepared';
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

export interface KeyDefault { expr: string; always: boolean }
/** Defaults read from the catalog, per database and table; forgotten at any DDL through this proxy. */
const known = new Map<string, KeyDefault | null>();
export function forgetKeyDefaults(): void { if (known.size) known.clear(); }

/** The catalog query for a column's identity kind and default expression (`table`, `column`: SQL expressions). */
export function defaultCatalogSql(table: string, column: string): string {
  return `SELECT a.attidentity, pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = (${table})::pg_catalog.regclass AND a.attname = ${column} AND NOT a.attisdropped`;
}

/** The key default from the catalog row, remembered for the session's database. */
function keyDefaultOf(s: ClientSession, table: string, column: string, r: (string | null)[] | undefined): KeyDefault | null {
  let def: KeyDefault | null = null;
  if (r && (r[0] === 'a' || r[0] === 'd')) def = { expr: `pg_catalog.nextval(pg_catalog.pg_get_serial_sequence(${quoteLiteral(table)}, ${quoteLiteral(column)}))`, always: r[0] === 'a' };
  else if (r && r[1]) def = { expr: r[1], always: false };
  if (known.size > 1000) known.clear();
  known.set(`${s.database}\u0000${table}\u0000${column}`, def);
  return def;
}

/** A default already read, or undefined. */
export function knownDefault(s: ClientSession, table: string, column: string): KeyDefault | null | undefined {
  return known.get(`${s.database}\u0000${table}\u0000${column}`);
}

/** The default read in the extended protocol: the catalog row of `rows`. */
export function rememberDefault(s: ClientSession, table: string, column: string, rows: (string | null)[][]): KeyDefault | null {
  return keyDefaultOf(s, table, column, rows[0]);
}

async function defaultOf(s: ClientSession, link: Link, table: string, column: string): Promise<KeyDefault | null> {
  const k = knownDefault(s, table, column);
  if (k !== undefined) return k;
  const rows = await s.servers.queryRows(link, defaultCatalogSql(quoteLiteral(table), quoteLiteral(column)));
  return keyDefaultOf(s, table, column, rows[0]);
}

export function noDefault(table: string, column: string): PgError {
  return new PgError('23502', `null value in shard key column "${column}" of relation "${table}" cannot be routed`, { detail: `The INSERT gives no value for "${column}", and the column has no default.` });
}

/** The values of the key default, one row each: checked for NULL. */
export function checkedValues(table: string, column: string, rows: (string | null)[][], n: number): string[] {
  if (rows.length !== n || rows.some((r) => r[0] === null)) {
    throw new PgError('23502', `null value in shard key column "${column}" of relation "${table}" cannot be routed`, { detail: `The default of "${column}" gave NULL.` });
  }
  return rows.map((r) => r[0]!);
}

/** The SQL that evaluates a key default `n` times ($1 = n in the extended protocol). */
export function defaultValuesSql(def: KeyDefault, n: string): string {
  return `SELECT ${def.expr} FROM pg_catalog.generate_series(1, ${n})`;
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
  const slots = keySlots(stmt.sql);
  if (!slots) throw refused(stmt);
  const link = await s.servers.link(0);
  const def = await defaultOf(s, link, table, column);
  if (!def) throw noDefault(table, column);
  const rows = await s.servers.queryRows(link, defaultValuesSql(def, String(slots.rowCloses.length)));
  const sql = withKeyColumn(stmt.sql, slots, column, checkedValues(table, column, rows, slots.rowCloses.length).map(quoteLiteral), def.always);
  const next = s.router.plan(sql);
  if (next.length !== 1 || next[0]!.plan.keyDefault || next[0]!.plan.keys === null) throw refused(stmt);
  return next[0]!;
}

function refused(stmt: RoutedStatement): PgError {
  const plan = stmt.plan;
  return new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${plan.scatterUnsupported ?? `INSERT into sharded table "${plan.table}" without a value for its shard key column`} is not supported`);
}

/** The client's prepared INSERT with the key column added as parameters after its own (one per
 *  row); `params`: how many the client's statement has. Kept per statement and identity kind. */
export interface KeyedStatement { cs: ClientStatement; rows: number }
const keyedOf = new WeakMap<ClientStatement, Map<string, KeyedStatement>>();

export function keyedStatement(s: ClientSession, cs: ClientStatement, def: KeyDefault, params: number): KeyedStatement {
  let m = keyedOf.get(cs);
  if (!m) keyedOf.set(cs, m = new Map());
  const k = `${params}${def.always ? 'a' : ''}`;
  let d = m.get(k);
  if (d) return d;
  const slots = keySlots(cs.sql);
  if (!slots) throw refused(cs.stmt);
  const first = Math.max(params, lex(cs.sql)[0]?.maxParam ?? 0, cs.types.length) + 1;
  const sql = withKeyColumn(cs.sql, slots, cs.stmt.plan.keyColumn!, slots.rowCloses.map((_, i) => `$${first + i}`), def.always);
  const stmt = s.router.planPrepared(sql);
  if (stmt.plan.keyDefault || stmt.plan.keys === null) throw refused(cs.stmt);
  const types = cs.types.slice();
  while (types.length < first - 1) types.push(0);
  d = { cs: makeStatement('pgring-keyed', sql, types, stmt, parseMsg('', sql, types, cs.codec), cs.scope, cs.codec), rows: slots.rowCloses.length };
  m.set(k, d);
  return d;
}

/** Names of pgring's own statements that evaluate key defaults (per expression, on any server). */
const valueStatements = new Map<string, string>();
export function defaultStatementName(def: KeyDefault): string {
  let n = valueStatements.get(def.expr);
  if (n === undefined) {
    if (valueStatements.size > 1000) valueStatements.clear();
    valueStatements.set(def.expr, n = `pgring_keydef_${valueStatements.size + 1}`);
  }
  return n;
}

/** The client's Bind for `statement` with `values` (text) appended to its parameters. */
export function bindWithValues(msg: Buffer, info: BindInfo, statement: string, values: (string | null)[]): Buffer {
  const fmts = info.paramFormats, params = info.params;
  const w = new Writer(msg.length + 64).cstr(info.portal).cstr(statement);
  if (fmts.length === 0 || (fmts.length === 1 && fmts[0] === 0)) {
    w.int16(fmts.length);
    for (const f of fmts) w.int16(f);
  } else {
    // One format per parameter: the client's (one for all, or each) and text for pgring's.
    w.int16(params.length + values.length);
    for (let i = 0; i < params.length; i++) w.int16(fmts.length === 1 ? fmts[0]! : fmts[i]!);
    for (let i = 0; i < values.length; i++) w.int16(0);
  }
  w.int16(params.length + values.length);
  for (const p of params) { if (p === null) w.int32(-1); else w.int32(p.length).bytes(p); }
  for (const v of values) { if (v === null) { w.int32(-1); continue; } const b = Buffer.from(v, 'utf8'); w.int32(b.length).bytes(b); }
  return w.bytes(msg.subarray(info.resultOffset)).msg(F.Bind);
}
