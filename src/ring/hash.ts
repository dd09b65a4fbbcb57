// PostgreSQL's seeded 64-bit hash functions, bit-identical to PostgreSQL 15
// (src/common/hashfn.c: Bob Jenkins' lookup3, little-endian byte order, and the
// SQL wrappers hashint8extended / hashtextextended / uuid_hash_extended).
//
// Pure and allocation-free on the hot path: all mixing is done in 32-bit
// integer arithmetic on local variables; the two 32-bit halves of the result
// are left in a module-level Uint32Array (lastHashHi()/lastHashLo()) and a BigInt is only built by the
// public bigint-returning wrappers.
//
// Ring coordinate space
// ---------------------
// PostgreSQL computes a uint64 `((uint64) b << 32) | c` and returns it as a
// signed int8 (two's complement reinterpretation). The ring circle is the
// unsigned space [0, 2^64): coordinate = the int8 hash reinterpreted as
// unsigned, i.e. `h < 0 ? h + 2^64 : h` (equivalently the raw uint64 b:c).
// Going clockwise therefore visits int8 hashes 0 .. 2^63-1 and then
// -2^63 .. -1 before wrapping back to 0. keyCoordinate() returns the signed
// int8 exactly as PostgreSQL prints it; Ring.shardFor() accepts either form.
import type { KeyType } from '../config/types';

/** Invalid key value (text or binary form), with a PostgreSQL-like message. */
export class KeyValueError extends Error {
  /** SQLSTATE PostgreSQL would raise for the same input. */
  readonly code: string;
  constructor(message: string, code = '22P02') {
    super(message);
    this.name = 'KeyValueError';
    this.code = code;
  }
}

// ---------------------------------------------------------------------------
// lookup3 core

// High (b) and low (c) 32-bit halves of the last computed 64-bit hash, unsigned.
// Kept in a typed array, not in module variables: values >= 2^30 would be
// boxed as heap numbers (an allocation per hash) in a closure slot.
const HOUT = new Uint32Array(2);
/** High 32 bits (unsigned) of the last hash computed by a *Parts function. */
export function lastHashHi(): number { return HOUT[0]; }
/** Low 32 bits (unsigned) of the last hash computed by a *Parts function. */
export function lastHashLo(): number { return HOUT[1]; }

const INIT = 0x9e3779b9 + 3923095;

