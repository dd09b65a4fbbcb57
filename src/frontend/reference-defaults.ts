// INSERT into a reference table runs on every shard, and each shard evaluated the defaults of the
// columns the INSERT leaves out (or sets to DEFAULT) by itself: `id uuid DEFAULT gen_random_uuid()`
// gave every copy of the row another id, `DEFAULT now()` / `clock_timestamp()` another time, a
// sequence counted on its own on each shard. The copies of a reference table drifted apart without
// an error (a later UPDATE by the id read from one shard changed that shard's copy only).
// pgring now evaluates such defaults once, on the first shard in the client's transaction, as
// literals of the column's type, and sends every shard the same values (Citus evaluates them on the
// coordinator likewise). Constant defaults stay with the shards. Simple protocol, INSERT … VALUES.
import { PgError, SQLSTATE } from '../protocol/errors';
import type { RoutedStatement } from '../router/router';
import type { ClientSession } from './client';
import { quoteIdent, quoteLiteral } from './session-util';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const pg: { parseSync(sql: string): { stmts?: { stmt: any }[] } } = require('libpg-query');

interface Col { name: string; identity: string; expr: string | null; type: string }
/** Columns per database and table, read again after a while (DDL through other proxies) or at DDL here. */
const known = new Map<string, { at: number; cols: Col[] }>();
const TTL_MS = 5000;
export function forgetReferenceColumns(): void { if (known.size) known.clear(); }

/** A default the shards would all evaluate alike (a constant, possibly cast). */
function constantDefault(expr: string): boolean {
  return /^(NULL|true|false|-?\d+(\.\d+)?([eE][-+]?\d+)?|'(?:[^']|'')*')(::[\w ."[\]()]+)*$/i.test(expr.trim()) && !/\(\)/.test(expr);
}

/** Worth a look: an INSERT into a reference table over several shards, not routed explicitly. */
export function mayNeedDefaults(s: ClientSession, stmt: RoutedStatement): boolean {
  const p = stmt.plan;
  return p.command === 'insert' && p.target === 'reference' && p.write && s.txStatus !== 'E' && s.ctx.shards.shardCount > 1
    && s.routeShard === null && s.routeShardKey === null && !stmt.hint && !p.hint && p.parseError === undefined;
}

/**
 * The INSERT with the values of the defaults it leaves to the shards that the shards would not
 * agree on, planned; null when there are none (run the statement as it is).
 */
