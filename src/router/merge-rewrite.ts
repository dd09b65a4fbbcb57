// Merging a SELECT answered by several shards: the MergeSpec (ORDER BY, LIMIT/OFFSET, GROUP BY
// and aggregate columns the merger needs) and the SQL each shard runs instead (avg() as sum and
// count, hidden columns for ORDER BY / GROUP BY expressions outside the select list, LIMIT +
// OFFSET pushed down). Works on the statement's AST and its tokens; no I/O.
import type { Token } from './lexer';
import type { MergeSpec } from './types';
import { N, Part, MERGE_AGGS, OTHER_AGGS, canon, funcName, quoteIdent, strs } from './plan-ast';
import { type HExpr, mapColumns } from './having';

type Range = [number, number] | string;
type Unsupported = { unsupported: string };
type AggFn = 'count' | 'sum' | 'min' | 'max' | 'avg' | 'count_distinct' | 'sum_distinct' | 'avg_distinct' | 'string_agg' | 'array_agg' | 'var' | 'jsonb_agg' | 'json_agg' | 'ordered_agg' | 'json_object_agg' | 'jsonb_object_agg' | 'regr' | 'percentile' | 'bit_and' | 'bit_or' | 'bit_xor';
type AggOf = { fn: AggFn; cast?: string; variance?: { pop: boolean; sqrt: boolean }; regr?: string } | Unsupported | null;
/** the variance and standard deviation aggregates: population or sample, square root or not */
const VARIANCE = new Map<string, { pop: boolean; sqrt: boolean }>([
  ['variance', { pop: false, sqrt: false }], ['var_samp', { pop: false, sqrt: false }], ['var_pop', { pop: true, sqrt: false }],
  ['stddev', { pop: false, sqrt: true }], ['stddev_samp', { pop: false, sqrt: true }], ['stddev_pop', { pop: true, sqrt: true }],
]);
/** corr, covar_* and regr_* (regr_count merges as a count) */
const REGR = new Set(['corr', 'covar_pop', 'covar_samp', 'regr_avgx', 'regr_avgy', 'regr_sxx', 'regr_syy', 'regr_sxy', 'regr_slope', 'regr_intercept', 'regr_r2']);
type Hidden = { pieces: Range[]; agg?: 'count' | 'sum' | 'min' | 'max' | 'count_distinct' };
type Items = { start: number; end: number }[];
/** marker base for hidden column indexes, fixed up at the end */
const HID = 1 << 20;

/** What the rewrite needs from the planner: the parse text, its tokens, literal values, templates. */
export interface MergeHost {
  readonly text: string;
  toks(): Token[];
  constValue(c: N): string | null;
  /** character offset of a parse-tree byte location */
  loc(byteLoc: number | undefined): number;
  parts(ranges: Range[]): Part[];
  /** every window of the SELECT is partitioned by a shard key (its windows are exact on each shard) */
  windowsLocal?(s: N): boolean;
  /** the SELECT groups by a shard key (each group, its aggregates and HAVING, are exact on one shard) */
  groupedByKey?(s: N): boolean;
}

/** The merge spec of a SELECT over sharded tables (and the per-shard SQL when it differs), or why it cannot be merged. */
export function mergeSpec(host: MergeHost, s: N): { spec: MergeSpec; shardSqlT?: Part[] } | Unsupported {
  return new MergeRewrite(host, s).run();
}

class MergeRewrite {
  private readonly toks: Token[];
  private readonly spec: MergeSpec = { orderBy: [], limit: null, offset: null, groupBy: [], aggregates: [], hiddenColumns: 0 };
  private readonly setop: boolean;
  private targets: N[] = [];
  private star = false;
  private aggs: AggOf[] = [];
  private hasAgg = false;
  /** target list items in the text */
  private sel: { items: Items; end: number } | null = null;
  private readonly hidden: Hidden[] = [];
  private readonly edits: { start: number; end: number; pieces: Range[] }[] = [];
  private having: N | null = null;
  private distinctOn: N[] | null = null;
  /** grouped by a shard key: nothing to merge but rows */
  private localGroups = false;

  constructor(private readonly host: MergeHost, private readonly s: N) {
    this.toks = host.toks();
    this.setop = !!(s.op && s.op !== 'SETOP_NONE');
  }

  run(): { spec: MergeSpec; shardSqlT?: Part[] } | Unsupported {
    const why = this.shape() ?? this.selectList() ?? this.averages() ?? this.groupBy() ?? this.orderBy() ?? this.distinctOnKeys()
      ?? this.havingClause() ?? this.limits();
    return why ?? this.finish();
  }

  private needText(): boolean { return this.sel !== null && this.sel.items.length === this.targets.length; }
  private addHidden(h: Hidden): number { this.hidden.push(h); return HID + this.hidden.length - 1; }

  private outName(t: N): string | null {
    const r = t.ResTarget;
    if (r.name) return r.name;
    const v = r.val;
    if (v?.ColumnRef) { const f = strs(v.ColumnRef.fields); return f[f.length - 1] === '*' ? null : f[f.length - 1]; }
    if (v?.FuncCall) return strs(v.FuncCall.funcname).slice(-1)[0];
    if (v?.TypeCast?.arg?.FuncCall) return strs(v.TypeCast.arg.FuncCall.funcname).slice(-1)[0];   // count(*)::int is "count"
    return null;
  }

  /** output position of target idx; -1 when unknown (after a star) */
  private positionOf(idx: number): number {
    for (let k = 0; k < idx; k++) if (strs(this.targets[k].ResTarget?.val?.ColumnRef?.fields).includes('*')) return -1;
    return idx;
  }

