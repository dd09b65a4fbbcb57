// Which objects a DDL statement can change the result columns of (pure: libpg-query AST in,
// names out), for issue 20's staleness check (frontend/prepared.ts). lockObjects() also names
// what a statement only reads (the SELECT of a CREATE TABLE AS, a view's query, INHERITS
// parents): PostgreSQL keeps a statement prepared over those valid, so pgring must not fail it
// with 0A000 (DBD::Pg's catalog lookups died on it after `CREATE TEMP TABLE .. AS SELECT .. FROM pg_class`).
import type { N } from './plan-ast';

/** Statements that change no statement's result columns. */
const NO_SHAPE = new Set(['CommentStmt', 'GrantStmt', 'GrantRoleStmt', 'SecLabelStmt', 'CreateRoleStmt',
  'AlterRoleStmt', 'DropRoleStmt', 'IndexStmt', 'CreateStatsStmt', 'AlterDefaultPrivilegesStmt']);

/**
 * The objects whose result shape `tag` may change, as lock-object names (`rel:s.t`): [] for none,
 * undefined when every object it names may change (then the lock objects stand).
 */
export function shapeObjects(tag: string, s: N | undefined): string[] | undefined {
  if (NO_SHAPE.has(tag)) return [];
  const rel = (tag === 'CreateTableAsStmt' ? s?.into?.rel
    : tag === 'SelectStmt' ? s?.intoClause?.rel
    : tag === 'ViewStmt' ? s?.view
    : tag === 'CreateStmt' ? s?.relation : undefined) as { relname?: string; schemaname?: string } | undefined;
  if (!rel?.relname) return undefined;
  // Lower case, as lockObjects() names them and prepared.ts's identifiers() reads statements.
  return [`rel:${rel.schemaname ? `${rel.schemaname}.` : ''}${rel.relname}`.toLowerCase()];
}
