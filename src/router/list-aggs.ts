// List and object aggregates merged from per-shard partials (pure): string_agg / array_agg
// without ORDER BY inside (no element order is defined then, on one server either: each shard's
// elements stay together, shards in the order their rows arrived; arrays concatenate along their
// first dimension, '{1,2}' + '{3}' = '{1,2,3}', text and binary alike), json_agg / jsonb_agg,
// json_object_agg / jsonb_object_agg, and the array values the ordered string_agg / array_agg
// merge reads and builds.

/** string_agg: the non-null partials joined by the separator */
export function joinStrings(parts: Buffer[], sep: Buffer): Buffer {
  const out: Buffer[] = [];
  parts.forEach((p, i) => { if (i) out.push(sep); out.push(p); });
  return Buffer.concat(out);
}

/** array_agg: the non-null partial arrays concatenated along their first dimension */
export function concatArrays(parts: Buffer[], format: number): Buffer {
  if (parts.length === 1) return parts[0]!;
  if (format !== 1) return Buffer.from('{' + parts.map((p) => p.toString('utf8').slice(1, -1)).join(',') + '}', 'utf8');
  const ndim = parts[0]!.readInt32BE(0);
  const head = Buffer.from(parts[0]!.subarray(0, 12 + 8 * ndim));
  let first = 0, hasNull = 0;
  const data: Buffer[] = [];
  for (const p of parts) {
    first += p.readInt32BE(12);
    hasNull |= p.readInt32BE(4);
    data.push(p.subarray(12 + 8 * ndim));
  }
  head.writeInt32BE(hasNull, 4);
  head.writeInt32BE(first, 12);
  head.writeInt32BE(1, 16);
  return Buffer.concat([head, ...data]);
}

/** jsonb_agg: the partial arrays' elements in one array, as jsonb prints one ('[1, 2]' + '[3]' =
 *  '[1, 2, 3]'); binary jsonb is a version byte (1) and the same text */
export function concatJsonb(parts: Buffer[], format: number): Buffer {
  if (parts.length === 1) return parts[0]!;
  const skip = format === 1 ? 1 : 0;
  const inner = parts.map((p) => p.toString('utf8', skip + 1, p.length - 1));
  const text = Buffer.from('[' + inner.join(', ') + ']', 'utf8');
  return format === 1 ? Buffer.concat([Buffer.from([1]), text]) : text;
}

/** json_agg: the partial arrays' elements in one array, with json_agg's own separators: ", ", and
 *  ", \n " before an array or composite element (PostgreSQL's json_agg_transfn; a NULL element gets
 *  no newline). json's binary format is its text. */
export function concatJson(parts: Buffer[], structured: boolean): Buffer {
  if (parts.length === 1) return parts[0]!;
  let out = parts[0]!.toString('utf8', 0, parts[0]!.length - 1);
  for (let i = 1; i < parts.length; i++) {
    const inner = parts[i]!.toString('utf8', 1, parts[i]!.length - 1);
    out += structured && !inner.startsWith('null') ? ', \n ' : ', ';
    out += inner;
  }
  return Buffer.from(out + ']', 'utf8');
}

/** From a shard's `json_typeof(to_json(x)) || ':' || pg_typeof(x)`: whether json_agg's elements are
 *  arrays or composites (json and jsonb values print objects and arrays without the newline). */
export function jsonStructured(cat: string): boolean {
  const i = cat.indexOf(':');
  const jt = cat.slice(0, i), type = cat.slice(i + 1);
  return (jt === 'object' || jt === 'array') && type !== 'json' && type !== 'jsonb';
}

/** json_object_agg: the partial objects' members in one object, as json_object_agg prints one
 *  (`{ "a" : 1, "b" : 2 }`; json keeps duplicate keys). json's binary format is its text. */
export function concatJsonObject(parts: Buffer[]): Buffer {
  if (parts.length === 1) return parts[0]!;
  return Buffer.from(`{ ${parts.map((p) => p.toString('utf8', 2, p.length - 2)).join(', ')} }`, 'utf8');
}

