// Reads of sharded tables run first (pure; no I/O): the last resort for a SELECT that neither the
// merge nor the split of expressions over aggregates can answer across shards — a window over all
// rows, a join of sharded tables not on their keys, INTERSECT / EXCEPT, GROUPING SETS, a correlated
// subquery not joined on the key. As Citus's recursive planning does with subqueries it cannot push
// down, pgring reads what the statement needs first and evaluates the statement once, on one
// shard, over those rows: each derived table in FROM runs first on its own (merged, as any SELECT
// over several shards), and each remaining sharded table is read as `SELECT * FROM t WHERE <its
// own conditions>`; its rows are written in its place as typed VALUES (subqueries.ts valuesText),
// and the statement is planned again. frontend/subqueries.ts runs them, one per round.
//
// A condition is copied into a table's read only when it is a conjunct of the WHERE of the query
// level the table is in, reads only that table's columns and calls no function, and the table is
// not on the nullable side of an outer join: the condition stays in the statement too, so removing
// rows it would reject anyway changes nothing. Its text is the statement's own, checked by parsing
// it back (the same tree as the parser's).
import { tokenize, type Token } from './lexer';
import { byteToCharMap, canon, strs, type N } from './plan-ast';

const pg: { parseSync(sql: string): N } = require('libpg-query');

export interface TableRead {
  /** [start, end) of what is replaced: the table's name (its alias, if any, stays after it) or a derived table's parentheses */
  start: number;
  end: number;
  /** written after the rows: ` AS "name"` for a table that had no alias ('' otherwise) */
  as: string;
  /** the query whose rows replace it */
  text: string;
  /** a table read (false: a derived table run first) */
  table: boolean;
}

/** The sharded table `rv` names (with its configured column list, when the definition has one), or null. */
export type TableLookup = (rv: N) => { columns: string[] | null } | null;

/** Node types a copied condition may contain (no function calls, subqueries or parameters). */
const PLAIN = new Set(['A_Expr', 'BoolExpr', 'NullTest', 'BooleanTest', 'A_Const', 'TypeCast', 'TypeName', 'String',
  'Integer', 'Float', 'Boolean', 'BitString', 'ColumnRef', 'A_ArrayExpr', 'List', 'CollateClause', 'CoalesceExpr']);
/** Words that end a WHERE clause at its own depth. */
const AFTER_WHERE = new Set(['group', 'having', 'window', 'order', 'limit', 'offset', 'fetch', 'for', 'union', 'intersect', 'except', 'returning']);
/** … and an ON clause: the next join, or the WHERE. */
const AFTER_ON = new Set(['join', 'inner', 'left', 'right', 'full', 'cross', 'natural', 'where']);

const quoteIdent = (s: string): string => `"${s.replace(/"/g, '""')}"`;

function walk(x: N, f: (o: N) => boolean | void): void {
  if (x === null || typeof x !== 'object') return;
  if (Array.isArray(x)) { for (const y of x) walk(y, f); return; }
  if (f(x) === false) return;
  for (const v of Object.values(x)) walk(v, f);
}

/**
 * What to read first for `sql` (one SELECT), in the order to try them: its derived tables and
 * set-operation arms that read sharded tables and can run on their own, then its sharded tables; [] when nothing can be (a locking
 * clause, ONLY or TABLESAMPLE on a sharded table, a CTE named like one, three-part column names).
 */