  /** Forms that cannot be merged at all; sets the target list. */
  private shape(): Unsupported | undefined {
    const s = this.s;
    if (this.setop) {
      const plainArm = (x: N): boolean => {
        if (x.op && x.op !== 'SETOP_NONE') return x.op === 'SETOP_UNION' && x.all && plainArm(x.larg) && plainArm(x.rarg);
        return !x.distinctClause && !x.groupClause && !x.havingClause && !x.limitCount && !x.limitOffset && !x.sortClause
          && !findAgg(x.targetList) && !hasWindow(x.targetList);
      };
      if (!(s.op === 'SETOP_UNION' && s.all && plainArm(s))) {
        const opn = s.op === 'SETOP_UNION' ? (s.all ? 'UNION ALL with aggregates' : 'UNION') : s.op === 'SETOP_INTERSECT' ? 'INTERSECT' : 'EXCEPT';
        return { unsupported: `${opn} across shards` };
      }
      let x = s; while (x.op && x.op !== 'SETOP_NONE') x = x.larg;
      this.targets = x.targetList ?? [];
    } else {
      this.targets = s.targetList ?? [];
      if (s.distinctClause) {
        const on = (s.distinctClause as N[]).filter((d) => d && Object.keys(d).length > 0);
        if (on.length) this.distinctOn = on; else this.spec.distinct = true;
      }
      // grouped by a shard key: the shards' groups are disjoint and final (aggregates, HAVING)
      this.localGroups = !!this.host.groupedByKey?.(s);
      if (hasWindow(this.targets) || hasWindow(s.sortClause)) {
        if (!this.host.windowsLocal?.(s)) return { unsupported: 'window functions across shards (unless PARTITION BY the shard key)' };
        // over groups: exact when the groups are (grouped by the key too)
        if (!this.localGroups && (s.groupClause?.length || s.havingClause || findAgg(this.targets))) return { unsupported: 'window functions with GROUP BY or aggregates across shards' };
      }
      if (s.havingClause && !this.localGroups) this.having = s.havingClause;
      if ((s.groupClause ?? []).some((g: N) => g.GroupingSet)) return { unsupported: 'GROUPING SETS / ROLLUP / CUBE across shards' };
      if (s.groupDistinct) return { unsupported: 'GROUP BY DISTINCT across shards' };
    }
    if (s.limitOption === 'LIMIT_OPTION_WITH_TIES') return { unsupported: 'FETCH ... WITH TIES across shards' };
    return undefined;
  }

  /** Aggregates of the select list, and where its items are in the text. */
  private selectList(): Unsupported | undefined {
    const targets = this.targets;
    this.star = targets.some((t: N) => strs(t.ResTarget?.val?.ColumnRef?.fields).includes('*'));
    // SELECT EXISTS (...), (SELECT count(*) ...): each item merges as an aggregate (sublinkAgg)
    const links = this.setop ? null : sublinkAggs(this.s);
    this.aggs = this.setop || this.localGroups ? targets.map(() => null) : links ? links.map((l) => ({ fn: l.fn })) : targets.map((t: N) => aggOf(t.ResTarget.val));
    for (const a of this.aggs) if (a && 'unsupported' in a) return a;
    this.hasAgg = !this.setop && !this.localGroups && (this.aggs.some((a) => a) || (this.s.groupClause ?? []).length > 0);
    if (this.star && this.hasAgg) return { unsupported: 'SELECT * with aggregates across shards' };
    if (this.hasAgg && (this.spec.distinct || this.distinctOn)) return { unsupported: 'DISTINCT with aggregates or GROUP BY across shards' };
    this.sel = findTargetList(this.toks);
    return undefined;
  }