/** hash_bytes_extended over bytes[off, off+len). Result in lastHashHi()/lastHashLo(). */
export function hashBytesParts(k: Uint8Array, off: number, len: number, seedHi: number, seedLo: number): void {
  let a = (INIT + len) | 0;
  let b = a;
  let c = a;
  if ((seedHi | seedLo) !== 0) {
    a = (a + seedHi) | 0;
    b = (b + seedLo) | 0;
    a = (a - c) | 0; a ^= (c << 4) | (c >>> 28); c = (c + b) | 0;
    b = (b - a) | 0; b ^= (a << 6) | (a >>> 26); a = (a + c) | 0;
    c = (c - b) | 0; c ^= (b << 8) | (b >>> 24); b = (b + a) | 0;
    a = (a - c) | 0; a ^= (c << 16) | (c >>> 16); c = (c + b) | 0;
    b = (b - a) | 0; b ^= (a << 19) | (a >>> 13); a = (a + c) | 0;
    c = (c - b) | 0; c ^= (b << 4) | (b >>> 28); b = (b + a) | 0;
  }
  let p = off;
  let n = len;
  while (n >= 12) {
    a = (a + (k[p] | (k[p + 1] << 8) | (k[p + 2] << 16) | (k[p + 3] << 24))) | 0;
    b = (b + (k[p + 4] | (k[p + 5] << 8) | (k[p + 6] << 16) | (k[p + 7] << 24))) | 0;
    c = (c + (k[p + 8] | (k[p + 9] << 8) | (k[p + 10] << 16) | (k[p + 11] << 24))) | 0;
    a = (a - c) | 0; a ^= (c << 4) | (c >>> 28); c = (c + b) | 0;
    b = (b - a) | 0; b ^= (a << 6) | (a >>> 26); a = (a + c) | 0;
    c = (c - b) | 0; c ^= (b << 8) | (b >>> 24); b = (b + a) | 0;
    a = (a - c) | 0; a ^= (c << 16) | (c >>> 16); c = (c + b) | 0;
    b = (b - a) | 0; b ^= (a << 19) | (a >>> 13); a = (a + c) | 0;
    c = (c - b) | 0; c ^= (b << 4) | (b >>> 28); b = (b + a) | 0;
    p += 12;
    n -= 12;
  }
  // Tail (the C switch with fall-through, as a chain of range tests).
  {
    if (n >= 11) c = (c + (k[p + 10] << 24)) | 0;
    if (n >= 10) c = (c + (k[p + 9] << 16)) | 0;
    if (n >= 9) c = (c + (k[p + 8] << 8)) | 0;
    if (n >= 8) b = (b + (k[p + 7] << 24)) | 0;
    if (n >= 7) b = (b + (k[p + 6] << 16)) | 0;
    if (n >= 6) b = (b + (k[p + 5] << 8)) | 0;
    if (n >= 5) b = (b + k[p + 4]) | 0;
    if (n >= 4) a = (a + (k[p + 3] << 24)) | 0;
    if (n >= 3) a = (a + (k[p + 2] << 16)) | 0;
    if (n >= 2) a = (a + (k[p + 1] << 8)) | 0;
    if (n >= 1) a = (a + k[p]) | 0;
  }
  c ^= b; c = (c - ((b << 14) | (b >>> 18))) | 0;
  a ^= c; a = (a - ((c << 11) | (c >>> 21))) | 0;
  b ^= a; b = (b - ((a << 25) | (a >>> 7))) | 0;
  c ^= b; c = (c - ((b << 16) | (b >>> 16))) | 0;
  a ^= c; a = (a - ((c << 4) | (c >>> 28))) | 0;
  b ^= a; b = (b - ((a << 14) | (a >>> 18))) | 0;
  c ^= b; c = (c - ((b << 24) | (b >>> 8))) | 0;
  HOUT[0] = b;
  HOUT[1] = c;
}

/**
 * hash_bytes_extended over the bytes of an all-ASCII string (its UTF-8 form),
 * read directly with charCodeAt. Returns false (state untouched) if the string
 * has a non-ASCII character; the caller then encodes to UTF-8 first.
 */
