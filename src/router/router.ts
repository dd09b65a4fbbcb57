// Router: query string -> routed statements, with a bounded LRU plan cache keyed by statement shape.
import { lex, LexedStatement, LitKind, renderLiteral } from './lexer';
import { normalizeSchema, NSchema, Planner, PlanTemplate, renderParts, Part } from './planner';
import type { KeyRef, Plan, RouterSchema, RoutedStatement } from './types';
import { LiveStatement, PlanSource } from './live-statement';
import { tableReads, type TableRead } from './materialize';

export * from './types';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const pg: { loadModule(): Promise<void>; parseSync(sql: string): { stmts?: { stmt: unknown }[] } } = require('libpg-query');
let loaded = false;

/** Longer statement shapes are planned but not cached. */
const MAX_CACHED_SHAPE = 65536;

const EMPTY_PLAN: Plan = Object.freeze({ command: 'empty', write: false, target: 'none', keys: null }) as Plan;

export class Router implements PlanSource {
  /** The router that replaced this one (a new cluster definition): statements prepared with
   *  `live` plans re-plan with it (src/router/live-statement.ts). */
  successor: Router | null = null;
  private readonly live: boolean;
  private readonly schema: NSchema;
  private readonly cache = new Map<string, PlanTemplate>();
  private readonly cacheSize: number;
  /** statistics */
  hits = 0;
  misses = 0;

  /** Called with the name of a table a planned CREATE TABLE makes that the schema does not know
   *  (the cluster definition registers it as a reference table). */
  private readonly onCreateTable?: (name: string) => void;

  constructor(schema: RouterSchema, opts?: { cacheSize?: number; onCreateTable?: (name: string) => void; live?: boolean }) {
    this.schema = normalizeSchema(schema);
    this.live = opts?.live ?? false;
    this.cacheSize = Math.max(1, opts?.cacheSize ?? 5000);
    this.onCreateTable = opts?.onCreateTable;
  }

  private noteCreate(r: RoutedStatement): void {
    const t = r.plan.createsTable;
    if (t !== undefined && this.onCreateTable && !r.plan.shardedLike && !this.schema.byName.has(t) && !this.schema.reference.has(t)) this.onCreateTable(t);
  }

  /** load the PostgreSQL parser (once per process) */
  static async init(): Promise<void> {
    if (loaded) return;
    await pg.loadModule();
    loaded = true;
  }

  get cacheEntries(): number { return this.cache.size; }

  /** What a SELECT marked `materialize` reads first: its derived tables and sharded tables (router/materialize.ts). */
  tableReads(sql: string): TableRead[] {
    return tableReads(sql, (rv) => {
      if (rv.catalogname || (rv.schemaname && rv.schemaname !== 'public')) return null;
      const t = this.schema.byName.get(rv.relname);
      return t ? { columns: t.lcolumns ?? null } : null;
    });
  }

  /** Plan every statement of a simple-query string. Never throws.
   *  PostgreSQL parses a whole query string before it runs any of it, so a string with a
   *  statement it cannot parse runs nothing: such a string comes back as one statement
   *  with `parseError`, to be forwarded as is to one server for PostgreSQL's own error. */
  plan(sql: string): RoutedStatement[] {
    let lexed: LexedStatement[];
    try { lexed = lex(sql); } catch (e) { return [unparsable(sql, e)]; }
    const out: RoutedStatement[] = new Array(lexed.length);
    for (let i = 0; i < lexed.length; i++) {
      let r: RoutedStatement;
      try { r = this.planLexed(sql, lexed[i]); } catch (e) { return [unparsable(sql, e)]; }
      if (r.plan.parseError !== undefined && lexed.length > 1) return [{ ...r, sql }];
      out[i] = r;
      if (r.plan.createsTable !== undefined) this.noteCreate(r);
    }
    return out;
  }

  /** Plan the statement of an extended-protocol Parse message (text with $n). Never throws.
   *  With `live`, the plan follows this router's successors. */
  planPrepared(sql: string): RoutedStatement {
    const r = this.planPreparedNow(sql);
    return this.live ? new LiveStatement(this, sql, r) : r;
  }

