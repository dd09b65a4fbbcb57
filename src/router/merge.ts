// Scatter-gather result merger over raw protocol messages (pure: Buffers in, Buffers out).
//
// The same SELECT (MergeSpec.shardSql if set) runs on every shard; feed each shard's RowDescription,
// DataRows and CommandComplete here, then finish() returns the merged DataRows + CommandComplete.
//
// Semantics:
// - ORDER BY: all rows collected, stable-sorted with a comparator chosen by column type OID;
//   NULLS LAST for ASC / FIRST for DESC unless the spec says otherwise. Text types compare in byte
//   (C collation) order unless the database has another collation (collation.ts); bpchar ignores trailing spaces; numeric/int/float compare numerically
//   (NaN sorts greater than everything as in PostgreSQL); date/time types compare by their text in
//   text format (correct for ISO DateStyle, AD dates) and numerically in binary format.
// - LIMIT / OFFSET applied after the merge (the planner widened the per-shard LIMIT).
// - Aggregates per group (GROUP BY columns compared by PostgreSQL equality for the known types:
//   numeric scale and float -0 normalized, bpchar trailing spaces ignored; other types unsupported): count and integer sums add up
//   exactly as BigInt; numeric sums exactly with decimal scale = max scale (as PostgreSQL's numeric
//   addition); float sums as JS doubles; min/max by type comparator.
//   avg = sum / count: for integer/numeric inputs the result is numeric computed exactly with
//   PostgreSQL's numeric_div display-scale rule (select_div_scale: at least 16 significant digits,
//   at least the input scales) and round-half-away-from-zero, so the text matches a single server.
//   For float inputs avg = float8 sum / count, printed like float8out (shortest round-trip digits,
//   exponent form below 1e-4 or from 1e15). (Float sums of per-shard partials may differ from a
//   single server in the last digit.)
// - Hidden trailing columns (added by the planner) are removed from rows and the RowDescription;
//   avg columns get type numeric (or float8) in the forwarded RowDescription.
// - Without ORDER BY / GROUP BY / aggregates, rows stream: dataRow() returns the row to forward.
// - ORDER BY without grouping or aggregates (DISTINCT ON allowed): each shard's rows come sorted (the
//   shards ran the ORDER BY), so they are merged as they arrive (k-way: a row goes out once every
//   shard still sending has a row queued) instead of collected whole; drain() returns what can go.
// - Binary result format: int2/int4/int8/float4/float8/numeric/bool/date/timestamp/text-like/uuid
//   columns are decoded (numeric through numeric-bin.ts); other types set `unsupported` where they
//   are compared or summed.
import type { MergeSpec } from './types';
import { PgError } from '../protocol/errors';
import { decodeNumericBin, encodeNumericBin } from './numeric-bin';
import { evalHaving, mapColumns, type HVal } from './having';
import { arrayItems, concatArrays, concatJson, concatJsonb, concatJsonObject, jsonStructured, joinStrings, mergeJsonbObjects } from './list-aggs';
import { addDec, cmpDec, divDec, fmtDec, fmtFloat4, fmtFloat8, parseDec, pow10, type Dec } from './decimal';
import { comparatorFor, keyNormFor, type Cmp, type KeyNorm } from './merge-compare';
import { accumulateRegr, accumulateVar, distinctSum, OID, orderedListValue, percentileArray, percentileValue, readInt, regrValue, varValue, type AggState, type FieldDesc } from './merge-aggs';
export { addDec, cmpDec, divDec, fmtDec, fmtFloat4, fmtFloat8, parseDec, type Dec } from './decimal';

export { OID, type FieldDesc } from './merge-aggs';

// ------------------------------------------------------------------ message codecs

export function parseRowDescription(msg: Buffer): FieldDesc[] {
  let p = 5;
  const n = msg.readUInt16BE(p); p += 2;
  const out: FieldDesc[] = [];
  for (let i = 0; i < n; i++) {
    const z = msg.indexOf(0, p);
    const name = msg.toString('utf8', p, z); p = z + 1;
    out.push({ name, tableOid: msg.readUInt32BE(p), attnum: msg.readInt16BE(p + 4), typeOid: msg.readUInt32BE(p + 6), typlen: msg.readInt16BE(p + 10), typmod: msg.readInt32BE(p + 12), format: msg.readInt16BE(p + 16) });
    p += 18;
  }
  return out;
}

export function buildRowDescription(fields: FieldDesc[]): Buffer {
  let len = 4 + 2;
  const names = fields.map((f) => Buffer.from(f.name, 'utf8'));
  for (const nm of names) len += nm.length + 1 + 18;
  const b = Buffer.allocUnsafe(1 + len);
  b[0] = 0x54; b.writeInt32BE(len, 1); b.writeInt16BE(fields.length, 5);
  let p = 7;
  fields.forEach((f, i) => {
    names[i].copy(b, p); p += names[i].length; b[p++] = 0;
    b.writeUInt32BE(f.tableOid >>> 0, p); b.writeInt16BE(f.attnum, p + 4); b.writeUInt32BE(f.typeOid >>> 0, p + 6);
    b.writeInt16BE(f.typlen, p + 10); b.writeInt32BE(f.typmod, p + 12); b.writeInt16BE(f.format, p + 16);
    p += 18;
  });
  return b;
}

export function parseDataRow(msg: Buffer): (Buffer | null)[] {
  const n = msg.readUInt16BE(5);
  const out: (Buffer | null)[] = new Array(n);
  let p = 7;
  for (let i = 0; i < n; i++) {
    const len = msg.readInt32BE(p); p += 4;
    if (len < 0) out[i] = null; else { out[i] = msg.subarray(p, p + len); p += len; }
  }
  return out;
}