  /** Aggregates in the select list: avg() becomes sum() and a hidden count(). */
  private averages(): Unsupported | undefined {
    if (!this.hasAgg) return undefined;
    const { toks, targets, spec } = this;
    for (let k = 0; k < targets.length; k++) {
      const a = this.aggs[k];
      if (!a || 'unsupported' in a) continue;
      if (a.fn === 'string_agg') {
        const sep = this.separator(targets[k].ResTarget.val.FuncCall.args?.[1]);
        if (sep === null) return { unsupported: 'string_agg with a separator that is not a constant or parameter across shards' };
        spec.aggregates.push({ column: k, fn: a.fn, sep });
        continue;
      }
      if (a.cast !== undefined) {
        // count(*)::int: the shards' counts in that type add up exactly. sum(x)::T, max(x)::T: the
        // shards also return the aggregate itself (hidden); the merger adds (or compares) those and
        // casts the result (sum), or keeps the winning row's cast value (min / max).
        if (a.fn === 'count') {
          if (!COUNT_CASTS.has(a.cast)) return { unsupported: `count() cast to ${a.cast} across shards` };
          spec.aggregates.push({ column: k, fn: 'count' });
          continue;
        }
        const r = this.callRange(targets[k].ResTarget.val.TypeCast.arg.FuncCall);
        if (!r) return { unsupported: 'cannot rewrite a cast aggregate for shards' };
        const raw = this.addHidden({ pieces: [r.name, r.args] });
        spec.aggregates.push(a.fn === 'sum' ? { column: k, fn: 'sum', sumColumn: raw } : { column: k, fn: a.fn, byColumn: raw });
        continue;
      }
      if (a.fn !== 'avg' && a.fn !== 'count_distinct' && a.fn !== 'sum_distinct' && a.fn !== 'avg_distinct' && a.fn !== 'var' && a.fn !== 'json_agg' && a.fn !== 'ordered_agg' && a.fn !== 'regr' && a.fn !== 'percentile') { spec.aggregates.push({ column: k, fn: a.fn }); continue; }
      if (!this.needText()) return { unsupported: `cannot rewrite ${a.fn === 'count_distinct' ? 'count(DISTINCT)' : 'avg() or a variance'} for shards` };
      const item = this.sel!.items[k];
      const fc = targets[k].ResTarget.val.FuncCall;
      // tokens of the call: name ... ( args ) [FILTER (...)]
      const it = toks.findIndex((t) => t.start === item.start);
      let j = it;
      while (j < toks.length && toks[j].text !== '(') j++;
      const open = j;
      const d0 = toks[open].depth;
      j++;
      while (j < toks.length && !(toks[j].text === ')' && toks[j].depth === d0)) j++;
      const close = j;
      let callEnd = toks[close].end;
      if (fc.agg_filter) {
        let f = close + 1;
        if (toks[f]?.lower === 'filter' && toks[f + 1]?.text === '(') {
          f += 2;
          while (f < toks.length && !(toks[f].text === ')' && toks[f].depth === d0)) f++;
          callEnd = toks[f].end;
        }
      }
      const argsAndFilter: [number, number] = [toks[open].start, callEnd];
      const alias = targets[k].ResTarget.name;
      if (a.fn === 'count_distinct' || a.fn === 'sum_distinct' || a.fn === 'avg_distinct') {
        // each shard's distinct values; the merger counts, sums or averages their union
        this.edits.push({ start: item.start, end: item.end, pieces: ['array_agg', argsAndFilter, ' AS ', quoteIdent(alias ?? a.fn.slice(0, a.fn.indexOf('_')))] });
        spec.aggregates.push({ column: k, fn: a.fn });
        continue;
      }
      if (a.fn === 'var') {
        // Each shard's count, exact sum and sum of squares (numeric: exact for integer and numeric
        // input) and avg; its var_pop gives the result type and, for float input, the shard's sum
        // of squared deviations. The merger combines them as PostgreSQL's final functions and its
        // parallel combine function do (merge.ts varValue).
        if ((fc.args ?? []).length !== 1) return { unsupported: `${funcName(fc)} across shards` };
        const arg: [number, number] = [toks[open].end, toks[close].start];
        const filter: Range[] = callEnd > toks[close].end ? [[toks[close].end, callEnd]] : [];
        this.edits.push({ start: item.start, end: item.end, pieces: ['var_pop', argsAndFilter, ' AS ', quoteIdent(alias ?? funcName(fc) ?? 'variance')] });
        const cnt = this.addHidden({ pieces: ['count', argsAndFilter] });
        const sum = this.addHidden({ pieces: ['sum', argsAndFilter] });
        const sq = this.addHidden({ pieces: ['sum((', arg, ')::numeric * (', arg, ')::numeric)', ...filter] });
        const avg = this.addHidden({ pieces: ['avg', argsAndFilter] });
        spec.aggregates.push({ column: k, fn: 'var', variance: a.variance, countColumn: cnt, sumColumn: sum, sqColumn: sq, avgColumn: avg });
        continue;
      }
      if (a.fn === 'percentile') {
        // percentile_cont / percentile_disc (f) / mode() WITHIN GROUP (ORDER BY x): each shard's values
        // of x sorted (array_agg), merged and picked as PostgreSQL's final function does; the shards
        // also check the fraction (a hidden percentile_disc(f) over a constant raises PostgreSQL's error)
        const cont = a.regr === 'percentile_cont';
        let fraction: number | number[] | { param: number } | undefined;
        if (!cont && a.regr === 'mode') fraction = undefined;
        else {
          let fe = fc.args[0];
          while (fe?.TypeCast) fe = fe.TypeCast.arg;
          const num = (c: N): number | null => (c?.A_Const && !c.A_Const.sval && !c.A_Const.isnull ? Number(this.host.constValue(c.A_Const)) : null);
          if (fe?.ParamRef) fraction = { param: fe.ParamRef.number - 1 };
          else if (num(fe) !== null) fraction = num(fe)!;
          else if (fe?.A_ArrayExpr && (fe.A_ArrayExpr.elements ?? []).length && fe.A_ArrayExpr.elements.every((x: N) => num(x) !== null)) {
            fraction = fe.A_ArrayExpr.elements.map((x: N) => num(x)!);   // several fractions: an array of results
          } else return { unsupported: `${a.regr} of an expression fraction across shards` };
        }
        // WITHIN GROUP ( ORDER BY x [ASC | DESC] ) [FILTER (…)] after the call's parentheses
        const end = toks.findIndex((t) => t.start >= item.end);
        const last = end < 0 ? toks.length - 1 : end - 1;
        let w = close + 1;
        if (toks[w]?.lower !== 'within' || toks[w + 1]?.lower !== 'group' || toks[w + 2]?.text !== '(' || toks[w + 3]?.lower !== 'order' || toks[w + 4]?.lower !== 'by') return { unsupported: `${a.regr} across shards` };
        const gOpen = w + 2, dg = toks[gOpen].depth;
        let gClose = gOpen + 1;
        while (gClose <= last && !(toks[gClose].text === ')' && toks[gClose].depth === dg)) gClose++;
        if (gClose > last) return { unsupported: `${a.regr} across shards` };
        let xEnd = gClose;
        for (w = gOpen + 3; w < gClose; w++) if (toks[w].depth === dg + 1 && ['asc', 'desc', 'nulls', 'using'].includes(toks[w].lower)) { xEnd = w; break; }
        const sb = fc.agg_order[0].SortBy;
        if (sb.sortby_dir === 'SORTBY_USING' || xEnd <= gOpen + 3) return { unsupported: `${a.regr} across shards` };
        const x: [number, number] = [toks[gOpen + 3].start, toks[xEnd - 1].end];
        let filter: Range[] = [];
        if (toks[gClose + 1]?.lower === 'filter' && toks[gClose + 2]?.text === '(') {
          let f = gClose + 3;
          while (f <= last && !(toks[f].text === ')' && toks[f].depth === dg)) f++;
          if (f > last) return { unsupported: `${a.regr} across shards` };
          filter = [[toks[gClose].end, toks[f].end]];
        }
        const xs: Range[] = cont ? ['(', x, ')::pg_catalog.float8'] : ['(', x, ')'];
        const desc = sb.sortby_dir === 'SORTBY_DESC';
        this.edits.push({ start: item.start, end: item.end, pieces: ['array_agg(', ...xs, ' ORDER BY ', ...xs, desc ? ' DESC' : '', ')', ...filter, ' AS ', quoteIdent(alias ?? a.regr!)] });
        if (fraction !== undefined) this.addHidden({ pieces: ['percentile_disc(', [toks[open].end, toks[close].start], ') WITHIN GROUP (ORDER BY 0)'] });
        spec.aggregates.push({ column: k, fn: 'percentile', regr: a.regr, ...(fraction !== undefined ? { fraction } : {}), keyOrder: [{ desc, nullsFirst: desc }] });
        continue;
      }
      if (a.fn === 'regr') {
        this.edits.push({ start: item.start, end: item.end, pieces: ['regr_sxy', argsAndFilter, ' AS ', quoteIdent(alias ?? a.regr!)] });
        const cnt = this.addHidden({ pieces: ['regr_count', argsAndFilter] });
        const sxx = this.addHidden({ pieces: ['regr_sxx', argsAndFilter] });
        const syy = this.addHidden({ pieces: ['regr_syy', argsAndFilter] });
        const ax = this.addHidden({ pieces: ['regr_avgx', argsAndFilter] });
        const ay = this.addHidden({ pieces: ['regr_avgy', argsAndFilter] });
        spec.aggregates.push({ column: k, fn: 'regr', regr: a.regr, countColumn: cnt, sqColumn: sxx, syyColumn: syy, avgColumn: ax, avgyColumn: ay });
        continue;
      }
      if (a.fn === 'ordered_agg') {
        // string_agg(x, sep ORDER BY k…) / array_agg(x ORDER BY k…): each shard returns
        // array_agg(x ORDER BY k…) and, hidden, array_agg(k ORDER BY k…) per key; the merger
        // merges the lists by their keys (merge.ts) and joins them (string_agg) or keeps the array.
        const str = funcName(fc) === 'string_agg';
        const d1 = toks[open].depth + 1;
        let ord = -1, comma = -1;
        for (let t = open + 1; t < close; t++) {
          if (toks[t].depth !== d1) continue;
          if (toks[t].lower === 'order' && ord < 0) ord = t;
          else if (toks[t].text === ',' && comma < 0 && ord < 0) comma = t;
        }
        // DISTINCT inside: each shard's distinct values (sorted), their union sorted and deduplicated
        const distinct = !!fc.agg_distinct;
        if (distinct && toks[open + 1]?.lower !== 'distinct') return { unsupported: `${funcName(fc)}(DISTINCT) across shards` };
        if ((ord < 0 && !distinct) || (str && comma < 0)) return { unsupported: `${funcName(fc)} with ORDER BY across shards` };
        const sep = str ? this.separator(fc.args?.[1]) : undefined;
        if (sep === null) return { unsupported: 'string_agg with a separator that is not a constant or parameter across shards' };
        const x: [number, number] = [toks[distinct ? open + 1 : open].end, toks[str ? comma : ord >= 0 ? ord : close].start];
        const filter: Range[] = callEnd > toks[close].end ? [[toks[close].end, callEnd]] : [];
        if (distinct) {
          const sb = fc.agg_order?.[0]?.SortBy;
          if (sb?.sortby_dir === 'SORTBY_USING') return { unsupported: `${funcName(fc)}(DISTINCT) across shards` };
          const ordered: Range[] = ord >= 0 ? [' ', [toks[ord].start, toks[close].start]] : [];
          this.edits.push({ start: item.start, end: item.end, pieces: ['array_agg(DISTINCT ', x, ...ordered, ')', ...filter, ' AS ', quoteIdent(alias ?? funcName(fc) ?? 'array_agg')] });
          if (sep !== undefined && typeof sep === 'object') this.addHidden({ pieces: ['(', [toks[comma].end, toks[ord >= 0 ? ord : close].start], ')::pg_catalog.text'] });
          const desc = sb?.sortby_dir === 'SORTBY_DESC';
          const nullsFirst = sb?.sortby_nulls === 'SORTBY_NULLS_FIRST' ? true : sb?.sortby_nulls === 'SORTBY_NULLS_LAST' ? false : desc;
          spec.aggregates.push({ column: k, fn: 'ordered_agg', list: str ? 'string' : 'array', ...(str ? { sep } : {}), keyColumns: [], keyOrder: [{ desc, nullsFirst }], distinct: true });
          continue;
        }
        const order: [number, number] = [toks[ord].start, toks[close].start];
        // each sort key's expression: its item of the ORDER BY list, up to ASC / DESC / NULLS / USING
        const keys: [number, number][] = [];
        let kStart = -1, kEnd = -1, stopped = false;
        for (let t = ord + 2; t <= close; t++) {   // after ORDER BY
          const tk = toks[t];
          if (t === close || (tk.depth === d1 && tk.text === ',')) {
            if (kStart < 0) return { unsupported: `${funcName(fc)} with ORDER BY across shards` };
            keys.push([kStart, kEnd]);
            kStart = kEnd = -1; stopped = false;
            continue;
          }
          if (tk.depth === d1 && ['asc', 'desc', 'nulls', 'using'].includes(tk.lower)) { stopped = true; continue; }
          if (stopped) continue;
          if (kStart < 0) kStart = tk.start;
          kEnd = tk.end;
        }
        const sorts: N[] = fc.agg_order;
        if (keys.length !== sorts.length || sorts.some((b: N) => b.SortBy?.sortby_dir === 'SORTBY_USING')) return { unsupported: `${funcName(fc)} with ORDER BY across shards` };
        this.edits.push({ start: item.start, end: item.end, pieces: ['array_agg(', x, ' ', order, ')', ...filter, ' AS ', quoteIdent(alias ?? funcName(fc) ?? 'array_agg')] });
        const keyColumns = keys.map((r) => this.addHidden({ pieces: ['array_agg(', r, ' ', order, ')', ...filter] }));
        // a separator given as a parameter stays referenced, or the shards could not type it
        if (sep !== undefined && typeof sep === 'object') this.addHidden({ pieces: ['(', [toks[comma].end, toks[ord].start], ')::pg_catalog.text'] });
        const keyOrder = sorts.map((b: N) => {
          const desc = b.SortBy.sortby_dir === 'SORTBY_DESC';
          return { desc, nullsFirst: b.SortBy.sortby_nulls === 'SORTBY_NULLS_FIRST' ? true : b.SortBy.sortby_nulls === 'SORTBY_NULLS_LAST' ? false : desc };
        });
        spec.aggregates.push({ column: k, fn: 'ordered_agg', list: str ? 'string' : 'array', ...(str ? { sep } : {}), keyColumns, keyOrder });
        continue;
      }
      if (a.fn === 'json_agg') {
        // json_agg separates arrays and composites with ", \n " and everything else with ", " (its
        // type category): each shard also says what its elements are
        if ((fc.args ?? []).length !== 1) return { unsupported: 'json_agg across shards' };
        const arg: [number, number] = [toks[open].end, toks[close].start];
        const cat = this.addHidden({ pieces: ['min(pg_catalog.json_typeof(pg_catalog.to_json(', arg, ")) || ':' || pg_catalog.pg_typeof(", arg, ')::pg_catalog.text)'] });
        spec.aggregates.push({ column: k, fn: 'json_agg', catColumn: cat });
        continue;
      }
      this.edits.push({ start: item.start, end: item.end, pieces: ['sum', argsAndFilter, ' AS ', quoteIdent(alias ?? 'avg')] });
      const cnt = this.addHidden({ pieces: ['count', argsAndFilter] });
      spec.aggregates.push({ column: k, fn: 'avg', sumColumn: k, countColumn: cnt });
    }
    return undefined;
  }