// The mix rounds repeat hashBytesParts' on purpose: a shared helper would have to pass a, b and c
// through memory (or allocate) on every routed key; they stay in registers this way.
function hashAsciiParts(s: string, seedHi: number, seedLo: number): boolean {
  const len = s.length;
  let a = (INIT + len) | 0;
  let b = a;
  let c = a;
  if ((seedHi | seedLo) !== 0) {
    a = (a + seedHi) | 0;
    b = (b + seedLo) | 0;
    a = (a - c) | 0; a ^= (c << 4) | (c >>> 28); c = (c + b) | 0;
    b = (b - a) | 0; b ^= (a << 6) | (a >>> 26); a = (a + c) | 0;
    c = (c - b) | 0; c ^= (b << 8) | (b >>> 24); b = (b + a) | 0;
    a = (a - c) | 0; a ^= (c << 16) | (c >>> 16); c = (c + b) | 0;
    b = (b - a) | 0; b ^= (a << 19) | (a >>> 13); a = (a + c) | 0;
    c = (c - b) | 0; c ^= (b << 4) | (b >>> 28); b = (b + a) | 0;
  }
  let p = 0;
  let n = len;
  while (n >= 12) {
    const c0 = s.charCodeAt(p), c1 = s.charCodeAt(p + 1), c2 = s.charCodeAt(p + 2), c3 = s.charCodeAt(p + 3);
    const c4 = s.charCodeAt(p + 4), c5 = s.charCodeAt(p + 5), c6 = s.charCodeAt(p + 6), c7 = s.charCodeAt(p + 7);
    const c8 = s.charCodeAt(p + 8), c9 = s.charCodeAt(p + 9), c10 = s.charCodeAt(p + 10), c11 = s.charCodeAt(p + 11);
    if ((c0 | c1 | c2 | c3 | c4 | c5 | c6 | c7 | c8 | c9 | c10 | c11) > 0x7f) return false;
    const w0 = c0 | (c1 << 8) | (c2 << 16) | (c3 << 24);
    const w1 = c4 | (c5 << 8) | (c6 << 16) | (c7 << 24);
    const w2 = c8 | (c9 << 8) | (c10 << 16) | (c11 << 24);
    a = (a + w0) | 0;
    b = (b + w1) | 0;
    c = (c + w2) | 0;
    a = (a - c) | 0; a ^= (c << 4) | (c >>> 28); c = (c + b) | 0;
    b = (b - a) | 0; b ^= (a << 6) | (a >>> 26); a = (a + c) | 0;
    c = (c - b) | 0; c ^= (b << 8) | (b >>> 24); b = (b + a) | 0;
    a = (a - c) | 0; a ^= (c << 16) | (c >>> 16); c = (c + b) | 0;
    b = (b - a) | 0; b ^= (a << 19) | (a >>> 13); a = (a + c) | 0;
    c = (c - b) | 0; c ^= (b << 4) | (b >>> 28); b = (b + a) | 0;
    p += 12;
    n -= 12;
  }
  // Tail: check the remaining chars are ASCII before touching the state.
  for (let i = p; i < len; i++) if (s.charCodeAt(i) >= 0x80) return false;
  // Tail (the C switch with fall-through, as a chain of range tests).
  {
    if (n >= 11) c = (c + (s.charCodeAt(p + 10) << 24)) | 0;
    if (n >= 10) c = (c + (s.charCodeAt(p + 9) << 16)) | 0;
    if (n >= 9) c = (c + (s.charCodeAt(p + 8) << 8)) | 0;
    if (n >= 8) b = (b + (s.charCodeAt(p + 7) << 24)) | 0;
    if (n >= 7) b = (b + (s.charCodeAt(p + 6) << 16)) | 0;
    if (n >= 6) b = (b + (s.charCodeAt(p + 5) << 8)) | 0;
    if (n >= 5) b = (b + s.charCodeAt(p + 4)) | 0;
    if (n >= 4) a = (a + (s.charCodeAt(p + 3) << 24)) | 0;
    if (n >= 3) a = (a + (s.charCodeAt(p + 2) << 16)) | 0;
    if (n >= 2) a = (a + (s.charCodeAt(p + 1) << 8)) | 0;
    if (n >= 1) a = (a + s.charCodeAt(p)) | 0;
  }
  c ^= b; c = (c - ((b << 14) | (b >>> 18))) | 0;
  a ^= c; a = (a - ((c << 11) | (c >>> 21))) | 0;
  b ^= a; b = (b - ((a << 25) | (a >>> 7))) | 0;
  c ^= b; c = (c - ((b << 16) | (b >>> 16))) | 0;
  a ^= c; a = (a - ((c << 4) | (c >>> 28))) | 0;
  b ^= a; b = (b - ((a << 14) | (a >>> 18))) | 0;
  c ^= b; c = (c - ((b << 24) | (b >>> 8))) | 0;
  HOUT[0] = b;
  HOUT[1] = c;
  return true;
}