export function buildDataRow(cols: (Buffer | null)[], count = cols.length): Buffer {
  let len = 4 + 2;
  for (let i = 0; i < count; i++) len += 4 + (cols[i] ? cols[i]!.length : 0);
  const b = Buffer.allocUnsafe(1 + len);
  b[0] = 0x44; b.writeInt32BE(len, 1); b.writeInt16BE(count, 5);
  let p = 7;
  for (let i = 0; i < count; i++) {
    const c = cols[i];
    if (c === null) { b.writeInt32BE(-1, p); p += 4; } else { b.writeInt32BE(c.length, p); p += 4; c.copy(b, p); p += c.length; }
  }
  return b;
}

export function buildCommandComplete(tag: string): Buffer {
  const t = Buffer.from(tag, 'utf8');
  const b = Buffer.allocUnsafe(1 + 4 + t.length + 1);
  b[0] = 0x43; b.writeInt32BE(4 + t.length + 1, 1); t.copy(b, 5); b[5 + t.length] = 0;
  return b;
}

/** a number's text as an exact decimal (exponent forms and NaN/Infinity as text) */
function numText(t: string): HVal {
  return /^-?\d+(\.\d+)?$/.test(t) ? { num: parseDec(t) } : { str: t };
}

// ------------------------------------------------------------------ accumulators

type SumKind = 'int' | 'numeric' | 'float8' | 'float4';
function sumKindOf(typeOid: number): SumKind | null {
  switch (typeOid) {
    case OID.int2: case OID.int4: case OID.int8: return 'int';
    case OID.numeric: return 'numeric';
    case OID.float8: return 'float8';
    case OID.float4: return 'float4';
    default: return null;
  }
}

/** Element types whose sum / avg (DISTINCT) pgring merges. */
const DISTINCT_SUM = new Set<number>([OID.int2, OID.int4, OID.int8, OID.numeric, OID.float4, OID.float8]);

/** Types a cast sum() may have across shards (castSum). */
const CAST_SUM = new Set<number>([OID.int2, OID.int4, OID.int8, OID.numeric, OID.float4, OID.float8]);

const INT_RANGE: Record<number, [bigint, bigint, string]> = {
  [OID.int2]: [-32768n, 32767n, 'smallint'], [OID.int4]: [-2147483648n, 2147483647n, 'integer'], [OID.int8]: [-(2n ** 63n), 2n ** 63n - 1n, 'bigint'],
};

/** An exact number cast to an integer type or numeric (half away from zero, as PostgreSQL rounds numeric), in the column's format. */
function castInt(d: Dec, f: FieldDesc): Buffer {
  if (f.typeOid === OID.numeric) {
    const t = f.typmod >= 4 ? roundDec(d, (f.typmod - 4) & 0xffff) : d;
    return f.format === 1 ? encodeNumericBin(t) : Buffer.from(fmtDec(t), 'latin1');
  }
  if (d.special) throw new PgError('0A000', `cannot convert ${d.special} to ${INT_RANGE[f.typeOid]![2]}`);
  const v = roundDec(d, 0).v;
  const [lo, hi, name] = INT_RANGE[f.typeOid]!;
  if (v < lo || v > hi) throw new PgError('22003', `${name} out of range`);
  if (f.format !== 1) return Buffer.from(v.toString(), 'latin1');
  const b = Buffer.alloc(f.typeOid === OID.int8 ? 8 : f.typeOid === OID.int4 ? 4 : 2);
  if (b.length === 8) b.writeBigInt64BE(v); else if (b.length === 4) b.writeInt32BE(Number(v)); else b.writeInt16BE(Number(v));
  return b;
}

/** Rounds to `scale` digits, half away from zero. */
function roundDec(d: Dec, scale: number): Dec {
  if (d.special || d.scale <= scale) return d;
  const p = pow10(d.scale - scale);
  let q = d.v / p;
  const r = d.v % p;
  if ((r < 0n ? -r : r) * 2n >= p) q += d.v < 0n ? -1n : 1n;
  return { v: q, scale };
}

/** A float as numeric, as PostgreSQL's float8 to numeric cast makes it (%.15g: 15 significant digits). */
function floatDec(x: number): Dec {
  const [m, e] = x.toPrecision(15).split('e');
  let mant = m!;
  if (mant.includes('.')) mant = mant.replace(/0+$/, '').replace(/\.$/, '');
  const d = parseDec(mant);
  const exp = e === undefined ? 0 : Number(e);
  if (exp >= d.scale) return { v: d.v * pow10(exp - d.scale), scale: 0 };
  return { v: d.v, scale: d.scale - exp };
}

/** The exact sum of the shards (a Dec, or a float sum) cast to the visible column's type. */
function castSum(x: Dec | number, f: FieldDesc): Buffer {
  if (f.typeOid === OID.float8 || f.typeOid === OID.float4) {
    const n = typeof x === 'number' ? x : Number(fmtDec(x));
    if (f.format !== 1) return Buffer.from(f.typeOid === OID.float8 ? fmtFloat8(n) : fmtFloat4(Math.fround(n)), 'latin1');
    const b = Buffer.alloc(f.typeOid === OID.float8 ? 8 : 4);
    if (b.length === 8) b.writeDoubleBE(n); else b.writeFloatBE(n);
    return b;
  }
  if (typeof x === 'number') {
    if (!Number.isFinite(x)) throw new PgError('22003', `${f.typeOid === OID.numeric ? 'numeric' : INT_RANGE[f.typeOid]![2]} out of range`);
    // float to integer rounds half to even (rint); float to numeric keeps the float's shortest text
    if (f.typeOid !== OID.numeric) {
      const r = Math.round(x);
      const even = Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
      return castInt({ v: BigInt(even), scale: 0 }, f);
    }
    return castInt(floatDec(x), f);
  }
  return castInt(x, f);
}


