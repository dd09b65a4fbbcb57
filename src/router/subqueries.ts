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
  const lit = (v: string | null, t: string): string => (v === null ? `NULL::${t}` : `${quote(v)}::${t}`);
  const as = (i: number): string => `"${names[i]!.replace(/"/g, '""')}"`;
  if (rows.length === 0) return `(SELECT ${typeNames.map((t, i) => `NULL::${t} AS ${as(i)}`).join(', ')} WHERE false)`;
  const values = rows.map((r) => `(${r.map((v, i) => lit(v, typeNames[i]!)).join(', ')})`).join(', ');
  const cols = typeNames.map((_, i) => `c${i + 1}`);
  return `(SELECT ${cols.map((c, i) => `pgring_v.${c} AS ${as(i)}`).join(', ')} FROM (VALUES ${values}) AS pgring_v(${cols.join(', ')}))`;
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