  /** GROUP BY columns (expressions outside the select list become hidden columns). */
  private groupBy(): Unsupported | undefined {
    const { s, targets, spec } = this;
    if (!this.hasAgg || !s.groupClause?.length) return undefined;
    const gItems = clauseItems(this.toks, 'group', ['having', 'window', 'order', 'limit', 'offset', 'fetch', 'for']);
    for (let g = 0; g < s.groupClause.length; g++) {
      const ge = s.groupClause[g];
      let col = -1;
      if (ge.A_Const?.ival !== undefined && !ge.A_Const.fval) { col = Number(this.host.constValue(ge.A_Const)) - 1; }
      else {
        const c = canon(ge);
        col = targets.findIndex((t: N) => canon(t.ResTarget.val) === c);
        if (col < 0 && ge.ColumnRef && strs(ge.ColumnRef.fields).length === 1) {
          const nm = strs(ge.ColumnRef.fields)[0];
          col = targets.findIndex((t: N) => t.ResTarget.name === nm);
        }
        if (col >= 0) col = this.positionOf(col);
      }
      if (col < 0) {
        const r = gItems ? exprRange(gItems, g) : null;
        if (!r) return { unsupported: 'cannot rewrite GROUP BY for shards' };
        col = this.addHidden({ pieces: [r] });
      }
      if (!spec.groupBy.includes(col)) spec.groupBy.push(col);
    }
    return undefined;
  }