  planPreparedNow(sql: string): RoutedStatement {
    try {
      const lexed = lex(sql);
      const first = lexed.find((s) => !s.empty) ?? lexed[0];
      const r = this.planLexed(sql, first);
      if (r.plan.createsTable !== undefined) this.noteCreate(r);
      return r;
    } catch (e) {
      return unparsable(sql, e);
    }
  }

  /** Plan by parsing the exact statement text with the full parser (no shapes, no cache).
   *  Keys are returned as values. Slow; used to cross-check the cached path. */
  planDirect(sql: string): RoutedStatement[] {
    return lex(sql).map((st) => {
      const text = sql.slice(st.start, st.end);
      let plan: Plan;
      if (st.empty) plan = EMPTY_PLAN;
      else {
        const t = this.compute(text, [], [], [], []);
        plan = instantiate(t, [], [], st.hint);
      }
      return { sql: text, plan, literals: [], literalKinds: [], hint: st.hint };
    });
  }

  private planLexed(sql: string, st: LexedStatement): RoutedStatement {
    const text = st.start === 0 && st.end === sql.length ? sql : sql.slice(st.start, st.end);
    if (st.empty) {
      return { sql: text, plan: st.hint ? { ...EMPTY_PLAN, hint: st.hint } : EMPTY_PLAN, literals: st.literals, literalKinds: st.kinds, hint: st.hint };
    }
    // The shape has a placeholder for the open literal and would parse: PostgreSQL will not.
    if (st.unterminated) return unparsable(sql, new Error('unterminated quoted string'));
    const t = this.lookup(st);
    const plan = instantiate(t, st.literals, st.kinds, st.hint);
    return { sql: text, plan, literals: st.literals, literalKinds: st.kinds, hint: st.hint };
  }

  private lookup(st: LexedStatement): PlanTemplate {
    const cache = this.cache;
    let key = st.shape;
    let t = cache.get(key);
    if (t !== undefined && t.fixed.length > 0) {
      key = fixedKey(st.shape, t.fixed, st.literals);
      t = cache.get(key);
    }
    if (t !== undefined) {
      this.hits++;
      // LRU: move to the back, but only once it has drifted into the older half
      // (a hot shape would otherwise be deleted and re-inserted on every hit).
      if (this.tick - (t.touched ?? 0) > this.cacheSize / 2) {
        t.touched = ++this.tick;
        cache.delete(key);
        cache.set(key, t);
      }
      return t;
    }
    this.misses++;
    t = this.computeShape(st);
    if (t.plan.parseError !== undefined) return t; // not cached
    // statements with rows written in (subqueries.ts, materialize.ts) are one-off and large
    if (st.shape.length > MAX_CACHED_SHAPE) return t;
    if (t.fixed.length > 0) {
      if (!cache.has(st.shape)) this.put(st.shape, t);
      this.put(fixedKey(st.shape, t.fixed, st.literals), t);
    } else this.put(st.shape, t);
    return t;
  }

  /** Insertions and LRU moves so far: how far an entry has drifted toward eviction. */
  private tick = 0;

