// Uncorrelated subqueries over sharded tables that the shards cannot answer in place (pure; no I/O).
//
// `SELECT * FROM orders WHERE amount > (SELECT avg(amount) FROM orders)` or `WHERE product_id IN
// (SELECT id FROM products WHERE …)` (products sharded by another key): each shard would compute
// the subquery over its own rows only. As Citus's recursive planning does, pgring runs such a
// subquery first, on its own, as any SELECT over several shards (merged), and writes its rows into
// the statement in its place as `(VALUES (…), …)` of typed literals; the statement is then planned
// again (it may now route by key). This module finds the subqueries and builds the replacement
// text; frontend/subqueries.ts runs them.
import { tokenize, type Token } from './lexer';
import { byteToCharMap, canon, strs, type N } from './plan-ast';

const pg: { parseSync(sql: string): N } = require('libpg-query');

export interface SubqueryAt {
  /** [start, end) of the parenthesized subquery in the statement text, parentheses included */
  start: number;
  end: number;
  /** the subquery's text (inside the parentheses) */
  text: string;
  /** every column it reads is qualified by one of its own tables or aliases (provably uncorrelated) */
  selfContained: boolean;
}

/** Whether the statement has a subquery expression (EXISTS, IN, ANY, ALL, ARRAY or a scalar one). */
export function hasSublink(n: N): boolean {
  let found = false;
  const visit = (x: N): void => {
    if (found || x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(visit); return; }
    if (x.SubLink) { found = true; return; }
    for (const v of Object.values(x)) visit(v);
  };
  visit(n);
  return found;
}

/** The outermost subquery expressions of `sql` (one statement), in text order; [] when it cannot be read. */
export function subqueriesOf(sql: string): SubqueryAt[] {
  let tree: N;
  try { tree = pg.parseSync(sql); } catch { return []; }
  if ((tree.stmts ?? []).length !== 1) return [];
  const links: N[] = [];
  const visit = (x: N): void => {
    if (x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(visit); return; }
    if (x.SubLink) { links.push(x.SubLink); return; }
    for (const v of Object.values(x)) visit(v);
  };
  visit(tree.stmts[0].stmt);
  const toks = tokenize(sql);
  const b2c = byteToCharMap(sql);
  const out: SubqueryAt[] = [];
  for (const l of links) {
    const at = parenOf(toks, b2c ? b2c[l.location] ?? -1 : l.location);
    if (!at) continue;
    const text = sql.slice(toks[at[0]]!.end, toks[at[1]]!.start);
    // the parentheses found must hold exactly this subquery
    let sub: N;
    try { sub = pg.parseSync(text).stmts?.[0]?.stmt; } catch { continue; }
    if (!sub?.SelectStmt || canon(sub.SelectStmt) !== canon(l.subselect?.SelectStmt)) continue;
    out.push({ start: toks[at[0]]!.start, end: toks[at[1]]!.end, text, selfContained: selfContained(sub.SelectStmt) });
  }
  return out.sort((a, b) => a.start - b.start);
}

/** The rows of a subquery as its replacement: a query of `(VALUES (…), …)` of literals cast to the
 *  columns' types (`typeNames`: format_type of each), under the subquery's column `names` (a scalar
 *  subquery in a select list is named after its column), or of no rows of those types. */
export function valuesText(typeNames: string[], names: string[], rows: (string | null)[][]): string {
  const lit = typedLiteral;
  const as = (i: number): string => `"${names[i]!.replace(/"/g, '""')}"`;
  if (rows.length === 0) return `(SELECT ${typeNames.map((t, i) => `NULL::${t} AS ${as(i)}`).join(', ')} WHERE false)`;
  const values = rows.map((r) => `(${r.map((v, i) => lit(v, typeNames[i]!)).join(', ')})`).join(', ');
  const cols = typeNames.map((_, i) => `c${i + 1}`);
  return `(SELECT ${cols.map((c, i) => `pgring_v.${c} AS ${as(i)}`).join(', ')} FROM (VALUES ${values}) AS pgring_v(${cols.join(', ')}))`;
}

/** A value (text format, null for NULL) as a literal of type `t`. */
export function typedLiteral(v: string | null, t: string): string {
  return v === null ? `NULL::${t}` : `${quote(v)}::${t}`;
}

