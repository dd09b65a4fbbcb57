// Statement planner: one parsed statement (libpg-query AST) + router schema -> Plan template.
//
// The planner runs once per statement *shape*. The text it sees ("parse text") is the shape with
// each literal slot rendered back as a literal; A_Const nodes are mapped back to their slot by
// location. Key references then point at slots, so the plan holds for every statement of the same
// shape. Plan parts that depend on a literal's *value* (ORDER BY 2, LIMIT 10, SET x = 5, COPY
// options...) mark that slot "fixed": the cache then keys the plan by shape + those values.
import { LitKind, renderLiteral, tokenize, Token } from './lexer';
import type { Command, CopySpec, KeyRef, MergeSpec, Plan, RouterSchema, ShardedTable, KeyType } from './types';

/* eslint-disable @typescript-eslint/no-explicit-any */
type N = any;

/** template part: literal text or a literal slot number */
export type Part = string | number;

export interface PlanTemplate {
  plan: Plan;
  /** slots whose values the plan depends on */
  fixed: number[];
  shardSqlT?: Part[];
  insertT?: { head: Part[]; rows: { parts: Part[]; key: KeyRef }[]; tail: Part[] };
  /** Router cache bookkeeping: when the entry was last inserted or moved (LRU). */
  touched?: number;
}

export interface PlanInput {
  /** the SQL text the parser saw */
  text: string;
  /** literal slots: [start, end) char offsets in text; empty in direct mode */
  slotStart: number[];
  slotEnd: number[];
  literals: string[];
  kinds: LitKind[];
}

interface NTable extends ShardedTable { lname: string; lcolumn: string; lcolumns?: string[] }
export interface NSchema {
  byName: Map<string, NTable>;
  /** reference tables of the cluster definition (folded names) */
  reference: Set<string>;
  /** unknownTables: 'reject': a table in neither list is refused */
  reject: boolean;
}

function foldIdent(s: string): string {
  if (s.length >= 2 && s[0] === '"' && s[s.length - 1] === '"') return s.slice(1, -1).split('""').join('"');
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}
function splitQualified(name: string): string[] {
  const parts: string[] = [];
  let cur = '', q = false;
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    if (c === '"') { if (q && name[i + 1] === '"') { cur += '""'; i++; continue; } q = !q; cur += c; continue; }
    if (c === '.' && !q) { parts.push(cur); cur = ''; continue; }
    cur += c;
  }
  parts.push(cur);
  return parts;
}

export function normalizeSchema(schema: RouterSchema): NSchema {
  const byName = new Map<string, NTable>();
  for (const t of schema.tables) {
    const parts = splitQualified(t.name).map(foldIdent);
    const lname = parts[parts.length - 1];
    byName.set(lname, {
      ...t, lname, lcolumn: foldIdent(t.column), lcolumns: t.columns?.map(foldIdent),
    });
  }
  const reference = new Set((schema.reference ?? []).map((r) => { const parts = splitQualified(r).map(foldIdent); return parts[parts.length - 1]; }));
  return { byName, reference, reject: schema.unknownTables === 'reject' };
}

// ------------------------------------------------------------------------------------------
// helpers

function nodeTag(n: N): string { for (const k in n) return k; return ''; }
function body(n: N): N { for (const k in n) return n[k]; return undefined; }
function strs(list: N[] | undefined): string[] { return (list ?? []).map((x) => x?.String?.sval ?? (x?.A_Star ? '*' : '')); }
function canon(n: N): string { return JSON.stringify(n, (k, v) => (k === 'location' ? undefined : v)); }

const MERGE_AGGS = new Set(['count', 'sum', 'min', 'max', 'avg']);
const OTHER_AGGS = new Set(['array_agg', 'string_agg', 'bool_and', 'bool_or', 'every', 'bit_and', 'bit_or', 'bit_xor',
  'json_agg', 'jsonb_agg', 'json_object_agg', 'jsonb_object_agg', 'json_agg_strict', 'jsonb_agg_strict',
  'json_objectagg', 'json_arrayagg', 'xmlagg', 'stddev', 'stddev_pop', 'stddev_samp', 'variance', 'var_pop',
  'var_samp', 'corr', 'covar_pop', 'covar_samp', 'regr_avgx', 'regr_avgy', 'regr_count', 'regr_intercept',
  'regr_r2', 'regr_slope', 'regr_sxx', 'regr_sxy', 'regr_syy', 'percentile_cont', 'percentile_disc', 'mode',
  'any_value', 'range_agg', 'range_intersect_agg', 'grouping']);
const ADVISORY = new Set(['pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_try_advisory_lock', 'pg_try_advisory_lock_shared']);

function funcName(fc: N): string | null {
  const names = strs(fc.funcname);
  if (names.length === 1) return names[0];
  if (names.length === 2 && names[0] === 'pg_catalog') return names[1];
  return null;
}

interface Occ { id: number; table: NTable | null; relname: string; schemaname?: string; alias: string; level: Level; own: KeyRef[] | null; keys: KeyRef[] | null }
interface Item { occ?: Occ; alias: string | null; opaque: boolean }
interface Level { parent: Level | null; items: Item[] }
interface Edge { from: Occ; to: Occ }
type Restr = Map<Occ, KeyRef[]>;

function sameRef(a: KeyRef, b: KeyRef): boolean {
  if (a.kind !== b.kind || !!a.array !== !!b.array) return false;
  if (a.kind === 'literal') return a.slot === (b as typeof a).slot;
  if (a.kind === 'param') return a.index === (b as typeof a).index;
  return a.text === (b as typeof a).text;
}
function unionRefs(a: KeyRef[], b: KeyRef[]): KeyRef[] {
  const out = a.slice();
  for (const r of b) if (!out.some((x) => sameRef(x, r))) out.push(r);
  return out;
}

function keyFamily(t: KeyType): string {
  return t === 'smallint' || t === 'integer' || t === 'bigint' ? 'int' : t === 'varchar' ? 'text' : t;
}
/** two sharded occurrences whose keys hash alike (equal key values live on the same shard) */
function colocated(a: Occ, b: Occ): boolean {
  return !!a.table && !!b.table && keyFamily(a.table.type) === keyFamily(b.table.type);
}

function numConstText(v: N): string | null {
  // A_Const body -> text
  if (v.isnull) return null;
  if (v.ival !== undefined) return String(v.ival.ival ?? 0);
  if (v.fval !== undefined) {
    let s: string = v.fval.fval;
    if (s.indexOf('_') >= 0) s = s.split('_').join('');
    const neg = s[0] === '-';
    const u = neg ? s.slice(1) : s;
    if (/^0[xob]/i.test(u)) return (neg ? '-' : '') + BigInt(u.toLowerCase()).toString();
    return s;
  }
  if (v.sval !== undefined) return v.sval.sval ?? '';
  if (v.boolval !== undefined) return v.boolval.boolval ? 'true' : 'false';
  if (v.bsval !== undefined) return v.bsval.bsval;
  return null;
}

// ------------------------------------------------------------------------------------------

export class Planner {
  private readonly text: string;
  private readonly slotAtChar = new Map<number, number>();
  private readonly fixed = new Set<number>();
  private byteToChar: Int32Array | null = null;
  private tokens: Token[] | null = null;

  // analysis state
  private occs: Occ[] = [];
  private edges: Edge[] = [];
  private walked = new WeakSet<object>();
  private ctes: Set<string>[] = [];
  private dmlWrite = false;
  private sessionState: Plan['sessionState'] = null;
  private unsupported: string | undefined;
  private sawReference = false;
  /** a user table in neither list of the cluster definition (policy reject) */
  private unknownTable: string | undefined;
  private insertT: PlanTemplate['insertT'];
  /** level of each simple SELECT body walked */
  private levelOf = new Map<object, Level>();
  /** the written table of INSERT/UPDATE/DELETE/MERGE: a sharded occurrence, or 'reference' */
  private writeTarget: Occ | 'reference' | null = null;
  /** why the statement cannot run on several shards (set by the INSERT walk) */
  private insertReason: string | undefined;
  private cteDepth = 0;
  /** some INSERT/UPDATE/DELETE/MERGE writes a reference (not sharded) table */
  private writesReference = false;