/** element type of the array types array_agg(DISTINCT x) returns for count(DISTINCT x) */
const ELEM_OF: Record<number, number> = {
  1000: OID.bool, 1001: OID.bytea, 1003: OID.name, 1005: OID.int2, 1007: OID.int4, 1016: OID.int8, 1009: OID.text, 1014: OID.bpchar,
  1015: OID.varchar, 1021: OID.float4, 1022: OID.float8, 1028: OID.oid, 1182: OID.date, 1183: OID.time, 1115: OID.timestamp,
  1185: OID.timestamptz, 1231: OID.numeric, 2951: OID.uuid,
};

/** typlen of the element types a percentile returns */
const TYPLEN: Record<number, number> = {
  [OID.bool]: 1, [OID.int2]: 2, [OID.int4]: 4, [OID.int8]: 8, [OID.float4]: 4, [OID.float8]: 8, [OID.oid]: 4, [OID.date]: 4,
  [OID.time]: 8, [OID.timestamp]: 8, [OID.timestamptz]: 8, [OID.uuid]: 16, [OID.name]: 64,
};

/** array types (typarray of the built-in scalar types): array_agg results pgring concatenates */
const ARRAY_TYPE = new Set([...Object.keys(ELEM_OF).map(Number), 199, 1017, 1034, 1040, 1041, 1561, 1563, 3807, 199, 1270, 1187]);

/** the elements of a one-dimensional array value (text or binary format), NULLs left out */
function arrayElements(b: Buffer, format: number): Buffer[] {
  if (format === 1) {
    const ndim = b.readInt32BE(0);
    if (ndim === 0) return [];
    let n = 1;
    for (let d = 0; d < ndim; d++) n *= b.readInt32BE(12 + 8 * d);
    let p = 12 + 8 * ndim;
    const out: Buffer[] = [];
    for (let i = 0; i < n; i++) { const len = b.readInt32BE(p); p += 4; if (len >= 0) { out.push(b.subarray(p, p + len)); p += len; } }
    return out;
  }
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { parseArrayLiteral } = require('./router') as typeof import('./router');
  return parseArrayLiteral(b.toString('utf8')).filter((x): x is string => x !== null).map((x) => Buffer.from(x, 'utf8'));
}

interface Row { cols: (Buffer | null)[]; shard: number; seq: number }

export class ResultMerger {
  /** set when the shards' result cannot be merged (e.g. binary numeric); the caller should fail the query */
  unsupported: string | null = null;
  private fields: FieldDesc[] | null = null;
  private visible = 0;
  private readonly streaming: boolean;
  /** rows pass through one by one (no ORDER BY, grouping, DISTINCT or HAVING) */
  get streams(): boolean { return this.streaming; }
  private readonly limit: number | null;
  private readonly offset: number;
  private rows: Row[] = [];
  private seq = 0;
  private emitted = 0;
  private skipped = 0;
  private groups = new Map<string, { row: Row; acc: AggState[] }>();
  private spec: MergeSpec;
  private cmps: (Cmp | null)[] = [];
  private sumKinds: (SumKind | null)[] = [];
  /** output type of a sum / avg (DISTINCT) column (the shards send an array of its values) */
  private readonly distinctTypes = new Map<number, number>();
  /** ordered string_agg / array_agg: the comparators of their sort keys, by result column */
  private readonly keyCmps = new Map<number, Cmp[]>();
  /** string_agg / array_agg (DISTINCT): the normalized key that makes two elements equal */
  private readonly distinctNorms = new Map<number, KeyNorm>();
  private keyNorms: (KeyNorm | null)[] = [];

  private readonly params: (string | null)[] | undefined;
  /** ORDER BY merged as rows arrive (see the header): per shard its queued rows from `heads[i]` on */
  private readonly sorted: boolean;
  private queues: Row[][] = [];
  private heads: number[] = [];
  private ended: boolean[] = [];
  private rowCmp: ((x: Row, y: Row) => number) | null = null;
  private lastDistinct: string | null = null;

  /** `text`: text order of the database's collation (collation.ts; null: bytes). */
  constructor(spec: MergeSpec, readonly shards: number, params?: (string | null)[], private readonly text: Cmp | null = null) {
    this.spec = spec;
    this.params = params;
    this.streaming = spec.orderBy.length === 0 && spec.aggregates.length === 0 && spec.groupBy.length === 0
      && !spec.distinct && !spec.distinctOn && !spec.having;
    const res = (v: MergeSpec['limit']): number | null => {
      if (v === null) return null;
      if (typeof v === 'number') return v;
      const t = params?.[v.param];
      return t === undefined || t === null ? null : Number(t);
    };
    this.limit = res(spec.limit);
    this.offset = res(spec.offset) ?? 0;
    this.sorted = spec.orderBy.length > 0 && spec.aggregates.length === 0 && spec.groupBy.length === 0 && !spec.distinct && !spec.having;
    if (this.sorted) {
      this.queues = Array.from({ length: shards }, () => []);
      this.heads = new Array<number>(shards).fill(0);
      this.ended = new Array<boolean>(shards).fill(false);
    }
  }

  /** ORDER BY rows go out as they arrive, merged (drain()), instead of at finish(). */
  get sortedStreams(): boolean { return this.sorted; }

  /** Rows of `shard` queued, waiting for the other shards' next rows. */
  queued(shard: number): number { return this.sorted ? this.queues[shard]!.length - this.heads[shard]! : 0; }