/** hash_bytes_uint32_extended(k, seed). Result in lastHashHi()/lastHashLo(). */
export function hashUint32Parts(k: number, seedHi: number, seedLo: number): void {
  let a = (INIT + 4) | 0;
  let b = a;
  let c = a;
  if ((seedHi | seedLo) !== 0) {
    a = (a + seedHi) | 0;
    b = (b + seedLo) | 0;
    a = (a - c) | 0; a ^= (c << 4) | (c >>> 28); c = (c + b) | 0;
    b = (b - a) | 0; b ^= (a << 6) | (a >>> 26); a = (a + c) | 0;
    c = (c - b) | 0; c ^= (b << 8) | (b >>> 24); b = (b + a) | 0;
    a = (a - c) | 0; a ^= (c << 16) | (c >>> 16); c = (c + b) | 0;
    b = (b - a) | 0; b ^= (a << 19) | (a >>> 13); a = (a + c) | 0;
    c = (c - b) | 0; c ^= (b << 4) | (b >>> 28); b = (b + a) | 0;
  }
  a = (a + k) | 0;
  c ^= b; c = (c - ((b << 14) | (b >>> 18))) | 0;
  a ^= c; a = (a - ((c << 11) | (c >>> 21))) | 0;
  b ^= a; b = (b - ((a << 25) | (a >>> 7))) | 0;
  c ^= b; c = (c - ((b << 16) | (b >>> 16))) | 0;
  a ^= c; a = (a - ((c << 4) | (c >>> 28))) | 0;
  b ^= a; b = (b - ((a << 14) | (a >>> 18))) | 0;
  c ^= b; c = (c - ((b << 24) | (b >>> 8))) | 0;
  HOUT[0] = b;
  HOUT[1] = c;
}

/** hashint8extended on an int64 given as hi (any int32/uint32 bits) and lo halves. */
export function hashInt8Parts(hi: number, lo: number, seedHi: number, seedLo: number): void {
  // PostgreSQL: lohalf ^= (val >= 0) ? hihalf : ~hihalf; so that int2/int4/int8 agree.
  hashUint32Parts(lo ^ ((hi | 0) >= 0 ? hi : ~hi), seedHi, seedLo);
}

let scratch = Buffer.allocUnsafe(4096);

/**
 * Encodes s as UTF-8 into `out` (which must have room for s.length * 3 bytes)
 * exactly like Buffer/TextEncoder: surrogate pairs become 4 bytes, lone
 * surrogates U+FFFD. Returns the byte count. Faster than a native call for the
 * short strings typical of keys.
 */
function utf8Encode(s: string, out: Uint8Array): number {
  let n = 0;
  const len = s.length;
  for (let i = 0; i < len; i++) {
    let cp = s.charCodeAt(i);
    if (cp < 0x80) { out[n++] = cp; continue; }
    if (cp < 0x800) {
      out[n++] = 0xc0 | (cp >> 6);
      out[n++] = 0x80 | (cp & 63);
      continue;
    }
    if (cp >= 0xd800 && cp <= 0xdfff) {
      const next = i + 1 < len ? s.charCodeAt(i + 1) : 0;
      if (cp <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (next - 0xdc00);
        i++;
        out[n++] = 0xf0 | (cp >> 18);
        out[n++] = 0x80 | ((cp >> 12) & 63);
        out[n++] = 0x80 | ((cp >> 6) & 63);
        out[n++] = 0x80 | (cp & 63);
        continue;
      }
      cp = 0xfffd;
    }
    out[n++] = 0xe0 | (cp >> 12);
    out[n++] = 0x80 | ((cp >> 6) & 63);
    out[n++] = 0x80 | (cp & 63);
  }
  return n;
}

/** hashtextextended over the UTF-8 form of s. Result in lastHashHi()/lastHashLo(). */
export function hashTextParts(s: string, seedHi: number, seedLo: number): void {
  if (hashAsciiParts(s, seedHi, seedLo)) return;
  const max = s.length * 3;
  if (max > scratch.length) scratch = Buffer.allocUnsafe(Math.max(max, scratch.length * 2));
  const n = s.length <= 1024 ? utf8Encode(s, scratch) : scratch.write(s, 0, max, 'utf8');
  hashBytesParts(scratch, 0, n, seedHi, seedLo);
}

// ---------------------------------------------------------------------------
// Seeds and results as bigint

export const TWO64 = 1n << 64n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** Splits a seed (int8 or uint64 value) into unsigned 32-bit halves. */
export function seedParts(seed: bigint): [number, number] {
  const u = BigInt.asUintN(64, seed);
  return [Number(u >> 32n), Number(u & 0xffffffffn)];
}