  constructor(private readonly schema: NSchema, private readonly input: PlanInput) {
    this.text = input.text;
    for (let i = 0; i < input.slotStart.length; i++) this.slotAtChar.set(input.slotStart[i], i);
    // byte offsets -> char offsets when the text is not pure ASCII
    // eslint-disable-next-line no-control-regex
    if (/[^\x00-\x7f]/.test(this.text)) {
      const buf = Buffer.from(this.text, 'utf8');
      const map = new Int32Array(buf.length + 1);
      let b = 0;
      for (let ci = 0; ci < this.text.length; ci++) {
        const cp = this.text.codePointAt(ci)!;
        const len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        for (let k = 0; k < len; k++) map[b + k] = ci;
        b += len;
        if (cp >= 0x10000) ci++;
      }
      map[buf.length] = this.text.length;
      this.byteToChar = map;
    }
  }

  private loc(byteLoc: number | undefined): number {
    if (byteLoc === undefined || byteLoc < 0) return -1;
    return this.byteToChar ? this.byteToChar[byteLoc] : byteLoc;
  }
  private toks(): Token[] { return (this.tokens ??= tokenize(this.text)); }

  /** slot of the literal that starts at this A_Const's location (-1 if none). A folded unary minus
   *  (location at '-') whose literal is a separate slot is detected and that slot marked fixed. */
  private constSlot(c: N): { slot: number; foldedMinus: boolean } {
    const p = this.loc(c.location);
    if (p < 0) return { slot: -1, foldedMinus: false };
    const s = this.slotAtChar.get(p);
    if (s !== undefined) return { slot: s, foldedMinus: false };
    for (let k = 0; k < this.input.slotStart.length; k++) {
      if (this.input.slotStart[k] < p && p < this.input.slotEnd[k]) return { slot: k, foldedMinus: true };
    }
    if (this.text.charCodeAt(p) === 45) {
      let k = p + 1;
      while (k < this.text.length && /\s/.test(this.text[k])) k++;
      const s2 = this.slotAtChar.get(k);
      if (s2 !== undefined) return { slot: s2, foldedMinus: true };
    }
    return { slot: -1, foldedMinus: false };
  }

  /** value of a constant the plan depends on (marks its slot fixed) */
  private constValue(c: N): string | null {
    const { slot } = this.constSlot(c);
    if (slot >= 0) this.fixed.add(slot);
    return numConstText(c);
  }
  private fixAll(n: N): void {
    // mark every literal slot inside n fixed
    const visit = (x: N): void => {
      if (!x || typeof x !== 'object') return;
      if (Array.isArray(x)) { for (const y of x) visit(y); return; }
      if (x.A_Const) { this.constValue(x.A_Const); return; }
      for (const k in x) visit(x[k]);
    };
    visit(n);
  }

  /** KeyRef for a value expression: constant, parameter, (cast of) those, unary minus of a constant */
  private valueRef(e: N, array = false): KeyRef | undefined {
    while (e?.TypeCast) e = e.TypeCast.arg;
    if (!e) return undefined;
    if (e.A_Const) {
      const c = e.A_Const;
      if (c.isnull) return { kind: 'value', text: null };
      const { slot, foldedMinus } = this.constSlot(c);
      if (slot >= 0 && !foldedMinus) return array ? { kind: 'literal', slot, array } : { kind: 'literal', slot };
      if (slot >= 0) this.fixed.add(slot);
      const t = numConstText(c);
      return array ? { kind: 'value', text: t, array } : { kind: 'value', text: t };
    }
    if (e.ParamRef) return array ? { kind: 'param', index: e.ParamRef.number - 1, array } : { kind: 'param', index: e.ParamRef.number - 1 };
    if (e.A_Expr && e.A_Expr.kind === 'AEXPR_OP' && !e.A_Expr.lexpr && strs(e.A_Expr.name)[0] === '-' && !array) {
      let inner = e.A_Expr.rexpr;
      while (inner?.TypeCast) inner = inner.TypeCast.arg;
      if (inner?.A_Const && (inner.A_Const.ival !== undefined || inner.A_Const.fval !== undefined)) {
        // "-5::int": the lexer made "-5" one literal slot, the parser negates the cast of 5
        const ip = this.loc(inner.A_Const.location);
        for (let k = 0; k < this.input.slotStart.length; k++) {
          if (this.input.slotStart[k] === ip - 1 && this.text.charCodeAt(ip - 1) === 45) return { kind: 'literal', slot: k };
        }
        const v = this.constValue(inner.A_Const);
        if (v === null) return undefined;
        return { kind: 'value', text: v.startsWith('-') ? v.slice(1) : v === '0' ? v : '-' + v };
      }
    }
    return undefined;
  }

  // ---------------------------------------------------------------- table / column resolution

  private lookupTable(rv: N): NTable | null {
    if (rv.catalogname) return null;
    if (rv.schemaname && rv.schemaname !== 'public') return null;
    return this.schema.byName.get(rv.relname) ?? null;
  }
  /** Neither sharded nor reference, and not a catalog: what unknownTables 'reject' refuses. */
  private isUnknownUserTable(rv: N): boolean {
    if (rv.catalogname || (rv.schemaname && rv.schemaname !== 'public')) return false;
    if (!rv.schemaname && rv.relname.startsWith('pg_')) return false; // pg_catalog comes first in the search path
    return !this.schema.reference.has(rv.relname);
  }
  private isCte(name: string): boolean {
    for (let i = this.ctes.length - 1; i >= 0; i--) if (this.ctes[i].has(name)) return true;
    return false;
  }
  private addRangeVar(rv: N, level: Level): Occ | null {
    if (!rv.schemaname && this.isCte(rv.relname)) {
      level.items.push({ alias: rv.alias?.aliasname ?? rv.relname, opaque: true });
      return null;
    }
    const table = this.lookupTable(rv);
    if (!table) {
      this.sawReference = true;
      if (this.schema.reject && !this.unknownTable && this.isUnknownUserTable(rv)) this.unknownTable = rv.relname;
    }
    const occ: Occ = {
      id: this.occs.length, table, relname: rv.relname, schemaname: rv.schemaname,
      alias: rv.alias?.aliasname ?? rv.relname, level, own: null, keys: null,
    };
    if (table) this.occs.push(occ);
    level.items.push({ occ, alias: occ.alias, opaque: !table });
    return table ? occ : null;
  }

  /** the sharded occurrence whose key column this ColumnRef is, if any */
  private keyCol(e: N, level: Level): Occ | null {
    while (e?.TypeCast) e = e.TypeCast.arg;
    if (!e?.ColumnRef) return null;
    const f = strs(e.ColumnRef.fields);
    if (f.includes('*')) return null;
    const col = f[f.length - 1];
    if (f.length === 1) {
      for (let L: Level | null = level; L; L = L.parent) {
        let found: Occ | null = null, count = 0, unknown = false;
        for (const it of L.items) {
          if (it.occ?.table) {
            if (it.occ.table.lcolumn === col) { found = it.occ; count++; }
            else if (!it.occ.table.lcolumns || it.occ.table.lcolumns.includes(col)) unknown = true;
          } else unknown = true;
        }
        if (count === 1 && !unknown) return found;
        if (count === 1 && unknown && L === level) return found; // same level: ambiguity would be an error in PostgreSQL
        if (count > 0 || unknown) return null;
      }
      return null;
    }
    const q = f[f.length - 2];
    const schemaQ = f.length >= 3 ? f[f.length - 3] : undefined;
    for (let L: Level | null = level; L; L = L.parent) {
      for (const it of L.items) {
        const matches = schemaQ !== undefined
          ? it.occ && it.occ.alias === it.occ.relname && it.occ.relname === q && (it.occ.schemaname ?? 'public') === schemaQ
          : it.alias === q;
        if (matches) return it.occ?.table && it.occ.table.lcolumn === col ? it.occ : null;
      }
    }
    return null;
  }

  // ---------------------------------------------------------------- restrictions