  /** ORDER BY columns (expressions outside the select list become hidden columns). */
  private orderBy(): Unsupported | undefined {
    const s = this.s;
    if (!s.sortClause?.length) return undefined;
    const oItems = clauseItems(this.toks, 'order', ['limit', 'offset', 'fetch', 'for']);
    for (let o = 0; o < s.sortClause.length; o++) {
      const sb = s.sortClause[o].SortBy;
      if (sb.sortby_dir === 'SORTBY_USING') return { unsupported: 'ORDER BY ... USING across shards' };
      const coll = sb.node?.CollateClause ? strs(sb.node.CollateClause.collname).slice(-1)[0] : undefined;
      // a select-list column with COLLATE "C" is that column, compared by bytes
      const col = this.orderColumn(coll !== undefined && sb.node.CollateClause.arg?.ColumnRef ? sb.node.CollateClause.arg : sb.node, oItems, o);
      if (typeof col !== 'number') return col;
      const desc = sb.sortby_dir === 'SORTBY_DESC';
      const nullsFirst = sb.sortby_nulls === 'SORTBY_NULLS_FIRST' ? true : sb.sortby_nulls === 'SORTBY_NULLS_LAST' ? false : desc;
      if (coll !== undefined && !/^(c|posix|ucs_basic)$/i.test(coll)) return { unsupported: `ORDER BY ... COLLATE "${coll}" across shards` };
      this.spec.orderBy.push(coll !== undefined ? { column: col, desc, nullsFirst, bytes: true } : { column: col, desc, nullsFirst });
    }
    return undefined;
  }

  private orderColumn(e: N, oItems: Items | null, o: number): number | Unsupported {
    const targets = this.targets;
    let col = -1;
    if (e.A_Const?.ival !== undefined) return Number(this.host.constValue(e.A_Const)) - 1;
    if (e.ColumnRef && strs(e.ColumnRef.fields).length === 1) {
      const nm = strs(e.ColumnRef.fields)[0];
      col = targets.findIndex((t: N) => this.outName(t) === nm && !(t.ResTarget.val?.FuncCall && !t.ResTarget.name));
    }
    if (col < 0) { const c = canon(e); col = targets.findIndex((t: N) => canon(t.ResTarget.val) === c); }
    if (col >= 0) col = this.positionOf(col);
    if (col >= 0) return col;
    if (this.setop) return { unsupported: 'ORDER BY expression across shards (UNION ALL)' };
    const r = oItems ? exprRange(oItems, o) : null;
    if (!r) return { unsupported: 'cannot rewrite ORDER BY for shards' };
    let agg: Hidden['agg'];
    if (this.hasAgg) {
      const a = aggOf(e);
      if (a && 'unsupported' in a) return a;
      if (a) {
        if (a.fn === 'avg' || a.fn === 'count_distinct' || a.fn === 'sum_distinct' || a.fn === 'avg_distinct' || a.fn === 'string_agg' || a.fn === 'array_agg' || a.fn === 'var' || a.fn === 'jsonb_agg' || a.fn === 'json_agg' || a.fn === 'ordered_agg' || a.fn === 'json_object_agg' || a.fn === 'jsonb_object_agg' || a.fn === 'regr' || a.fn === 'percentile' || a.fn === 'bit_and' || a.fn === 'bit_or' || a.fn === 'bit_xor') return { unsupported: `ORDER BY ${a.fn === 'count_distinct' ? 'count(DISTINCT)' : a.fn === 'regr' || a.fn === 'percentile' ? `${a.regr}()` : a.fn === 'var' ? 'a variance or standard deviation' : a.fn + '()'} not in the select list across shards` };
        if (a.cast !== undefined && (a.fn !== 'count' || !COUNT_CASTS.has(a.cast))) return { unsupported: `ORDER BY a cast ${a.fn}() not in the select list across shards` };
        agg = a.fn;
      }
    }
    col = this.addHidden({ pieces: [r], agg });
    if (agg) this.spec.aggregates.push({ column: col, fn: agg });
    return col;
  }

  /** DISTINCT ON keys: the leading ORDER BY columns (PostgreSQL requires them to match), or
   *  select-list columns without ORDER BY (any row of a key is then right). */
  private distinctOnKeys(): Unsupported | undefined {
    const on = this.distinctOn;
    if (!on) return undefined;
    if (this.spec.orderBy.length) {
      if (on.length > this.spec.orderBy.length) return { unsupported: 'DISTINCT ON not matching ORDER BY across shards' };
      this.spec.distinctOn = this.spec.orderBy.slice(0, on.length).map((o) => o.column);
      return undefined;
    }
    const cols = on.map((e) => { const c = canon(e); const t = this.targets.findIndex((x: N) => canon(x.ResTarget.val) === c); return t < 0 ? -1 : this.positionOf(t); });
    if (cols.some((c) => c < 0)) return { unsupported: 'DISTINCT ON an expression outside the select list without ORDER BY across shards' };
    this.spec.distinctOn = cols;
    return undefined;
  }

  /** HAVING: made always true in the shard SQL; its aggregates become (hidden) columns; the merger filters. */
  private havingClause(): Unsupported | undefined {
    if (!this.having) return undefined;
    const toks = this.toks;
    const h = toks.findIndex((t) => t.depth === 0 && t.lower === 'having');
    if (h < 1) return { unsupported: 'cannot rewrite HAVING for shards' };
    const END = new Set(['window', 'order', 'limit', 'offset', 'fetch', 'for', 'union', 'intersect', 'except']);
    let j = h + 1;
    while (j < toks.length && !(toks[j].depth === 0 && ((toks[j].type === 'word' && END.has(toks[j].lower)) || toks[j].text === ';'))) j++;
    const e = this.havingExpr(this.having);
    if ('unsupported' in e) return e;
    this.spec.having = e;
    // Every group must come back; the condition stays (always true) so its parameters keep
    // their place and inferred types in the shard statement.
    const cond: [number, number] = [toks[h + 1].start, toks[j - 1].end];
    this.edits.push({ start: cond[0], end: cond[1], pieces: ['((', cond, ') IS NULL OR true)'] });
    return undefined;
  }

