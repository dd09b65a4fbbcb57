// INSERT into a reference table runs on every shard, and each shard evaluated the defaults of the
// columns the INSERT leaves out (or sets to DEFAULT) by itself: `id uuid DEFAULT gen_random_uuid()`
// gave every copy of the row another id, `DEFAULT now()` / `clock_timestamp()` another time, a
// sequence counted on its own on each shard. The copies of a reference table drifted apart without
// an error (a later UPDATE by the id read from one shard changed that shard's copy only).
// pgring now evaluates such defaults once, on the first shard in the client's transaction, as
// literals of the column's type, and sends every shard the same values (Citus evaluates them on the
// coordinator likewise). Constant defaults stay with the shards. INSERT … VALUES, both protocols;
// in the simple protocol also function calls and expressions written in the VALUES themselves
// (`VALUES (gen_random_uuid(), now())`), evaluated once and sent as typed literals.
import { PgError, SQLSTATE } from '../protocol/errors';
import type { RoutedStatement } from '../router/router';
import type { ClientSession } from './client';
import { quoteIdent, quoteLiteral } from './session-util';
import { makeStatement, type ClientStatement } from './prepared';
import { parseMsg } from '../protocol/messages';
import { lex, tokenize } from '../router/lexer';
import { insertParts, MAX_ROWS } from './insert-select';
import { typeNameSql, typedRowsSql, typedValueSql } from './typed-literals';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const pg: { parseSync(sql: string): { stmts?: { stmt: any }[] } } = require('libpg-query');

export interface Col { name: string; identity: string; expr: string | null; type: string }
/** Columns per database and table, read again after a while (DDL through other proxies) or at DDL here. */
const known = new Map<string, { at: number; cols: Col[] }>();
const TTL_MS = 5000;
export function forgetReferenceColumns(): void { if (known.size) known.clear(); }

/** A default the shards would all evaluate alike (a constant, possibly cast). */
export function constantDefault(expr: string): boolean {
  return /^(NULL|true|false|-?\d+(\.\d+)?([eE][-+]?\d+)?|'(?:[^']|'')*')(::[\w ."[\]()]+)*$/i.test(expr.trim()) && !/\(\)/.test(expr);
}

/** Worth a look: an INSERT into a reference table over several shards, not routed explicitly. */
export function mayNeedDefaults(s: ClientSession, stmt: RoutedStatement): boolean {
  const p = stmt.plan;
  return (p.command === 'insert' || p.command === 'update') && p.target === 'reference' && p.write && s.txStatus !== 'E' && s.ctx.shards.shardCount > 1
    && s.routeShard === null && s.routeShardKey === null && !stmt.hint && !p.hint && p.parseError === undefined;
}

/** What an INSERT … VALUES into a reference table leaves to the shards that they would not agree on. */
export interface RefDefaults {
  table: string;
  rows: number;
  /** columns left out, appended to every row */
  added: Col[];
  /** DEFAULT items of listed columns */
  defaults: { row: number; item: number; col: Col }[];
  ins: any;
  named: string[] | null;
  listed: string[];
}

/** The INSERT's parse and target table, or null when it is not a plain INSERT … VALUES of a permanent table. */
export function parseReferenceInsert(sql: string): { ins: any; table: string } | null {
  let ins: any;
  try { ins = pg.parseSync(sql).stmts?.[0]?.stmt?.InsertStmt; } catch { return null; }
  const rows: any[][] | undefined = ins?.selectStmt?.SelectStmt?.valuesLists;
  if (!ins || !rows?.length || ins.withClause || ins.selectStmt.SelectStmt.op !== 'SETOP_NONE') return null;
  const rel = ins.relation;
  if (rel.relpersistence === 't') return null;   // a temporary table lives on one shard
  if (ins.cols?.some((c: any) => c.ResTarget.indirection)) return null;
  return { ins, table: rel.schemaname ? `${quoteIdent(rel.schemaname)}.${quoteIdent(rel.relname)}` : quoteIdent(rel.relname) };
}