  private restrict(e: N, level: Level): Restr | null {
    if (!e) return null;
    if (e.BoolExpr) {
      const b = e.BoolExpr;
      if (b.boolop === 'AND_EXPR') {
        const out: Restr = new Map();
        for (const a of b.args) {
          const r = this.restrict(a, level);
          if (!r) continue;
          for (const [o, refs] of r) { const cur = out.get(o); if (!cur || refs.length < cur.length) out.set(o, refs); }
        }
        return out.size ? out : null;
      }
      if (b.boolop === 'OR_EXPR') {
        let out: Restr | null = null;
        for (const a of b.args) {
          const r = this.restrict(a, level);
          if (!r) return null;
          if (!out) { out = r; continue; }
          const next: Restr = new Map();
          for (const [o, refs] of out) { const other = r.get(o); if (other) next.set(o, unionRefs(refs, other)); }
          out = next;
          if (!out.size) return null;
        }
        return out;
      }
      return null;
    }
    if (e.A_Expr) {
      const a = e.A_Expr;
      const op = strs(a.name)[0];
      if (op !== '=') return null;
      if (a.kind === 'AEXPR_OP') {
        let occ = this.keyCol(a.lexpr, level), other = a.rexpr;
        if (!occ) { occ = this.keyCol(a.rexpr, level); other = a.lexpr; }
        if (!occ) return null;
        const r = this.valueRef(other);
        return r ? new Map([[occ, [r]]]) : null;
      }
      if (a.kind === 'AEXPR_IN') {
        const occ = this.keyCol(a.lexpr, level);
        if (!occ || !a.rexpr?.List) return null;
        const refs: KeyRef[] = [];
        for (const it of a.rexpr.List.items) { const r = this.valueRef(it); if (!r) return null; if (!refs.some((x) => sameRef(x, r))) refs.push(r); }
        return new Map([[occ, refs]]);
      }
      if (a.kind === 'AEXPR_OP_ANY') {
        const occ = this.keyCol(a.lexpr, level);
        if (!occ) return null;
        let r = a.rexpr;
        while (r?.TypeCast) r = r.TypeCast.arg;
        if (r?.A_ArrayExpr) {
          const refs: KeyRef[] = [];
          for (const it of r.A_ArrayExpr.elements ?? []) { const v = this.valueRef(it); if (!v) return null; refs.push(v); }
          return new Map([[occ, refs]]);
        }
        if (r?.A_Const || r?.ParamRef) { const v = this.valueRef(r, true); return v ? new Map([[occ, [v]]]) : null; }
        return null;
      }
      return null;
    }
    if (e.NullTest && e.NullTest.nulltesttype === 'IS_NULL') {
      const occ = this.keyCol(e.NullTest.arg, level);
      return occ ? new Map([[occ, [{ kind: 'value', text: null }]]]) : null;
    }
    return null;
  }

  /** apply a qualification in AND context. allowed: occurrences it may restrict (null = all);
   *  preserved: for outer joins, edges only go from preserved-side to the others. */
  private applyQual(q: N, level: Level, allowed: Set<Occ> | null, preserved: Set<Occ> | null): void {
    if (!q) return;
    const conj: N[] = [];
    const flat = (x: N): void => { if (x?.BoolExpr?.boolop === 'AND_EXPR') x.BoolExpr.args.forEach(flat); else conj.push(x); };
    flat(q);
    for (const c of conj) {
      if (c?.A_Expr?.kind === 'AEXPR_OP' && strs(c.A_Expr.name)[0] === '=') {
        const l = this.keyCol(c.A_Expr.lexpr, level), r = this.keyCol(c.A_Expr.rexpr, level);
        if (l && r) { this.addEdge(l, r, level, allowed, preserved); continue; }
      }
      // key IN (SELECT key2 FROM ...)
      if (c?.SubLink && c.SubLink.subLinkType === 'ANY_SUBLINK' && (!c.SubLink.operName || strs(c.SubLink.operName)[0] === '=')) {
        const occ = this.keyCol(c.SubLink.testexpr, level);
        const inner = this.walkStatement(c.SubLink.subselect, level);
        if (occ && inner && (!allowed || allowed.has(occ))) {
          const sel = c.SubLink.subselect.SelectStmt;
          const t = sel?.targetList?.length === 1 ? sel.targetList[0].ResTarget?.val : null;
          const src = t ? this.keyCol(t, inner) : null;
          if (src && src.level === inner && colocated(src, occ)) this.edges.push({ from: src, to: occ });
        }
        continue;
      }
      const r = this.restrict(c, level);
      if (!r) continue;
      for (const [o, refs] of r) {
        if (allowed && !allowed.has(o)) continue;
        if (!o.own || refs.length < o.own.length) o.own = refs;
      }
    }
  }
  private addEdge(a: Occ, b: Occ, level: Level, allowed: Set<Occ> | null, preserved: Set<Occ> | null): void {
    const depth = (L: Level): number => { let d = 0; for (let x: Level | null = L; x; x = x.parent) d++; return d; };
    const da = depth(a.level), db = depth(b.level);
    if (!colocated(a, b)) return;
    const dir = (from: Occ, to: Occ): void => {
      if (allowed && !allowed.has(to)) return;
      if (preserved && !preserved.has(from)) return;
      this.edges.push({ from, to });
    };
    if (da === db) { dir(a, b); dir(b, a); } else if (da < db) dir(a, b); else dir(b, a);
    void level;
  }

  private setWriteTarget(occ: Occ | null, L: Level): void {
    const it = L.items[L.items.length - 1];
    if (!occ) { if (it?.occ) this.writesReference = true; return; }
    if (L.parent === null && this.cteDepth === 0 && this.writeTarget === null) this.writeTarget = occ;
  }

  // ---------------------------------------------------------------- statement walk

  /** walk a (sub)statement; returns its top level (for simple SELECTs) */
  walkStatement(n: N, parent: Level | null): Level | null {
    if (!n || typeof n !== 'object') return null;
    if (this.walked.has(n)) return null;
    this.walked.add(n);
    const tag = nodeTag(n);
    const s = n[tag];
    let pushedCte = false;
    if (s?.withClause?.ctes) {
      const names = new Set<string>();
      for (const c of s.withClause.ctes) names.add(c.CommonTableExpr.ctename);
      this.ctes.push(names); pushedCte = true;
      for (const c of s.withClause.ctes) {
        const q = c.CommonTableExpr.ctequery;
        const qt = nodeTag(q);
        if (qt === 'InsertStmt' || qt === 'UpdateStmt' || qt === 'DeleteStmt' || qt === 'MergeStmt') this.dmlWrite = true;
        this.cteDepth++;
        try { this.walkStatement(q, parent); } finally { this.cteDepth--; }
      }
    }
    let level: Level | null = null;
    try {
      switch (tag) {
        case 'SelectStmt': level = this.walkSelect(s, parent); break;
        case 'InsertStmt': level = this.walkInsert(s, parent); break;
        case 'UpdateStmt': level = this.walkUpdate(s, parent); break;
        case 'DeleteStmt': level = this.walkDelete(s, parent); break;
        case 'MergeStmt': {
          level = { parent, items: [] };
          this.setWriteTarget(this.addRangeVar(s.relation, level), level);
          this.addFrom(s.sourceRelation, level);
          this.walkExprs(s, level);
          break;
        }
        default: this.walkExprs(s, parent ?? { parent: null, items: [] });
      }
    } finally {
      if (pushedCte) this.ctes.pop();
    }
    return level;
  }

  private walkSelect(s: N, parent: Level | null): Level | null {
    if (s.op && s.op !== 'SETOP_NONE') {
      this.walkStatement({ SelectStmt: s.larg }, parent);
      this.walkStatement({ SelectStmt: s.rarg }, parent);
      const L: Level = { parent, items: [] };
      this.walkExprs({ a: s.sortClause, b: s.limitCount, c: s.limitOffset }, L);
      return null;
    }
    const L: Level = { parent, items: [] };
    this.levelOf.set(s, L);
    for (const f of s.fromClause ?? []) this.addFrom(f, L);
    this.applyQual(s.whereClause, L, null, null);
    if (s.intoClause) this.dmlWrite = true;
    this.walkExprs({ a: s.targetList, b: s.whereClause, c: s.havingClause, d: s.groupClause, e: s.sortClause, f: s.limitCount, g: s.limitOffset, h: s.valuesLists, i: s.windowClause }, L);
    return L;
  }

