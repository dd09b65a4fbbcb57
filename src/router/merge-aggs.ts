// Aggregate states merged across shards and the values computed from them that take more than a
// sum or a comparison (pure; router/merge.ts feeds them): variance / stddev from the shards'
// exact sums or float states, sum / avg (DISTINCT) from the union of their distinct values.
import type { MergeSpec } from './types';
import { decodeNumericBin, encodeNumericBin } from './numeric-bin';
import { buildArray, joinStrings } from './list-aggs';
import type { Cmp } from './merge-compare';
import { addDec, divDec, fmtDec, fmtFloat4, fmtFloat8, mulDec, parseDec, roundDecTo, sqrtDec, type Dec } from './decimal';

export interface FieldDesc { name: string; tableOid: number; attnum: number; typeOid: number; typlen: number; typmod: number; format: number }

export const OID = {
  bool: 16, bytea: 17, name: 19, int8: 20, int2: 21, int4: 23, text: 25, oid: 26, float4: 700, float8: 701, money: 790,
  bpchar: 1042, varchar: 1043, date: 1082, time: 1083, timestamp: 1114, timestamptz: 1184, interval: 1186, numeric: 1700, uuid: 2950, jsonb: 3802, json: 114,
} as const;

type Agg = MergeSpec['aggregates'][number];

export interface AggState {
  count: bigint; sumInt: bigint; sumDec: Dec | null; sumF: number; any: boolean; best: Buffer | null; bestBy?: Buffer; set?: Set<string>; parts?: Buffer[];
  /** json_agg: the elements are arrays or composites (PostgreSQL puts "\n " between them) */
  structured?: boolean;
  /** ordered string_agg / array_agg: every shard's elements with their sort keys; the element type (binary arrays) */
  items?: { x: Buffer | null; k: (Buffer | null)[] }[]; elemOid?: number;
  /** corr / covar / regr_*: the combined Youngs-Cramer state */
  regr?: { n: number; sx: number; sy: number; sxx: number; syy: number; sxy: number };
  /** var: the exact sum of squares (numeric input), or the combined float state (N, Sx, Sxx) */
  sq?: Dec; fN?: number; fSx?: number; fSxx?: number;
  /** sum / avg (DISTINCT): the distinct values by their normalized key (the first one seen of equal values) */
  vals?: Map<string, Buffer>;
}

/** An integer (int2 / int4 / int8) value in text or binary format. */
export function readInt(b: Buffer, format: number): bigint {
  return format === 1 ? (b.length === 8 ? b.readBigInt64BE(0) : BigInt(b.length === 4 ? b.readInt32BE(0) : b.readInt16BE(0))) : BigInt(b.toString('latin1'));
}

/** A float result in the client's format: float4 or float8. */
function floatOut(x: number, four: boolean, bin: boolean): Buffer {
  if (!bin) return Buffer.from(four ? fmtFloat4(x) : fmtFloat8(x), 'latin1');
  const b = Buffer.alloc(four ? 4 : 8);
  if (four) b.writeFloatBE(x); else b.writeDoubleBE(x);
  return b;
}

/** A numeric result in the client's format. */
function numericOut(d: Dec, bin: boolean): Buffer { return bin ? encodeNumericBin(d) : Buffer.from(fmtDec(d), 'latin1'); }

/** A number column of a shard's row (text or binary): exact for integers and numerics, else as a float. */
function numberAt(fields: FieldDesc[], c: number, cols: (Buffer | null)[]): { d: Dec; f: number } {
  const v = cols[c]!;
  const fd = fields[c]!;
  const bin = fd.format === 1;
  switch (fd.typeOid) {
    case OID.float8: case OID.float4:
      return { d: { v: 0n, scale: 0 }, f: bin ? (v.length === 4 ? v.readFloatBE(0) : v.readDoubleBE(0)) : Number(v.toString('latin1')) };
    case OID.numeric: { const d = bin ? decodeNumericBin(v) : parseDec(v.toString('latin1')); return { d, f: d.special ? Number(d.special) : Number(fmtDec(d)) }; }
    default: { const n = readInt(v, fd.format); return { d: { v: n, scale: 0 }, f: Number(n) }; }
  }
}

