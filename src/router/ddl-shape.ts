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
  if (tag === 'DropStmt') return droppedRoutines(s);
  const rel = (tag === 'CreateTableAsStmt' ? s?.into?.rel
    : tag === 'SelectStmt' ? s?.intoClause?.rel
    : tag === 'ViewStmt' ? s?.view
    : tag === 'CreateStmt' ? s?.relation : undefined) as { relname?: string; schemaname?: string } | undefined;
  if (!rel?.relname) return undefined;
  // Lower case, as lockObjects() names them and prepared.ts's identifiers() reads statements.
  return [`rel:${rel.schemaname ? `${rel.schemaname}.` : ''}${rel.relname}`.toLowerCase()];
}

/** DROP FUNCTION / OPERATOR / AGGREGATE / PROCEDURE: the routines' names (an operator's is its
 *  symbol, which prepared.ts looks for in the statement text); lockObjects() names none. */
function droppedRoutines(s: N | undefined): string[] | undefined {
  const objs = s?.objects as N[] | undefined;
  if (!objs?.length || !objs.every((o) => o?.ObjectWithArgs?.objname?.length)) return undefined;
  return objs.map((o) => {
    const parts = (o.ObjectWithArgs.objname as N[]).map((x) => String(x?.String?.sval ?? ''));
    return `obj:${parts.join('.')}`.toLowerCase();
  });
}