  private addFrom(f: N, L: Level): Set<Occ> {
    const tag = nodeTag(f);
    const x = f[tag];
    const mine = new Set<Occ>();
    const before = this.occs.length;
    switch (tag) {
      case 'RangeVar': this.addRangeVar(x, L); break;
      case 'JoinExpr': {
        const left = this.addFrom(x.larg, L);
        const right = this.addFrom(x.rarg, L);
        const jt = x.jointype;
        const all = new Set([...left, ...right]);
        let allowed: Set<Occ> | null = all, preserved: Set<Occ> | null = null;
        if (jt === 'JOIN_LEFT') { allowed = right; preserved = left; }
        else if (jt === 'JOIN_RIGHT') { allowed = left; preserved = right; }
        else if (jt === 'JOIN_FULL') { allowed = new Set(); preserved = new Set(); }
        this.applyQual(x.quals, L, allowed, preserved);
        for (const u of strs(x.usingClause)) {
          const ls = [...left].filter((o) => o.table?.lcolumn === u), rs = [...right].filter((o) => o.table?.lcolumn === u);
          for (const a of ls) for (const b of rs) this.addEdge(a, b, L, allowed, preserved);
        }
        this.walkExprs(x.quals, L);
        if (x.alias) L.items.push({ alias: x.alias.aliasname, opaque: true });
        break;
      }
      case 'RangeSubselect':
        this.walkStatement(x.subquery, L);
        L.items.push({ alias: x.alias?.aliasname ?? null, opaque: true });
        break;
      case 'RangeTableSample':
        this.addFrom(x.relation, L);
        this.walkExprs(x, L);
        break;
      default:
        this.walkExprs(x, L);
        L.items.push({ alias: x?.alias?.aliasname ?? null, opaque: true });
    }
    for (let i = before; i < this.occs.length; i++) if (this.occs[i].level === L) mine.add(this.occs[i]);
    return mine;
  }

  private walkUpdate(s: N, parent: Level | null): Level {
    const L: Level = { parent, items: [] };
    const target = this.addRangeVar(s.relation, L);
    this.setWriteTarget(target, L);
    for (const f of s.fromClause ?? []) this.addFrom(f, L);
    this.applyQual(s.whereClause, L, null, null);
    if (target) {
      for (const rt of s.targetList ?? []) {
        const r = rt.ResTarget;
        if (r?.name === target.table!.lcolumn) {
          const v = r.val;
          const same = v?.ColumnRef && strs(v.ColumnRef.fields).slice(-1)[0] === r.name;
          if (!same) this.unsupported = 'updating the shard key column';
        }
      }
    }
    this.walkExprs({ a: s.targetList, b: s.whereClause, c: s.returningClause, d: s.returningList }, L);
    return L;
  }
  private walkDelete(s: N, parent: Level | null): Level {
    const L: Level = { parent, items: [] };
    this.setWriteTarget(this.addRangeVar(s.relation, L), L);
    for (const f of s.usingClause ?? []) this.addFrom(f, L);
    this.applyQual(s.whereClause, L, null, null);
    this.walkExprs({ b: s.whereClause, c: s.returningClause, d: s.returningList }, L);
    return L;
  }

  private walkInsert(s: N, parent: Level | null): Level {
    const L: Level = { parent, items: [] };
    const occ = this.addRangeVar(s.relation, L);
    this.setWriteTarget(occ, L);
    const top = occ !== null && this.writeTarget === occ;
    const sel = s.selectStmt?.SelectStmt;
    const values = sel && (!sel.op || sel.op === 'SETOP_NONE') && sel.valuesLists ? sel.valuesLists : null;
    let selLevel: Level | null = null;
    if (sel && !values) selLevel = this.walkStatement(s.selectStmt, parent);
    if (values) { this.walked.add(s.selectStmt); this.walkExprs(values, { parent: L, items: [] }); }
    if (occ) {
      const t = occ.table!;
      const cols: string[] | undefined = s.cols ? s.cols.map((c: N) => c.ResTarget.name) : t.lcolumns;
      const idx = cols ? cols.indexOf(t.lcolumn) : -1;
      const why = (r: string): void => { if (top && !this.insertReason) this.insertReason = r; };
      if (!sel) why(`INSERT ... DEFAULT VALUES into sharded table "${t.name}"`);
      else if (values && idx < 0) {
        why(cols ? `INSERT into sharded table "${t.name}" without a value for its shard key column "${t.column}"`
          : `INSERT into sharded table "${t.name}" without a column list (name the columns, or configure sharding.tables[].columns)`);
      } else if (values) {
        const refs: KeyRef[] = [];
        let ok = true;
        for (const row of values) {
          const items = row.List.items;
          const r = idx < items.length ? this.valueRef(items[idx]) : undefined;
          if (!r) { ok = false; break; }
          refs.push(r);
        }
        if (ok) {
          const uniq: KeyRef[] = [];
          for (const r of refs) if (!uniq.some((x) => sameRef(x, r))) uniq.push(r);
          occ.own = uniq;
          if (values.length > 1) this.buildInsertSplit(refs);
        } else why(`INSERT into sharded table "${t.name}" with a computed shard key value`);
      } else this.insertSelect(s, occ, sel, selLevel, cols, idx, why);
      const oc = s.onConflictClause;
      if (oc?.action === 'ONCONFLICT_UPDATE') {
        for (const rt of oc.targetList ?? []) if (rt.ResTarget?.name === t.lcolumn) this.unsupported = 'updating the shard key column';
      }
    }
    this.walkExprs({ a: s.onConflictClause, b: s.returningClause, c: s.returningList }, L);
    return L;
  }

  /** INSERT INTO sharded SELECT ...: correct on several shards only when every row's key comes from
   *  the key column of a co-located table read in the same row (rows stay on their shard), or is a
   *  constant (then the SELECT must read data of that one shard: checked by the scatter rules). */
  private insertSelect(s: N, occ: Occ, sel: N, lvl: Level | null, cols: string[] | undefined, idx: number, why: (r: string) => void): void {
    const t = occ.table!;
    if (!lvl) { why(`INSERT ... SELECT with a set operation into sharded table "${t.name}"`); return; }
    const tl: N[] = sel.targetList ?? [];
    const isStar = (x: N): boolean => strs(x.ResTarget?.val?.ColumnRef?.fields).slice(-1)[0] === '*';
    let src: Occ | null = null;
    if (!s.cols && tl.length === 1 && isStar(tl[0])) {
      const f = strs(tl[0].ResTarget.val.ColumnRef.fields);
      const items = lvl.items.filter((it) => f.length === 1 || it.alias === f[f.length - 2]);
      if (items.length === 1 && items[0].occ?.table === t) src = items[0].occ!;
      else { why(`INSERT ... SELECT * into sharded table "${t.name}" from another relation`); return; }
    } else if (idx >= 0 && idx < tl.length && !tl.some(isStar)) {
      const e = tl[idx].ResTarget.val;
      const k = this.keyCol(e, lvl);
      if (k && k.level === lvl && colocated(k, occ)) src = k;
      else {
        const r = this.valueRef(e);
        if (r) { occ.own = [r]; return; }
        why(`INSERT ... SELECT into sharded table "${t.name}" with a shard key that is not a constant or a co-located shard key column`);
        return;
      }
    } else {
      why(cols ? `INSERT ... SELECT into sharded table "${t.name}" without its shard key column "${t.column}"`
        : `INSERT ... SELECT into sharded table "${t.name}" without a column list`);
      return;
    }
    this.edges.push({ from: src, to: occ });
    if (sel.limitCount || sel.limitOffset || sel.distinctClause || sel.groupClause || sel.havingClause
      || this.findAgg(sel.targetList) || this.hasWindow(sel.targetList)) {
      why('INSERT ... SELECT with LIMIT/DISTINCT/GROUP BY/aggregates/window functions across shards');
    }
  }