function quote(s: string): string {
  // E'' for backslashes, so standard_conforming_strings does not matter
  return s.includes('\\') ? `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'` : `'${s.replace(/'/g, "''")}'`;
}

/** The token indexes of the parentheses around the subquery that starts at or after `pos`. */
function parenOf(toks: Token[], pos: number): [number, number] | null {
  let i = toks.findIndex((t) => t.start >= pos);
  if (i < 0) return null;
  for (; i < toks.length; i++) {
    const t = toks[i]!;
    if (t.text !== '(') continue;
    const next = toks[i + 1]?.lower;
    if (next !== 'select' && next !== 'with' && next !== 'values' && next !== '(') continue;
    const d = t.depth;
    let j = i + 1;
    while (j < toks.length && !(toks[j]!.text === ')' && toks[j]!.depth === d)) j++;
    return j < toks.length ? [i, j] : null;
  }
  return null;
}

/** Every column reference (nested subqueries included) is qualified by a table or alias of the
 *  subquery's own FROM lists: it cannot refer to the outer statement. */
function selfContained(s: N): boolean {
  const names = new Set<string>();
  const scopes = (x: N): void => {
    if (x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(scopes); return; }
    if (x.RangeVar) { names.add(x.RangeVar.relname); if (x.RangeVar.alias?.aliasname) names.add(x.RangeVar.alias.aliasname); }
    if (x.RangeSubselect?.alias?.aliasname) names.add(x.RangeSubselect.alias.aliasname);
    if (x.RangeFunction?.alias?.aliasname) names.add(x.RangeFunction.alias.aliasname);
    if (x.CommonTableExpr?.ctename) names.add(x.CommonTableExpr.ctename);
    for (const v of Object.values(x)) scopes(v);
  };
  scopes(s);
  let ok = true;
  const refs = (x: N): void => {
    if (!ok || x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(refs); return; }
    if (x.ColumnRef) {
      const f = strs(x.ColumnRef.fields);
      if (f.length < 2 || !names.has(f[f.length - 2]!)) ok = false;
      return;
    }
    for (const v of Object.values(x)) refs(v);
  };
  refs(s);
  return ok;
}

/**
 * `WITH x AS (SELECT … FROM sharded …) SELECT … FROM x …` with each such common table expression
 * written in place of its one reference as a derived table, `(SELECT …) AS x`, which the planner
 * answers across shards when its rows come from one shard each (PostgreSQL itself inlines a
 * non-recursive CTE referenced once, so the results are the same). Only CTEs that are plain
 * SELECTs, referenced exactly once, not MATERIALIZED and without a column list; null when none is.
 */
