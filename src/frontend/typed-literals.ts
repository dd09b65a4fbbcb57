// Values read from a shard as SQL literals of their own type (`'5'::integer`, `NULL::uuid`), for
// statements pgring rewrites with values it read once (insert-select.ts, reference-defaults.ts):
// the server writes the literal, so every type's text form and the assignment casts of the
// statement that gets it stay PostgreSQL's.

/** `(SELECT …)` giving the literal of one expression's value (evaluated once). */
export function typedValueSql(expr: string, alias: string): string {
  return `(SELECT pg_catalog.quote_nullable(v) || '::' || pg_catalog.pg_typeof(v)::pg_catalog.text FROM (SELECT ${expr} AS v) ${alias})`;
}

/** A SELECT giving, per row of `select` (with `n` columns), its row as `(lit, lit, …)`, at most `limit` rows. */
export function typedRowsSql(select: string, n: number, limit: number): string {
  const names = Array.from({ length: n }, (_, i) => `pgring_c${i + 1}`);
  const literal = names.map((c) => `pg_catalog.quote_nullable(s.${c}) || '::' || pg_catalog.pg_typeof(s.${c})::pg_catalog.text`).join(" || ', ' || ");
  return `SELECT '(' || ${literal} || ')' FROM (${select}) AS s(${names.join(', ')}) LIMIT ${limit}`;
}
