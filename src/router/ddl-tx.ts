// Which DDL statements may run inside a transaction block (pure: libpg-query AST in). Outside a
// transaction pgring runs a DDL statement that goes to several shards as one distributed
// transaction (BEGIN on each shard, committed together), so that a statement one shard refuses
// (a CHECK constraint a row of that shard violates, an object that exists there) changes no
// shard. PostgreSQL refuses some statements inside a transaction block (PreventInTransactionBlock:
// CREATE DATABASE, VACUUM, CREATE INDEX CONCURRENTLY, ...): those are sent as they are. The list is
// of statements known to be allowed, so an unknown kind keeps the old behaviour.
import type { N } from './plan-ast';

const IN_TX = new Set([
  'CreateStmt', 'CreateTableAsStmt', 'ViewStmt', 'AlterTableStmt', 'IndexStmt', 'DropStmt', 'RenameStmt',
  'TruncateStmt', 'CommentStmt', 'SecLabelStmt', 'GrantStmt', 'GrantRoleStmt', 'AlterDefaultPrivilegesStmt',
  'CreateSeqStmt', 'AlterSeqStmt', 'CreateFunctionStmt', 'AlterFunctionStmt', 'CreateTrigStmt', 'RuleStmt',
  'CompositeTypeStmt', 'CreateEnumStmt', 'CreateRangeStmt', 'DefineStmt', 'CreateDomainStmt', 'AlterDomainStmt',
  'CreateSchemaStmt', 'CreateExtensionStmt', 'AlterExtensionStmt', 'AlterExtensionContentsStmt',
  'AlterOwnerStmt', 'AlterObjectSchemaStmt', 'CreatePolicyStmt', 'AlterPolicyStmt', 'CreateStatsStmt',
  'AlterStatsStmt', 'CreateCastStmt', 'CreateOpClassStmt', 'CreateOpFamilyStmt', 'AlterOpFamilyStmt',
  'CreateConversionStmt', 'CreateTransformStmt', 'RefreshMatViewStmt', 'ReindexStmt', 'ClusterStmt',
  'CreateRoleStmt', 'AlterRoleStmt', 'DropRoleStmt', 'DropOwnedStmt', 'ReassignOwnedStmt',
]);

/** True when PostgreSQL runs this DDL statement inside a transaction block. */
export function ddlRunsInTransaction(tag: string, s: N | undefined): boolean {
  if (!IN_TX.has(tag) || !s) return false;
  switch (tag) {
    case 'IndexStmt': case 'DropStmt': return !s.concurrent;
    case 'RenameStmt': return s.renameType !== 'OBJECT_DATABASE';
    case 'ClusterStmt': return !!s.relation;                       // CLUSTER of every table: not in a block
    case 'ReindexStmt':                                            // SCHEMA / SYSTEM / DATABASE, or CONCURRENTLY: not in a block
      return (s.kind === 'REINDEX_OBJECT_TABLE' || s.kind === 'REINDEX_OBJECT_INDEX')
        && !(s.params ?? []).some((p: N) => p.DefElem?.defname === 'concurrently');
    case 'AlterTableStmt':                                         // DETACH PARTITION ... CONCURRENTLY
      return !(s.cmds ?? []).some((c: N) => c.AlterTableCmd?.def?.PartitionCmd?.concurrent);
    default: return true;
  }
}

const SERIALS = new Set(['serial', 'serial4', 'bigserial', 'serial8', 'smallserial', 'serial2']);
function columnMakesSequence(c: N | undefined): boolean {
  const names: N[] = c?.typeName?.names ?? [];
  const t = names[names.length - 1]?.String?.sval;
  return SERIALS.has(t) || (c?.constraints ?? []).some((k: N) => k.Constraint?.contype === 'CONSTR_IDENTITY');
}

/** True when the DDL statement may create a sequence (CREATE SEQUENCE, serial / bigserial or
 *  identity columns in CREATE TABLE or ALTER TABLE): on several shards each shard's new bigint
 *  sequences get their own range (frontend/sequences.ts). */
export function ddlCreatesSequence(tag: string, s: N | undefined): boolean {
  if (!s) return false;
  if (tag === 'CreateSeqStmt') return true;
  if (tag === 'CreateStmt') return (s.tableElts ?? []).some((e: N) => columnMakesSequence(e.ColumnDef));
  if (tag === 'AlterTableStmt') {
    return (s.cmds ?? []).some((c: N) => {
      const cmd = c.AlterTableCmd;
      return cmd?.subtype === 'AT_AddIdentity' || (cmd?.subtype === 'AT_AddColumn' && columnMakesSequence(cmd.def?.ColumnDef));
    });
  }
  return false;
}