  /** The merged rows that can go out now: while every shard still sending has a row queued, the
   *  smallest head (ties: the lower shard). */
  drain(): Buffer[] {
    const out: Buffer[] = [];
    if (!this.sorted || !this.fields || this.unsupported) return out;
    const cmp = this.rowCmp!;
    const n = this.queues.length;
    for (;;) {
      let best = -1;
      for (let i = 0; i < n; i++) {
        if (this.heads[i]! >= this.queues[i]!.length) {
          if (!this.ended[i]) return out;
          continue;
        }
        if (best < 0 || cmp(this.queues[i]![this.heads[i]!]!, this.queues[best]![this.heads[best]!]!) < 0) best = i;
      }
      if (best < 0) return out;
      const q = this.queues[best]!;
      const row = q[this.heads[best]!]!;
      if (++this.heads[best]! === q.length) { q.length = 0; this.heads[best] = 0; } else if (this.heads[best]! >= 1024 && this.heads[best]! * 2 >= q.length) { q.splice(0, this.heads[best]!); this.heads[best] = 0; }
      if (this.spec.distinctOn) {
        const k = this.keyOf(this.spec.distinctOn, row.cols);
        if (k === this.lastDistinct) continue;
        this.lastDistinct = k;
      }
      if (this.skipped < this.offset) { this.skipped++; continue; }
      if (this.limit !== null && this.emitted >= this.limit) {
        // past LIMIT: nothing more goes out; queued rows are dropped
        for (let i = 0; i < n; i++) { this.queues[i]!.length = 0; this.heads[i] = 0; }
        return out;
      }
      this.emitted++;
      out.push(buildDataRow(row.cols, this.visible));
    }
  }

  /** The ORDER BY comparison of two rows (NULLS FIRST/LAST, DESC, COLLATE "C" bytes); ties by arrival. */
  private orderCmp(): (x: Row, y: Row) => number {
    const ob = this.spec.orderBy.map((o) => ({ ...o, cmp: o.bytes ? comparatorFor(this.fields![o.column]!.typeOid, this.fields![o.column]!.format)! : this.cmps[o.column]! }));
    return (x, y) => {
      for (const o of ob) {
        const a = x.cols[o.column], b = y.cols[o.column];
        if (a === null || b === null) {
          if (a === b) continue;
          return (a === null) === o.nullsFirst ? -1 : 1;
        }
        const r = o.cmp(a, b);
        if (r !== 0) return o.desc ? -r : r;
      }
      return x.seq - y.seq;
    };
  }

  private col(c: number): number { return c < 0 ? this.fields!.length + c : c; }