/** One shard's part of a variance: exact sums for numeric input, PostgreSQL's float8_combine for float input. */
export function accumulateVar(a: Agg, st: AggState, cols: (Buffer | null)[], fields: FieldDesc[]): void {
  const cnt = cols[a.countColumn!];
  const n = cnt === null || cnt === undefined ? 0n : readInt(cnt, fields[a.countColumn!]!.format);
  if (n === 0n) return;
  st.count += n;
  if (fields[a.column]!.typeOid === OID.float8) {
    const n2 = Number(n);
    const sx2 = numberAt(fields, a.avgColumn!, cols).f * n2, sxx2 = numberAt(fields, a.column, cols).f * n2;
    if (!st.fN) { st.fN = n2; st.fSx = sx2; st.fSxx = sxx2; return; }
    const n1 = st.fN, sx1 = st.fSx!, tmp = sx1 / n1 - sx2 / n2, nn = n1 + n2;
    st.fSxx = st.fSxx! + sxx2 + n1 * n2 * tmp * tmp / nn;
    st.fSx = sx1 + sx2;
    st.fN = nn;
    return;
  }
  const sum = numberAt(fields, a.sumColumn!, cols).d, sq = numberAt(fields, a.sqColumn!, cols).d;
  st.sumDec = st.sumDec ? addDec(st.sumDec, sum) : sum;
  st.sq = st.sq ? addDec(st.sq, sq) : sq;
}

/** variance / stddev from the combined state, as PostgreSQL's final functions compute it. */
export function varValue(a: Agg, st: AggState, fields: FieldDesc[], bin: boolean): Buffer | null {
  const { pop, sqrt } = a.variance!;
  if (fields[a.column]!.typeOid === OID.float8) {
    const n = st.fN ?? 0;
    if (n === 0 || (!pop && n <= 1)) return null;
    const r = pop ? st.fSxx! / n : (st.fSxx! <= 0 ? 0 : st.fSxx! / (n - 1));
    return floatOut(sqrt ? Math.sqrt(r) : r, false, bin);
  }
  // numeric_stddev_internal: (N * sumX2 - sumX * sumX) / (N * (N - 1)) (or N * N), at
  // select_div_scale's scale, then the square root at that scale; 0 when the numerator is not positive
  const n = st.count;
  if (n === 0n || (!pop && n <= 1n)) return null;
  const sumX = st.sumDec!, sq = st.sq!;
  if (sumX.special || sq.special) return numericOut({ v: 0n, scale: 0, special: 'NaN' }, bin);
  const rscale = sumX.scale * 2;
  const square = mulDec(sumX, sumX);
  const num = roundDecTo(addDec(roundDecTo(mulDec({ v: n, scale: 0 }, sq), rscale), { v: -square.v, scale: square.scale }), rscale);
  if (num.v <= 0n) return numericOut({ v: 0n, scale: 0 }, bin);
  const r = divDec(num, { v: pop ? n * n : n * (n - 1n), scale: 0 });
  return numericOut(sqrt ? sqrtDec(r, r.scale) : r, bin);
}

/** sum / avg (DISTINCT) of the shards' distinct values of element type `el`: PostgreSQL adds a
 *  DISTINCT aggregate's input in sorted order, which decides a float sum's rounding; integers and
 *  numerics add exactly. */