export function referenceDefaults(parsed: { ins: any; table: string }, cols: Col[]): RefDefaults | null {
  const { ins, table } = parsed;
  if (!cols.length) return null;
  const rows: any[][] = ins.selectStmt.SelectStmt.valuesLists.map((l: any) => l.List.items);
  const named: string[] | null = ins.cols ? ins.cols.map((c: any) => c.ResTarget.name) : null;
  const listed = named ?? cols.slice(0, rows[0]!.length).map((c) => c.name);
  const volatile = (c: Col): boolean => c.identity !== '' || (c.expr !== null && !constantDefault(c.expr));
  const added = cols.filter((c) => !listed.includes(c.name) && volatile(c));
  const defaults: RefDefaults['defaults'] = [];
  rows.forEach((items, r) => items.forEach((it: any, i: number) => {
    const col = cols.find((c) => c.name === listed[i]);
    if (it.SetToDefault && col && volatile(col)) defaults.push({ row: r, item: i, col });
  }));
  if (added.length === 0 && defaults.length === 0) return null;
  return { table, rows: rows.length, added, defaults, ins, named, listed };
}

/** One statement that evaluates the values on a shard: a row per VALUES row, the added columns'
 *  values, then those of every DEFAULT item (NULL outside its row). `wrap` formats a value. */
export function evaluationSql(d: RefDefaults, wrap: (e: string, c: Col) => string, rowsExpr: string): string {
  const expr = (c: Col): string => wrap(`(${c.identity ? `pg_catalog.nextval(pg_catalog.pg_get_serial_sequence(${quoteLiteral(d.table)}, ${quoteLiteral(c.name)}))` : c.expr})::${c.type}`, c);
  return `SELECT ${[...d.added.map(expr), ...d.defaults.map((x) => `CASE WHEN g = ${x.row + 1} THEN ${expr(x.col)} END`), '1'].join(', ')} FROM pg_catalog.generate_series(1, ${rowsExpr}) g`;
}

/** The values of row `r` in evaluation order (added columns, then the DEFAULT items of that row), from the evaluation's row. */
export function rowValues(d: RefDefaults, r: number, evaluated: (string | null)[]): (string | null)[] {
  const out = evaluated.slice(0, d.added.length);
  d.defaults.forEach((x, j) => { if (x.row === r) out.push(evaluated[d.added.length + j] ?? null); });
  return out;
}

/** The INSERT with the values in: `value(r, k)` is the SQL of row r's k-th value (rowValues order). */
export function rewriteInsert(sql: string, d: RefDefaults, value: (r: number, k: number, c: Col) => string): string | null {
  const { ins, added } = d;
  const rows: any[][] = ins.selectStmt.SelectStmt.valuesLists.map((l: any) => l.List.items);
  const rel = ins.relation;
  const b = Buffer.from(sql, 'utf8');
  const edits: { at: number; del: number; text: string }[] = [];
  const inRow = new Map<number, number>();
  for (const x of d.defaults) {
    const k = added.length + (inRow.get(x.row) ?? 0);
    inRow.set(x.row, (inRow.get(x.row) ?? 0) + 1);
    edits.push({ at: rows[x.row]![x.item].SetToDefault.location as number, del: 'DEFAULT'.length, text: value(x.row, k, x.col) });
  }
  if (added.length) {
    for (let r = 0; r < rows.length; r++) {
      const close = rowClose(b, rows[r]!);
      if (close < 0) return null;
      edits.push({ at: close, del: 0, text: `, ${added.map((c, i) => value(r, i, c)).join(', ')}` });
    }
    const names = added.map((c) => quoteIdent(c.name)).join(', ');
    if (d.named) {
      const close = listClose(b, ins.cols[ins.cols.length - 1].ResTarget.location as number);
      if (close < 0) return null;
      edits.push({ at: close, del: 0, text: `, ${names}` });
    } else {
      const at = valuesStart(b, rel.location as number);
      if (at < 0) return null;
      edits.push({ at, del: 0, text: `(${[...d.listed.map(quoteIdent), names].join(', ')}) ` });
    }
  }
  let out = applyEdits(b, edits);
  // GENERATED ALWAYS AS IDENTITY takes a value only with OVERRIDING SYSTEM VALUE
  if ([...added, ...d.defaults.map((x) => x.col)].some((c) => c.identity === 'a') && ins.override !== 'OVERRIDING_SYSTEM_VALUE') {
    const vb = Buffer.from(out, 'utf8');
    const at = valuesStart(vb, rel.location as number);
    if (at < 0) return null;
    out = applyEdits(vb, [{ at, del: 0, text: 'OVERRIDING SYSTEM VALUE ' }]);
  }
  return out;
}