export function tableReads(sql: string, lookup: TableLookup): TableRead[] {
  let tree: N;
  try { tree = pg.parseSync(sql); } catch { return []; }
  const top = tree.stmts?.length === 1 ? tree.stmts[0].stmt?.SelectStmt : null;
  if (!top) return [];
  const ctes = new Set<string>();
  let refuse = false;
  // `"public"."users"."id"` (Prisma names every column so) would not find a table written in as
  // `(…) AS "users"`: derived tables may still run first, tables are not read
  let threePart = false;
  walk(top, (x) => {
    if (x.CommonTableExpr) ctes.add(x.CommonTableExpr.ctename);
    if (x.lockingClause?.length || x.intoClause || x.InsertStmt || x.UpdateStmt || x.DeleteStmt || x.MergeStmt) refuse = true;
    if (x.ColumnRef && (x.ColumnRef.fields ?? []).length > 2) threePart = true;
    if (x.RangeTableSample?.relation?.RangeVar && lookup(x.RangeTableSample.relation.RangeVar)) refuse = true;
  });
  if (refuse) return [];

  // every sharded table in a FROM list, with its query level and whether an outer join may null-extend it
  const found: { rv: N; sel: N; nullable: boolean; single: boolean; on: N[] }[] = [];
  const subselects: N[] = [];
  const arms: N[] = [];
  // `on`: the ON conditions of the join the table is a direct side of, when a row of the table that
  // fails them can appear in no result row (an inner join, or the table is the side an outer join
  // null-extends)
  const fromItem = (x: N, sel: N, nullable: boolean, single: boolean, on: N[] = []): void => {
    if (x?.RangeVar) {
      const rv = x.RangeVar;
      if (!rv.schemaname && ctes.has(rv.relname)) { if (lookup(rv)) refuse = true; return; }
      if (!lookup(rv)) return;
      if (rv.inh !== true) refuse = true;   // ONLY t
      found.push({ rv, sel, nullable, single, on });
    } else if (x?.JoinExpr) {
      const j = x.JoinExpr;
      const quals: N[] = j.quals ? [j.quals] : [];
      fromItem(j.larg, sel, nullable || j.jointype === 'JOIN_RIGHT' || j.jointype === 'JOIN_FULL', false, j.jointype === 'JOIN_INNER' || j.jointype === 'JOIN_RIGHT' ? quals : []);
      fromItem(j.rarg, sel, nullable || j.jointype === 'JOIN_LEFT' || j.jointype === 'JOIN_FULL', false, j.jointype === 'JOIN_INNER' || j.jointype === 'JOIN_LEFT' ? quals : []);
    } else if (x?.RangeSubselect && !x.RangeSubselect.lateral && x.RangeSubselect.subquery?.SelectStmt) {
      subselects.push(x.RangeSubselect.subquery.SelectStmt);
    }
  };
  // each query level (set-operation arms are SelectStmts of their own, unwrapped)
  const level = (sel: N): void => {
    if (sel.op && sel.op !== 'SETOP_NONE') { arms.push(sel.larg, sel.rarg); level(sel.larg); level(sel.rarg); return; }
    const from: N[] = sel.fromClause ?? [];
    for (const item of from) fromItem(item, sel, false, from.length === 1 && !!item.RangeVar);
  };
  walk(top, (x) => {
    if (x === top) level(top);
    else if (x.SelectStmt) level(x.SelectStmt);
  });
  if (refuse) return [];

  const toks = tokenize(sql);
  const b2c = byteToCharMap(sql);
  const loc = (l: number): number => (b2c ? b2c[l] ?? -1 : l);
  const out: TableRead[] = [];

  // derived tables and set-operation arms that read sharded tables, run first as they are: their
  // text found by parsing each candidate back (parenthesized ones, and the arms between UNION /
  // INTERSECT / EXCEPT at the top level)
  const wanted = new Set<string>();
  for (const sub of [...subselects, ...arms]) {
    let reads = false;
    walk(sub, (x) => { if (x.RangeVar && lookup(x.RangeVar)) reads = true; });
    if (reads && !(sub.op && sub.op !== 'SETOP_NONE')) wanted.add(canon(sub));
  }
  const runs: TableRead[] = [];
  const candidate = (a: number, b: number, paren: boolean): void => {
    const text = sql.slice(paren ? toks[a]!.end : toks[a]!.start, paren ? toks[b]!.start : toks[b]!.end);
    let sub: N;
    try { sub = pg.parseSync(text).stmts?.[0]?.stmt?.SelectStmt; } catch { return; }
    if (sub && wanted.has(canon(sub))) runs.push({ start: toks[a]!.start, end: toks[b]!.end, as: '', text, table: false });
  };
  if (wanted.size) {
    for (let i = 0; i < toks.length; i++) {
      if (toks[i]!.text !== '(' || !['select', 'with', 'values'].includes(toks[i + 1]?.lower ?? '')) continue;
      const d = toks[i]!.depth;
      let j = i + 1;
      while (j < toks.length && !(toks[j]!.text === ')' && toks[j]!.depth === d)) j++;
      if (j < toks.length) candidate(i, j, true);
    }
    if (arms.length) {
      let a = 0;
      for (let i = 0; i <= toks.length; i++) {
        const t = toks[i];
        if (t && !(t.depth === 0 && ['union', 'intersect', 'except'].includes(t.lower)) && t.text !== ';') continue;
        if (a < i && toks[a]!.text !== '(') candidate(a, i - 1, false);
        a = i + 1;
        if (['all', 'distinct'].includes(toks[a]?.lower ?? '')) a++;
      }
    }
  }

  const conds = new Map<N, (string | null)[] | null>();
  for (const f of threePart ? [] : found) {
    const ti = toks.findIndex((t) => t.start === loc(f.rv.location));
    if (ti < 0) return [];
    let tj = ti;
    while (toks[tj + 1]?.text === '.' && (toks[tj + 2]?.type === 'word' || toks[tj + 2]?.type === 'qident')) tj += 2;
    const name = sql.slice(toks[ti]!.start, toks[tj]!.end);
    const alias = f.rv.alias;
    const qualifier: string = alias?.aliasname ?? f.rv.relname;
    // with a column list (`t AS a(x, y)`) the conditions name the new columns: none copied
    const usable = !f.nullable && !alias?.colnames?.length;
    const where: string[] = [];
    const copy = (clause: N, keyword: string, always: boolean): void => {
      if (!conds.has(clause)) conds.set(clause, conjunctTexts(sql, toks, loc, clause, keyword));
      const texts = conds.get(clause);
      const list: N[] = clause.BoolExpr?.boolop === 'AND_EXPR' ? clause.BoolExpr.args : [clause];
      if (texts && (always || usable)) list.forEach((c, k) => { if (ownCondition(c, qualifier, f.single, lookup(f.rv)!.columns)) where.push(texts[k]!); });
    };
    if (!alias?.colnames?.length) {
      if (f.sel.whereClause) copy(f.sel.whereClause, 'where', false);
      for (const q of f.on) copy(q, 'on', true);
    }
    const text = `SELECT * FROM ${name}${alias && !alias.colnames?.length ? ` AS ${quoteIdent(alias.aliasname)}` : ''}${where.length ? ` WHERE ${where.join(' AND ')}` : ''}`;
    out.push({ start: toks[ti]!.start, end: toks[tj]!.end, as: alias ? '' : ` AS ${quoteIdent(f.rv.relname)}`, text, table: true });
  }
  // derived tables first, outermost first; then tables, the last in the text first (a subquery's before the outer query's)
  return [...runs.sort((a, b) => a.start - b.start), ...out.sort((a, b) => b.start - a.start)];
}

