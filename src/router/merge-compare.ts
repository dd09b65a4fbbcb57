// Comparators and equality keys of merged values by type OID and format (pure): the ORDER BY
// order PostgreSQL's btree opclasses give (text in the database's collation when one is passed,
// bpchar without trailing spaces, numerics by value, NaN above everything), and the GROUP BY /
// DISTINCT key under which PostgreSQL's equality makes values equal (numeric 1.0 = 1.00, float -0 = 0).
import { decodeNumericBin } from './numeric-bin';
import { cmpDec, parseDec, type Dec } from './decimal';
import { OID } from './merge-aggs';

export type Cmp = (a: Buffer, b: Buffer) => number;

function cmpIntText(a: Buffer, b: Buffer): number {
  const na = a[0] === 45, nb = b[0] === 45;
  if (na !== nb) return na ? -1 : 1;
  let r: number;
  const la = a.length - (na ? 1 : 0), lb = b.length - (nb ? 1 : 0);
  if (la !== lb) r = la < lb ? -1 : 1;
  else r = Buffer.compare(a, b);
  return na ? -r : r;
}
function cmpNum(x: number, y: number): number {
  const xn = Number.isNaN(x), yn = Number.isNaN(y);
  if (xn || yn) return xn === yn ? 0 : xn ? 1 : -1;
  return x < y ? -1 : x > y ? 1 : 0;
}
function trimSpaces(b: Buffer): Buffer { let e = b.length; while (e > 0 && b[e - 1] === 32) e--; return e === b.length ? b : b.subarray(0, e); }

/** `text`: the order of text, varchar and bpchar in the database's collation (null: bytes, C). */
export function comparatorFor(typeOid: number, format: number, text: Cmp | null = null): Cmp | null {
  if (text && (typeOid === OID.text || typeOid === OID.varchar)) return text;
  if (text && typeOid === OID.bpchar) return (a, b) => text(trimSpaces(a), trimSpaces(b));
  if (format === 1) {
    switch (typeOid) {
      case OID.int2: return (a, b) => a.readInt16BE(0) - b.readInt16BE(0);
      case OID.int4: case OID.date: return (a, b) => { const x = a.readInt32BE(0), y = b.readInt32BE(0); return x < y ? -1 : x > y ? 1 : 0; };
      case OID.int8: case OID.timestamp: case OID.timestamptz: case OID.time: return (a, b) => { const x = a.readBigInt64BE(0), y = b.readBigInt64BE(0); return x < y ? -1 : x > y ? 1 : 0; };
      case OID.oid: return (a, b) => a.readUInt32BE(0) - b.readUInt32BE(0);
      case OID.float4: return (a, b) => cmpNum(a.readFloatBE(0), b.readFloatBE(0));
      case OID.float8: return (a, b) => cmpNum(a.readDoubleBE(0), b.readDoubleBE(0));
      case OID.bpchar: return (a, b) => Buffer.compare(trimSpaces(a), trimSpaces(b));
      case OID.bool: case OID.text: case OID.varchar: case OID.name: case OID.uuid: case OID.bytea: return Buffer.compare;
      case OID.numeric: return (a, b) => cmpDec(decodeNumericBin(a), decodeNumericBin(b));
      default: return null;
    }
  }
  switch (typeOid) {
    case OID.int2: case OID.int4: case OID.int8: case OID.oid: return cmpIntText;
    case OID.float4: case OID.float8: return (a, b) => cmpNum(Number(a.toString('latin1')), Number(b.toString('latin1')));
    case OID.numeric: return (a, b) => cmpDec(parseDec(a.toString('latin1')), parseDec(b.toString('latin1')));
    case OID.bpchar: return (a, b) => Buffer.compare(trimSpaces(a), trimSpaces(b));
    // byte order of the text form is the type's order (C collation for text; ISO dates/times; hex bytea)
    case OID.text: case OID.varchar: case OID.name: case CHAR_OID: case OID.uuid: case OID.bool: case OID.bytea:
    case OID.date: case OID.time: case OID.timestamp: case OID.timestamptz:
      return Buffer.compare;
    default: return null;
  }
}

const CHAR_OID = 18;

/** equal for numerics PostgreSQL's equality treats as equal (1.0 = 1.00) */
function decKey(d: Dec): string {
  if (d.special) return d.special;
  let { v, scale } = d;
  while (scale > 0 && v % 10n === 0n) { v /= 10n; scale--; }
  return v.toString() + 'e-' + scale;
}

/** GROUP BY key of a value: equal keys for values PostgreSQL's equality treats as equal
 *  (numeric 1.0 = 1.00, float -0 = 0, bpchar trailing spaces); null for types not handled. */
export type KeyNorm = (b: Buffer) => string;
export function keyNormFor(typeOid: number, format: number): KeyNorm | null {
  const raw: KeyNorm = (b) => b.toString('latin1');
  if (format === 1) {
    switch (typeOid) {
      case OID.int2: case OID.int4: case OID.int8: case OID.oid: case OID.date: case OID.timestamp: case OID.timestamptz: case OID.time:
      case OID.text: case OID.varchar: case OID.name: case CHAR_OID: case OID.uuid: case OID.bool: case OID.bytea:
        return raw;
      case OID.bpchar: return (b) => trimSpaces(b).toString('latin1');
      case OID.numeric: return (b) => decKey(decodeNumericBin(b));
      case OID.float4: case OID.float8: return (b) => { const x = b.length === 4 ? b.readFloatBE(0) : b.readDoubleBE(0); return Number.isNaN(x) ? 'NaN' : String(x === 0 ? 0 : x); };
      default: return null;
    }
  }
  switch (typeOid) {
    case OID.int2: case OID.int4: case OID.int8: case OID.oid:
    case OID.text: case OID.varchar: case OID.name: case CHAR_OID: case OID.uuid: case OID.bool: case OID.bytea:
    case OID.date: case OID.time: case OID.timestamp: case OID.timestamptz:
      return raw;
    case OID.bpchar: return (b) => trimSpaces(b).toString('latin1');
    case OID.numeric: return (b) => decKey(parseDec(b.toString('latin1')));
    case OID.float4: case OID.float8: return (b) => { const x = Number(b.toString('latin1')); return Number.isNaN(x) ? 'NaN' : String(x === 0 ? 0 : x); };
    default: return null;
  }
}
