// Expressions over aggregates across shards, evaluated by PostgreSQL itself (pure; no I/O).
//
// `SELECT region, round(avg(amount), 2), coalesce(sum(x), 0) * 100 / count(*) FROM orders
// GROUP BY region HAVING sum(x) > 10 ORDER BY 2 DESC LIMIT 5` cannot be merged row by row: the
// merger combines aggregates, not arbitrary expressions over them. As Citus does with its
// coordinator query, the statement is split in two:
//  - the inner query, `SELECT <group keys>, <each aggregate call> FROM … WHERE … GROUP BY 1, 2…`,
//    which the ordinary merge answers across shards (one row per group, exact aggregates);
//  - the outer query, which a server evaluates over those rows: the select list, HAVING (as
//    WHERE), DISTINCT, window functions over the groups, ORDER BY and LIMIT, with every aggregate
//    call and group key replaced by a column of the inner rows, which pgring binds as parameters.
// PostgreSQL's own functions, operators, casts and output formats give the values, so nothing of
// SQL's expression semantics is re-implemented here.
const pg: { parseSync(sql: string): N } = require('libpg-query');
import { tokenize, type Token } from './lexer';
import { aggOf, clauseItems, findTargetList, limitSection } from './merge-rewrite';
import { byteToCharMap, canon, funcName, MERGE_AGGS, OTHER_AGGS, strs, type N } from './plan-ast';

export interface Finalize {
  /** the query the shards answer through the merge: group keys, then aggregate calls */
  inner: string;
  /** the outer query up to the row source, and after it (the source is `(VALUES …)` of the inner rows) */
  outerHead: string;
  outerTail: string;
  /** columns of the inner rows (group keys + aggregates) */
  width: number;
}

type Unsupported = { unsupported: string };
type Edit = { start: number; end: number; text: string };

const SOURCE = 'pgring_m';
const col = (kind: 'g' | 'a', k: number): string => `${SOURCE}.pgring_${kind}${k + 1}`;

/** An aggregate call (not a window function): any of the merged or known aggregates, or WITHIN GROUP. */
function isAggregate(fc: N): boolean {
  if (fc.over) return false;
  const nm = funcName(fc);
  return !!fc.agg_within_group || !!fc.agg_star || (nm !== null && (MERGE_AGGS.has(nm) || OTHER_AGGS.has(nm)));
}

/** Whether the SELECT has an aggregate call or GROUP BY (what the split is for). */
export function groupsOrAggregates(s: N): boolean {
  if ((s.groupClause ?? []).length || s.havingClause) return true;
  let found = false;
  const visit = (x: N): void => {
    if (found || x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(visit); return; }
    if (x.SubLink) return;
    if (x.FuncCall && isAggregate(x.FuncCall)) { found = true; return; }
    for (const v of Object.values(x)) visit(v);
  };
  visit(s.targetList);
  visit(s.sortClause);
  return found;
}

/** The inner and outer queries of `sql` (one SELECT; `s` its parse tree when the caller has it), or why it cannot be split. */
export function finalizeSql(sql: string, s?: N): Finalize | Unsupported {
  if (!s) {
    let tree: N;
    try { tree = pg.parseSync(sql); } catch { return { unsupported: 'this statement across shards' }; }
    if ((tree.stmts ?? []).length !== 1) return { unsupported: 'expressions over aggregates in a multi-statement string across shards' };
    s = tree.stmts[0].stmt?.SelectStmt;
    if (!s) return { unsupported: 'expressions over aggregates across shards' };
  }
  return new Split(sql, s).run();
}

class Split {
  private readonly toks: Token[];
  private readonly b2c: Int32Array | null;
  private readonly edits: Edit[] = [];
  private readonly aggs: { key: string; text: string }[] = [];
  private readonly keys: { key: string; text: string }[] = [];
  /** output names a bare ORDER BY name may refer to */
  private readonly outNames = new Set<string>();

  constructor(private readonly sql: string, private readonly s: N) {
    this.toks = tokenize(sql);
    this.b2c = byteToCharMap(sql);
  }

