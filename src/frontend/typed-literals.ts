// Values read from a shard as SQL literals of their own type (`'5'::integer`, `NULL::uuid`), for
// statements pgring rewrites with values it read once (insert-select.ts, reference-defaults.ts):
// the server writes the literal, so every type's text form and the assignment casts of the
// statement that gets it stay PostgreSQL's.

/** The SQL name of the type of `v`'s value, for a cast that keeps the value: pg_typeof names no
 *  modifier, and `character` alone is char(1) and `bit` alone bit(1) (a value cast to them is cut
 *  or refused), so those two are written as bpchar and varbit (no length limit). */
export function typeNameSql(v: string): string {
  return `CASE pg_catalog.pg_typeof(${v}) WHEN 'pg_catalog.bpchar'::pg_catalog.regtype THEN 'pg_catalog.bpchar' WHEN 'pg_catalog.bit'::pg_catalog.regtype THEN 'pg_catalog.varbit' ELSE pg_catalog.pg_typeof(${v})::pg_catalog.text END`;
}

/** `(SELECT …)` giving the literal of one expression's value (evaluated once). */
export function typedValueSql(expr: string, alias: string): string {
  return `(SELECT pg_catalog.quote_nullable(v) || '::' || ${typeNameSql('v')} FROM (SELECT ${expr} AS v) ${alias})`;
}

/** A SELECT giving, per row of `select` (with `n` columns), its row as `(lit, lit, …)`, at most `limit` rows. */
export function typedRowsSql(select: string, n: number, limit: number): string {
  const names = Array.from({ length: n }, (_, i) => `pgring_c${i + 1}`);
  const literal = names.map((c) => `pg_catalog.quote_nullable(s.${c}) || '::' || ${typeNameSql(`s.${c}`)}`).join(" || ', ' || ");
  return `SELECT '(' || ${literal} || ')' FROM (${select}) AS s(${names.join(', ')}) LIMIT ${limit}`;
}