  private buildInsertSplit(keys: KeyRef[]): void {
    // rows are the depth-0 parenthesized groups after the first depth-0 VALUES
    const toks = this.toks();
    let i = toks.findIndex((t) => t.depth === 0 && t.lower === 'values');
    if (i < 0) return;
    const rows: [number, number][] = [];
    i++;
    while (i < toks.length && toks[i].text === '(' && toks[i].depth === 0) {
      let j = i + 1;
      while (j < toks.length && !(toks[j].text === ')' && toks[j].depth === 0)) j++;
      if (j >= toks.length) return;
      rows.push([toks[i].start, toks[j].end]);
      i = j + 1;
      if (i < toks.length && toks[i].text === ',' && toks[i].depth === 0) i++; else break;
    }
    if (rows.length !== keys.length) return;
    const headEnd = rows[0][0];
    const tailStart = rows[rows.length - 1][1];
    this.insertT = {
      head: this.parts([[0, headEnd]]),
      rows: rows.map((r, k) => ({ parts: this.parts([r]), key: keys[k] })),
      tail: this.parts([[tailStart, this.text.length]]),
    };
  }

  /** generic walk of an expression tree: nested statements become levels under `level` */
  private walkExprs(n: N, level: Level): void {
    if (!n || typeof n !== 'object') return;
    if (Array.isArray(n)) { for (const x of n) this.walkExprs(x, level); return; }
    for (const k in n) {
      const v = n[k];
      if (!v || typeof v !== 'object') continue;
      if (k === 'SelectStmt' || k === 'InsertStmt' || k === 'UpdateStmt' || k === 'DeleteStmt' || k === 'MergeStmt') {
        if (k !== 'SelectStmt') this.dmlWrite = true;
        this.walkStatement(n, level);
        continue;
      }
      if (k === 'FuncCall') {
        const name = funcName(v);
        if (name && ADVISORY.has(name)) this.sessionState = 'advisory_lock';
      }
      if (k === 'RangeVar') { this.addRangeVar(v, { parent: level, items: [] }); continue; }
      if ((k === 'relation' || k === 'rel') && typeof v.relname === 'string') { this.addRangeVar(v, { parent: level, items: [] }); continue; }
      this.walkExprs(v, level);
    }
  }

  /** final key set over all sharded occurrences (null if any has none) */
  private finishKeys(): { keys: KeyRef[] | null; table?: NTable } {
    if (!this.occs.length) return { keys: null };
    for (const o of this.occs) o.keys = o.own;
    let changed = true;
    while (changed) {
      changed = false;
      for (const e of this.edges) {
        if (!e.to.keys && e.from.keys) { e.to.keys = e.from.keys; changed = true; }
      }
    }
    let keys: KeyRef[] = [];
    for (const o of this.occs) {
      if (!o.keys) return { keys: null, table: this.occs[0].table! };
      keys = unionRefs(keys, o.keys);
    }
    return { keys, table: this.occs[0].table! };
  }

  // ---------------------------------------------------------------- text templates

  /** template parts for text ranges (literal slots inside become slot parts) */
  parts(ranges: ([number, number] | string)[]): Part[] {
    const out: Part[] = [];
    const push = (s: string): void => {
      if (!s) return;
      if (out.length && typeof out[out.length - 1] === 'string') out[out.length - 1] += s; else out.push(s);
    };
    const ss = this.input.slotStart, se = this.input.slotEnd;
    for (const r of ranges) {
      if (typeof r === 'string') { push(r); continue; }
      let [a, b] = r;
      for (let k = 0; k < ss.length && a < b; k++) {
        if (se[k] <= a || ss[k] >= b) continue;
        if (ss[k] < a || se[k] > b) { push(this.text.slice(a, b)); a = b; this.fixed.add(k); break; } // partial overlap: bake it
        push(this.text.slice(a, ss[k]));
        if (this.fixed.has(k)) push(this.text.slice(ss[k], se[k])); else out.push(k);
        a = se[k];
      }
      push(this.text.slice(a, b));
    }
    return out;
  }

  // ---------------------------------------------------------------- top level

