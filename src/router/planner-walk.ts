// The analysis half of the planner: walks one statement's AST, finds the sharded and
// reference tables it reads and writes, the shard-key values that restrict each sharded table
// (through joins on co-located keys), and maps literals back to their slots. Planner
// (planner.ts) turns what it found into a Plan.
import { tokenize, Token } from './lexer';
import type { KeyRef, Plan } from './types';
import {
  N, NSchema, NTable, Occ, Level, Edge, Restr, Part, PlanInput, PlanTemplate,
  nodeTag, strs, funcName, unionRefs, uniqueRefs, colocated, numConstText, ADVISORY, byteToCharMap,
} from './plan-ast';
import { findAgg, hasWindow } from './merge-rewrite';

export abstract class StatementWalker {
  readonly text: string;
  protected readonly slotAtChar = new Map<number, number>();
  protected readonly fixed = new Set<number>();
  protected byteToChar: Int32Array | null = null;
  protected tokens: Token[] | null = null;

  // analysis state
  protected occs: Occ[] = [];
  protected edges: Edge[] = [];
  protected walked = new WeakSet<object>();
  protected ctes: Set<string>[] = [];
  protected dmlWrite = false;
  protected sessionState: Plan['sessionState'] = null;
  /** calls an advisory lock function (pg_advisory_lock, _xact_lock, _unlock, ...) */
  protected advisory = false;
  protected unsupported: string | undefined;
  protected sawReference = false;
  /** reads pg_catalog.pg_prepared_statements (answered per client: frontend/prepared-view.ts) */
  protected preparedView = false;
  /** a user table in neither list of the cluster definition (policy reject) */
  protected unknownTable: string | undefined;
  protected insertT: PlanTemplate['insertT'];
  /** level of each simple SELECT body walked */
  protected levelOf = new Map<object, Level>();
  /** the written table of INSERT/UPDATE/DELETE/MERGE: a sharded occurrence, or 'reference' */
  protected writeTarget: Occ | 'reference' | null = null;
  /** why the statement cannot run on several shards (set by the INSERT walk) */
  protected insertReason: string | undefined;
  /** a top-level INSERT ... VALUES with a column list that leaves out the shard key column (its default decides) */
  protected insertKeyDefault = false;
  /** INSERT INTO sharded SELECT … whose rows pgring can place itself (frontend/insert-select.ts):
   *  the SELECT's column count and the key's position in the target columns */
  protected insertVia: { n: number; keyIdx: number } | undefined;
  protected cteDepth = 0;
  /** some INSERT/UPDATE/DELETE/MERGE writes a reference (not sharded) table */
  protected writesReference = false;

  constructor(protected readonly schema: NSchema, protected readonly input: PlanInput) {
    this.text = input.text;
    for (let i = 0; i < input.slotStart.length; i++) this.slotAtChar.set(input.slotStart[i], i);
    // byte offsets -> char offsets when the text is not pure ASCII
    this.byteToChar = byteToCharMap(this.text);
  }

  loc(byteLoc: number | undefined): number {
    if (byteLoc === undefined || byteLoc < 0) return -1;
    return this.byteToChar ? this.byteToChar[byteLoc] : byteLoc;
  }
  toks(): Token[] { return (this.tokens ??= tokenize(this.text)); }