export function distinctSum(a: Agg, st: AggState, el: number, format: number, bin: boolean): Buffer | null {
  const vals = st.vals;
  if (!vals || vals.size === 0) return null;
  const n = vals.size;
  const avg = a.fn === 'avg_distinct';
  if (el === OID.float4 || el === OID.float8) {
    const four = el === OID.float4 && !avg;   // sum(float4) adds in float4; avg(float4) in float8
    const xs = [...vals.values()].map((b) => (format === 1 ? (b.length === 4 ? b.readFloatBE(0) : b.readDoubleBE(0)) : Number(b.toString('latin1'))));
    xs.sort((x, y) => (Number.isNaN(x) ? 1 : Number.isNaN(y) ? -1 : x - y));   // NaN sorts last, as in PostgreSQL
    let sum = 0;
    for (const x of xs) sum = four ? Math.fround(sum + x) : sum + x;
    return floatOut(avg ? sum / n : sum, four, bin);
  }
  let sum: Dec = { v: 0n, scale: 0 };
  for (const b of vals.values()) sum = addDec(sum, el === OID.numeric ? (format === 1 ? decodeNumericBin(b) : parseDec(b.toString('latin1'))) : { v: readInt(b, format), scale: 0 });
  if (avg) return numericOut(divDec(sum, { v: BigInt(n), scale: 0 }), bin);
  if (el === OID.int2 || el === OID.int4) {
    // sum of int2 / int4 is int8
    if (!bin) return Buffer.from(sum.v.toString(), 'latin1');
    const b = Buffer.alloc(8); b.writeBigInt64BE(sum.v); return b;
  }
  return numericOut(sum, bin);
}

/**
 * corr, covar_pop / covar_samp and the regr_* family (two float8 arguments): each shard's
 * Youngs-Cramer state — N (regr_count), the centered sums Sxx, Syy, Sxy (regr_sxx / syy / sxy; the
 * visible column is regr_sxy) and the means (regr_avgx / avgy) — combined as PostgreSQL's parallel
 * aggregation combines them (float8_regr_combine), then its final function. As for float variance,
 * the last digits may differ from one server's serial sum.
 */
export function accumulateRegr(a: Agg, st: AggState, cols: (Buffer | null)[], fields: FieldDesc[]): void {
  const cnt = cols[a.countColumn!];
  const n2 = cnt === null || cnt === undefined ? 0 : Number(readInt(cnt, fields[a.countColumn!]!.format));
  if (n2 === 0) return;
  const f = (c: number): number => numberAt(fields, c, cols).f;
  const [sxx2, syy2, sxy2] = [f(a.sqColumn!), f(a.syyColumn!), f(a.column)];
  const sx2 = f(a.avgColumn!) * n2, sy2 = f(a.avgyColumn!) * n2;
  const r = (st.regr ??= { n: 0, sx: 0, sy: 0, sxx: 0, syy: 0, sxy: 0 });
  if (r.n === 0) { Object.assign(r, { n: n2, sx: sx2, sy: sy2, sxx: sxx2, syy: syy2, sxy: sxy2 }); return; }
  const n1 = r.n, nn = n1 + n2;
  const t1 = r.sx / n1 - sx2 / n2, t2 = r.sy / n1 - sy2 / n2;
  r.sxx += sxx2 + n1 * n2 * t1 * t1 / nn;
  r.syy += syy2 + n1 * n2 * t2 * t2 / nn;
  r.sxy += sxy2 + n1 * n2 * t1 * t2 / nn;
  r.sx += sx2; r.sy += sy2; r.n = nn;
}

/** The final function of `a.regr` (float8_corr, float8_covar_pop, float8_regr_slope, …). */
export function regrValue(a: Agg, st: AggState, bin: boolean): Buffer | null {
  const r = st.regr;
  if (!r || r.n < 1) return null;
  const { n, sx, sy, sxx, syy, sxy } = r;
  let v: number;
  switch (a.regr) {
    case 'covar_pop': v = sxy / n; break;
    case 'covar_samp': if (n < 2) return null; v = sxy / (n - 1); break;
    case 'corr': if (sxx === 0 || syy === 0) return null; v = sxy / Math.sqrt(sxx * syy); break;
    case 'regr_avgx': v = sx / n; break;
    case 'regr_avgy': v = sy / n; break;
    case 'regr_sxx': v = sxx; break;
    case 'regr_syy': v = syy; break;
    case 'regr_sxy': v = sxy; break;
    case 'regr_slope': if (sxx === 0) return null; v = sxy / sxx; break;
    case 'regr_intercept': if (sxx === 0) return null; v = (sy - sx * sxy / sxx) / n; break;
    case 'regr_r2': if (sxx === 0) return null; v = syy === 0 ? 1 : (sxy * sxy) / (sxx * syy); break;
    default: return null;
  }
  return floatOut(v, false, bin);
}