/**
 * Simple protocol: the INSERT with the values of the defaults the shards would not agree on
 * (evaluated on the first shard, as typed literals), planned; null when there are none.
 */
export async function withReferenceDefaults(s: ClientSession, stmt: RoutedStatement): Promise<RoutedStatement | null> {
  // a statement pgring refuses (e.g. it reads sharded tables) is refused as it is
  if (stmt.plan.unsupported || stmt.plan.scatterUnsupported || stmt.plan.target !== 'reference') return null;
  if (stmt.plan.command === 'update') return withEvaluatedSet(s, stmt);
  if (!parseReferenceInsert(stmt.sql)) {
    // INSERT … SELECT: its rows read once, as VALUES, whose defaults then get the same treatment
    const values = await selectAsValues(s, stmt);
    if (!values) return null;
    const planned = s.router.plan(values);
    if (planned.length !== 1) return null;
    return (await withReferenceDefaults(s, planned[0]!)) ?? planned[0]!;
  }
  const link = await s.servers.link(0);
  // function calls written in the VALUES (gen_random_uuid(), now(), nextval('s')) first
  let sql = await withEvaluatedItems(s, link, stmt.sql);
  let changed = sql !== stmt.sql;
  const parsed = parseReferenceInsert(sql);
  const d = parsed ? referenceDefaults(parsed, await columnsOf(s, link, parsed.table)) : null;
  if (d) {
    const vals = await s.servers.queryRows(link, evaluationSql(d, (e) => `pg_catalog.quote_nullable(${e})`, String(d.rows)));
    if (vals.length !== d.rows) throw new PgError(SQLSTATE.InternalError, 'pgring: the defaults of a reference table could not be evaluated');
    const out = rewriteInsert(sql, d, (r, k, c) => `${rowValues(d, r, vals[r]!)[k] ?? 'NULL'}::${c.type}`);
    if (out !== null) { sql = out; changed = true; }
  }
  if (!changed) return null;
  const next = s.router.plan(sql);
  return next.length === 1 ? next[0]! : null;
}

/**
 * `INSERT INTO reference_table … SELECT …` that leaves a volatile default to the shards or computes
 * with functions: the SELECT's rows, read once on the first shard (the reference data is alike on
 * every shard) as typed literals, as `INSERT … VALUES`; null when the shards would agree anyway or
 * the statement is not of that form.
 */
