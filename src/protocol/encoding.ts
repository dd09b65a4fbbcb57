// Client encodings other than UTF8 (SET client_encoding, SET NAMES, the startup packet's
// client_encoding; psql on Windows sends WIN1252). The server converts such a client's text to
// its own encoding (UTF8) before it hashes a shard key, so pgring must read the client's bytes in
// the client's encoding: read as UTF8, 'café' from a LATIN1 client hashed to another shard than
// the same key from a UTF8 client. Text pgring writes to a server for such a client (statements
// it prepares or rewrites) is encoded back the same way. null stands for UTF8 (and SQL_ASCII,
// whose bytes pass unconverted): the hot path decodes as before.
import * as iconv from 'iconv-lite';

export interface Codec {
  /** PostgreSQL's name of the encoding */
  readonly name: string;
  decode(b: Buffer, start?: number, end?: number): string;
  encode(s: string): Buffer;
}

// PostgreSQL's names and aliases (encnames.c), cleaned as PostgreSQL cleans them (lower case,
// letters and digits only), to the iconv-lite codec.
const NAMES: Record<string, [string, string]> = {};
function alias(pg: string, codec: string, ...names: string[]): void {
  for (const n of [pg, ...names]) NAMES[clean(n)] = [pg, codec];
}
function clean(n: string): string { return n.toLowerCase().replace(/[^a-z0-9]/g, ''); }

for (let i = 1; i <= 10; i++) {
  const iso = [1, 2, 3, 4, 9, 10, 13, 14, 15, 16][i - 1]!;
  alias(`LATIN${i}`, `iso-8859-${iso}`, `iso8859${iso}`, `iso-8859-${iso}`);
}
for (const n of [5, 6, 7, 8]) alias(`ISO_8859_${n}`, `iso-8859-${n}`, `iso8859${n}`);
for (const n of [1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257, 1258]) alias(`WIN${n}`, `windows-${n}`, `windows${n}`);
alias('WIN1251', 'windows-1251', 'win');
alias('WIN866', 'cp866', 'alt', 'windows866');
alias('WIN874', 'windows-874', 'windows874');
alias('KOI8R', 'koi8-r', 'koi8');
alias('KOI8U', 'koi8-u');
alias('EUC_JP', 'euc-jp');
alias('SJIS', 'shift_jis', 'shiftjis', 'mskanji', 'windows932');
alias('EUC_KR', 'euc-kr');
alias('UHC', 'cp949', 'windows949');
alias('BIG5', 'big5', 'windows950');
alias('GBK', 'gbk', 'windows936');
alias('GB18030', 'gb18030');
alias('EUC_CN', 'gb2312');

const cache = new Map<string, Codec | null>();

/** The codec of a client_encoding value, or null for UTF8 / SQL_ASCII and names pgring does not
 *  know (those keep the UTF8 reading). */
export function codecFor(value: string): Codec | null {
  const key = clean(value);
  let c = cache.get(key);
  if (c !== undefined) return c;
  const hit = NAMES[key];
  c = hit && iconv.encodingExists(hit[1]) ? makeCodec(hit[0], hit[1]) : null;
  cache.set(key, c);
  return c;
}

function makeCodec(name: string, enc: string): Codec {
  // LATIN1 maps byte to code point: Node's own latin1 is exact and fast
  if (enc === 'iso-8859-1') return { name, decode: (b, s = 0, e = b.length) => b.toString('latin1', s, e), encode: (s) => Buffer.from(s, 'latin1') };
  return {
    name,
    decode: (b, s = 0, e = b.length) => iconv.decode(s === 0 && e === b.length ? b : b.subarray(s, e), enc),
    encode: (s) => iconv.encode(s, enc),
  };
}

/** The value of a `SET client_encoding ...` / `SET NAMES ...` statement's text, or null. */
export function encodingOfSet(sql: string): string | null {
  const m = /(?:\bto\b|=|\bnames\b)\s*(?:'([^']*)'|"([^"]*)"|([\w-]+))\s*;?\s*$/i.exec(sql);
  return m ? (m[1] ?? m[2] ?? m[3] ?? null) : null;
}