  private loc(byteLoc: number | undefined): number {
    if (byteLoc === undefined || byteLoc < 0) return -1;
    return this.b2c ? this.b2c[byteLoc]! : byteLoc;
  }
  private tokAt(pos: number): number { return this.toks.findIndex((t) => t.start === pos); }

  run(): Finalize | Unsupported {
    const { s, toks, sql } = this;
    if (s.op && s.op !== 'SETOP_NONE') return { unsupported: 'UNION / INTERSECT / EXCEPT with aggregates across shards' };
    if (s.intoClause) return { unsupported: 'SELECT INTO with aggregates across shards' };
    if (s.lockingClause?.length) return { unsupported: 'FOR UPDATE / FOR SHARE with aggregates across shards' };
    if (s.windowClause?.length) return { unsupported: 'WINDOW clauses with aggregates across shards' };
    if ((s.groupClause ?? []).some((g: N) => g.GroupingSet)) return { unsupported: 'GROUPING SETS / ROLLUP / CUBE across shards' };
    if (s.groupDistinct) return { unsupported: 'GROUP BY DISTINCT across shards' };
    if (s.limitOption === 'LIMIT_OPTION_WITH_TIES') return { unsupported: 'FETCH ... WITH TIES across shards' };
    if (!s.fromClause?.length) return { unsupported: 'aggregates without FROM across shards' };
    const distinct: N[] | undefined = s.distinctClause;
    if (distinct && distinct.some((d) => d && Object.keys(d).length > 0)) return { unsupported: 'DISTINCT ON with aggregates across shards' };
    const targets: N[] = s.targetList ?? [];
    const sel = findTargetList(toks);
    if (!sel || sel.items.length !== targets.length) return { unsupported: 'expressions over aggregates across shards (the select list could not be split)' };
    for (const t of targets) if (strs(t.ResTarget?.val?.ColumnRef?.fields).includes('*')) return { unsupported: 'SELECT * with aggregates across shards' };
    if (distinct && sel.items.length) {
      // the list's first item starts after DISTINCT
      const i0 = this.tokAt(sel.items[0]!.start);
      if (toks[i0]?.lower === 'distinct' && toks[i0 + 1]) sel.items[0] = { start: toks[i0 + 1]!.start, end: sel.items[0]!.end };
    }
    const selectTok = toks.findIndex((t) => t.depth === 0 && t.lower === 'select');
    const fromTok = toks.findIndex((t) => t.depth === 0 && t.lower === 'from' && t.start >= sel.end);
    if (selectTok < 0 || fromTok < 0) return { unsupported: 'expressions over aggregates across shards' };
    // where each top-level clause starts
    const at = (kw: string, next?: string): number => toks.findIndex((t, i) => t.depth === 0 && i > fromTok && t.lower === kw && (next === undefined || toks[i + 1]?.lower === next));
    const groupAt = at('group', 'by'), havingAt = at('having'), orderAt = at('order', 'by');
    const lim = limitSection(toks);
    let end = toks.length;
    while (end > 0 && toks[end - 1]!.text === ';') end--;
    const textEnd = end > 0 ? toks[end - 1]!.end : sql.length;
    const starts = [groupAt, havingAt, orderAt].filter((i) => i >= 0).map((i) => toks[i]!.start);
    if (lim) starts.push(lim[0]);
    const fromEnd = starts.length ? Math.min(...starts) : textEnd;

    // values of the select list (without their aliases), and the names a bare ORDER BY name may mean
    const values = sel.items.map((it, k) => this.valueRange(it, targets[k].ResTarget));
    for (const t of targets) {
      const name = t.ResTarget.name ?? simpleName(t.ResTarget.val);
      if (name) this.outNames.add(name);
    }

    // group keys: their text for the inner query, their parse tree to find them in the outer one
    const groupClause: N[] = s.groupClause ?? [];
    const groupRanges = groupAt >= 0 ? clauseItems(toks, 'group', ['having', 'window', 'order', 'limit', 'offset', 'fetch', 'for']) : [];
    if (!groupRanges || groupRanges.length !== groupClause.length) return { unsupported: 'expressions over aggregates across shards (GROUP BY could not be split)' };
    const keyNodes: N[] = [];
    for (let g = 0; g < groupClause.length; g++) {
      const node = groupClause[g];
      const pos = node.A_Const?.ival !== undefined ? Number(node.A_Const.ival.ival ?? 0) : null;
      if (pos !== null) {
        if (pos < 1 || pos > targets.length) return { unsupported: `GROUP BY position ${pos} across shards` };
        keyNodes.push(targets[pos - 1].ResTarget.val);
        this.keys.push({ key: canon(targets[pos - 1].ResTarget.val), text: sql.slice(values[pos - 1]![0], values[pos - 1]![1]) });
        continue;
      }
      const bare = node.ColumnRef && strs(node.ColumnRef.fields).length === 1 ? strs(node.ColumnRef.fields)[0] : null;
      if (bare && targets.some((t) => t.ResTarget.name === bare && canon(t.ResTarget.val) !== canon(node))) {
        // PostgreSQL takes an input column of that name first, an output column otherwise: pgring cannot tell which
        return { unsupported: `GROUP BY an output column name ("${bare}") with expressions over aggregates across shards (write the expression or its position)` };
      }
      keyNodes.push(node);
      this.keys.push({ key: canon(node), text: sql.slice(groupRanges[g]!.start, groupRanges[g]!.end) });
    }

    // the select list: a whole item that is a group key becomes its column; otherwise aggregate
    // calls and group keys inside it are replaced
    const items: string[] = [];
    for (let k = 0; k < targets.length; k++) {
      const rt = targets[k].ResTarget;
      const [vs, ve] = values[k]!;
      const whole = this.keyIndex(rt.val);
      if (whole >= 0) this.edits.push({ start: vs, end: ve, text: col('g', whole) });
      else { const why = this.substitute(rt.val, 'the select list'); if (why) return why; }
      const alias = rt.name ? '' : simpleName(rt.val);
      items.push(this.render(sel.items[k]!.start, sel.items[k]!.end) + (alias ? ` AS ${quoteName(alias)}` : ''));
    }
    let having = '';
    if (s.havingClause) {
      const why = this.substitute(s.havingClause, 'HAVING');
      if (why) return why;
      const hEnd = [orderAt >= 0 ? toks[orderAt]!.start : -1, lim ? lim[0] : -1].filter((x) => x >= 0);
      having = this.render(toks[havingAt + 1]!.start, hEnd.length ? Math.min(...hEnd) : textEnd).trim();
    }
    let order = '';
    if (orderAt >= 0) {
      const sorts: N[] = s.sortClause ?? [];
      const ranges = clauseItems(toks, 'order', ['limit', 'offset', 'fetch', 'for']);
      if (!ranges || ranges.length !== sorts.length) return { unsupported: 'expressions over aggregates across shards (ORDER BY could not be split)' };
      for (let k = 0; k < sorts.length; k++) {
        const node = sorts[k].SortBy?.node;
        if (node?.A_Const?.ival !== undefined) continue;   // a position in the select list
        const bare = node?.ColumnRef && strs(node.ColumnRef.fields).length === 1 ? strs(node.ColumnRef.fields)[0]! : null;
        if (bare && this.outNames.has(bare)) continue;     // an output column
        const whole = this.keyIndex(node);
        if (whole >= 0) { this.edits.push({ start: ranges[k]!.start, end: ranges[k]!.end, text: col('g', whole) }); continue; }
        const why = this.substitute(node, 'ORDER BY');
        if (why) return why;
      }
      order = this.render(toks[orderAt + 2]!.start, lim && lim[0] > toks[orderAt]!.start ? lim[0] : textEnd).trim();
    }
    const limit = lim ? sql.slice(lim[0], lim[1]).trim() : '';
    if (!this.aggs.length && !this.keys.length) return { unsupported: 'expressions over aggregates across shards' };
    for (const a of this.aggs) {
      const tree = pg.parseSync(`SELECT ${a.text}`).stmts[0].stmt.SelectStmt.targetList[0].ResTarget.val;
      const m = aggOf(tree);
      if (m && 'unsupported' in m) return m;
      if (m?.fn === 'percentile' && m.regr !== 'mode' && !constantFraction(tree.FuncCall.args?.[0])) return { unsupported: `${m.regr} of an expression fraction across shards` };
      if (funcName(tree.FuncCall ?? {}) === 'string_agg' && !constantOrParam(tree.FuncCall.args?.[1])) return { unsupported: 'string_agg with a separator that is not a constant or parameter across shards' };
    }

    const innerItems = [
      ...this.keys.map((g, k) => `${g.text} AS pgring_g${k + 1}`),
      ...this.aggs.map((a, k) => `${a.text} AS pgring_a${k + 1}`),
    ];
    const withText = sql.slice(0, toks[selectTok]!.start);
    const groupBy = this.keys.length ? ` GROUP BY ${this.keys.map((_, k) => String(k + 1)).join(', ')}` : '';
    const inner = `${withText}SELECT ${innerItems.join(', ')} ${sql.slice(toks[fromTok]!.start, fromEnd).trim()}${groupBy}`;
    const names = [...this.keys.map((_, k) => `pgring_g${k + 1}`), ...this.aggs.map((_, k) => `pgring_a${k + 1}`)];
    const outerHead = `SELECT ${distinct ? 'DISTINCT ' : ''}${items.join(', ')} FROM (`;
    const outerTail = `) AS ${SOURCE}(${names.join(', ')})${having ? ` WHERE ${having}` : ''}${order ? ` ORDER BY ${order}` : ''}${limit ? ` ${limit}` : ''}`;
    return { inner, outerHead, outerTail, width: names.length };
  }