  /** Returns the RowDescription to forward to the client (first shard's, hidden columns removed,
   *  avg columns retyped), or null for the other shards. */
  rowDescription(shard: number, msg: Buffer): Buffer | null {
    void shard;
    if (this.fields) return null;
    const fields = parseRowDescription(msg);
    this.fields = fields;
    this.visible = Math.max(0, fields.length - this.spec.hiddenColumns);
    // resolve negative indexes
    const sp = this.spec;
    this.spec = {
      ...sp,
      orderBy: sp.orderBy.map((o) => ({ ...o, column: this.col(o.column) })),
      groupBy: sp.groupBy.map((g) => this.col(g)),
      aggregates: sp.aggregates.map((a) => ({
        ...a, column: this.col(a.column), sumColumn: a.sumColumn === undefined ? undefined : this.col(a.sumColumn), countColumn: a.countColumn === undefined ? undefined : this.col(a.countColumn),
        sqColumn: a.sqColumn === undefined ? undefined : this.col(a.sqColumn), avgColumn: a.avgColumn === undefined ? undefined : this.col(a.avgColumn),
        catColumn: a.catColumn === undefined ? undefined : this.col(a.catColumn),
        keyColumns: a.keyColumns?.map((c) => this.col(c)),
        syyColumn: a.syyColumn === undefined ? undefined : this.col(a.syyColumn), avgyColumn: a.avgyColumn === undefined ? undefined : this.col(a.avgyColumn),
      })),
      distinctOn: sp.distinctOn?.map((c) => this.col(c)),
      having: sp.having && mapColumns(sp.having, (c) => this.col(c)),
    };
    // DISTINCT: one group per distinct visible row
    if (sp.distinct) this.spec.groupBy = Array.from({ length: this.visible }, (_, i) => i);
    const out = fields.slice(0, this.visible).map((f) => ({ ...f }));
    this.cmps = fields.map((f) => comparatorFor(f.typeOid, f.format, this.text));

    this.sumKinds = fields.map((f) => sumKindOf(f.typeOid));
    for (const a of this.spec.aggregates) {
      const f = fields[a.column];
      if (!f) { this.unsupported = 'merge column out of range'; continue; }
      if (a.fn === 'count' && f.format === 1 && f.typeOid !== OID.int8 && f.typeOid !== OID.int4 && f.typeOid !== OID.int2 && f.typeOid !== OID.numeric) this.unsupported = 'count() result type';
      if (a.fn === 'sum' && a.sumColumn !== undefined && a.sumColumn !== a.column && !CAST_SUM.has(f.typeOid)) this.unsupported = `sum() cast to type ${f.typeOid} across shards`;
      if (a.fn === 'string_agg' && f.typeOid !== OID.text) this.unsupported = `string_agg of type ${f.typeOid} across shards`;
      if (a.fn === 'array_agg' && (f.typeOid === 1020 || !ARRAY_TYPE.has(f.typeOid))) this.unsupported = `array_agg of type ${f.typeOid} across shards`;
      if (a.fn === 'jsonb_agg' && f.typeOid !== OID.jsonb) this.unsupported = `jsonb_agg of type ${f.typeOid} across shards`;
      if (a.fn === 'json_agg' && f.typeOid !== OID.json) this.unsupported = `json_agg of type ${f.typeOid} across shards`;
      if (a.fn === 'percentile') {
        // the shards' sorted values (array_agg): the result is one of them (percentile_disc, mode)
        // or float8 (percentile_cont)
        const el = ELEM_OF[f.typeOid];
        const cmp = el === undefined ? null : comparatorFor(el, f.format, this.text);
        if (!cmp || (a.regr === 'percentile_cont' && el !== OID.float8)) this.unsupported = `${a.regr} of type ${f.typeOid} across shards`;
        else {
          // one fraction: an element; an ARRAY of fractions: an array of them, the shards' array type
          if (a.column < this.visible && !Array.isArray(a.fraction)) Object.assign(out[a.column], { typeOid: el, typlen: TYPLEN[el!] ?? -1, typmod: -1 });
          this.cmps[a.column] = cmp;
          this.keyCmps.set(a.column, [cmp]);
        }
      }
      if (a.fn === 'regr' && f.typeOid !== OID.float8) this.unsupported = `${a.regr} of type ${f.typeOid} across shards`;
      if (a.fn === 'json_object_agg' && f.typeOid !== OID.json) this.unsupported = `json_object_agg of type ${f.typeOid} across shards`;
      if (a.fn === 'jsonb_object_agg' && f.typeOid !== OID.jsonb) this.unsupported = `jsonb_object_agg of type ${f.typeOid} across shards`;
      if (a.fn === 'ordered_agg') {
        // the shards' array_agg(x ORDER BY …): string_agg's result is text; keys compare as their element type
        if (a.list === 'string') {
          if (f.typeOid !== 1009) this.unsupported = `string_agg with ORDER BY of type ${f.typeOid} across shards`;
          else if (a.column < this.visible) Object.assign(out[a.column], { typeOid: OID.text, typlen: -1, typmod: -1 });
          this.cmps[a.column] = comparatorFor(OID.text, f.format, this.text);
        } else if (ELEM_OF[f.typeOid] === undefined) this.unsupported = `array_agg with ORDER BY of type ${f.typeOid} across shards`;
        if (a.distinct) {
          // the elements are their own sort key; equal ones (PostgreSQL's equality: the normalized key) once
          const el = a.list === 'string' ? OID.text : ELEM_OF[f.typeOid];
          const cmp = el === undefined ? null : comparatorFor(el, f.format, this.text);
          const norm = el === undefined ? null : keyNormFor(el, f.format);
          if (!cmp || !norm) this.unsupported = `${a.list === 'string' ? 'string_agg' : 'array_agg'}(DISTINCT) of type ${f.typeOid} across shards`;
          else { this.keyCmps.set(a.column, [cmp]); this.distinctNorms.set(a.column, norm); }
        } else this.keyCmps.set(a.column, a.keyColumns!.map((c) => {
          const kf = fields[c];
          const el = kf ? ELEM_OF[kf.typeOid] : undefined;
          const cmp = el === undefined ? null : comparatorFor(el, kf!.format, this.text);
          if (!cmp) this.unsupported = `ORDER BY inside an aggregate on type ${kf?.typeOid}${kf?.format === 1 ? ' (binary)' : ''} across shards`;
          return cmp!;
        }));
      }
      if (a.fn.startsWith('bit_') && f.typeOid !== OID.int2 && f.typeOid !== OID.int4 && f.typeOid !== OID.int8) this.unsupported = `${a.fn} of type ${f.typeOid} across shards (integer types are merged)`;
      if (a.fn === 'count_distinct') {
        const el = ELEM_OF[f.typeOid];
        if (el === undefined || !keyNormFor(el, f.format)) this.unsupported = `count(DISTINCT) of type ${f.typeOid} across shards`;
        if (a.column < this.visible) Object.assign(out[a.column], { typeOid: OID.int8, typlen: 8, typmod: -1 });
        this.cmps[a.column] = comparatorFor(OID.int8, f.format);
      }
      if (a.fn === 'sum_distinct' || a.fn === 'avg_distinct') {
        // sum(int2 / int4) is int8, sum(int8 / numeric) numeric, sum(float4 / float8) the same float; avg numeric or float8
        const el = ELEM_OF[f.typeOid];
        const float = el === OID.float4 || el === OID.float8;
        const type = el === undefined || !DISTINCT_SUM.has(el) ? null
          : a.fn === 'avg_distinct' ? (float ? OID.float8 : OID.numeric)
          : el === OID.int2 || el === OID.int4 ? OID.int8 : el === OID.int8 ? OID.numeric : el;
        if (type === null) this.unsupported = `${a.fn === 'sum_distinct' ? 'sum' : 'avg'}(DISTINCT) of type ${f.typeOid} across shards`;
        else {
          if (a.column < this.visible) Object.assign(out[a.column], { typeOid: type, typlen: type === OID.numeric ? -1 : type === OID.float4 ? 4 : 8, typmod: -1 });
          this.cmps[a.column] = comparatorFor(type, f.format);
          this.distinctTypes.set(a.column, type);
        }
      }
      if (a.fn === 'var' && ((f.typeOid !== OID.numeric && f.typeOid !== OID.float8) || !this.sumKinds[a.sumColumn!])) this.unsupported = `a variance of type ${f.typeOid} across shards`;
      if (a.fn === 'sum' || a.fn === 'avg') {
        const k = this.sumKinds[a.sumColumn ?? a.column];
        if (!k) this.unsupported = `sum/avg of type ${f.typeOid} across shards`;
      }
      if ((a.fn === 'min' || a.fn === 'max') && !this.cmps[a.byColumn ?? a.column]) this.unsupported = `min/max of type ${f.typeOid}${f.format === 1 ? ' (binary)' : ''} across shards`;
      if (a.fn === 'avg' && a.column < this.visible) {
        const k = this.sumKinds[a.sumColumn ?? a.column];
        const isFloat = k === 'float4' || k === 'float8';
        out[a.column].typeOid = isFloat ? OID.float8 : OID.numeric;
        out[a.column].typlen = isFloat ? 8 : -1;
        out[a.column].typmod = -1;
        this.cmps[a.column] = comparatorFor(out[a.column].typeOid, out[a.column].format);
      }
    }
    for (const o of this.spec.orderBy) if (!this.cmps[o.column]) this.unsupported = `ORDER BY on type ${fields[o.column]?.typeOid}${fields[o.column]?.format === 1 ? ' (binary)' : ''} across shards`;
    if (this.spec.orderBy.length && !this.unsupported) this.rowCmp = this.orderCmp();
    this.keyNorms = fields.map((f) => keyNormFor(f.typeOid, f.format));
    for (const g of this.spec.distinctOn ?? []) if (!fields[g] || !this.keyNorms[g]) this.unsupported = `DISTINCT ON type ${fields[g]?.typeOid} across shards`;
    for (const g of this.spec.groupBy) if (!fields[g] || !this.keyNorms[g]) this.unsupported = `${this.spec.distinct ? 'DISTINCT' : 'GROUP BY'} on type ${fields[g]?.typeOid}${fields[g]?.format === 1 ? ' (binary)' : ''} across shards`;
    // the shards' own description serves when no column is hidden or retyped
    const retyped = (a: MergeSpec['aggregates'][number]): boolean => a.fn === 'avg' || a.fn === 'count_distinct' || a.fn === 'sum_distinct' || a.fn === 'avg_distinct'
      || (a.fn === 'percentile' && !Array.isArray(a.fraction)) || (a.fn === 'ordered_agg' && a.list === 'string');
    if (this.spec.hiddenColumns === 0 && !this.spec.aggregates.some(retyped)) return msg;
    return buildRowDescription(out);
  }