let lastSeed = 0n;
let lastSeedHi = 0;
let lastSeedLo = 0;
function setSeed(seed: bigint): void {
  if (seed === lastSeed) return;
  const u = BigInt.asUintN(64, seed);
  lastSeedHi = Number(u >> 32n);
  lastSeedLo = Number(u & 0xffffffffn);
  lastSeed = seed;
}

const dv = new DataView(new ArrayBuffer(8));
/** The last hash as a signed int8, as PostgreSQL prints it. */
function resultInt8(): bigint {
  dv.setUint32(0, HOUT[0]);
  dv.setUint32(4, HOUT[1]);
  return dv.getBigInt64(0);
}

/** Signed int8 from unsigned 32-bit halves. */
export function int8FromParts(hi: number, lo: number): bigint {
  dv.setUint32(0, hi >>> 0);
  dv.setUint32(4, lo >>> 0);
  return dv.getBigInt64(0);
}

/** PostgreSQL hashint8extended(v, seed) (also = hashint4extended / hashint2extended for in-range values). */
export function hashInt8Extended(v: bigint, seed: bigint): bigint {
  if (v < I64_MIN || v > I64_MAX) throw new RangeError('bigint out of range');
  setSeed(seed);
  dv.setBigInt64(0, v);
  hashInt8Parts(dv.getUint32(0), dv.getUint32(4), lastSeedHi, lastSeedLo);
  return resultInt8();
}

/** PostgreSQL hashtextextended(s, seed) for a deterministic collation (strings are hashed as UTF-8). */
export function hashTextExtended(s: string | Uint8Array, seed: bigint): bigint {
  setSeed(seed);
  if (typeof s === 'string') hashTextParts(s, lastSeedHi, lastSeedLo);
  else hashBytesParts(s, 0, s.length, lastSeedHi, lastSeedLo);
  return resultInt8();
}

/** PostgreSQL hash_any_extended / hash_bytes_extended over raw bytes. */
export function hashBytesExtended(bytes: Uint8Array, seed: bigint): bigint {
  setSeed(seed);
  hashBytesParts(bytes, 0, bytes.length, lastSeedHi, lastSeedLo);
  return resultInt8();
}

const uuidBytes = new Uint8Array(16);

/** PostgreSQL uuid_hash_extended(uuid, seed); uuidText in any spelling uuid_in accepts. */
export function hashUuidExtended(uuidText: string, seed: bigint): bigint {
  parseUuid(uuidText, uuidBytes);
  setSeed(seed);
  hashBytesParts(uuidBytes, 0, 16, lastSeedHi, lastSeedLo);
  return resultInt8();
}

// ---------------------------------------------------------------------------
// Input parsing (PostgreSQL 15 int2in/int4in/int8in and uuid_in rules)

function hexVal(ch: number): number {
  if (ch >= 48 && ch <= 57) return ch - 48;
  if (ch >= 97 && ch <= 102) return ch - 87;
  if (ch >= 65 && ch <= 70) return ch - 55;
  return -1;
}

/**
 * Parses a uuid as PostgreSQL's uuid_in does: 32 hex digits (any case), an
 * optional '-' after any group of 4 digits (not after the last), optionally
 * enclosed in {}. No surrounding whitespace. Writes 16 bytes to out.
 */
export function parseUuid(text: string, out: Uint8Array): void {
  let p = 0;
  const len = text.length;
  let braces = false;
  if (len > 0 && text.charCodeAt(0) === 123 /* { */) { braces = true; p = 1; }
  for (let i = 0; i < 16; i++) {
    if (p + 1 >= len) throw uuidError(text);
    const h = hexVal(text.charCodeAt(p));
    const l = hexVal(text.charCodeAt(p + 1));
    if (h < 0 || l < 0) throw uuidError(text);
    out[i] = (h << 4) | l;
    p += 2;
    if ((i & 1) === 1 && i < 15 && p < len && text.charCodeAt(p) === 45 /* - */) p++;
  }
  if (braces) {
    if (p >= len || text.charCodeAt(p) !== 125 /* } */) throw uuidError(text);
    p++;
  }
  if (p !== len) throw uuidError(text);
}