  plan(stmt: N): PlanTemplate {
    const tag = nodeTag(stmt);
    const s = stmt[tag];
    const p: Plan = { command: 'other', write: false, target: 'none', keys: null };
    let withKeys = false;
    let shardSqlT: Part[] | undefined;
    const txn: Record<string, Command> = {
      TRANS_STMT_BEGIN: 'begin', TRANS_STMT_START: 'begin', TRANS_STMT_COMMIT: 'commit', TRANS_STMT_ROLLBACK: 'rollback',
      TRANS_STMT_SAVEPOINT: 'savepoint', TRANS_STMT_RELEASE: 'release', TRANS_STMT_ROLLBACK_TO: 'rollback_to',
      TRANS_STMT_PREPARE: 'prepare_transaction', TRANS_STMT_COMMIT_PREPARED: 'commit_prepared',
      TRANS_STMT_ROLLBACK_PREPARED: 'rollback_prepared',
    };
    switch (tag) {
      case 'SelectStmt':
        p.command = 'select'; withKeys = true;
        this.walkStatement(stmt, null);
        if (s.intoClause) {
          p.command = 'ddl';
          const rel = s.intoClause.rel;
          if (rel && rel.relpersistence !== 't' && !rel.catalogname && (!rel.schemaname || rel.schemaname === 'public')) p.createsTable = rel.relname;
        }
        break;
      case 'InsertStmt': p.command = 'insert'; p.write = true; withKeys = true; this.walkStatement(stmt, null); break;
      case 'UpdateStmt': p.command = 'update'; p.write = true; withKeys = true; this.walkStatement(stmt, null); break;
      case 'DeleteStmt': p.command = 'delete'; p.write = true; withKeys = true; this.walkStatement(stmt, null); break;
      case 'MergeStmt': p.command = 'merge'; p.write = true; withKeys = true; this.walkStatement(stmt, null); break;
      case 'TransactionStmt':
        p.command = txn[s.kind] ?? 'other';
        if (typeof s.savepoint_name === 'string') p.savepoint = s.savepoint_name;
        if (s.chain) p.chain = true;
        this.fixAll(s.options);
        break;
      case 'VariableSetStmt': {
        const reset = s.kind === 'VAR_RESET' || s.kind === 'VAR_RESET_ALL';
        p.command = reset ? 'reset' : 'set';
        let value: string | null = null;
        if (s.kind === 'VAR_SET_VALUE' && s.args) {
          value = s.args.map((a: N) => {
            const c = a.A_Const ?? a.TypeCast?.arg?.A_Const;
            return c ? this.constValue(c) ?? '' : '';
          }).join(', ');
        }
        const name = s.kind === 'VAR_RESET_ALL' ? 'all' : s.name ?? (s.kind === 'VAR_SET_MULTI' ? 'transaction' : '');
        this.fixAll(s.args);
        p.setVar = { name: String(name).toLowerCase(), value, local: !!s.is_local };
        break;
      }
      case 'VariableShowStmt': p.command = 'show'; break;
      case 'DiscardStmt': p.command = 'discard'; break;
      case 'ListenStmt': p.command = 'listen'; p.sessionState = 'listen'; break;
      case 'UnlistenStmt': p.command = 'unlisten'; break;
      case 'NotifyStmt': p.command = 'notify'; break;
      case 'PrepareStmt': {
        p.command = 'prepare'; p.sessionState = 'prepare';
        this.walkStatement(s.query, null);
        const qt = nodeTag(s.query);
        p.write = qt !== 'SelectStmt' || this.dmlWrite;
        break;
      }
      case 'ExecuteStmt': p.command = 'execute'; break;
      case 'DeallocateStmt': p.command = 'deallocate'; if (!s.isall && typeof s.name === 'string') p.deallocate = s.name; break;
      case 'DeclareCursorStmt':
        p.command = 'declare_cursor';
        if ((s.options ?? 0) & 0x20) p.sessionState = 'cursor_hold';
        this.walkStatement(s.query, null); withKeys = true;
        break;
      case 'FetchStmt': p.command = s.ismove ? 'other' : 'fetch'; if (s.ismove) p.command = 'fetch'; break;
      case 'ClosePortalStmt': p.command = 'close_cursor'; break;
      case 'LockStmt': p.command = 'lock'; this.walkExprs(s, { parent: null, items: [] }); break;
      case 'CopyStmt': {
        p.command = s.is_from ? 'copy_from' : 'copy_to';
        // option values are plain strings in the AST (no locations): the plan holds for these exact literals
        for (let k = 0; k < this.input.slotStart.length; k++) this.fixed.add(k);
        p.write = !!s.is_from;
        if (s.query) { this.walkStatement(s.query, null); withKeys = true; }
        else if (s.relation) {
          const L: Level = { parent: null, items: [] };
          this.addRangeVar(s.relation, L);
          if (s.whereClause) this.applyQual(s.whereClause, L, null, null);
          withKeys = !s.is_from;
          if (s.is_from && !s.filename) p.copy = this.copySpec(s);
        }
        break;
      }
      case 'ExplainStmt': p.command = 'other'; this.walkStatement(s.query, null); withKeys = true; break;
      case 'DoStmt': case 'CallStmt': p.command = 'other'; p.write = true; break;
      default:
        if (/^(Create|Alter|Drop|Rename|Grant|Comment|Truncate|Index|View|Reindex|Cluster|Define|Composite|AlterTable|Sec|RuleStmt|CreateTableAs|AlterOwner|Refresh|Import)/.test(tag) || tag === 'RuleStmt') {
          p.command = 'ddl'; p.write = true;
          if (tag === 'DropdbStmt') p.freeDatabase = s.dbname;
          else if (tag === 'RenameStmt' && s.renameType === 'OBJECT_DATABASE') p.freeDatabase = s.subname;
          else if (tag === 'CreatedbStmt') {
            const t = (s.options ?? []).find((o: N) => o.DefElem?.defname === 'template')?.DefElem?.arg;
            const name = t?.String?.sval ?? t?.TypeName?.names?.[0]?.String?.sval;
            if (typeof name === 'string') p.freeDatabase = name;
          }
          this.walkExprs(s, { parent: null, items: [] });
          if (tag === 'DropStmt' && (s.removeType === 'OBJECT_TABLE' || s.removeType === 'OBJECT_INDEX' || s.removeType === 'OBJECT_VIEW')) {
            for (const o of s.objects ?? []) {
              const names = strs(o.List?.items);
              const rv = { relname: names[names.length - 1], schemaname: names.length > 1 ? names[names.length - 2] : undefined };
              if (this.lookupTable(rv)) this.occs.push({ id: -1, table: this.lookupTable(rv), relname: rv.relname, alias: rv.relname, level: { parent: null, items: [] }, own: null, keys: null });
              else this.sawReference = true;
            }
          }
          this.sawReference = true;
          const rel = tag === 'CreateStmt' ? s.relation : tag === 'CreateTableAsStmt' && s.objtype === 'OBJECT_TABLE' ? s.into?.rel : undefined;
          if (rel && rel.relpersistence !== 't' && !rel.catalogname && (!rel.schemaname || rel.schemaname === 'public')) p.createsTable = rel.relname;
        } else {
          p.command = 'other';
          this.walkExprs(s, { parent: null, items: [] });
        }
    }
    if (this.dmlWrite) p.write = true;
    if (this.sessionState && !p.sessionState) p.sessionState = this.sessionState;
    // Any temporary object (TEMP table, view or sequence, SELECT INTO TEMP, an object in pg_temp)
    // lives in the server session: the client must keep that connection.
    if (!p.sessionState && tag !== 'SelectStmt' && tag !== 'InsertStmt' && tag !== 'UpdateStmt' && tag !== 'DeleteStmt' && createsTemp(s)) p.sessionState = 'temp_table';
    else if (!p.sessionState && tag === 'SelectStmt' && s.intoClause && createsTemp(s.intoClause)) p.sessionState = 'temp_table';
    const fk = this.finishKeys();
    if (this.occs.length) {
      p.target = 'sharded';
      p.table = fk.table!.name;
      p.keyType = fk.table!.type as KeyType;
    } else if (this.sawReference) p.target = 'reference';
    p.keys = withKeys && p.target === 'sharded' ? fk.keys : null;
    if (this.unsupported) p.unsupported = this.unsupported;
    else if (this.unknownTable && !p.createsTable) {
      const t = this.unknownTable;
      p.unsupported = `table "${t}", which the cluster definition does not name (unknownTables is "reject"; register it with \`pgring table reference ${t}\` or \`pgring table shard ${t} --column COLUMN --type TYPE\`),`;
    }
    if (p.copy && this.occs.length) {
      const t = this.occs[0].table!;
      const cols = p.copy.columns ?? t.lcolumns ?? null;
      const idx = cols ? cols.indexOf(t.lcolumn) : -1;
      p.copy.keyColumnIndex = idx >= 0 ? idx : null;
    }
    // Statements that may run on several shards: a SELECT over sharded tables gets a merge spec (the
    // caller uses it when the route has more than one shard); what cannot be answered correctly from
    // several shards gets `scatterUnsupported`, and `unsupported` too when it always scatters (no keys).
    const dml = tag === 'SelectStmt' || tag === 'InsertStmt' || tag === 'UpdateStmt' || tag === 'DeleteStmt' || tag === 'MergeStmt';
    if (dml && p.target === 'sharded' && p.command !== 'ddl') {
      let reason: string | undefined;
      if (this.writesReference && p.write) {
        if (!p.unsupported) p.unsupported = 'writing a reference table in a statement that reads sharded tables';
      }
      if (tag === 'MergeStmt' && this.writeTarget) reason = 'MERGE into a sharded table';
      reason ??= this.insertReason ?? this.scatterReason(tag, s);
      if (tag === 'SelectStmt' && p.command === 'select') {
        const m = this.mergeSpec(s);
        if ('unsupported' in m) reason ??= m.unsupported;
        else { p.merge = m.spec; shardSqlT = m.shardSqlT; }
      }
      if (reason) {
        p.scatterUnsupported = reason;
        if (p.keys === null && !p.unsupported) p.unsupported = reason;
      }
    }
    const out: PlanTemplate = { plan: p, fixed: [...this.fixed].sort((a, b) => a - b) };
    if (shardSqlT) out.shardSqlT = shardSqlT;
    if (this.insertT && p.target === 'sharded') out.insertT = this.insertT;
    // re-render templates so fixed slots are baked (parts() consulted `fixed` as it was then)
    if (out.shardSqlT) out.shardSqlT = bakeFixed(out.shardSqlT, this.fixed, this.input);
    if (out.insertT) {
      out.insertT.head = bakeFixed(out.insertT.head, this.fixed, this.input);
      out.insertT.tail = bakeFixed(out.insertT.tail, this.fixed, this.input);
      for (const r of out.insertT.rows) r.parts = bakeFixed(r.parts, this.fixed, this.input);
    }
    out.fixed = [...this.fixed].sort((a, b) => a - b);
    return out;
  }

  private copySpec(s: N): CopySpec {
    const spec: CopySpec = {
      table: s.relation.relname, columns: s.attlist ? strs(s.attlist) : null, keyColumnIndex: null,
      format: 'text', delimiter: '\t', header: false, null: '\\N', quote: '"', escape: '"',
    };
    let delim: string | undefined, nul: string | undefined, quote: string | undefined, escape: string | undefined;
    for (const o of s.options ?? []) {
      const d = o.DefElem;
      const arg = d.arg;
      this.fixAll(arg);
      const v = arg?.String?.sval ?? (arg?.Boolean ? String(!!arg.Boolean.boolval) : arg?.A_Const ? numConstText(arg.A_Const) : arg?.Integer ? String(arg.Integer.ival ?? 0) : undefined);
      switch (d.defname) {
        case 'format': if (v === 'csv' || v === 'binary' || v === 'text') spec.format = v; break;
        case 'delimiter': delim = v; break;
        case 'null': nul = v; break;
        case 'header': spec.header = v === undefined || !(v === 'false' || v === 'off' || v === '0'); break;
        case 'quote': quote = v; break;
        case 'escape': escape = v; break;
      }
    }
    if (spec.format === 'csv') { spec.delimiter = ','; spec.null = ''; }
    if (delim !== undefined) spec.delimiter = delim;
    if (nul !== undefined) spec.null = nul;
    if (quote !== undefined) spec.quote = quote;
    spec.escape = escape ?? spec.quote;
    return spec;
  }

  // ---------------------------------------------------------------- scatter rules

