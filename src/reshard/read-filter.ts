// Reads that span shards during a migration (pure; docs/ARCHITECTURE.md, "Online resharding").
//
// While rows are being moved, some shards hold rows they do not own: the copies on a target
// before the flip (a target already in the ring: `remove`, `rebalance`), and the old rows on a
// source from the flip until the clean-up. A read sent to several shards would return those
// rows twice (`SELECT count(*) FROM pgbench_branches` counted moved branches twice, and pgbench,
// which takes its scale from that count, then ran transactions on accounts that do not exist).
// So each shard runs the statement with every sharded table it references shadowed by a CTE of
// the rows that shard owns under the ring the proxy routes by:
//   WITH "t" AS NOT MATERIALIZED (SELECT * FROM "public"."t" WHERE <ring predicate>) <statement>
// An unqualified name in the statement resolves to the CTE; `public.t` is rewritten to `t` first.
// NOT MATERIALIZED keeps the planner's freedom (indexes on the key, pushed-down conditions).
import type { KeyType } from '../config/types';
import { quoteIdent } from '../ring/ring';

export interface FilterTable { name: string; column: string; type: KeyType }

/** The name as PostgreSQL resolves it unqualified: the last part, folded to lower case unless quoted. */
function bareName(name: string): string {
  const last = name.split('.').pop()!;
  return last.startsWith('"') && last.endsWith('"') ? last.slice(1, -1).replace(/""/g, '"') : last.toLowerCase();
}

function qualified(name: string): string {
  const parts = name.split('.').map((p) => (p.startsWith('"') && p.endsWith('"') ? p : quoteIdent(p.toLowerCase())));
  return parts.length > 1 ? parts.join('.') : `"public".${parts[0]}`;
}

const reEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Where the statement's first token starts (after blanks and comments). */
function startOf(sql: string): number {
  let i = 0;
  for (;;) {
    while (i < sql.length && /\s/.test(sql[i]!)) i++;
    if (sql.startsWith('--', i)) { const e = sql.indexOf('\n', i); i = e < 0 ? sql.length : e + 1; continue; }
    if (sql.startsWith('/*', i)) { const e = sql.indexOf('*/', i + 2); i = e < 0 ? sql.length : e + 2; continue; }
    return i;
  }
}

/**
 * `sql` with each sharded table it references limited to the rows `pred(table)` selects, or null
 * when it references none of `tables`.
 */
export function ownedRowsSql(sql: string, tables: readonly FilterTable[], pred: (t: FilterTable) => string): string | null {
  // A locking clause ignores CTEs: such a statement keeps its text (and is a write for the gate).
  if (/\bfor\s+(update|share|no\s+key\s+update|key\s+share)\b/i.test(sql)) return null;
  let text = sql;
  const ctes: string[] = [];
  for (const t of tables) {
    const bare = bareName(t.name);
    const word = /^[a-z_][a-z0-9_$]*$/.test(bare) ? reEscape(bare) : reEscape(quoteIdent(bare));
    // public.t, "public"."t" -> t (the CTE shadows unqualified names only)
    text = text.replace(new RegExp(`(?<![\\w$."])(?:public|"public")\\s*\\.\\s*(${word}|"${reEscape(bare)}")(?![\\w$])`, 'gi'), '$1');
    if (!new RegExp(`(?<![\\w$."])(?:${word}|"${reEscape(bare)}")(?![\\w$"])`, 'i').test(text)) continue;
    ctes.push(`${quoteIdent(bare)} AS NOT MATERIALIZED (SELECT * FROM ${qualified(t.name)} WHERE ${pred(t)})`);
  }
  if (ctes.length === 0) return null;
  const at = startOf(text);
  const withRe = /^with(\s+recursive)?\s+/i;
  const m = withRe.exec(text.slice(at));
  if (m) return `${text.slice(0, at)}${m[0]}${ctes.join(', ')}, ${text.slice(at + m[0].length)}`;
  return `${text.slice(0, at)}WITH ${ctes.join(', ')} ${text.slice(at)}`;
}