/** Whether condition `c` reads only columns of the table known as `qualifier` (unqualified ones
 *  only when it is the level's one table and they are its configured columns) and calls nothing. */
function ownCondition(c: N, qualifier: string, single: boolean, columns: string[] | null): boolean {
  let ok = true;
  walk(c, (x) => {
    if (!ok) return false;
    for (const k of Object.keys(x)) {
      if (!/^[A-Z]/.test(k)) continue;
      if (!PLAIN.has(k)) { ok = false; return false; }
      if (k === 'ColumnRef') {
        const f = strs(x.ColumnRef.fields);
        if (f.includes('*') || !(f.length === 2 ? f[0] === qualifier : f.length === 1 && single && !!columns?.includes(f[0]!))) ok = false;
        return false;
      }
    }
    return undefined;
  });
  return ok;
}

/** The text of each conjunct of a WHERE (or a join's ON) clause (split at its top-level ANDs), each
 *  checked by parsing it back; null when the split does not give exactly the parser's conjuncts. */
function conjunctTexts(sql: string, toks: Token[], loc: (l: number) => number, where: N, keyword: string): string[] | null {
  let min = Infinity;
  walk(where, (x) => { if (typeof x.location === 'number' && x.location >= 0 && x.location < min) min = x.location; });
  if (!Number.isFinite(min)) return null;
  const first = toks.findIndex((t) => t.start >= loc(min));
  let w = first - 1;
  while (w >= 0 && toks[w]!.lower !== keyword) w--;
  if (w < 0) return null;
  const d = toks[w]!.depth;
  const list: N[] = where.BoolExpr?.boolop === 'AND_EXPR' ? where.BoolExpr.args : [where];
  const chunks: [number, number][] = [];
  let start = w + 1, between = false, i = w + 1;
  for (; i < toks.length; i++) {
    const t = toks[i]!;
    if (t.depth < d || (t.depth === d && (t.text === ';' || t.text === ',' || AFTER_WHERE.has(t.lower) || (keyword === 'on' && AFTER_ON.has(t.lower))))) break;
    if (t.depth !== d || list.length === 1) continue;   // one conjunct: the whole clause
    if (t.lower === 'between') between = true;
    else if (t.lower === 'and') {
      if (between) between = false;
      else { chunks.push([start, i]); start = i + 1; }
    }
  }
  chunks.push([start, i]);
  if (chunks.length !== list.length) return null;
  const texts: string[] = [];
  for (let k = 0; k < chunks.length; k++) {
    const [a, b] = chunks[k]!;
    if (a >= b) return null;
    const text = sql.slice(toks[a]!.start, toks[b - 1]!.end);
    let back: N;
    try { back = pg.parseSync(`SELECT 1 WHERE ${text}`).stmts?.[0]?.stmt?.SelectStmt?.whereClause; } catch { return null; }
    if (!back || canon(back) !== canon(list[k])) return null;
    texts.push(`(${text})`);
  }
  return texts;
}