  /** Why running this statement on each of several shards and combining the results would not
   *  equal running it once over all the data. Per-shard evaluation is correct when every sharded
   *  table occurrence is joined, through shard-key equalities between co-located tables, to the
   *  sharded occurrence(s) of the statement's top level (each set-operation arm for UNION ALL). */
  private scatterReason(tag: string, s: N): string | undefined {
    if (!this.occs.length) return undefined;
    const up = new Map<Occ, Occ>();
    for (const o of this.occs) up.set(o, o);
    const find = (o: Occ): Occ => { let r = o; while (up.get(r) !== r) r = up.get(r)!; return r; };
    for (const e of this.edges) { const a = find(e.from), b = find(e.to); if (a !== b) up.set(a, b); }
    const groups: Occ[][] = [];
    if (tag === 'SelectStmt') {
      const leaves: N[] = [];
      const collect = (x: N): void => { if (x.op && x.op !== 'SETOP_NONE') { collect(x.larg); collect(x.rarg); } else leaves.push(x); };
      collect(s);
      for (const leaf of leaves) {
        const L = this.levelOf.get(leaf);
        groups.push(L ? this.occs.filter((o) => o.level === L) : []);
      }
      if (leaves.length > 1 && groups.some((g) => g.length === 0)) return 'set operations mixing sharded and non-sharded queries across shards';
    } else if (this.writeTarget && this.writeTarget !== 'reference') {
      const L = this.writeTarget.level; // the written table with UPDATE ... FROM / DELETE ... USING tables
      groups.push(this.occs.filter((o) => o.level === L));
    }
    else groups.push([]);
    const anchored = new Set<Occ>();
    for (const g of groups) {
      const roots = new Set(g.map(find));
      if (roots.size > 1) {
        const names = [...new Set(g.map((o) => o.table!.name))].map((n) => `"${n}"`).join(', ');
        return `join of sharded tables (${names}) not on their shard keys (cross-shard join)`;
      }
      for (const r of roots) anchored.add(r);
    }
    for (const o of this.occs) {
      if (!anchored.has(find(o))) return `subquery over sharded table "${o.table!.name}" not joined to the outer query on the shard key`;
    }
    return undefined;
  }

  // ---------------------------------------------------------------- merge spec