  /** [start, end) of a select-list item's value: the item without `AS alias` / `alias`. */
  private valueRange(item: { start: number; end: number }, rt: N): [number, number] {
    if (!rt.name) return [item.start, item.end];
    let j = this.toks.findIndex((t) => t.end === item.end);
    const first = this.tokAt(item.start);
    if (j > first) j--;                                    // the alias
    if (j > first && this.toks[j]!.lower === 'as' && this.toks[j]!.depth === this.toks[first]!.depth) j--;
    return [item.start, this.toks[j]!.end];
  }

  private keyIndex(node: N): number {
    if (!node) return -1;
    const c = canon(node);
    return this.keys.findIndex((g) => g.key === c);
  }

  /** Replaces the aggregate calls and group keys in `node` (edits on the text); why not, if a column is neither. */
  private substitute(node: N, where: string): Unsupported | undefined {
    let why: Unsupported | undefined;
    const visit = (x: N): void => {
      if (why || x === null || typeof x !== 'object') return;
      if (Array.isArray(x)) { x.forEach(visit); return; }
      if (x.SubLink) { why = { unsupported: `a subquery in ${where} of a query with aggregates across shards` }; return; }
      if (x.FuncCall && isAggregate(x.FuncCall)) {
        const r = this.callRange(x.FuncCall);
        if (!r) { why = { unsupported: `expressions over aggregates across shards (${funcName(x.FuncCall) ?? 'an aggregate'} could not be split)` }; return; }
        const key = canon(x);
        let k = this.aggs.findIndex((a) => a.key === key);
        if (k < 0) { this.aggs.push({ key, text: this.sql.slice(r[0], r[1]) }); k = this.aggs.length - 1; }
        this.edits.push({ start: r[0], end: r[1], text: col('a', k) });
        return;
      }
      const g = this.keyIndex(x);
      if (g >= 0 && (x.ColumnRef || x.FuncCall)) {
        const r = x.ColumnRef ? this.nameRange(x.ColumnRef) : this.callRange(x.FuncCall);
        if (r) { this.edits.push({ start: r[0], end: r[1], text: col('g', g) }); return; }
      }
      if (x.ColumnRef) {
        const name = strs(x.ColumnRef.fields).join('.');
        why = { unsupported: `column "${name}" in ${where} outside the GROUP BY keys and aggregates across shards` };
        return;
      }
      for (const [k, v] of Object.entries(x)) if (k !== 'location') visit(v);
    };
    visit(node);
    return why;
  }

