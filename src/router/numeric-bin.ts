// PostgreSQL's binary numeric format (numeric_send / numeric_recv) to and from the merger's
// exact decimal (Dec): lets sum()/avg() over numeric merge when the client asked for binary
// results. Layout: int16 ndigits, int16 weight, uint16 sign, int16 dscale, ndigits x int16
// base-10000 digits (leading and trailing zero digits stripped, as numeric_send sends them).
import type { Dec } from './merge';

const POS = 0x0000, NEG = 0x4000, NAN = 0xc000, PINF = 0xd000, NINF = 0xf000;

export function decodeNumericBin(b: Buffer): Dec {
  const n = b.readInt16BE(0), weight = b.readInt16BE(2), sign = b.readUInt16BE(4), dscale = b.readInt16BE(6);
  if (sign === NAN) return { v: 0n, scale: 0, special: 'NaN' };
  if (sign === PINF) return { v: 0n, scale: 0, special: 'Infinity' };
  if (sign === NINF) return { v: 0n, scale: 0, special: '-Infinity' };
  let d = 0n;
  for (let i = 0; i < n; i++) d = d * 10000n + BigInt(b.readInt16BE(8 + 2 * i));
  // value = d * 10000^(weight - n + 1); as an integer at scale dscale:
  const exp = 4 * (weight - n + 1) + dscale;
  let v = exp >= 0 ? d * 10n ** BigInt(exp) : d / 10n ** BigInt(-exp);
  if (sign === NEG) v = -v;
  return { v, scale: dscale };
}

export function encodeNumericBin(x: Dec): Buffer {
  const head = (n: number, weight: number, sign: number, dscale: number): Buffer => {
    const b = Buffer.alloc(8 + 2 * n);
    b.writeInt16BE(n, 0); b.writeInt16BE(weight, 2); b.writeUInt16BE(sign, 4); b.writeInt16BE(dscale, 6);
    return b;
  };
  if (x.special) return head(0, 0, x.special === 'NaN' ? NAN : x.special === 'Infinity' ? PINF : NINF, 0);
  const neg = x.v < 0n;
  let s = (neg ? -x.v : x.v).toString();
  if (s.length <= x.scale) s = '0'.repeat(x.scale - s.length + 1) + s;
  let int = s.slice(0, s.length - x.scale), frac = s.slice(s.length - x.scale);
  int = int.replace(/^0+/, '');
  int = '0'.repeat((4 - (int.length % 4)) % 4) + int;
  frac = frac + '0'.repeat((4 - (frac.length % 4)) % 4);
  const all = int + frac;
  const digits: number[] = [];
  for (let i = 0; i < all.length; i += 4) digits.push(Number(all.slice(i, i + 4)));
  let weight = int.length / 4 - 1;
  let first = 0;
  while (first < digits.length && digits[first] === 0) { first++; weight--; }
  let last = digits.length;
  while (last > first && digits[last - 1] === 0) last--;
  if (first === last) return head(0, 0, POS, x.scale);
  const used = digits.slice(first, last);
  const b = head(used.length, weight, neg ? NEG : POS, x.scale);
  used.forEach((d, i) => b.writeInt16BE(d, 8 + 2 * i));
  return b;
}