export function inlineCtes(sql: string): string | null {
  let tree: N;
  try { tree = pg.parseSync(sql); } catch { return null; }
  const s = tree.stmts?.length === 1 ? tree.stmts[0].stmt?.SelectStmt : null;
  const w = s?.withClause;
  if (!w || w.recursive) return null;
  const toks = tokenize(sql);
  const b2c = byteToCharMap(sql);
  const loc = (l: number): number => (b2c ? b2c[l] ?? -1 : l);
  const ctes: N[] = (w.ctes ?? []).map((c: N) => c.CommonTableExpr);
  // every reference to a name of the WITH list (a nested WITH of the same name makes it unclear: none inlined)
  const refs = new Map<string, N[]>();
  let shadowed = false;
  const visit = (x: N, top: boolean): void => {
    if (x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach((y) => visit(y, top)); return; }
    if (!top && x.withClause) for (const c of x.withClause.ctes ?? []) if (ctes.some((t) => t.ctename === c.CommonTableExpr?.ctename)) shadowed = true;
    if (x.RangeVar && !x.RangeVar.schemaname && !x.RangeVar.catalogname) {
      const list = refs.get(x.RangeVar.relname);
      if (list) list.push(x.RangeVar); else refs.set(x.RangeVar.relname, [x.RangeVar]);
    }
    for (const [k, v] of Object.entries(x)) if (k !== 'withClause' || !top) visit(v, false);
  };
  visit(s, true);
  for (const c of ctes) visit(c.ctequery, false);
  if (shadowed) return null;
  const list = withList(toks);
  if (!list || list.entries.length !== ctes.length) return null;
  const { entries, selectTok } = list;
  const edits: { start: number; end: number; text: string }[] = [];
  const inlined = new Set<number>();
  ctes.forEach((c, k) => {
    const uses = refs.get(c.ctename) ?? [];
    if (uses.length !== 1 || c.aliascolnames?.length || c.ctematerialized === 'CTEMaterializeAlways' || !c.ctequery?.SelectStmt) return;
    // another CTE's body may not use it (it would move out of reach)
    if (ctes.some((o, j) => j !== k && JSON.stringify(o.ctequery).includes(`"relname":"${c.ctename}"`))) return;
    const r = uses[0]!;
    const ti = toks.findIndex((t) => t.start === loc(r.location));
    if (ti < 0 || ti <= selectTok) return;
    const name = toks[ti]!;
    edits.push({ start: name.start, end: name.end, text: `(${sql.slice(entries[k]!.open, entries[k]!.close)})${r.alias ? '' : ` AS ${name.text}`}` });
    inlined.add(k);
  });
  if (!inlined.size) return null;
  const kept = entries.filter((_, k) => !inlined.has(k));
  const head = kept.length ? `WITH ${kept.map((e) => sql.slice(toks[e.start]!.start, toks[e.end - 1]!.end)).join(', ')} ` : '';
  let out = '', pos = toks[selectTok]!.start;
  for (const e of edits.sort((a, b) => a.start - b.start)) { out += sql.slice(pos, e.start) + e.text; pos = e.end; }
  return head + out + sql.slice(pos);
}

/** The entries of a statement's top-level WITH list: token range of each entry and the character
 *  range inside its body's parentheses; null when the statement does not start with WITH. */
function withList(toks: Token[]): { entries: { start: number; end: number; open: number; close: number }[]; selectTok: number } | null {
  const withTok = toks.findIndex((t) => t.depth === 0 && t.lower === 'with');
  const selectTok = toks.findIndex((t, i) => i > withTok && t.depth === 0 && t.lower === 'select');
  if (withTok !== 0 || selectTok < 0) return null;
  // name [( columns )] AS [[NOT] MATERIALIZED] ( body ), separated by commas at depth 0
  const entries: { start: number; end: number; open: number; close: number }[] = [];
  let start = withTok + 1;
  if (toks[start]?.lower === 'recursive') return null;
  for (let i = start; i <= selectTok; i++) {
    const t = toks[i]!;
    if (i !== selectTok && !(t.depth === 0 && t.text === ',')) continue;
    const open = toks.findIndex((x, j) => j >= start && j < i && x.depth === 0 && x.text === '(' && ['as', 'materialized'].includes(toks[j - 1]!.lower));
    const close = toks.findIndex((x, j) => j > open && j < i && x.depth === 0 && x.text === ')');
    if (open < 0 || close < 0) return null;
    entries.push({ start, end: i, open: toks[open]!.end, close: toks[close]!.start });
    start = i + 1;
  }
  return { entries, selectTok };
}

/** The bodies of a statement's WITH list (non-recursive), each with its character range (inside
 *  its parentheses) and whether it reads another CTE of the list (then it cannot run on its own). */
export function cteBodies(sql: string): { start: number; end: number; text: string; usesOther: boolean }[] {
  let tree: N;
  try { tree = pg.parseSync(sql); } catch { return []; }
  const s = tree.stmts?.length === 1 ? tree.stmts[0].stmt?.SelectStmt : null;
  if (!s?.withClause || s.withClause.recursive) return [];
  const list = withList(tokenize(sql));
  const ctes: N[] = (s.withClause.ctes ?? []).map((c: N) => c.CommonTableExpr);
  if (!list || list.entries.length !== ctes.length) return [];
  const names = ctes.map((c) => c.ctename);
  return list.entries.map((e, k) => {
    const body = JSON.stringify(ctes[k]!.ctequery);
    return { start: e.open, end: e.close, text: sql.slice(e.open, e.close), usesOther: names.some((n) => body.includes(`"relname":"${n}"`)) };
  }).filter((_, k) => ctes[k]!.ctequery?.SelectStmt);
}