export async function withReferenceDefaults(s: ClientSession, stmt: RoutedStatement): Promise<RoutedStatement | null> {
  let ins: any;
  try { ins = pg.parseSync(stmt.sql).stmts?.[0]?.stmt?.InsertStmt; } catch { return null; }
  const rows: any[][] | undefined = ins?.selectStmt?.SelectStmt?.valuesLists?.map((l: any) => l.List.items);
  if (!ins || !rows?.length || ins.withClause || ins.selectStmt.SelectStmt.op !== 'SETOP_NONE') return null;
  const rel = ins.relation;
  if (rel.relpersistence === 't') return null;   // a temporary table lives on one shard
  const table = rel.schemaname ? `${quoteIdent(rel.schemaname)}.${quoteIdent(rel.relname)}` : quoteIdent(rel.relname);
  const link = await s.servers.link(0);
  const cols = await columnsOf(s, link, table);
  if (!cols.length) return null;
  const named: string[] | null = ins.cols ? ins.cols.map((c: any) => c.ResTarget.name) : null;
  if (named && ins.cols.some((c: any) => c.ResTarget.indirection)) return null;
  const width = rows[0]!.length;
  const listed = named ?? cols.slice(0, width).map((c) => c.name);
  const volatile = (c: Col): boolean => c.identity !== '' || (c.expr !== null && !constantDefault(c.expr));
  // columns left out, and DEFAULT items of listed ones, whose default the shards would not agree on
  const added = cols.filter((c) => !listed.includes(c.name) && volatile(c));
  const defaults: { row: number; item: number; col: Col }[] = [];
  rows.forEach((items, r) => items.forEach((it: any, i: number) => {
    const col = cols.find((c) => c.name === listed[i]);
    if (it.SetToDefault && col && volatile(col)) defaults.push({ row: r, item: i, col });
  }));
  if (added.length === 0 && defaults.length === 0) return null;
  // one statement on the first shard: the added columns' values per row, then each DEFAULT item's
  const expr = (c: Col): string => `pg_catalog.quote_nullable((${c.identity ? `pg_catalog.nextval(pg_catalog.pg_get_serial_sequence(${quoteLiteral(table)}, ${quoteLiteral(c.name)}))` : c.expr})::${c.type})`;
  const perRow = added.map(expr);
  const sql = `SELECT ${[...perRow, ...defaults.map((d) => `CASE WHEN g = ${d.row + 1} THEN ${expr(d.col)} END`), '1'].join(', ')} FROM pg_catalog.generate_series(1, ${rows.length}) g`;
  const vals = await s.servers.queryRows(link, sql);
  if (vals.length !== rows.length) throw new PgError(SQLSTATE.InternalError, 'pgring: the defaults of a reference table could not be evaluated');
  const lit = (v: string | null, c: Col): string => `${v ?? 'NULL'}::${c.type}`;
  // Text surgery by byte offsets (the parser's locations): DEFAULT items replaced, values and
  // columns appended, from the end backwards.
  const b = Buffer.from(stmt.sql, 'utf8');
  const edits: { at: number; del: number; text: string }[] = [];
  for (const d of defaults) {
    const loc = rows[d.row]![d.item].SetToDefault.location as number;
    const k = added.length + defaults.indexOf(d);
    edits.push({ at: loc, del: 'DEFAULT'.length, text: lit(vals[d.row]![k] ?? null, d.col) });
  }
  if (added.length) {
    for (let r = 0; r < rows.length; r++) {
      const close = rowClose(b, rows[r]!);
      if (close < 0) return null;
      edits.push({ at: close, del: 0, text: `, ${added.map((c, i) => lit(vals[r]![i] ?? null, c)).join(', ')}` });
    }
    const names = added.map((c) => quoteIdent(c.name)).join(', ');
    if (named) {
      const close = listClose(b, ins.cols[ins.cols.length - 1].ResTarget.location as number);
      if (close < 0) return null;
      edits.push({ at: close, del: 0, text: `, ${names}` });
    } else {
      const at = valuesStart(b, rel.location as number);
      if (at < 0) return null;
      edits.push({ at, del: 0, text: `(${[...listed.map(quoteIdent), names].join(', ')}) ` });
    }
  }
  // GENERATED ALWAYS AS IDENTITY takes a value only with OVERRIDING SYSTEM VALUE
  let out = applyEdits(b, edits);
  if ([...added, ...defaults.map((d) => d.col)].some((c) => c.identity === 'a') && ins.override !== 'OVERRIDING_SYSTEM_VALUE') {
    const vb = Buffer.from(out, 'utf8');
    const at = valuesStart(vb, rel.location as number);
    if (at < 0) return null;
    out = applyEdits(vb, [{ at, del: 0, text: 'OVERRIDING SYSTEM VALUE ' }]);
  }
  const next = s.router.plan(out);
  return next.length === 1 ? next[0]! : null;
}

async function columnsOf(s: ClientSession, link: Parameters<ClientSession['servers']['queryRows']>[0], table: string): Promise<Col[]> {
  const key = `${s.database}\u0000${table}`;
  const hit = known.get(key);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.cols;
  const rows = await s.servers.queryRows(link, `SELECT a.attname, a.attidentity, pg_catalog.pg_get_expr(d.adbin, d.adrelid), pg_catalog.format_type(a.atttypid, a.atttypmod)
    FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = pg_catalog.to_regclass(${quoteLiteral(table)}) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum`).catch(() => [] as (string | null)[][]);
  const cols = rows.map((r) => ({ name: r[0]!, identity: r[1] ?? '', expr: r[2], type: r[3]! }));
  if (known.size > 1000) known.clear();
  known.set(key, { at: Date.now(), cols });
  return cols;
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
function scanTo(b: Buffer, from: number, byte: number): number {
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

function applyEdits(b: Buffer, edits: { at: number; del: number; text: string }[]): string {
  edits.sort((x, y) => y.at - x.at);
  let out = b;
  for (const e of edits) out = Buffer.concat([out.subarray(0, e.at), Buffer.from(e.text, 'utf8'), out.subarray(e.at + e.del)]);
  return out.toString('utf8');
}