  /** Feed a DataRow. In streaming mode (no ORDER BY / GROUP BY / aggregates) returns the row to
   *  forward now (or null when it is skipped by OFFSET / past LIMIT); otherwise buffers it, returns null. */
  dataRow(shard: number, msg: Buffer): Buffer | null {
    if (this.streaming) {
      if (this.skipped < this.offset) { this.skipped++; return null; }
      if (this.limit !== null && this.emitted >= this.limit) return null;
      this.emitted++;
      if (this.spec.hiddenColumns === 0) return msg;
      return buildDataRow(parseDataRow(msg), this.visible);
    }
    const row: Row = { cols: parseDataRow(msg), shard, seq: this.seq++ };
    if (this.sorted) { this.queues[shard]!.push(row); return null; }
    if (this.spec.aggregates.length === 0 && this.spec.groupBy.length === 0) { this.rows.push(row); return null; }
    const key = this.groupKey(row.cols);
    let g = this.groups.get(key);
    if (!g) {
      g = { row, acc: this.spec.aggregates.map(() => ({ count: 0n, sumInt: 0n, sumDec: null, sumF: 0, any: false, best: null })) };
      this.groups.set(key, g);
    }
    this.accumulate(g.acc, row.cols);
    return null;
  }

  commandComplete(shard: number, tag: string | Buffer): void { void tag; if (this.sorted) this.ended[shard] = true; }

  private groupKey(cols: (Buffer | null)[]): string { return this.keyOf(this.spec.groupBy, cols); }

  /** A merged column as a value for HAVING (aggregate columns by their result type). */
  private valueOf(c: number, b: Buffer | null): HVal {
    if (b === null) return null;
    const f = this.fields![c]!;
    const a = this.spec.aggregates.find((x) => x.column === c);
    let type = f.typeOid;
    if (a?.fn === 'count' || a?.fn === 'count_distinct') type = OID.int8;
    if (a?.fn === 'avg') { const k = this.sumKinds[a.sumColumn ?? c]; type = k === 'float4' || k === 'float8' ? OID.float8 : OID.numeric; }
    if (a?.fn === 'sum_distinct' || a?.fn === 'avg_distinct') type = this.distinctTypes.get(c) ?? type;
    const numeric = type === OID.int2 || type === OID.int4 || type === OID.int8 || type === OID.numeric || type === OID.float4 || type === OID.float8 || type === OID.oid;
    if (f.format === 1) {
      switch (type) {
        case OID.int2: return { num: { v: BigInt(b.readInt16BE(0)), scale: 0 } };
        case OID.int4: return { num: { v: BigInt(b.readInt32BE(0)), scale: 0 } };
        case OID.int8: return { num: { v: b.readBigInt64BE(0), scale: 0 } };
        case OID.numeric: return { num: decodeNumericBin(b) };
        case OID.float4: case OID.float8: return numText(String(b.length === 4 ? b.readFloatBE(0) : b.readDoubleBE(0)));
        case OID.bool: return { str: b[0] ? 't' : 'f' };
        default: return { str: b.toString('utf8') };
      }
    }
    return numeric ? numText(b.toString('latin1')) : { str: b.toString('utf8') };
  }

  private keyOf(columns: number[], cols: (Buffer | null)[]): string {
    let k = '';
    for (const c of columns) {
      const v = cols[c];
      if (v === null) { k += '\u0001N'; continue; }
      const t = this.keyNorms[c] ? this.keyNorms[c]!(v) : v.toString('latin1');
      k += '\u0002' + t.length + ':' + t;
    }
    return k;
  }