async function selectAsValues(s: ClientSession, stmt: RoutedStatement): Promise<string | null> {
  let ins: any;
  try { ins = pg.parseSync(stmt.sql).stmts?.[0]?.stmt?.InsertStmt; } catch { return null; }
  const sel = ins?.selectStmt?.SelectStmt;
  if (!ins || !sel || sel.valuesLists || ins.withClause || ins.relation?.relpersistence === 't') return null;
  let x = sel;
  while (x && x.op && x.op !== 'SETOP_NONE') x = x.larg;
  const tl: any[] = x?.targetList ?? [];
  if (!tl.length || JSON.stringify(tl).includes('"A_Star"')) return null;
  const n = tl.length;
  const rel = ins.relation;
  const table = rel.schemaname ? `${quoteIdent(rel.schemaname)}.${quoteIdent(rel.relname)}` : quoteIdent(rel.relname);
  const link = await s.servers.link(0);
  const cols = await columnsOf(s, link, table);
  const named: string[] | null = ins.cols ? ins.cols.map((c: any) => c.ResTarget.name) : null;
  const listed = named ?? cols.slice(0, n).map((c) => c.name);
  const volatileLeft = cols.some((c) => !listed.includes(c.name) && (c.identity !== '' || (c.expr !== null && !constantDefault(c.expr))));
  const j = JSON.stringify(sel);
  if (!volatileLeft && !j.includes('"FuncCall"') && !j.includes('"SQLValueFunction"')) return null;
  const parts = insertParts(stmt.sql);
  if (!parts) return null;
  const rows = await s.servers.queryRows(link, typedRowsSql(parts.select, n, MAX_ROWS + 1));
  if (rows.length > MAX_ROWS) {
    throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: INSERT ... SELECT of more than ${MAX_ROWS} rows into a reference table whose values pgring must give every shard alike is not supported`, { hint: 'Insert in smaller parts, or load the rows with COPY.' });
  }
  if (rows.length === 0) return null;   // no row on any shard
  return `${parts.head} VALUES ${rows.map((r) => r[0]!).join(', ')}${parts.tail ? ` ${parts.tail}` : ''}`;
}

/** Functions whose value is the same for every row of a statement on one server but differs between
 *  the shards' transactions (their start times). */
export const STABLE_TIME = new Set(['now', 'transaction_timestamp', 'statement_timestamp', 'current_timestamp', 'localtimestamp', 'current_date', 'current_time', 'localtime']);

/** A SET value made of constants, casts, operators and the time functions above: one value for
 *  every row on a server, so evaluating it once is exact. A volatile call (gen_random_uuid(),
 *  clock_timestamp(), random()) differs per row on one server too, and is left to the shards. */
function stableComputed(val: any): boolean {
  if (!computed(val)) return false;
  let ok = true;
  const walk = (x: any): void => {
    if (!ok || x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(walk); return; }
    if (x.FuncCall) {
      const name = (x.FuncCall.funcname ?? []).map((n: any) => n.String?.sval).pop();
      if (!STABLE_TIME.has(name)) { ok = false; return; }
    }
    for (const v of Object.values(x)) walk(v);
  };
  walk(val);
  return ok;
}

/** `UPDATE reference_table SET updated_at = now() …`: values of the time functions, the same for
 *  every row on one server but another on each shard (each shard's transaction started at its own
 *  time), are evaluated once on the first shard and sent as typed literals (simple protocol). */
async function withEvaluatedSet(s: ClientSession, stmt: RoutedStatement): Promise<RoutedStatement | null> {
  const todo = stableSetSpans(stmt.sql);
  if (!todo) return null;
  const next = s.router.plan(await evaluatedSpans(s, await s.servers.link(0), stmt.sql, todo));
  return next.length === 1 ? next[0]! : null;
}

/** The character spans of an UPDATE's SET values that are computed from constants and the time
 *  functions only (stableComputed), or null when it has none (or is not of that form). */
export function stableSetSpans(sql: string): [number, number][] | null {
  let upd: any;
  try { upd = pg.parseSync(sql).stmts?.[0]?.stmt?.UpdateStmt; } catch { return null; }
  const targets: any[] | undefined = upd?.targetList?.map((t: any) => t.ResTarget);
  if (!upd || !targets?.length || upd.withClause || upd.relation?.relpersistence === 't') return null;
  if (targets.some((t) => t.val?.MultiAssignRef || t.indirection)) return null;
  if (!targets.some((t) => stableComputed(t.val))) return null;
  // each SET item's value: after its first top-level '=', up to the next top-level ',' (or FROM / WHERE / RETURNING)
  const toks = tokenize(sql);
  let i = toks.findIndex((t) => t.depth === 0 && t.lower === 'set');
  if (i < 0) return null;
  const spans: [number, number][] = [];
  i++;
  for (;;) {
    let eq = -1, start = -1, end = -1;
    for (; i < toks.length; i++) {
      const t = toks[i]!;
      if (t.depth === 0 && (t.text === ',' || t.text === ';' || ['from', 'where', 'returning'].includes(t.lower))) break;
      if (eq < 0) { if (t.depth === 0 && t.text === '=') eq = i; continue; }
      if (start < 0) start = t.start;
      end = t.end;
    }
    if (eq < 0 || start < 0) return null;
    spans.push([start, end]);
    if (toks[i]?.text !== ',') break;
    i++;
  }
  if (spans.length !== targets.length) return null;
  return spans.filter((_, k) => stableComputed(targets[k]!.val));
}

/** A VALUES item the shards would each compute (a function call, an expression), not a constant,
 *  parameter or DEFAULT; items that read tables or use parameters are left alone. */
function computed(item: any): boolean {
  if (item.A_Const || item.SetToDefault || item.ParamRef) return false;
  if (item.TypeCast && (item.TypeCast.arg?.A_Const || item.TypeCast.arg?.ParamRef)) return false;
  const j = JSON.stringify(item);
  if (j.includes('"ParamRef"') || j.includes('"SubLink"') || j.includes('"ColumnRef"')) return false;
  // Only a call (now(), gen_random_uuid(), CURRENT_TIMESTAMP) can differ per shard. Expressions of
  // constants (`('a', 'b')`, `ARRAY[1, 2]`, `1 + 2`) stay in place: typed in their column's context,
  // as PostgreSQL types them (evaluated alone, a row became a record, and its error another one).
  return j.includes('"FuncCall"') || j.includes('"SQLValueFunction"');
}

/** The INSERT with its computed VALUES items replaced by their values (evaluated once on `link`,
 *  as literals of their type); the same text when it has none. */
async function withEvaluatedItems(s: ClientSession, link: Parameters<ClientSession['servers']['queryRows']>[0], sql: string): Promise<string> {
  const todo = computedItemSpans(sql);
  return todo ? evaluatedSpans(s, link, sql, todo) : sql;
}

/** The character spans of an INSERT … VALUES's computed items (function calls, expressions without
 *  parameters or table reads), or null when it has none. */
export function computedItemSpans(sql: string): [number, number][] | null {
  const parsed = parseReferenceInsert(sql);
  if (!parsed) return null;
  const rows: any[][] = parsed.ins.selectStmt.SelectStmt.valuesLists.map((l: any) => l.List.items);
  if (!rows.some((items) => items.some(computed))) return null;
  // the items' text: the depth-0 parenthesized rows after VALUES, split at their top-level commas
  const toks = tokenize(sql);
  let i = toks.findIndex((t) => t.depth === 0 && t.lower === 'values');
  if (i < 0) return null;
  const spans: [number, number][][] = [];
  i++;
  while (i < toks.length && toks[i]!.text === '(' && toks[i]!.depth === 0) {
    const row: [number, number][] = [];
    let start = -1, end = -1;
    let j = i + 1;
    for (; j < toks.length && !(toks[j]!.text === ')' && toks[j]!.depth === 0); j++) {
      const t = toks[j]!;
      if (t.text === ',' && t.depth === 1) { row.push([start, end]); start = -1; continue; }
      if (start < 0) start = t.start;
      end = t.end;
    }
    if (j >= toks.length) return null;
    row.push([start, end]);
    spans.push(row);
    i = j + 1;
    if (toks[i]?.text === ',' && toks[i]!.depth === 0) i++; else break;
  }
  if (spans.length !== rows.length || spans.some((r, k) => r.length !== rows[k]!.length)) return null;
  const todo: [number, number][] = [];
  rows.forEach((items, r) => items.forEach((it: any, k: number) => { if (computed(it)) todo.push(spans[r]![k]!); }));
  return todo;
}

/** `sql` with the expressions at `spans` (character offsets, in order) replaced by their values,
 *  evaluated once on `link` as typed literals. */
async function evaluatedSpans(s: ClientSession, link: Parameters<ClientSession['servers']['queryRows']>[0], sql: string, spans: [number, number][]): Promise<string> {
  const q = spans.map(([a, b], j) => typedValueSql(sql.slice(a, b), `x${j}`));
  const vals = (await s.servers.queryRows(link, `SELECT ${q.join(', ')}`))[0];
  if (!vals || vals.length !== spans.length) throw new PgError(SQLSTATE.InternalError, 'pgring: the values of a write to a reference table could not be evaluated');
  let out = sql;
  for (let j = spans.length - 1; j >= 0; j--) out = out.slice(0, spans[j]![0]) + vals[j]! + out.slice(spans[j]![1]);
  return out;
}

/** The catalog query of a table's columns ($1: the table's name as SQL writes it). */
export const COLUMNS_SQL = `SELECT a.attname, a.attidentity, pg_catalog.pg_get_expr(d.adbin, d.adrelid), pg_catalog.format_type(a.atttypid, a.atttypmod)
    FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum`;

/** Columns read before (within TTL_MS), or undefined. */
export function knownColumns(s: ClientSession, table: string): Col[] | undefined {
  const hit = known.get(`${s.database}\u0000${table}`);
  return hit && Date.now() - hit.at < TTL_MS ? hit.cols : undefined;
}

export function rememberColumns(s: ClientSession, table: string, rows: (string | null)[][]): Col[] {
  const cols = rows.map((r) => ({ name: r[0]!, identity: r[1] ?? '', expr: r[2], type: r[3]! }));
  if (known.size > 1000) known.clear();
  known.set(`${s.database}\u0000${table}`, { at: Date.now(), cols });
  return cols;
}

export async function columnsOf(s: ClientSession, link: Parameters<ClientSession['servers']['queryRows']>[0], table: string): Promise<Col[]> {
  const hit = knownColumns(s, table);
  if (hit) return hit;
  const rows = await s.servers.queryRows(link, COLUMNS_SQL.replace('$1', quoteLiteral(table))).catch(() => [] as (string | null)[][]);
  return rememberColumns(s, table, rows);
}

/** Offset of the ')' closing a VALUES row (after its last item), or -1. */
function rowClose(b: Buffer, items: any[]): number {
  const last = items[items.length - 1];
  const loc = (Object.values(last)[0] as { location?: number }).location;
  return typeof loc === 'number' ? scanTo(b, loc, 0x29) : -1;
}
/** Offset of the ')' closing the column list, from its last column's location. */
function listClose(b: Buffer, loc: number): number { return scanTo(b, loc, 0x29); }

/** The first depth-0 `byte` at or after `from`, skipping quoted text and nested parentheses. */
export function scanTo(b: Buffer, from: number, byte: number): number {
  let depth = 0;
  for (let i = from; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x27 || c === 0x22) { const q = c; i++; while (i < b.length && !(b[i] === q && b[i + 1] !== q)) { if (b[i] === q) i++; i++; } continue; }
    if (c === 0x28) { depth++; continue; }
    if (c === byte && depth === 0) return i;
    if (c === 0x29) depth--;
  }
  return -1;
}

/** Offset of the VALUES (or OVERRIDING) keyword after the target relation. */
function valuesStart(b: Buffer, from: number): number {
  const m = /\b(VALUES|OVERRIDING)\b/i.exec(b.toString('latin1', from));
  return m ? from + m.index : -1;
}

export function applyEdits(b: Buffer, edits: { at: number; del: number; text: string }[]): string {
  edits.sort((x, y) => y.at - x.at);
  let out = b;
  for (const e of edits) out = Buffer.concat([out.subarray(0, e.at), Buffer.from(e.text, 'utf8'), out.subarray(e.at + e.del)]);
  return out.toString('utf8');
}

// ------------------------------------------------------------------ extended protocol

const parsedOf = new WeakMap<ClientStatement, { ins: any; table: string } | null>();
/** The parse of a prepared INSERT (once per statement). */
export function parsedStatement(cs: ClientStatement): { ins: any; table: string } | null {
  let p = parsedOf.get(cs);
  if (p === undefined) parsedOf.set(cs, p = parseReferenceInsert(cs.sql));
  return p;
}

const withValuesOf = new WeakMap<ClientStatement, Map<string, ClientStatement>>();
/** The client's prepared INSERT with the values as parameters after its own (`params`: how many
 *  it binds), each cast to its column's type; kept per statement and shape of the defaults. */
export function statementWithValues(s: ClientSession, cs: ClientStatement, d: RefDefaults, params: number): ClientStatement {
  let m = withValuesOf.get(cs);
  if (!m) withValuesOf.set(cs, m = new Map());
  const sig = `${params}|${d.added.map((c) => c.name).join(',')}|${d.defaults.map((x) => `${x.row}.${x.item}`).join(',')}`;
  let st = m.get(sig);
  if (st) return st;
  const first = Math.max(params, lex(cs.sql)[0]?.maxParam ?? 0, cs.types.length) + 1;
  const offsets: number[] = [];
  let n = 0;
  for (let r = 0; r < d.rows; r++) { offsets.push(n); n += d.added.length + d.defaults.filter((x) => x.row === r).length; }
  const sql = rewriteInsert(cs.sql, d, (r, k, c) => `$${first + offsets[r]! + k}::${c.type}`);
  if (sql === null) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: this INSERT into a reference table (its defaults could not be given to every shard alike) is not supported');
  const types = cs.types.slice();
  while (types.length < first - 1) types.push(0);
  st = makeStatement('pgring-refdef', sql, types, s.router.planPrepared(sql), parseMsg('', sql, types, cs.codec), cs.scope, cs.codec);
  m.set(sig, st);
  return st;
}

/** The named statement that evaluates the values ($1: the number of rows). */
const evalNames = new Map<string, string>();
export function evaluationStatement(d: RefDefaults): { name: string; sql: string } {
  const sql = evaluationSql(d, (e) => `(${e})::pg_catalog.text`, '$1::pg_catalog.int4');
  let name = evalNames.get(sql);
  if (name === undefined) {
    if (evalNames.size > 1000) evalNames.clear();
    evalNames.set(sql, name = `pgring_refdef_${evalNames.size + 1}`);
  }
  return { name, sql };
}

/**
 * The extended protocol (what pgx, JDBC, asyncpg, Npgsql send): a prepared INSERT … VALUES into a
 * reference table with computed items (`VALUES (gen_random_uuid(), $1, now())`), or an UPDATE whose
 * SET uses the time functions (`SET updated_at = now() WHERE id = $1`). Each shard computed them
 * itself: another id per shard, another time. At each Bind the first shard evaluates them once (in
 * the client's unit) and pgring's statement gets them as parameters after the client's, cast to the
 * type each evaluated to.
 */
export interface ComputedValues { spans: [number, number][]; exprs: string[] }
const computedOf = new WeakMap<ClientStatement, ComputedValues | null>();
export function computedValues(cs: ClientStatement): ComputedValues | null {
  let c = computedOf.get(cs);
  if (c === undefined) {
    const spans = cs.stmt.plan.command === 'update' ? stableSetSpans(cs.sql) : computedItemSpans(cs.sql);
    c = spans?.length ? { spans, exprs: spans.map(([a, b]) => cs.sql.slice(a, b)) } : null;
    computedOf.set(cs, c);
  }
  return c;
}

/** The named statement evaluating them once: each value as text, then its type (`OFFSET 0` keeps
 *  the subquery, so a volatile call is evaluated once for both). */
const computedNames = new Map<string, string>();
export function computedEvaluation(c: ComputedValues): { name: string; sql: string } {
  const out = c.exprs.map((_, j) => `v${j}::pg_catalog.text, ${typeNameSql(`v${j}`)}`).join(', ');
  const sql = `SELECT ${out} FROM (SELECT ${c.exprs.map((e, j) => `${e} AS v${j}`).join(', ')} OFFSET 0) pgring_values`;
  let name = computedNames.get(sql);
  if (name === undefined) {
    if (computedNames.size > 1000) computedNames.clear();
    computedNames.set(sql, name = `pgring_refval_${computedNames.size + 1}`);
  }
  return { name, sql };
}

const withComputedOf = new WeakMap<ClientStatement, Map<string, ClientStatement>>();
/** The client's statement with the computed values as parameters after its own `params`. */
export function statementWithComputed(s: ClientSession, cs: ClientStatement, c: ComputedValues, types: string[], params: number): ClientStatement {
  let m = withComputedOf.get(cs);
  if (!m) withComputedOf.set(cs, m = new Map());
  const sig = `${params}|${types.join(',')}`;
  let st = m.get(sig);
  if (st) return st;
  const first = Math.max(params, lex(cs.sql)[0]?.maxParam ?? 0, cs.types.length) + 1;
  let sql = cs.sql;
  for (let j = c.spans.length - 1; j >= 0; j--) sql = sql.slice(0, c.spans[j]![0]) + `$${first + j}::${types[j]}` + sql.slice(c.spans[j]![1]);
  const ptypes = cs.types.slice();
  while (ptypes.length < first - 1) ptypes.push(0);
  st = makeStatement('pgring-refval', sql, ptypes, s.router.planPrepared(sql), parseMsg('', sql, ptypes, cs.codec), cs.scope, cs.codec);
  m.set(sig, st);
  return st;
}