  private havingExpr(e: N): HExpr | Unsupported {
    const all = (xs: N[]): HExpr[] | Unsupported => {
      const out: HExpr[] = [];
      for (const x of xs) { const r = this.havingExpr(x); if ('unsupported' in r) return r; out.push(r); }
      return out;
    };
    if (e.TypeCast) return this.havingExpr(e.TypeCast.arg);
    if (e.A_Const) {
      const c = e.A_Const;
      if (c.isnull) return { k: 'const', v: null, num: false };
      if (c.sval !== undefined) { this.host.constValue(c); return { k: 'const', v: c.sval.sval ?? '', num: false }; }
      if (c.boolval !== undefined) return { k: 'const', v: c.boolval.boolval ? 't' : 'f', num: false };
      return { k: 'const', v: this.host.constValue(c), num: true };
    }
    if (e.ParamRef) return { k: 'param', i: e.ParamRef.number - 1 };
    if (e.BoolExpr) {
      const args = all(e.BoolExpr.args ?? []);
      if ('unsupported' in args) return args;
      const op = e.BoolExpr.boolop;
      return op === 'NOT_EXPR' ? { k: 'not', a: args[0]! } : { k: op === 'AND_EXPR' ? 'and' : 'or', args };
    }
    if (e.NullTest) {
      const a = this.havingExpr(e.NullTest.arg);
      return 'unsupported' in a ? a : { k: 'isnull', a, not: e.NullTest.nulltesttype === 'IS_NOT_NULL' };
    }
    if (e.A_Expr && e.A_Expr.kind === 'AEXPR_OP') {
      const op = strs(e.A_Expr.name).join('.');
      if (!['<', '<=', '>', '>=', '=', '<>', '!=', '+', '-', '*'].includes(op)) return { unsupported: `operator ${op} in HAVING across shards` };
      const b = this.havingExpr(e.A_Expr.rexpr);
      if ('unsupported' in b) return b;
      const a: HExpr | Unsupported = e.A_Expr.lexpr ? this.havingExpr(e.A_Expr.lexpr) : { k: 'const', v: '0', num: true };
      return 'unsupported' in a ? a : { k: 'op', op, a, b };
    }
    const c = canon(e);
    const t = this.targets.findIndex((x: N) => canon(x.ResTarget.val) === c);
    if (t >= 0 && this.positionOf(t) >= 0) return { k: 'col', c: this.positionOf(t) };
    const a = aggOf(e);
    if (a && 'unsupported' in a) return a;
    if (!a) return { unsupported: 'HAVING on an expression outside the select list across shards' };
    if (a.fn === 'string_agg' || a.fn === 'array_agg' || a.fn === 'jsonb_agg' || a.fn === 'json_agg' || a.fn === 'ordered_agg' || a.fn === 'json_object_agg' || a.fn === 'jsonb_object_agg' || a.fn === 'bit_and' || a.fn === 'bit_or' || a.fn === 'bit_xor') return { unsupported: `${a.fn === 'ordered_agg' ? 'an ordered string_agg / array_agg' : a.fn} in HAVING across shards` };
    if (a.fn === 'var') return { unsupported: 'a variance or standard deviation in HAVING that is not in the select list across shards' };
    if (a.fn === 'regr' || a.fn === 'percentile') return { unsupported: `${a.regr}() in HAVING across shards` };
    if (a.fn === 'sum_distinct' || a.fn === 'avg_distinct') return { unsupported: `${a.fn === 'sum_distinct' ? 'sum' : 'avg'}(DISTINCT) in HAVING that is not in the select list across shards` };
    const r = this.callRange(e.FuncCall);
    if (!r) return { unsupported: 'cannot rewrite HAVING for shards' };
    if (a.fn !== 'avg') {
      const col = this.addHidden({ pieces: [a.fn === 'count_distinct' ? 'array_agg' : r.name, r.args], agg: a.fn });
      this.spec.aggregates.push({ column: col, fn: a.fn });
      return { k: 'col', c: col };
    }
    const sum = this.addHidden({ pieces: ['sum', r.args] });
    const cnt = this.addHidden({ pieces: ['count', r.args] });
    this.spec.aggregates.push({ column: sum, fn: 'avg', sumColumn: sum, countColumn: cnt });
    return { k: 'col', c: sum };
  }

  /** string_agg's separator: a string constant (its slot becomes part of the plan) or a parameter */
  private separator(e: N): string | { param: number } | null {
    while (e?.TypeCast) e = e.TypeCast.arg;
    if (e?.A_Const?.sval !== undefined) { this.host.constValue(e.A_Const); return e.A_Const.sval.sval ?? ''; }
    if (e?.ParamRef) return { param: e.ParamRef.number - 1 };
    return null;
  }

  /** text ranges of an aggregate call: its name, and its arguments with any FILTER clause */
  private callRange(fc: N): { name: [number, number]; args: [number, number] } | null {
    const toks = this.toks;
    const at = this.host.loc(fc.location);
    let i = toks.findIndex((t) => t.start === at);
    if (i < 0) return null;
    const nameStart = toks[i].start;
    while (i < toks.length && toks[i].text !== '(') i++;
    if (i >= toks.length) return null;
    const open = i, d0 = toks[open].depth;
    let j = open + 1;
    while (j < toks.length && !(toks[j].text === ')' && toks[j].depth === d0)) j++;
    if (j >= toks.length) return null;
    let end = toks[j].end;
    if (fc.agg_filter && toks[j + 1]?.lower === 'filter' && toks[j + 2]?.text === '(') {
      let f = j + 3;
      while (f < toks.length && !(toks[f].text === ')' && toks[f].depth === d0)) f++;
      if (f >= toks.length) return null;
      end = toks[f].end;
    }
    return { name: [nameStart, toks[open - 1].end], args: [toks[open].start, end] };
  }

  /** LIMIT / OFFSET: the merger applies them; shards return LIMIT + OFFSET rows (all rows under aggregates). */
  private limits(): Unsupported | undefined {
    const { s, spec } = this;
    const lim = (e: N): number | null | { param: number } | undefined => {
      if (!e) return null;
      while (e.TypeCast) e = e.TypeCast.arg;
      if (e.A_Const) { const v = this.host.constValue(e.A_Const); return v === null ? null : Number(v); }
      if (e.ParamRef) return { param: e.ParamRef.number - 1 };
      return undefined;
    };
    const l = lim(s.limitCount), off = lim(s.limitOffset);
    if (l === undefined || off === undefined) return { unsupported: 'LIMIT/OFFSET expression across shards' };
    spec.limit = l; spec.offset = off;
    if (typeof off === 'number' && off === 0) spec.offset = null;
    const section = limitSection(this.toks);
    if ((this.hasAgg && (l !== null || spec.offset !== null)) || spec.offset !== null) {
      if (!section) return { unsupported: 'cannot rewrite LIMIT for shards' };
      let rep = '';
      if (!this.hasAgg && l !== null) {
        const txt = (v: number | { param: number }): string => typeof v === 'number' ? String(v) : `$${v.param + 1}`;
        if (typeof l === 'number' && typeof off === 'number') rep = ` LIMIT ${l + off}`;
        else rep = ` LIMIT (${txt(l)}::bigint + ${txt(off as number | { param: number })}::bigint)`;
      } else {
        // The section goes: its parameters stay referenced (OFFSET 0 * $n), else a Bind of the
        // client's values would not fit the shard statement.
        const ps = [l, off].filter((v): v is { param: number } => v !== null && typeof v === 'object');
        if (ps.length) rep = ` OFFSET (0 * ${ps.map((v) => `$${v.param + 1}::bigint`).join(' * ')})`;
      }
      this.edits.push({ start: section[0], end: section[1], pieces: rep ? [rep] : [] });
    }
    return undefined;
  }