  private accumulate(acc: AggState[], cols: (Buffer | null)[]): void {
    const fields = this.fields!;
    this.spec.aggregates.forEach((a, i) => {
      const st = acc[i];
      if (a.fn === 'count') {
        const v = cols[a.column];
        if (v === null) return;
        const f = fields[a.column];
        // count(*)::numeric in binary: a numeric value with no fraction
        if (f.format === 1 && f.typeOid === OID.numeric) { const d = decodeNumericBin(v); st.count += d.scale > 0 ? d.v / pow10(d.scale) : d.v; } else st.count += readInt(v, f.format);
        return;
      }
      if (a.fn === 'string_agg' || a.fn === 'array_agg' || a.fn === 'jsonb_agg' || a.fn === 'json_object_agg' || a.fn === 'jsonb_object_agg') { const v = cols[a.column]; if (v !== null) (st.parts ??= []).push(Buffer.from(v)); return; }
      if (a.fn === 'ordered_agg') {
        const v = cols[a.column];
        if (v === null) return;   // no row of the group on this shard (or none passed FILTER)
        const f = fields[a.column];
        const xs = arrayItems(v, f.format);
        if (xs === null) { this.unsupported = 'an ordered array_agg of arrays across shards'; return; }
        const ks = a.keyColumns!.map((c) => { const kv = cols[c]; return kv === null ? [] : arrayItems(kv, fields[c].format) ?? []; });
        const items = (st.items ??= []);
        if (a.distinct) for (const x of xs) items.push({ x, k: [x] });
        else for (let i = 0; i < xs.length; i++) items.push({ x: xs[i] ?? null, k: ks.map((arr) => arr[i] ?? null) });
        if (f.format === 1 && st.elemOid === undefined) st.elemOid = v.readInt32BE(8);
        return;
      }
      if (a.fn === 'json_agg') {
        const v = cols[a.column];
        if (v !== null) (st.parts ??= []).push(Buffer.from(v));
        const c = cols[a.catColumn!];
        if (c != null && !st.structured) st.structured = jsonStructured(c.toString('utf8'));
        return;
      }
      if (a.fn === 'bit_and' || a.fn === 'bit_or' || a.fn === 'bit_xor') {
        const v = cols[a.column];
        if (v === null) return;
        const x = readInt(v, fields[a.column]!.format);
        st.sumInt = !st.any ? x : a.fn === 'bit_and' ? st.sumInt & x : a.fn === 'bit_or' ? st.sumInt | x : st.sumInt ^ x;
        st.any = true;
        return;
      }
      if (a.fn === 'var') { accumulateVar(a, st, cols, fields); return; }
      if (a.fn === 'regr') { accumulateRegr(a, st, cols, fields); return; }
      if (a.fn === 'percentile') {
        const v = cols[a.column];
        if (v === null) return;
        const items = (st.items ??= []);
        for (const x of arrayItems(v, fields[a.column]!.format) ?? []) if (x !== null) items.push({ x, k: [] });
        if (fields[a.column]!.format === 1 && st.elemOid === undefined) st.elemOid = v.readInt32BE(8);
        return;
      }
      if (a.fn === 'count_distinct') {
        const v = cols[a.column];
        if (v === null) return;
        const f = fields[a.column];
        const norm = keyNormFor(ELEM_OF[f.typeOid]!, f.format)!;
        const set = (st.set ??= new Set());
        for (const el of arrayElements(v, f.format)) set.add(norm(el));
        return;
      }
      if (a.fn === 'sum_distinct' || a.fn === 'avg_distinct') {
        const v = cols[a.column];
        if (v === null) return;
        const f = fields[a.column];
        const norm = keyNormFor(ELEM_OF[f.typeOid]!, f.format)!;
        const vals = (st.vals ??= new Map());
        for (const el of arrayElements(v, f.format)) { const k = norm(el); if (!vals.has(k)) vals.set(k, Buffer.from(el)); }
        return;
      }
      if ((a.fn === 'min' || a.fn === 'max') && a.byColumn !== undefined) {
        // max(x)::T: the row whose uncast max(x) wins gives the cast value
        const by = cols[a.byColumn];
        if (by === null) return;
        const r = st.bestBy === undefined ? 0 : this.cmps[a.byColumn]!(by, st.bestBy);
        if (st.bestBy === undefined || (a.fn === 'min' && r < 0) || (a.fn === 'max' && r > 0)) { st.bestBy = Buffer.from(by); const v = cols[a.column]; st.best = v === null ? null : Buffer.from(v); }
        return;
      }
      if (a.fn === 'min' || a.fn === 'max') {
        const v = cols[a.column];
        if (v === null) return;
        const cmp = this.cmps[a.column]!;
        if (st.best === null) st.best = Buffer.from(v);
        else { const r = cmp(v, st.best); if ((a.fn === 'min' && r < 0) || (a.fn === 'max' && r > 0)) st.best = Buffer.from(v); }
        return;
      }
      // sum / avg
      const sc = a.sumColumn ?? a.column;
      const v = cols[sc];
      if (a.fn === 'avg' && a.countColumn !== undefined) {
        const c = cols[a.countColumn];
        if (c !== null) st.count += readInt(c, fields[a.countColumn].format);
      }
      if (v === null) return;
      st.any = true;
      const f = fields[sc];
      switch (this.sumKinds[sc]) {
        case 'int': st.sumInt += readInt(v, f.format); break;
        case 'numeric': { const d = f.format === 1 ? decodeNumericBin(v) : parseDec(v.toString('latin1')); st.sumDec = st.sumDec ? addDec(st.sumDec, d) : d; break; }
        case 'float8': st.sumF += f.format === 1 ? v.readDoubleBE(0) : Number(v.toString('latin1')); break;
        case 'float4': st.sumF = Math.fround(st.sumF + (f.format === 1 ? v.readFloatBE(0) : Number(v.toString('latin1')))); break;
        default: break;
      }
    });
  }