  private put(key: string, t: PlanTemplate): void {
    t.touched = ++this.tick;
    this.cache.set(key, t);
    while (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }

  private computeShape(st: LexedStatement): PlanTemplate {
    // rebuild valid SQL from the shape, literals rendered back at their slots
    const shape = st.shape;
    let text = '';
    const starts: number[] = [], ends: number[] = [];
    let last = 0, slot = 0;
    for (let i = 0; i < shape.length; i++) {
      const c = shape.charCodeAt(i);
      if (c > 3 || c === 0) continue;
      text += shape.slice(last, i);
      starts.push(text.length);
      text += renderLiteral(st.literals[slot], st.kinds[slot]);
      ends.push(text.length);
      slot++;
      last = i + 1;
    }
    text += shape.slice(last);
    return this.compute(text, starts, ends, st.literals, st.kinds);
  }

  private compute(text: string, slotStart: number[], slotEnd: number[], literals: string[], kinds: LitKind[]): PlanTemplate {
    if (!loaded) throw new Error('Router.init() must be awaited before planning');
    let parsed: { stmts?: { stmt: unknown }[] };
    try {
      parsed = pg.parseSync(text);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      return { plan: { command: 'other', write: false, target: 'none', keys: null, parseError: msg }, fixed: [] };
    }
    const stmts = parsed.stmts ?? [];
    if (stmts.length === 0) return { plan: EMPTY_PLAN, fixed: [] };
    if (stmts.length > 1) {
      return { plan: { command: 'other', write: true, target: 'none', keys: null, unsupported: 'statement could not be split' }, fixed: [] };
    }
    try {
      return new Planner(this.schema, { text, slotStart, slotEnd, literals, kinds }).plan(stmts[0].stmt);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      return { plan: { command: 'other', write: true, target: 'none', keys: null, unsupported: 'internal planner error: ' + msg }, fixed: [] };
    }
  }
}

/** A string pgring's own lexer cannot take (e.g. a literal PostgreSQL rejects): forwarded as is. */
function unparsable(sql: string, e: unknown): RoutedStatement {
  const parseError = e instanceof Error ? e.message : String(e);
  return { sql, plan: { command: 'other', write: false, target: 'none', keys: null, parseError }, literals: [], literalKinds: [] };
}

function fixedKey(shape: string, fixed: number[], literals: string[]): string {
  let k = shape;
  for (const s of fixed) k += '\u0000' + literals[s];
  return k;
}

function instantiate(t: PlanTemplate, literals: string[], kinds: LitKind[], hint: RoutedStatement['hint']): Plan {
  if (t.shardSqlT === undefined && t.insertT === undefined && hint === undefined) return t.plan;
  const p: Plan = { ...t.plan };
  if (hint) {
    p.hint = hint;
    // an explicit shard (or shard key) routes to one shard: scatter restrictions do not apply
    if ((hint.shard !== undefined || hint.shardKey !== undefined) && p.unsupported !== undefined && p.unsupported === p.scatterUnsupported) delete p.unsupported;
  }
  if (t.shardSqlT && p.merge) p.merge = { ...p.merge, shardSql: renderParts(t.shardSqlT, literals, kinds) };
  if (t.insertT) {
    const r = (x: Part[]): string => renderParts(x, literals, kinds);
    p.insertSplit = { head: r(t.insertT.head), rows: t.insertT.rows.map((row) => ({ sql: r(row.parts), key: row.key })), tail: r(t.insertT.tail) };
  }
  return p;
}

/** Parse a PostgreSQL array literal ('{1,2,"a b",NULL}') into its (flattened) element texts. */
export function parseArrayLiteral(s: string): (string | null)[] {
  const out: (string | null)[] = [];
  let i = s.indexOf('{');
  if (i < 0) return [s];
  const n = s.length;
  while (i < n) {
    const c = s[i];
    if (c === '{' || c === '}' || c === ',' || c === ' ') { i++; continue; }
    if (c === '"') {
      let v = ''; i++;
      while (i < n && s[i] !== '"') { if (s[i] === '\\') i++; v += s[i]; i++; }
      i++;
      out.push(v);
      continue;
    }
    let j = i, v = '';
    while (j < n && s[j] !== ',' && s[j] !== '}') { if (s[j] === '\\') j++; v += s[j]; j++; }
    v = v.trim();
    out.push(v.toUpperCase() === 'NULL' ? null : v);
    i = j;
  }
  return out;
}

/** Turn a statement's key references into key texts. Returns null when the statement has no
 *  keys or a referenced parameter value is not available. */
export function resolveKeys(stmt: RoutedStatement, params?: (string | null)[]): (string | null)[] | null {
  const keys = stmt.plan.keys;
  if (!keys) return null;
  return resolveKeyRefs(keys, stmt.literals, params);
}

export function resolveKeyRefs(keys: KeyRef[], literals: string[], params?: (string | null)[]): (string | null)[] | null {
  const out: (string | null)[] = [];
  for (const k of keys) {
    let v: string | null;
    if (k.kind === 'literal') v = literals[k.slot];
    else if (k.kind === 'param') {
      if (!params || k.index >= params.length) return null;
      v = params[k.index];
    } else v = k.text;
    if (k.array) { if (v !== null) for (const e of parseArrayLiteral(v)) out.push(e); }
    else out.push(v);
  }
  return out;
}