  /** [start, end) of a (qualified) column name. */
  private nameRange(cr: N): [number, number] | null {
    const i = this.tokAt(this.loc(cr.location));
    if (i < 0) return null;
    let j = i;
    while (this.toks[j + 1]?.text === '.' && this.toks[j + 2] && (this.toks[j + 2]!.type === 'word' || this.toks[j + 2]!.type === 'qident')) j += 2;
    return [this.toks[i]!.start, this.toks[j]!.end];
  }

  /** [start, end) of a function call: name ( … ) [WITHIN GROUP ( … )] [FILTER ( … )]. */
  private callRange(fc: N): [number, number] | null {
    const i = this.tokAt(this.loc(fc.location));
    if (i < 0) return null;
    const toks = this.toks;
    let j = i;
    while (j < toks.length && toks[j]!.text !== '(') j++;
    const close = (open: number): number => {
      const d = toks[open]!.depth;
      let c = open + 1;
      while (c < toks.length && !(toks[c]!.text === ')' && toks[c]!.depth === d)) c++;
      return c < toks.length ? c : -1;
    };
    let c = close(j);
    if (c < 0) return null;
    if (toks[c + 1]?.lower === 'within' && toks[c + 2]?.lower === 'group' && toks[c + 3]?.text === '(') { c = close(c + 3); if (c < 0) return null; }
    if (toks[c + 1]?.lower === 'filter' && toks[c + 2]?.text === '(') { c = close(c + 2); if (c < 0) return null; }
    return [toks[i]!.start, toks[c]!.end];
  }

