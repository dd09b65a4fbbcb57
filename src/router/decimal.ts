// Exact decimal arithmetic and PostgreSQL's float output, for values merged across shards
// (pure; router/merge.ts sums, averages and prints with them).

// ------------------------------------------------------------------ decimal arithmetic

export interface Dec { v: bigint; scale: number; special?: 'NaN' | 'Infinity' | '-Infinity' }

export function parseDec(s: string): Dec {
  if (s === 'NaN' || s === 'Infinity' || s === '-Infinity') return { v: 0n, scale: 0, special: s };
  const dot = s.indexOf('.');
  if (dot < 0) return { v: BigInt(s), scale: 0 };
  return { v: BigInt(s.slice(0, dot) + s.slice(dot + 1)), scale: s.length - dot - 1 };
}
const P10: bigint[] = [1n];
export function pow10(n: number): bigint { while (P10.length <= n) P10.push(P10[P10.length - 1] * 10n); return P10[n]; }

export function addDec(a: Dec, b: Dec): Dec {
  if (a.special || b.special) {
    if (a.special === 'NaN' || b.special === 'NaN') return { v: 0n, scale: 0, special: 'NaN' };
    if (a.special && b.special && a.special !== b.special) return { v: 0n, scale: 0, special: 'NaN' };
    return a.special ? a : b;
  }
  if (a.scale === b.scale) return { v: a.v + b.v, scale: a.scale };
  if (a.scale > b.scale) return { v: a.v + b.v * pow10(a.scale - b.scale), scale: a.scale };
  return { v: a.v * pow10(b.scale - a.scale) + b.v, scale: b.scale };
}
export function cmpDec(a: Dec, b: Dec): number {
  const rank = (d: Dec): number => d.special === 'NaN' ? 2 : d.special === 'Infinity' ? 1 : d.special === '-Infinity' ? -1 : 0;
  const ra = rank(a), rb = rank(b);
  if (ra || rb) return ra === rb ? 0 : ra < rb ? -1 : 1;
  let x = a.v, y = b.v;
  if (a.scale > b.scale) y *= pow10(a.scale - b.scale); else if (b.scale > a.scale) x *= pow10(b.scale - a.scale);
  return x < y ? -1 : x > y ? 1 : 0;
}
export function fmtDec(d: Dec): string {
  if (d.special) return d.special;
  const neg = d.v < 0n;
  let s = (neg ? -d.v : d.v).toString();
  if (d.scale > 0) {
    if (s.length <= d.scale) s = '0'.repeat(d.scale - s.length + 1) + s;
    s = s.slice(0, s.length - d.scale) + '.' + s.slice(s.length - d.scale);
  }
  return neg ? '-' + s : s;
}
/** weight and first digit of the base-10000 representation (PostgreSQL NumericVar) */
function nbaseWeight(d: Dec): { weight: number; first: number } {
  const abs = d.v < 0n ? -d.v : d.v;
  if (abs === 0n) return { weight: 0, first: 0 };
  const s = abs.toString();
  const intLen = s.length - d.scale;
  if (intLen > 0) {
    const lead = ((intLen - 1) % 4) + 1;
    return { weight: Math.floor((intLen - 1) / 4), first: Number(s.slice(0, lead)) };
  }
  // pure fraction: digits after the point, padded on the left with -intLen zeros
  let frac = '0'.repeat(-intLen) + s;
  while (frac.length % 4) frac += '0';
  for (let g = 0; g * 4 < frac.length; g++) {
    const v = Number(frac.slice(g * 4, g * 4 + 4));
    if (v !== 0) return { weight: -(g + 1), first: v };
  }
  return { weight: 0, first: 0 };
}
/** numeric division as PostgreSQL's numeric_div (select_div_scale + round half away from zero) */
export function divDec(a: Dec, b: Dec): Dec {
  if (a.special || b.special) return { v: 0n, scale: 0, special: 'NaN' };
  if (b.v === 0n) throw new Error('division by zero');
  const wa = nbaseWeight(a), wb = nbaseWeight(b);
  let qweight = wa.weight - wb.weight;
  if (wa.first <= wb.first) qweight--;
  let rscale = 16 - qweight * 4;
  rscale = Math.max(rscale, a.scale, b.scale, 0);
  rscale = Math.min(rscale, 1000);
  // a.v/10^as / (b.v/10^bs) * 10^rscale = a.v * 10^(rscale + bs - as) / b.v
  const e = rscale + b.scale - a.scale;
  let num = a.v, den = b.v;
  if (e >= 0) num *= pow10(e); else den *= pow10(-e);
  const neg = (num < 0n) !== (den < 0n);
  if (num < 0n) num = -num;
  if (den < 0n) den = -den;
  let q = num / den;
  if ((num % den) * 2n >= den) q += 1n;
  return { v: neg ? -q : q, scale: rscale };
}