  /** Hidden columns appended to the select list; the shard SQL template when the text changed. */
  private finish(): { spec: MergeSpec; shardSqlT?: Part[] } | Unsupported {
    const { spec, hidden, edits } = this;
    const H = hidden.length;
    spec.hiddenColumns = H;
    const fix = (c: number): number => c >= HID ? (this.star ? -(H - (c - HID)) : this.targets.length + (c - HID)) : c;
    spec.orderBy.forEach((o) => { o.column = fix(o.column); });
    spec.groupBy = spec.groupBy.map(fix);
    if (spec.distinctOn) spec.distinctOn = spec.distinctOn.map(fix);
    if (spec.having) spec.having = mapColumns(spec.having, fix);
    spec.aggregates.forEach((a) => { a.column = fix(a.column); if (a.sumColumn !== undefined) a.sumColumn = fix(a.sumColumn); if (a.byColumn !== undefined) a.byColumn = fix(a.byColumn); if (a.countColumn !== undefined) a.countColumn = fix(a.countColumn); if (a.sqColumn !== undefined) a.sqColumn = fix(a.sqColumn); if (a.avgColumn !== undefined) a.avgColumn = fix(a.avgColumn); if (a.catColumn !== undefined) a.catColumn = fix(a.catColumn); if (a.keyColumns) a.keyColumns = a.keyColumns.map(fix); if (a.syyColumn !== undefined) a.syyColumn = fix(a.syyColumn); if (a.avgyColumn !== undefined) a.avgyColumn = fix(a.avgyColumn); });
    if (H) {
      if (!this.sel) return { unsupported: 'cannot rewrite the select list for shards' };
      const pieces: Range[] = [];
      for (const h of hidden) { pieces.push(', '); pieces.push(...h.pieces); }
      edits.push({ start: this.sel.end, end: this.sel.end, pieces });
    }
    if (!edits.length) return { spec };
    edits.sort((a, b) => a.start - b.start);
    const ranges: Range[] = [];
    let pos = 0;
    for (const e of edits) { ranges.push([pos, e.start]); ranges.push(...e.pieces); pos = Math.max(pos, e.end); }
    ranges.push([pos, this.host.text.length]);
    return { spec, shardSqlT: this.host.parts(ranges) };
  }
}

function exprRange(items: Items, k: number): [number, number] | null { return items[k] ? [items[k].start, items[k].end] : null; }

export function hasWindow(n: N): boolean {
  let found = false;
  const visit = (x: N): void => {
    if (found || !x || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(visit); return; }
    for (const k in x) {
      if (k === 'SubLink') continue;
      if (k === 'FuncCall' && x[k].over) { found = true; return; }
      visit(x[k]);
    }
  };
  visit(n);
  return found;
}
/** first aggregate call name found in n (not inside sublinks) */
export function findAgg(n: N): string | null {
  let found: string | null = null;
  const visit = (x: N): void => {
    if (found || !x || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(visit); return; }
    for (const k in x) {
      if (k === 'SubLink') continue;
      if (k === 'FuncCall') {
        const nm = funcName(x[k]);
        if (nm && !x[k].over && (MERGE_AGGS.has(nm) || OTHER_AGGS.has(nm) || x[k].agg_within_group)) { found = nm; return; }
      }
      visit(x[k]);
    }
  };
  visit(n);
  return found;
}
/** merge aggregate of a plain aggregate call, or an unsupported reason */
/** Types a count() may be cast to across shards: the shards' counts in them add up exactly. */
const COUNT_CASTS = new Set(['int2', 'int4', 'int8', 'numeric']);

export function aggOf(e: N): AggOf {
  // an aggregate cast to a type: count(*)::int, sum(x)::numeric, max(x)::text
  const tc = e?.TypeCast;
  if (tc?.arg?.FuncCall && !tc.arg.FuncCall.over && !tc.typeName?.arrayBounds?.length) {
    const inner = aggOf(tc.arg);
    if (inner && !('unsupported' in inner) && (inner.fn === 'count' || inner.fn === 'sum' || inner.fn === 'min' || inner.fn === 'max')) {
      const names = strs(tc.typeName?.names);
      return { fn: inner.fn, cast: names[names.length - 1] ?? '' };
    }
  }
  const fc = e?.FuncCall;
  if (fc && !fc.over) {
    const nm = funcName(fc);
    // bool_and / every and bool_or are min and max over bool (false < true, NULLs ignored)
    if ((nm === 'bool_and' || nm === 'every' || nm === 'bool_or') && !fc.agg_distinct && !fc.agg_order) return { fn: nm === 'bool_or' ? 'max' : 'min' };
    // without ORDER BY inside, the element order is unspecified on one server too
    if ((nm === 'string_agg' || nm === 'array_agg' || nm === 'jsonb_agg' || nm === 'json_agg') && !fc.agg_distinct && !fc.agg_order && !fc.agg_within_group) return { fn: nm };
    // two-variable statistics: each shard's Youngs-Cramer state (regr_count counts like count)
    if (nm === 'regr_count' && !fc.agg_distinct && !fc.agg_order && !fc.agg_within_group) return { fn: 'count' };
    if (nm && REGR.has(nm) && (fc.args ?? []).length === 2 && !fc.agg_distinct && !fc.agg_order && !fc.agg_within_group) return { fn: 'regr', regr: nm };
    // percentiles and mode(): every shard's sorted values, merged (one fraction, one sort key)
    if ((nm === 'percentile_cont' || nm === 'percentile_disc' || nm === 'mode') && fc.agg_within_group && fc.agg_order?.length === 1
      && (fc.args ?? []).length === (nm === 'mode' ? 0 : 1)) return { fn: 'percentile', regr: nm };
    // objects: the shards' members together (jsonb: one per key, in jsonb's key order)
    if ((nm === 'json_object_agg' || nm === 'jsonb_object_agg') && !fc.agg_distinct && !fc.agg_order && !fc.agg_within_group) return { fn: nm };
    // with ORDER BY inside: each shard's ordered list and its sort keys, merged by the keys
    if ((nm === 'string_agg' || nm === 'array_agg') && !fc.agg_distinct && fc.agg_order?.length && !fc.agg_within_group) return { fn: 'ordered_agg' };
    if ((nm === 'string_agg' || nm === 'array_agg') && fc.agg_distinct && (fc.agg_order ?? []).length <= 1 && !fc.agg_within_group) return { fn: 'ordered_agg' };
    // bitwise: the shards' partials combine with the same operation (DISTINCT changes nothing)
    if ((nm === 'bit_and' || nm === 'bit_or' || nm === 'bit_xor') && !fc.agg_order && !fc.agg_within_group && (nm !== 'bit_xor' || !fc.agg_distinct)) return { fn: nm };
    if (nm && VARIANCE.has(nm) && !fc.agg_distinct && !fc.agg_order && !fc.agg_within_group && !fc.agg_star) return { fn: 'var', variance: VARIANCE.get(nm) };
    if (nm && MERGE_AGGS.has(nm)) {
      if (fc.agg_distinct) {
        // the shards' distinct values (array_agg(DISTINCT x)); the merger counts, sums or averages their union
        const one = !fc.agg_star && (fc.args ?? []).length === 1 && !fc.agg_order;
        if (one && nm === 'count') return { fn: 'count_distinct' };
        if (one && (nm === 'sum' || nm === 'avg')) return { fn: nm === 'sum' ? 'sum_distinct' : 'avg_distinct' };
        if (one && (nm === 'min' || nm === 'max')) return { fn: nm };   // DISTINCT changes nothing for them
        return { unsupported: `${nm}(DISTINCT) across shards` };
      }
      if (fc.agg_within_group) return { unsupported: `aggregate ${nm} across shards` };
      return { fn: nm as 'count' };
    }
    if (nm && (OTHER_AGGS.has(nm) || fc.agg_within_group)) return { unsupported: `aggregate ${nm} across shards` };
  }
  const inner = findAgg(e);
  if (inner) return { unsupported: MERGE_AGGS.has(inner) ? 'expressions over aggregates across shards' : `aggregate ${inner} across shards` };
  return null;
}

