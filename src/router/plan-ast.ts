// Plan templates and the helpers the planner modules share: schema normalisation, AST
// accessors, table occurrences and key references, template rendering.
import { LitKind, renderLiteral } from './lexer';
import type { KeyRef, KeyType, Plan, RouterSchema, ShardedTable } from './types';

/* eslint-disable @typescript-eslint/no-explicit-any */
export type N = any;

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

export interface NTable extends ShardedTable { lname: string; lcolumn: string; lcolumns?: string[] }
export interface NSchema {
  byName: Map<string, NTable>;
  /** reference tables of the cluster definition (folded names) */
  reference: Set<string>;
  /** unknownTables: 'reject': a table in neither list is refused */
  reject: boolean;
}

export function foldIdent(s: string): string {
  if (s.length >= 2 && s[0] === '"' && s[s.length - 1] === '"') return s.slice(1, -1).split('""').join('"');
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}
export function splitQualified(name: string): string[] {
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

export function nodeTag(n: N): string { for (const k in n) return k; return ''; }
export function body(n: N): N { for (const k in n) return n[k]; return undefined; }
export function strs(list: N[] | undefined): string[] { return (list ?? []).map((x) => x?.String?.sval ?? (x?.A_Star ? '*' : '')); }
/** Character offset of each byte offset of `text` (the parser's locations are bytes); null when they are the same (ASCII). */
export function byteToCharMap(text: string): Int32Array | null {
  // eslint-disable-next-line no-control-regex
  if (!/[^\x00-\x7f]/.test(text)) return null;
  const buf = Buffer.from(text, 'utf8');
  const map = new Int32Array(buf.length + 1);
  let b = 0;
  for (let ci = 0; ci < text.length; ci++) {
    const cp = text.codePointAt(ci)!;
    const len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (let k = 0; k < len; k++) map[b + k] = ci;
    b += len;
    if (cp >= 0x10000) ci++;
  }
  map[buf.length] = text.length;
  return map;
}
/** A parse tree as text without its positions (`location`, and the list bounds PostgreSQL 18's parser adds). */
export function canon(n: N): string { return JSON.stringify(n, (k, v) => (k === 'location' || k.endsWith('_list_start') || k.endsWith('_list_end') ? undefined : v)); }

export const MERGE_AGGS = new Set(['count', 'sum', 'min', 'max', 'avg']);
export const OTHER_AGGS = new Set(['array_agg', 'string_agg', 'bool_and', 'bool_or', 'every', 'bit_and', 'bit_or', 'bit_xor',
  'json_agg', 'jsonb_agg', 'json_object_agg', 'jsonb_object_agg', 'json_agg_strict', 'jsonb_agg_strict',
  'json_objectagg', 'json_arrayagg', 'xmlagg', 'stddev', 'stddev_pop', 'stddev_samp', 'variance', 'var_pop',
  'var_samp', 'corr', 'covar_pop', 'covar_samp', 'regr_avgx', 'regr_avgy', 'regr_count', 'regr_intercept',
  'regr_r2', 'regr_slope', 'regr_sxx', 'regr_sxy', 'regr_syy', 'percentile_cont', 'percentile_disc', 'mode',
  'any_value', 'range_agg', 'range_intersect_agg', 'grouping']);
export const ADVISORY = new Set(['pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_try_advisory_lock', 'pg_try_advisory_lock_shared']);

export function funcName(fc: N): string | null {
  const names = strs(fc.funcname);
  if (names.length === 1) return names[0];
  if (names.length === 2 && names[0] === 'pg_catalog') return names[1];
  return null;
}

export interface Occ { id: number; table: NTable | null; relname: string; schemaname?: string; alias: string; level: Level; own: KeyRef[] | null; keys: KeyRef[] | null }
export interface Item { occ?: Occ; alias: string | null; opaque: boolean }
export interface Level { parent: Level | null; items: Item[] }
export interface Edge { from: Occ; to: Occ }
export type Restr = Map<Occ, KeyRef[]>;

export function sameRef(a: KeyRef, b: KeyRef): boolean {
  if (a.kind !== b.kind || !!a.array !== !!b.array) return false;
  if (a.kind === 'literal') return a.slot === (b as typeof a).slot;
  if (a.kind === 'param') return a.index === (b as typeof a).index;
  return a.text === (b as typeof a).text;
}
/** A string equal for two refs exactly when sameRef says so (dedupe in linear time: a
 *  50,000-row INSERT has 50,000 key refs). */
export function refKey(r: KeyRef): string {
  const v = r.kind === 'literal' ? String(r.slot) : r.kind === 'param' ? String(r.index) : (r as { text: string }).text;
  return `${r.kind}${r.array ? '[]' : ''}:${v}`;
}
export function uniqueRefs(refs: KeyRef[]): KeyRef[] {
  const seen = new Set<string>();
  const out: KeyRef[] = [];
  for (const r of refs) { const k = refKey(r); if (!seen.has(k)) { seen.add(k); out.push(r); } }
  return out;
}
export function unionRefs(a: KeyRef[], b: KeyRef[]): KeyRef[] {
  if (b.length === 0) return a.slice();
  return uniqueRefs([...a, ...b]);
}

export function keyFamily(t: KeyType): string {
  return t === 'smallint' || t === 'integer' || t === 'bigint' ? 'int' : t === 'varchar' ? 'text' : t;
}
/** two sharded occurrences whose keys hash alike (equal key values live on the same shard) */
export function colocated(a: Occ, b: Occ): boolean {
  return !!a.table && !!b.table && keyFamily(a.table.type) === keyFamily(b.table.type);
}

export function numConstText(v: N): string | null {
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

export function quoteIdent(s: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(s) ? s : '"' + s.split('"').join('""') + '"';
}

export function bakeFixed(parts: Part[], fixed: Set<number>, input: PlanInput): Part[] {
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

