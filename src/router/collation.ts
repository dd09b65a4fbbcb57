// The order of text in a database's default collation, for what pgring sorts or compares itself
// when it merges shards' rows (ORDER BY, min / max, and the LIMIT after them). PostgreSQL orders
// text by the collation; the merger compared bytes, which is that order only for C / POSIX /
// C.UTF-8. A database created with en_US.UTF-8 (Debian's, RDS's default) or an ICU locale orders
// 'apple' < 'Banana' < 'cherry' where bytes give 'Banana' < 'apple': `ORDER BY name LIMIT 10`
// over shards returned other rows than one server. pgring reads each database's collation once
// (frontend/links.ts) and compares with an ICU collator for its locale, ties broken by bytes as
// PostgreSQL's varstr_cmp does. ICU databases get ICU's order for their locale (Node's ICU may be
// another version than the server's); libc ones the ICU order of the same language, which
// matches glibc's for letters, digits and case and may differ for punctuation and spaces.

type Cmp = (a: Buffer, b: Buffer) => number;

/** Per database: the text comparator, or null for byte order. Absent: not read yet. */
const byDatabase = new Map<string, Cmp | null>();
const pending = new Set<string>();

export function collationKnown(db: string): boolean { return byDatabase.has(db) || pending.has(db); }
export function collationPending(db: string): void { pending.add(db); }

/** The catalog row of a database's collation: datlocprovider, datcollate, daticulocale. */
export const COLLATION_SQL = 'SELECT datlocprovider::text, datcollate, daticulocale FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()';

export function noteCollation(db: string, row: (string | null)[] | undefined): void {
  pending.delete(db);
  byDatabase.set(db, row ? comparatorOf(row[0] ?? 'c', row[1] ?? 'C', row[2] ?? null) : null);
}

/** Text order of `db` (null: bytes, also while not known). */
export function textOrder(db: string): Cmp | null { return byDatabase.get(db) ?? null; }

/** The comparator for a collation (null: byte order). */
export function comparatorOf(provider: string, collate: string, icuLocale: string | null): Cmp | null {
  const c = provider === 'i' ? icuLocale ?? 'und' : collate;
  if (provider !== 'i' && /^(c|posix|c\.utf-?8|ucs_basic)$/i.test(c)) return null;
  // en_US.UTF-8 -> en-US; ICU locales as they are (und-x-icu -> und)
  const tag = provider === 'i' ? c.replace(/-x-icu$/i, '') : c.replace(/[.@].*$/, '').replace(/_/g, '-');
  let coll: Intl.Collator;
  try {
    coll = new Intl.Collator(Intl.Collator.supportedLocalesOf([tag]).length ? tag : 'und');
  } catch { coll = new Intl.Collator('und'); }
  return (a, b) => coll.compare(a.toString('utf8'), b.toString('utf8')) || Buffer.compare(a, b);
}