/**
 * A select-list item of a query without FROM that one server's answer would give as an aggregate
 * over the shards' answers: `EXISTS (subquery)` is true when it is on any shard (max over bool),
 * `NOT EXISTS (subquery)` when it is on every shard (min), `(SELECT count(*) / sum / min / max
 * FROM ...)` merges as that aggregate. The subquery that gives it: `sub`. null for anything else.
 */
export function sublinkAgg(e: N): { fn: AggFn; sub: N; exists: boolean } | null {
  const not = e?.BoolExpr?.boolop === 'NOT_EXPR' && e.BoolExpr.args?.length === 1 ? e.BoolExpr.args[0] : null;
  const link = (not ?? e)?.SubLink;
  const sub = link?.subselect?.SelectStmt;
  if (!sub) return null;
  if (link.subLinkType === 'EXISTS_SUBLINK') return { fn: not ? 'min' : 'max', sub, exists: true };
  if (not || link.subLinkType !== 'EXPR_SUBLINK' || (sub.targetList ?? []).length !== 1) return null;
  if ((sub.op && sub.op !== 'SETOP_NONE') || sub.groupClause?.length || sub.havingClause || sub.distinctClause || sub.limitCount || sub.limitOffset) return null;
  const a = aggOf(sub.targetList[0].ResTarget?.val);
  return a && !('unsupported' in a) && a.cast === undefined && (a.fn === 'count' || a.fn === 'sum' || a.fn === 'min' || a.fn === 'max') ? { fn: a.fn, sub, exists: false } : null;
}

/** Every select-list item of the FROM-less `s` as sublinkAgg gives it, or null. */
export function sublinkAggs(s: N): { fn: AggFn; sub: N; exists: boolean }[] | null {
  if (s.fromClause?.length || (s.op && s.op !== 'SETOP_NONE') || s.groupClause?.length || s.havingClause || s.distinctClause || s.whereClause) return null;
  const out: { fn: AggFn; sub: N; exists: boolean }[] = [];
  for (const t of s.targetList ?? []) {
    const a = sublinkAgg(t.ResTarget?.val);
    if (!a) return null;
    out.push(a);
  }
  return out.length ? out : null;
}

/** the top-level select list: item ranges and end offset */
export function findTargetList(toks: Token[]): { items: { start: number; end: number }[]; end: number } | null {
  let i = toks.findIndex((t) => t.depth === 0 && t.lower === 'select');
  if (i < 0) return null;
  i++;
  if (toks[i]?.lower === 'all') i++;
  const END = new Set(['from', 'into', 'where', 'group', 'having', 'window', 'order', 'limit', 'offset', 'fetch', 'for', 'union', 'intersect', 'except']);
  const items: { start: number; end: number }[] = [];
  let st = i, j = i;
  for (; j < toks.length; j++) {
    const t = toks[j];
    if (t.depth !== 0) continue;
    // (an alias named like a keyword; WITHIN GROUP of an ordered-set aggregate is not GROUP BY)
    if (t.type === 'word' && END.has(t.lower) && toks[j - 1]?.lower !== 'as' && !(t.lower === 'group' && toks[j - 1]?.lower === 'within')) break;
    if (t.text === ';') break;
    if (t.text === ',') { items.push({ start: toks[st].start, end: toks[j - 1].end }); st = j + 1; }
  }
  if (j > st) items.push({ start: toks[st].start, end: toks[j - 1].end });
  return { items, end: j > i ? toks[j - 1].end : toks[i - 1].end };
}

/** items of a top-level `<kw> BY` clause (expression ranges without ASC/DESC/NULLS) */
export function clauseItems(toks: Token[], kw: string, enders: string[]): { start: number; end: number }[] | null {
  let i = -1;
  for (let k = toks.length - 2; k >= 0; k--) if (toks[k].depth === 0 && toks[k].lower === kw && toks[k + 1].lower === 'by') { i = k + 2; break; }
  if (i < 0) return null;
  const END = new Set(enders);
  const items: { start: number; end: number }[] = [];
  let st = i;
  const close = (j: number): void => {
    let e = j - 1;
    while (e > st && toks[e].depth === 0 && ['asc', 'desc', 'nulls', 'first', 'last'].includes(toks[e].lower)) e--;
    items.push({ start: toks[st].start, end: toks[e].end });
  };
  let j = i;
  for (; j < toks.length; j++) {
    const t = toks[j];
    if (t.depth !== 0) continue;
    if ((t.type === 'word' && END.has(t.lower)) || t.text === ';') break;
    if (t.text === ',') { close(j); st = j + 1; }
  }
  if (j > st) close(j);
  return items;
}

/** [start, end) of the top-level LIMIT/OFFSET/FETCH section */
export function limitSection(toks: Token[]): [number, number] | null {
  let i = -1;
  for (let k = 0; k < toks.length; k++) {
    const t = toks[k];
    if (t.depth === 0 && (t.lower === 'limit' || t.lower === 'offset' || (t.lower === 'fetch' && k > 0))) { i = k; break; }
  }
  if (i < 0) return null;
  let j = i;
  while (j < toks.length && !(toks[j].depth === 0 && (toks[j].lower === 'for' || toks[j].text === ';'))) j++;
  return [i > 0 ? toks[i - 1].end : toks[i].start, j > i ? toks[j - 1].end : toks[i].end];
}