  private hasWindow(n: N): boolean {
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
  private findAgg(n: N): string | null {
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
  private aggOf(e: N): { fn: 'count' | 'sum' | 'min' | 'max' | 'avg' } | { unsupported: string } | null {
    const fc = e?.FuncCall;
    if (fc && !fc.over) {
      const nm = funcName(fc);
      if (nm && MERGE_AGGS.has(nm)) {
        if (fc.agg_distinct) return { unsupported: `${nm}(DISTINCT) across shards` };
        if (fc.agg_within_group) return { unsupported: `aggregate ${nm} across shards` };
        return { fn: nm as 'count' };
      }
      if (nm && (OTHER_AGGS.has(nm) || fc.agg_within_group)) return { unsupported: `aggregate ${nm} across shards` };
    }
    const inner = this.findAgg(e);
    if (inner) return { unsupported: MERGE_AGGS.has(inner) ? 'expressions over aggregates across shards' : `aggregate ${inner} across shards` };
    return null;
  }

  private mergeSpec(s: N): { spec: MergeSpec; shardSqlT?: Part[] } | { unsupported: string } {
    const toks = this.toks();
    const spec: MergeSpec = { orderBy: [], limit: null, offset: null, groupBy: [], aggregates: [], hiddenColumns: 0 };
    let targets: N[];
    const setop = s.op && s.op !== 'SETOP_NONE';
    if (setop) {
      const plainArm = (x: N): boolean => {
        if (x.op && x.op !== 'SETOP_NONE') return x.op === 'SETOP_UNION' && x.all && plainArm(x.larg) && plainArm(x.rarg);
        return !x.distinctClause && !x.groupClause && !x.havingClause && !x.limitCount && !x.limitOffset && !x.sortClause
          && !this.findAgg(x.targetList) && !this.hasWindow(x.targetList);
      };
      if (!(s.op === 'SETOP_UNION' && s.all && plainArm(s))) {
        const opn = s.op === 'SETOP_UNION' ? (s.all ? 'UNION ALL with aggregates' : 'UNION') : s.op === 'SETOP_INTERSECT' ? 'INTERSECT' : 'EXCEPT';
        return { unsupported: `${opn} across shards` };
      }
      let x = s; while (x.op && x.op !== 'SETOP_NONE') x = x.larg;
      targets = x.targetList ?? [];
    } else {
      targets = s.targetList ?? [];
      if (s.distinctClause) return { unsupported: 'DISTINCT across shards' };
      if (this.hasWindow(targets) || this.hasWindow(s.sortClause)) return { unsupported: 'window functions across shards' };
      if (s.havingClause) return { unsupported: 'HAVING across shards' };
      if ((s.groupClause ?? []).some((g: N) => g.GroupingSet)) return { unsupported: 'GROUPING SETS / ROLLUP / CUBE across shards' };
      if (s.groupDistinct) return { unsupported: 'GROUP BY DISTINCT across shards' };
    }
    if (s.limitOption === 'LIMIT_OPTION_WITH_TIES') return { unsupported: 'FETCH ... WITH TIES across shards' };

    const star = targets.some((t: N) => strs(t.ResTarget?.val?.ColumnRef?.fields).includes('*'));
    const aggs: (ReturnType<Planner['aggOf']>)[] = setop ? targets.map(() => null) : targets.map((t: N) => this.aggOf(t.ResTarget.val));
    for (const a of aggs) if (a && 'unsupported' in a) return a;
    const hasAgg = !setop && (aggs.some((a) => a) || (s.groupClause ?? []).length > 0);
    if (star && hasAgg) return { unsupported: 'SELECT * with aggregates across shards' };

    // target list items in the text
    const sel = this.findTargetList(toks);
    const needText = (): boolean => sel !== null && sel.items.length === targets.length;

    type Hidden = { pieces: ([number, number] | string)[]; agg?: 'count' | 'sum' | 'min' | 'max' };
    const hidden: Hidden[] = [];
    const HID = 1 << 20; // marker base for hidden column indexes, fixed up at the end
    const addHidden = (h: Hidden): number => { hidden.push(h); return HID + hidden.length - 1; };
    const edits: { start: number; end: number; pieces: ([number, number] | string)[] }[] = [];

    const outName = (t: N): string | null => {
      const r = t.ResTarget;
      if (r.name) return r.name;
      const v = r.val;
      if (v?.ColumnRef) { const f = strs(v.ColumnRef.fields); return f[f.length - 1] === '*' ? null : f[f.length - 1]; }
      if (v?.FuncCall) return strs(v.FuncCall.funcname).slice(-1)[0];
      return null;
    };
    const positionOf = (idx: number): number => {
      // output position of target idx; -1 when unknown (after a star)
      for (let k = 0; k < idx; k++) if (strs(targets[k].ResTarget?.val?.ColumnRef?.fields).includes('*')) return -1;
      return idx;
    };
    const exprRange = (items: { start: number; end: number }[], k: number): [number, number] | null => items[k] ? [items[k].start, items[k].end] : null;

    // aggregates in the select list
    if (hasAgg) {
      for (let k = 0; k < targets.length; k++) {
        const a = aggs[k];
        if (!a || 'unsupported' in a) continue;
        if (a.fn !== 'avg') { spec.aggregates.push({ column: k, fn: a.fn }); continue; }
        if (!needText()) return { unsupported: 'cannot rewrite avg() for shards' };
        const item = sel!.items[k];
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
        edits.push({ start: item.start, end: item.end, pieces: ['sum', argsAndFilter, ' AS ', quoteIdent(alias ?? 'avg')] });
        const cnt = addHidden({ pieces: ['count', argsAndFilter] });
        spec.aggregates.push({ column: k, fn: 'avg', sumColumn: k, countColumn: cnt });
      }
    }

    // GROUP BY
    if (hasAgg && s.groupClause?.length) {
      const gItems = this.clauseItems(toks, 'group', ['having', 'window', 'order', 'limit', 'offset', 'fetch', 'for']);
      for (let g = 0; g < s.groupClause.length; g++) {
        const ge = s.groupClause[g];
        let col = -1;
        if (ge.A_Const?.ival !== undefined && !ge.A_Const.fval) { col = Number(this.constValue(ge.A_Const)) - 1; }
        else {
          const c = canon(ge);
          col = targets.findIndex((t: N) => canon(t.ResTarget.val) === c);
          if (col < 0 && ge.ColumnRef && strs(ge.ColumnRef.fields).length === 1) {
            const nm = strs(ge.ColumnRef.fields)[0];
            col = targets.findIndex((t: N) => t.ResTarget.name === nm);
          }
          if (col >= 0) col = positionOf(col);
        }
        if (col < 0) {
          const r = gItems ? exprRange(gItems, g) : null;
          if (!r) return { unsupported: 'cannot rewrite GROUP BY for shards' };
          col = addHidden({ pieces: [r] });
        }
        if (!spec.groupBy.includes(col)) spec.groupBy.push(col);
      }
    }

    // ORDER BY
    if (s.sortClause?.length) {
      const oItems = this.clauseItems(toks, 'order', ['limit', 'offset', 'fetch', 'for']);
      for (let o = 0; o < s.sortClause.length; o++) {
        const sb = s.sortClause[o].SortBy;
        if (sb.sortby_dir === 'SORTBY_USING') return { unsupported: 'ORDER BY ... USING across shards' };
        const e = sb.node;
        let col = -1;
        if (e.A_Const?.ival !== undefined) col = Number(this.constValue(e.A_Const)) - 1;
        else {
          if (e.ColumnRef && strs(e.ColumnRef.fields).length === 1) {
            const nm = strs(e.ColumnRef.fields)[0];
            col = targets.findIndex((t: N) => outName(t) === nm && !(t.ResTarget.val?.FuncCall && !t.ResTarget.name));
          }
          if (col < 0) { const c = canon(e); col = targets.findIndex((t: N) => canon(t.ResTarget.val) === c); }
          if (col >= 0) col = positionOf(col);
          if (col < 0) {
            if (setop) return { unsupported: 'ORDER BY expression across shards (UNION ALL)' };
            const r = oItems ? exprRange(oItems, o) : null;
            if (!r) return { unsupported: 'cannot rewrite ORDER BY for shards' };
            let agg: Hidden['agg'];
            if (hasAgg) {
              const a = this.aggOf(e);
              if (a && 'unsupported' in a) return a;
              if (a) { if (a.fn === 'avg') return { unsupported: 'ORDER BY avg() not in the select list across shards' }; agg = a.fn; }
            }
            col = addHidden({ pieces: [r], agg });
            if (agg) spec.aggregates.push({ column: col, fn: agg });
          }
        }
        const desc = sb.sortby_dir === 'SORTBY_DESC';
        const nullsFirst = sb.sortby_nulls === 'SORTBY_NULLS_FIRST' ? true : sb.sortby_nulls === 'SORTBY_NULLS_LAST' ? false : desc;
        spec.orderBy.push({ column: col, desc, nullsFirst });
      }
    }

    // LIMIT / OFFSET
    const lim = (e: N): number | null | { param: number } | undefined => {
      if (!e) return null;
      while (e.TypeCast) e = e.TypeCast.arg;
      if (e.A_Const) { const v = this.constValue(e.A_Const); return v === null ? null : Number(v); }
      if (e.ParamRef) return { param: e.ParamRef.number - 1 };
      return undefined;
    };
    const l = lim(s.limitCount), off = lim(s.limitOffset);
    if (l === undefined || off === undefined) return { unsupported: 'LIMIT/OFFSET expression across shards' };
    spec.limit = l; spec.offset = off;
    if (typeof off === 'number' && off === 0) spec.offset = null;
    const section = this.limitSection(toks);
    if ((hasAgg && (l !== null || spec.offset !== null)) || spec.offset !== null) {
      if (!section) return { unsupported: 'cannot rewrite LIMIT for shards' };
      let rep = '';
      if (!hasAgg && l !== null) {
        const txt = (v: number | { param: number }): string => typeof v === 'number' ? String(v) : `$${v.param + 1}`;
        if (typeof l === 'number' && typeof off === 'number') rep = ` LIMIT ${l + off}`;
        else rep = ` LIMIT (${txt(l)}::bigint + ${txt(off as number | { param: number })}::bigint)`;
      }
      edits.push({ start: section[0], end: section[1], pieces: rep ? [rep] : [] });
    }

    // hidden columns: appended to the select list
    const H = hidden.length;
    spec.hiddenColumns = H;
    const fix = (c: number): number => c >= HID ? (star ? -(H - (c - HID)) : targets.length + (c - HID)) : c;
    spec.orderBy.forEach((o) => { o.column = fix(o.column); });
    spec.groupBy = spec.groupBy.map(fix);
    spec.aggregates.forEach((a) => { a.column = fix(a.column); if (a.sumColumn !== undefined) a.sumColumn = fix(a.sumColumn); if (a.countColumn !== undefined) a.countColumn = fix(a.countColumn); });
    if (H) {
      if (!sel) return { unsupported: 'cannot rewrite the select list for shards' };
      const pieces: ([number, number] | string)[] = [];
      for (const h of hidden) { pieces.push(', '); pieces.push(...h.pieces); }
      edits.push({ start: sel.end, end: sel.end, pieces });
    }
    if (!edits.length) return { spec };
    edits.sort((a, b) => a.start - b.start);
    const ranges: ([number, number] | string)[] = [];
    let pos = 0;
    for (const e of edits) { ranges.push([pos, e.start]); ranges.push(...e.pieces); pos = Math.max(pos, e.end); }
    ranges.push([pos, this.text.length]);
    return { spec, shardSqlT: this.parts(ranges) };
  }

  /** the top-level select list: item ranges and end offset */
  private findTargetList(toks: Token[]): { items: { start: number; end: number }[]; end: number } | null {
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
      if (t.type === 'word' && END.has(t.lower) && toks[j - 1]?.lower !== 'as') break;
      if (t.text === ';') break;
      if (t.text === ',') { items.push({ start: toks[st].start, end: toks[j - 1].end }); st = j + 1; }
    }
    if (j > st) items.push({ start: toks[st].start, end: toks[j - 1].end });
    return { items, end: j > i ? toks[j - 1].end : toks[i - 1].end };
  }

  /** items of a top-level `<kw> BY` clause (expression ranges without ASC/DESC/NULLS) */
  private clauseItems(toks: Token[], kw: string, enders: string[]): { start: number; end: number }[] | null {
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
  private limitSection(toks: Token[]): [number, number] | null {
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
}

function quoteIdent(s: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(s) ? s : '"' + s.split('"').join('""') + '"';
}

function bakeFixed(parts: Part[], fixed: Set<number>, input: PlanInput): Part[] {
  if (!fixed.size) return parts;
  const out: Part[] = [];
  for (const p of parts) {
    const s = typeof p === 'number' && fixed.has(p) ? input.text.slice(input.slotStart[p], input.slotEnd[p]) : p;
    if (typeof s === 'string' && out.length && typeof out[out.length - 1] === 'string') out[out.length - 1] += s;
    else out.push(s);
  }
  return out;
}

export function renderParts(parts: Part[], literals: string[], kinds: LitKind[]): string {
  let s = '';
  for (const p of parts) s += typeof p === 'string' ? p : renderLiteral(literals[p], kinds[p]);
  return s;
}

/** True when the statement names a temporary relation (relpersistence 't') or anything in a
 *  pg_temp schema (tables, views, sequences, functions, types created there). */
export function createsTemp(node: unknown): boolean {
  if (node === null || typeof node !== 'object') return false;
  if (Array.isArray(node)) { for (const x of node) if (createsTemp(x)) return true; return false; }
  const o = node as Record<string, unknown>;
  if (o.relpersistence === 't') return true;
  if (typeof o.schemaname === 'string' && /^pg_temp/i.test(o.schemaname)) return true;
  const sv = (o.String as { sval?: string } | undefined)?.sval;
  if (typeof sv === 'string' && /^pg_temp(_\d+)?$/i.test(sv)) return true;
  for (const k in o) {
    const v = o[k];
    if (v !== null && typeof v === 'object' && createsTemp(v)) return true;
  }
  return false;
}