export function mulDec(a: Dec, b: Dec): Dec {
  if (a.special || b.special) return { v: 0n, scale: 0, special: 'NaN' };
  return { v: a.v * b.v, scale: a.scale + b.scale };
}
/** a at `scale` digits after the point, rounded half away from zero (PostgreSQL's round_var) */
export function roundDecTo(a: Dec, scale: number): Dec {
  if (a.special || a.scale <= scale) return a.special ? a : { v: a.v * pow10(scale - a.scale), scale };
  const d = pow10(a.scale - scale);
  const neg = a.v < 0n;
  const abs = neg ? -a.v : a.v;
  let q = abs / d;
  if ((abs % d) * 2n >= d) q += 1n;
  return { v: neg ? -q : q, scale };
}
function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  // Newton's iteration from a power of two above the root decreases to floor(sqrt(n))
  let x = 1n << BigInt((n.toString(2).length >> 1) + 1);
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}
/** the square root of a non-negative a at `scale` digits, rounded (PostgreSQL's sqrt_var + round_var) */
export function sqrtDec(a: Dec, scale: number): Dec {
  if (a.special) return a.special === 'Infinity' ? a : { v: 0n, scale: 0, special: 'NaN' };
  // floor(sqrt(a) * 10^(scale+1)), then rounded at the last digit: sqrt(a.v * 10^(2*scale + 2 - a.scale))
  const e = 2 * scale + 2 - a.scale;
  const t = isqrt(e >= 0 ? a.v * pow10(e) : a.v / pow10(-e));
  return { v: t / 10n + (t % 10n >= 5n ? 1n : 0n), scale };
}

// ------------------------------------------------------------------ float formatting (float8out / float4out)

function fmtDigits(d: string, e: number, threshold: number): string {
  if (e < -4 || e >= threshold) {
    const ae = Math.abs(e);
    return d[0] + (d.length > 1 ? '.' + d.slice(1) : '') + 'e' + (e < 0 ? '-' : '+') + (ae < 10 ? '0' + ae : String(ae));
  }
  if (e >= 0) {
    const ip = d.length > e + 1 ? d.slice(0, e + 1) : d + '0'.repeat(e + 1 - d.length);
    const fp = d.length > e + 1 ? d.slice(e + 1) : '';
    return fp ? ip + '.' + fp : ip;
  }
  return '0.' + '0'.repeat(-e - 1) + d;
}
function specialFloat(x: number): string | null {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  return null;
}
export function fmtFloat8(x: number): string {
  const sp = specialFloat(x); if (sp) return sp;
  const neg = x < 0;
  const m = /^(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(Math.abs(x).toExponential())!;
  return (neg ? '-' : '') + fmtDigits(m[1] + (m[2] ?? ''), Number(m[3]), 15);
}
export function fmtFloat4(x: number): string {
  const sp = specialFloat(x); if (sp) return sp;
  const f = Math.fround(x);
  let str = Math.abs(f).toExponential(8);
  for (let p = 0; p <= 8; p++) {
    const s = Math.abs(f).toExponential(p);
    if (Math.fround(Number(s)) === Math.abs(f)) { str = s; break; }
  }
  const m = /^(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(str)!;
  const digits = (m[1] + (m[2] ?? '')).replace(/0+$/, '') || '0';
  return (f < 0 ? '-' : '') + fmtDigits(digits, Number(m[3]), 6);
}