/** The top-level members of a jsonb object's text (`{"a": 1, "b": [2, 3]}`) as [key text, value text]. */
export function jsonbMembers(t: string): [string, string][] {
  const out: [string, string][] = [];
  let i = 1, depth = 0, start = 1, colon = -1;
  for (; i < t.length - 1; i++) {
    const c = t[i]!;
    if (c === '"') { i++; while (i < t.length && t[i] !== '"') { if (t[i] === '\\') i++; i++; } continue; }
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (depth === 0 && c === ':' && colon < 0) colon = i;
    else if (depth === 0 && c === ',') { out.push([t.slice(start, colon).trim(), t.slice(colon + 1, i).trim()]); start = i + 1; colon = -1; }
  }
  if (colon > 0) out.push([t.slice(start, colon).trim(), t.slice(colon + 1, t.length - 1).trim()]);
  return out;
}

/** jsonb_object_agg: the partial objects' members in one jsonb object: one member per key (a later
 *  one wins, as a later row does), keys in jsonb's order (shorter first, then by bytes), printed as
 *  jsonb prints (`{"a": 1, "bb": 2}`; binary: version byte 1 and the same text). */
export function mergeJsonbObjects(parts: Buffer[], format: number): Buffer {
  if (parts.length === 1) return parts[0]!;
  const skip = format === 1 ? 1 : 0;
  const members = new Map<string, string>();
  for (const p of parts) for (const [k, v] of jsonbMembers(p.toString('utf8', skip))) { members.delete(k); members.set(k, v); }
  const keyBytes = (k: string): Buffer => Buffer.from(JSON.parse(k) as string, 'utf8');
  const keys = [...members.keys()].map((k) => ({ k, b: keyBytes(k) }));
  keys.sort((x, y) => (x.b.length - y.b.length) || Buffer.compare(x.b, y.b));
  const text = Buffer.from(`{${keys.map(({ k }) => `${k}: ${members.get(k)}`).join(', ')}}`, 'utf8');
  return format === 1 ? Buffer.concat([Buffer.from([1]), text]) : text;
}

/** The items of a one-dimensional array value with its NULLs (copies); null for a multi-dimensional one. */
export function arrayItems(b: Buffer, format: number): (Buffer | null)[] | null {
  if (format === 1) {
    const ndim = b.readInt32BE(0);
    if (ndim === 0) return [];
    if (ndim > 1) return null;
    const n = b.readInt32BE(12);
    let p = 20;
    const out: (Buffer | null)[] = [];
    for (let i = 0; i < n; i++) { const len = b.readInt32BE(p); p += 4; if (len < 0) out.push(null); else { out.push(Buffer.from(b.subarray(p, p + len))); p += len; } }
    return out;
  }
  const t = b.toString('utf8');
  if (t.startsWith('{{') || (t.startsWith('[') && t.includes('={{'))) return null;
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { parseArrayLiteral } = require('./router') as typeof import('./router');
  return parseArrayLiteral(t).map((x) => (x === null ? null : Buffer.from(x, 'utf8')));
}

/** A one-dimensional array of `items` (NULLs included) in text or binary format. */
export function buildArray(items: (Buffer | null)[], format: number, elemOid: number): Buffer {
  if (format !== 1) {
    const q = (e: Buffer): string => {
      const t = e.toString('utf8');
      return t === '' || /[{}",\\\s]/.test(t) || t.toUpperCase() === 'NULL' ? `"${t.replace(/[\\"]/g, '\\$&')}"` : t;
    };
    return Buffer.from(`{${items.map((e) => (e === null ? 'NULL' : q(e))).join(',')}}`, 'utf8');
  }
  const head = Buffer.alloc(20);
  head.writeInt32BE(1, 0); head.writeInt32BE(items.some((e) => e === null) ? 1 : 0, 4); head.writeInt32BE(elemOid, 8);
  head.writeInt32BE(items.length, 12); head.writeInt32BE(1, 16);
  const parts: Buffer[] = [head];
  for (const e of items) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(e === null ? -1 : e.length, 0);
    parts.push(len);
    if (e !== null) parts.push(e);
  }
  return Buffer.concat(parts);
}