  private aggValue(a: MergeSpec['aggregates'][number], st: AggState): Buffer | null {
    const fields = this.fields!;
    const f = fields[a.column];
    const bin = f.format === 1;
    if (a.fn === 'count_distinct') st.count = BigInt(st.set?.size ?? 0);
    if (a.fn === 'count' || a.fn === 'count_distinct') {
      if (a.fn === 'count' && f.typeOid !== OID.int8) return castInt({ v: st.count, scale: 0 }, f);   // count(*)::int
      if (bin) { const b = Buffer.alloc(8); b.writeBigInt64BE(st.count); return b; }
      return Buffer.from(st.count.toString(), 'latin1');
    }
    if (a.fn === 'min' || a.fn === 'max') return st.best;
    if (a.fn === 'var') return varValue(a, st, fields, bin);
    if (a.fn === 'regr') return regrValue(a, st, bin);
    if (a.fn === 'percentile') {
      const fr = a.fraction, cmp = this.keyCmps.get(a.column)![0]!;
      if (Array.isArray(fr)) return percentileArray(a, st, cmp, fr, f.format, st.elemOid ?? 0);
      return percentileValue(a, st, cmp, fr === undefined ? NaN : typeof fr === 'number' ? fr : Number(this.params?.[fr.param] ?? NaN), bin);
    }
    if (a.fn === 'sum_distinct' || a.fn === 'avg_distinct') return distinctSum(a, st, ELEM_OF[f.typeOid]!, f.format, bin);
    if (a.fn === 'jsonb_agg') return st.parts?.length ? concatJsonb(st.parts, f.format) : null;
    if (a.fn === 'json_agg') return st.parts?.length ? concatJson(st.parts, st.structured === true) : null;
    if (a.fn === 'json_object_agg') return st.parts?.length ? concatJsonObject(st.parts) : null;
    if (a.fn === 'jsonb_object_agg') return st.parts?.length ? mergeJsonbObjects(st.parts, f.format) : null;
    if (a.fn === 'ordered_agg') {
      const sep = a.list !== 'string' ? null : typeof a.sep === 'object' ? this.params?.[a.sep.param] ?? null : a.sep ?? '';
      return orderedListValue(a, st, this.keyCmps.get(a.column)!, a.distinct ? this.distinctNorms.get(a.column)! : null, sep, f.format);
    }
    if (a.fn === 'bit_and' || a.fn === 'bit_or' || a.fn === 'bit_xor') {
      if (!st.any) return null;
      if (!bin) return Buffer.from(st.sumInt.toString(), 'latin1');
      const b = Buffer.alloc(f.typlen > 0 ? f.typlen : 8);
      if (b.length === 8) b.writeBigInt64BE(st.sumInt); else if (b.length === 4) b.writeInt32BE(Number(st.sumInt)); else b.writeInt16BE(Number(st.sumInt));
      return b;
    }
    if (a.fn === 'string_agg' || a.fn === 'array_agg') {
      if (!st.parts?.length) return null;
      if (a.fn === 'array_agg') return concatArrays(st.parts, f.format);
      const sep = typeof a.sep === 'object' ? this.params?.[a.sep.param] ?? null : a.sep ?? '';
      // a NULL separator joins without one, as string_agg does
      return joinStrings(st.parts, Buffer.from(sep ?? '', 'utf8'));
    }
    const sc = a.sumColumn ?? a.column;
    const kind = this.sumKinds[sc];
    if (a.fn === 'sum') {
      if (!st.any) return null;
      if (sc !== a.column) {
        // sum(x)::T: the exact sum, cast as PostgreSQL casts it
        const exact: Dec | number = kind === 'int' ? { v: st.sumInt, scale: 0 } : kind === 'numeric' ? st.sumDec! : st.sumF;
        return castSum(exact, f);
      }
      switch (kind) {
        case 'int': {
          if (!bin) return Buffer.from(st.sumInt.toString(), 'latin1');
          const b = Buffer.alloc(f.typlen > 0 ? f.typlen : 8);
          if (b.length === 8) b.writeBigInt64BE(st.sumInt); else if (b.length === 4) b.writeInt32BE(Number(st.sumInt)); else b.writeInt16BE(Number(st.sumInt));
          return b;
        }
        case 'numeric': return bin ? encodeNumericBin(st.sumDec!) : Buffer.from(fmtDec(st.sumDec!), 'latin1');
        case 'float8': { if (!bin) return Buffer.from(fmtFloat8(st.sumF), 'latin1'); const b = Buffer.alloc(8); b.writeDoubleBE(st.sumF); return b; }
        case 'float4': { if (!bin) return Buffer.from(fmtFloat4(st.sumF), 'latin1'); const b = Buffer.alloc(4); b.writeFloatBE(st.sumF); return b; }
        default: return null;
      }
    }
    // avg
    if (st.count === 0n || !st.any) return null;
    if (kind === 'float4' || kind === 'float8') {
      const avg = st.sumF / Number(st.count);
      if (!bin) return Buffer.from(fmtFloat8(avg), 'latin1');
      const b = Buffer.alloc(8); b.writeDoubleBE(avg); return b;
    }
    const sum: Dec = kind === 'int' ? { v: st.sumInt, scale: 0 } : st.sumDec!;
    const avg = divDec(sum, { v: st.count, scale: 0 });
    return bin ? encodeNumericBin(avg) : Buffer.from(fmtDec(avg), 'latin1');
  }

  /** The merged DataRows (hidden columns removed) followed by CommandComplete "SELECT n". */
  finish(): Buffer[] {
    const out: Buffer[] = [];
    if (this.streaming) { out.push(buildCommandComplete(`SELECT ${this.emitted}`)); return out; }
    if (this.sorted) {
      this.ended.fill(true);
      out.push(...this.drain(), buildCommandComplete(`SELECT ${this.emitted}`));
      return out;
    }
    let rows: Row[];
    if (this.spec.aggregates.length || this.spec.groupBy.length) {
      rows = [];
      for (const g of this.groups.values()) {
        const cols = g.row.cols.slice();
        this.spec.aggregates.forEach((a, i) => { cols[a.column] = this.aggValue(a, g.acc[i]); });
        rows.push({ cols, shard: g.row.shard, seq: g.row.seq });
      }
    } else rows = this.rows;
    if (this.spec.having) {
      const h = this.spec.having;
      rows = rows.filter((r) => evalHaving(h, (c) => this.valueOf(c, r.cols[c] ?? null), this.params) === true);
    }
    // ORDER BY x COLLATE "C": bytes for that key, whatever the database's collation
    if (this.spec.orderBy.length) rows.sort(this.rowCmp ?? this.orderCmp());
    if (this.spec.distinctOn) {
      // the first row of each key in ORDER BY order (rows are sorted by those keys first)
      const seen = new Set<string>();
      const on = this.spec.distinctOn;
      rows = rows.filter((r) => { const k = this.keyOf(on, r.cols); if (seen.has(k)) return false; seen.add(k); return true; });
    }
    const start = Math.min(this.offset, rows.length);
    const end = this.limit === null ? rows.length : Math.min(rows.length, start + this.limit);
    for (let i = start; i < end; i++) out.push(buildDataRow(rows[i].cols, this.visible));
    out.push(buildCommandComplete(`SELECT ${end - start}`));
    return out;
  }
}