function uuidError(text: string): KeyValueError {
  return new KeyValueError(`invalid input syntax for type uuid: "${text}"`);
}

const TYPE_NAME: Record<string, string> = { smallint: 'smallint', integer: 'integer', bigint: 'bigint' };

function isSpace(ch: number): boolean {
  // C isspace(): space, \t, \n, \v, \f, \r
  return ch === 32 || (ch >= 9 && ch <= 13);
}

// Parsed integer as int64 halves [hi, lo] (typed array: no boxing).
const POUT = new Int32Array(2);

/**
 * Parses an integer literal like PostgreSQL 15's int2in/int4in/int8in:
 * optional leading/trailing whitespace, optional sign, decimal digits.
 * Range-checked for the key type. Result in POUT.
 */
function parseIntParts(type: 'smallint' | 'integer' | 'bigint', text: string): void {
  const len = text.length;
  let p = 0;
  while (p < len && isSpace(text.charCodeAt(p))) p++;
  let neg = false;
  if (p < len) {
    const ch = text.charCodeAt(p);
    if (ch === 45) { neg = true; p++; } else if (ch === 43) p++;
  }
  const digitsStart = p;
  while (p < len && text.charCodeAt(p) === 48) p++; // leading zeros
  const sigStart = p;
  let v = 0;
  while (p < len) {
    const d = text.charCodeAt(p) - 48;
    if (d < 0 || d > 9) break;
    if (p - sigStart < 15) v = v * 10 + d;
    p++;
  }
  const sigEnd = p;
  if (sigEnd === digitsStart) throw new KeyValueError(`invalid input syntax for type ${TYPE_NAME[type]}: "${text}"`);
  while (p < len && isSpace(text.charCodeAt(p))) p++;
  if (p !== len) throw new KeyValueError(`invalid input syntax for type ${TYPE_NAME[type]}: "${text}"`);
  const nsig = sigEnd - sigStart;
  if (nsig <= 15) {
    if (neg) v = -v;
    if (type === 'smallint' ? (v < -32768 || v > 32767) : type === 'integer' ? (v < -2147483648 || v > 2147483647) : false) {
      throw outOfRange(type, text);
    }
    POUT[1] = v; // ToInt32: the low 32 bits (exact, |v| < 2^53)
    POUT[0] = Math.floor(v / 4294967296);
    return;
  }
  if (type !== 'bigint' || nsig > 19) throw outOfRange(type, text);
  let big = BigInt(text.slice(sigStart, sigEnd));
  if (neg) big = -big;
  if (big < I64_MIN || big > I64_MAX) throw outOfRange(type, text);
  POUT[0] = Number(BigInt.asIntN(32, big >> 32n));
  POUT[1] = Number(BigInt.asIntN(32, big));
}

/** A numeric literal (`5.0`, `-2.5`, `1e3`) rounded half away from zero to an integer's text, or null.
 *  For unquoted numeric constants compared with (or assigned to) an integer key: PostgreSQL compares
 *  them numerically and rounds on assignment. Text input ('5.0' quoted, a parameter, a COPY field)
 *  stays an error, as int4in says. */
export function integralOfNumeric(text: string): string | null {
  const m = /^\s*([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,4}))?\s*$/.exec(text);
  if (!m || (!m[2] && !m[3]) || (m[3] === undefined && m[4] === undefined)) return null;
  const frac = m[3] ?? '';
  let digits = BigInt((m[2] || '0') + frac);
  let scale = frac.length - Number(m[4] ?? 0);
  if (scale <= 0) digits *= 10n ** BigInt(-scale);
  else {
    const p = 10n ** BigInt(scale);
    const r = digits % p;
    digits = digits / p + (r * 2n >= p ? 1n : 0n);
  }
  return (m[1] === '-' && digits !== 0n ? '-' : '') + digits.toString();
}

function outOfRange(type: string, text: string): KeyValueError {
  return new KeyValueError(`value "${text}" is out of range for type ${TYPE_NAME[type]}`, '22003');
}

// ---------------------------------------------------------------------------
// Key coordinates