  /** The text of [a, b) with the edits inside it applied. */
  private render(a: number, b: number): string {
    const inside = this.edits.filter((e) => e.start >= a && e.end <= b).sort((x, y) => x.start - y.start || y.end - x.end);
    let out = '', pos = a;
    for (const e of inside) {
      if (e.start < pos) continue;   // inside an edit already made (an aggregate within a replaced key)
      out += this.sql.slice(pos, e.start) + e.text;
      pos = e.end;
    }
    return out + this.sql.slice(pos, b);
  }
}

/** The output name PostgreSQL gives a select-list item without an alias, when it is a simple one
 *  (a column, a function call, either cast): the outer query keeps it, so ORDER BY may name it. */
function simpleName(v: N): string | null {
  if (v?.ColumnRef) { const f = strs(v.ColumnRef.fields); const last = f[f.length - 1]; return last && last !== '*' ? last : null; }
  if (v?.FuncCall) return strs(v.FuncCall.funcname).slice(-1)[0] ?? null;
  if (v?.TypeCast) return simpleName(v.TypeCast.arg);
  return null;
}

/** A percentile's fraction the merge takes: a number, a parameter, or an ARRAY of numbers (merge-rewrite.ts). */
function constantFraction(e: N): boolean {
  while (e?.TypeCast) e = e.TypeCast.arg;
  const num = (c: N): boolean => !!c?.A_Const && !c.A_Const.sval && !c.A_Const.isnull;
  return num(e) || !!e?.ParamRef || (!!e?.A_ArrayExpr && (e.A_ArrayExpr.elements ?? []).length > 0 && e.A_ArrayExpr.elements.every(num));
}

/** A string_agg separator the merge takes (merge-rewrite.ts separator). */
function constantOrParam(e: N): boolean {
  while (e?.TypeCast) e = e.TypeCast.arg;
  return e?.A_Const?.sval !== undefined || !!e?.ParamRef;
}

function quoteName(s: string): string { return `"${s.replace(/"/g, '""')}"`; }