  /** slot of the literal that starts at this A_Const's location (-1 if none). A folded unary minus
   *  (location at '-') whose literal is a separate slot is detected and that slot marked fixed. */
  protected constSlot(c: N): { slot: number; foldedMinus: boolean } {
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
  constValue(c: N): string | null {
    const { slot } = this.constSlot(c);
    if (slot >= 0) this.fixed.add(slot);
    return numConstText(c);
  }
  /** every literal slot of the statement fixed: the plan holds a value the parse tree keeps as a
   *  plain string (a COMMIT PREPARED's gid), so each value is a plan of its own */
  protected fixEverySlot(): void {
    for (let k = 0; k < this.input.slotStart.length; k++) this.fixed.add(k);
  }
  protected fixAll(n: N): void {
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
  protected valueRef(e: N, array = false): KeyRef | undefined {
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

  protected lookupTable(rv: N): NTable | null {
    if (rv.catalogname) return null;
    if (rv.schemaname && rv.schemaname !== 'public') return null;
    return this.schema.byName.get(rv.relname) ?? null;
  }
  /** Neither sharded nor reference, and not a catalog: what unknownTables 'reject' refuses. */
  protected isUnknownUserTable(rv: N): boolean {
    if (rv.catalogname || (rv.schemaname && rv.schemaname !== 'public')) return false;
    if (!rv.schemaname && rv.relname.startsWith('pg_')) return false; // pg_catalog comes first in the search path
    return !this.schema.reference.has(rv.relname);
  }
  protected isCte(name: string): boolean {
    for (let i = this.ctes.length - 1; i >= 0; i--) if (this.ctes[i].has(name)) return true;
    return false;
  }
  protected addRangeVar(rv: N, level: Level): Occ | null {
    if (!rv.schemaname && this.isCte(rv.relname)) {
      level.items.push({ alias: rv.alias?.aliasname ?? rv.relname, opaque: true });
      return null;
    }
    const table = this.lookupTable(rv);
    if (!table && rv.relname === 'pg_prepared_statements' && !rv.catalogname && (!rv.schemaname || rv.schemaname === 'pg_catalog')) this.preparedView = true;
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
  protected keyCol(e: N, level: Level): Occ | null {
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

  protected restrict(e: N, level: Level): Restr | null {
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
        for (const it of a.rexpr.List.items) { const r = this.valueRef(it); if (!r) return null; refs.push(r); }
        return new Map([[occ, uniqueRefs(refs)]]);
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
  protected applyQual(q: N, level: Level, allowed: Set<Occ> | null, preserved: Set<Occ> | null): void {
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
  protected addEdge(a: Occ, b: Occ, level: Level, allowed: Set<Occ> | null, preserved: Set<Occ> | null): void {
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

  protected setWriteTarget(occ: Occ | null, L: Level): void {
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

  protected walkSelect(s: N, parent: Level | null): Level | null {
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

  protected addFrom(f: N, L: Level): Set<Occ> {
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

  protected walkUpdate(s: N, parent: Level | null): Level {
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
  protected walkDelete(s: N, parent: Level | null): Level {
    const L: Level = { parent, items: [] };
    this.setWriteTarget(this.addRangeVar(s.relation, L), L);
    for (const f of s.usingClause ?? []) this.addFrom(f, L);
    this.applyQual(s.whereClause, L, null, null);
    this.walkExprs({ b: s.whereClause, c: s.returningClause, d: s.returningList }, L);
    return L;
  }

  protected walkInsert(s: N, parent: Level | null): Level {
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
        if (s.cols && top) this.insertKeyDefault = true;
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
          occ.own = uniqueRefs(refs);
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
  protected insertSelect(s: N, occ: Occ, sel: N, lvl: Level | null, cols: string[] | undefined, idx: number, why0: (r: string) => void): void {
    const t = occ.table!;
    // Rows whose shard only their values tell: pgring reads them and inserts them by key (when the
    // statement is the top-level one and names the key column among the target columns).
    const via = (r: string): void => {
      if (!this.insertReason && this.writeTarget === occ && cols && idx >= 0) {
        const n = selectWidth(sel);
        this.insertVia = { n: n ?? cols.length, keyIdx: idx };
      }
      why0(r);
    };
    const why = why0;
    if (!lvl) { via(`INSERT ... SELECT with a set operation into sharded table "${t.name}"`); return; }
    const tl: N[] = sel.targetList ?? [];
    const isStar = (x: N): boolean => strs(x.ResTarget?.val?.ColumnRef?.fields).slice(-1)[0] === '*';
    let src: Occ | null = null;
    if (!s.cols && tl.length === 1 && isStar(tl[0])) {
      const f = strs(tl[0].ResTarget.val.ColumnRef.fields);
      const items = lvl.items.filter((it) => f.length === 1 || it.alias === f[f.length - 2]);
      if (items.length === 1 && items[0].occ?.table === t) src = items[0].occ!;
      else { via(`INSERT ... SELECT * into sharded table "${t.name}" from another relation`); return; }
    } else if (idx >= 0 && idx < tl.length && !tl.some(isStar)) {
      const e = tl[idx].ResTarget.val;
      const k = this.keyCol(e, lvl);
      if (k && k.level === lvl && colocated(k, occ)) src = k;
      else {
        const r = this.valueRef(e);
        if (r) { occ.own = [r]; return; }
        via(`INSERT ... SELECT into sharded table "${t.name}" with a shard key that is not a constant or a co-located shard key column`);
        return;
      }
    } else {
      why(cols ? `INSERT ... SELECT into sharded table "${t.name}" without its shard key column "${t.column}"`
        : `INSERT ... SELECT into sharded table "${t.name}" without a column list`);
      return;
    }
    this.edges.push({ from: src, to: occ });
    if (sel.limitCount || sel.limitOffset || sel.distinctClause || sel.groupClause || sel.havingClause
      || findAgg(sel.targetList) || hasWindow(sel.targetList)) {
      via('INSERT ... SELECT with LIMIT/DISTINCT/GROUP BY/aggregates/window functions across shards');
    }
  }

  protected buildInsertSplit(keys: KeyRef[]): void {
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
  protected walkExprs(n: N, level: Level): void {
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
        // pg_notify() too: its listeners LISTEN on the shard where every session's LISTEN goes
        if (name && (/^pg_(try_)?advisory_(xact_)?(lock|unlock)(_shared|_all)?$/.test(name) || name === 'pg_notify')) this.advisory = true;
      }
      if (k === 'RangeVar') { this.addRangeVar(v, { parent: level, items: [] }); continue; }
      if ((k === 'relation' || k === 'rel') && typeof v.relname === 'string') { this.addRangeVar(v, { parent: level, items: [] }); continue; }
      this.walkExprs(v, level);
    }
  }

  /** final key set over all sharded occurrences (null if any has none) */
  protected finishKeys(): { keys: KeyRef[] | null; table?: NTable } {
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
      // the first slot ending after a (slots are sorted and disjoint): one range costs its own
      // slots, not every slot of the statement (a many-row INSERT has a range per row)
      let lo = 0, hi = ss.length;
      while (lo < hi) { const m = (lo + hi) >> 1; if (se[m] <= a) lo = m + 1; else hi = m; }
      for (let k = lo; k < ss.length && a < b; k++) {
        if (ss[k] >= b) break;
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
}

/** Columns a SELECT gives (the left branch of a set operation), or null when it has a `*`. */
function selectWidth(sel: N): number | null {
  let x = sel;
  while (x && x.op && x.op !== 'SETOP_NONE') x = x.larg;
  if (x?.valuesLists) return x.valuesLists[0]?.List?.items?.length ?? null;
  const tl: N[] = x?.targetList ?? [];
  if (!tl.length || tl.some((e: N) => strs(e.ResTarget?.val?.ColumnRef?.fields).slice(-1)[0] === '*')) return null;
  return tl.length;
}