/**
 * Computes the 64-bit hash of a key value given in text form into lastHashHi()/lastHashLo()
 * (the unsigned ring coordinate is hi * 2^32 + lo). Throws KeyValueError.
 */
export function keyHashParts(type: KeyType, text: string, seedHi: number, seedLo: number): void {
  switch (type) {
    case 'smallint':
    case 'integer':
    case 'bigint':
      parseIntParts(type, text);
      hashInt8Parts(POUT[0], POUT[1], seedHi, seedLo);
      return;
    case 'text':
    case 'varchar':
      if (text.indexOf('\0') >= 0) throw new KeyValueError('invalid byte sequence for encoding "UTF8": 0x00', '22021');
      hashTextParts(text, seedHi, seedLo);
      return;
    case 'uuid':
      parseUuid(text, uuidBytes);
      hashBytesParts(uuidBytes, 0, 16, seedHi, seedLo);
      return;
    default:
      throw new KeyValueError(`unsupported key type: ${String(type)}`, '42804');
  }
}

/**
 * Same for a binary-format Bind parameter: integers as 2, 4 or 8 byte
 * big-endian two's complement (any width is accepted for any integer key
 * type, as the hashes of int2/int4/int8 agree), uuid as 16 bytes, text/varchar
 * as the raw (UTF-8) bytes.
 */
export function keyHashPartsBinary(type: KeyType, buf: Uint8Array, seedHi: number, seedLo: number): void {
  switch (type) {
    case 'smallint':
    case 'integer':
    case 'bigint': {
      const n = buf.length;
      let hi: number;
      let lo: number;
      if (n === 8) {
        hi = (buf[0] << 24) | (buf[1] << 16) | (buf[2] << 8) | buf[3];
        lo = (buf[4] << 24) | (buf[5] << 16) | (buf[6] << 8) | buf[7];
      } else if (n === 4) {
        lo = (buf[0] << 24) | (buf[1] << 16) | (buf[2] << 8) | buf[3];
        hi = lo >> 31;
      } else if (n === 2) {
        lo = ((buf[0] << 24) | (buf[1] << 16)) >> 16;
        hi = lo >> 31;
      } else {
        throw new KeyValueError(`incorrect binary data format for type ${TYPE_NAME[type]} (${n} bytes)`, '22P03');
      }
      hashInt8Parts(hi, lo, seedHi, seedLo);
      return;
    }
    case 'text':
    case 'varchar':
      hashBytesParts(buf, 0, buf.length, seedHi, seedLo);
      return;
    case 'uuid':
      if (buf.length !== 16) throw new KeyValueError(`incorrect binary data format for type uuid (${buf.length} bytes)`, '22P03');
      hashBytesParts(buf, 0, 16, seedHi, seedLo);
      return;
    default:
      throw new KeyValueError(`unsupported key type: ${String(type)}`, '42804');
  }
}

/**
 * The key's hash as PostgreSQL computes it (hashint8extended for
 * smallint/integer/bigint, hashtextextended for text/varchar,
 * uuid_hash_extended for uuid), as a signed int8. `text` is the value's text
 * form as in SQL or a text-format Bind parameter. Seed defaults to 0.
 */
export function keyCoordinate(type: KeyType, text: string, seed: bigint = 0n): bigint {
  setSeed(seed);
  keyHashParts(type, text, lastSeedHi, lastSeedLo);
  return resultInt8();
}

/** keyCoordinate for a binary-format Bind parameter. */
export function keyCoordinateBinary(type: KeyType, buf: Uint8Array, seed: bigint = 0n): bigint {
  setSeed(seed);
  keyHashPartsBinary(type, buf, lastSeedHi, lastSeedLo);
  return resultInt8();
}

/** Maps a signed int8 hash (or an already unsigned coordinate) onto the circle [0, 2^64). */
export function toUnsigned(coordinate: bigint): bigint {
  return coordinate < 0n ? coordinate + TWO64 : coordinate;
}

/** Maps an unsigned circle coordinate back to the signed int8 PostgreSQL prints. */
export function toSigned(u: bigint): bigint {
  return BigInt.asIntN(64, u);
}