/**
 * string_agg / array_agg with ORDER BY or DISTINCT inside: every shard's elements with their sort
 * keys, sorted by the keys (each shard's list is sorted already: a stable sort of the concatenation
 * merges them), with DISTINCT one element per normalized value, then joined by `sep` (string_agg,
 * NULLs left out) or built as a one-dimensional array.
 */
export function orderedListValue(a: Agg, st: AggState, cmps: Cmp[], distinctNorm: ((b: Buffer) => string) | null, sep: string | null, format: number): Buffer | null {
  const items = st.items;
  if (!items?.length) return null;
  const order = a.keyOrder!;
  items.sort((p, q) => {
    for (let j = 0; j < cmps.length; j++) {
      const x = p.k[j] ?? null, y = q.k[j] ?? null;
      if (x === null || y === null) { if (x === y) continue; return (x === null) === order[j]!.nullsFirst ? -1 : 1; }
      const r = cmps[j]!(x, y);
      if (r !== 0) return order[j]!.desc ? -r : r;
    }
    return 0;
  });
  let list = items;
  if (distinctNorm) {
    const seen = new Set<string>();
    list = items.filter((i) => { const key = i.x === null ? '\u0000null' : distinctNorm(i.x); if (seen.has(key)) return false; seen.add(key); return true; });
  }
  if (a.list === 'string') {
    const parts = list.filter((i) => i.x !== null).map((i) => i.x!);
    // a NULL separator joins without one, as string_agg does
    return parts.length ? joinStrings(parts, Buffer.from(sep ?? '', 'utf8')) : null;
  }
  return buildArray(list.map((i) => i.x), format, st.elemOid ?? 0);
}

/** percentile_cont / percentile_disc (fraction `f`) / mode() over every shard's non-NULL values,
 *  as PostgreSQL's final functions pick them from the sorted input. */
export function percentileValue(a: Agg, st: AggState, cmp: Cmp, f: number, bin: boolean): Buffer | null {
  const items = st.items;
  if (!items?.length) return null;
  const desc = a.keyOrder![0]!.desc;
  items.sort((p, q) => (desc ? -cmp(p.x!, q.x!) : cmp(p.x!, q.x!)));
  const n = items.length;
  if (a.regr === 'mode') {
    // the most frequent value; of equally frequent ones the first in the sort order
    let best = 0, bestRun = 0;
    for (let i = 0; i < n;) {
      let j = i + 1;
      while (j < n && cmp(items[j]!.x!, items[i]!.x!) === 0) j++;
      if (j - i > bestRun) { best = i; bestRun = j - i; }
      i = j;
    }
    return items[best]!.x;
  }
  if (a.regr === 'percentile_disc') return items[Math.max(Math.ceil(f * n), 1) - 1]!.x;
  const num = (b: Buffer): number => (bin ? b.readDoubleBE(0) : Number(b.toString('latin1')));
  const first = Math.floor(f * (n - 1)), second = Math.ceil(f * (n - 1));
  if (second <= first) return items[first]!.x;
  const lo = num(items[first]!.x!), hi = num(items[second]!.x!);
  return floatOut(lo + (hi - lo) * (f * (n - 1) - first), false, bin);
}

/** percentile_cont / percentile_disc of an ARRAY of fractions: the array of their results (text
 *  or binary; percentile_cont's are float8, `elemOid` in binary). */
export function percentileArray(a: Agg, st: AggState, cmp: Cmp, fractions: number[], format: number, elemOid: number): Buffer | null {
  if (!st.items?.length) return null;
  const bin = format === 1;
  const vals = fractions.map((f) => percentileValue(a, st, cmp, f, bin));
  return buildArray(vals, format, a.regr === 'percentile_cont' ? 701 : elemOid);
}
