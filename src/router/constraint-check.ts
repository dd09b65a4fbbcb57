// Constraints each shard checks against its own rows only, which therefore do not hold (or fail
// wrongly) for a table whose rows are spread over shards. Citus refuses the same ones; pgring
// refuses them over several shards (0A000, planner.ts).
//
// - A UNIQUE, PRIMARY KEY or EXCLUDE constraint (or a unique index) on a sharded table holds for
//   the whole table only when it includes the shard key column (with `=` for EXCLUDE): rows that
//   could conflict then have the same key, so they live on the same shard. Without it two shards
//   each accept a row the other already has (`email text UNIQUE` on a table sharded by id).
// - A FOREIGN KEY to a sharded table holds only between co-located rows: from a sharded table
//   whose key column references the parent's key column (the child row lives with its parent). A
//   key on another column (`author_id REFERENCES accounts (id)` in posts sharded by account_id),
//   or any from a reference table, finds the parent row on one shard only and fails with 23503
//   on the others although the row exists. A foreign key to a reference table always holds.
import type { N } from './plan-ast';

/** Constraint nodes of a CREATE TABLE or ALTER TABLE, each with its column for a column constraint. */
function constraintsOf(tag: string, s: N): { c: N; column?: string }[] {
  const out: { c: N; column?: string }[] = [];
  if (tag === 'CreateStmt') {
    for (const el of s.tableElts ?? []) {
      if (el.Constraint) out.push({ c: el.Constraint });
      for (const c of el.ColumnDef?.constraints ?? []) if (c.Constraint) out.push({ c: c.Constraint, column: el.ColumnDef.colname });
    }
  } else if (tag === 'AlterTableStmt') {
    for (const cmd of s.cmds ?? []) {
      const a = cmd.AlterTableCmd;
      if (a?.subtype === 'AT_AddConstraint' && a.def?.Constraint) out.push({ c: a.def.Constraint });
      if (a?.subtype === 'AT_AddColumn') for (const c of a.def?.ColumnDef?.constraints ?? []) if (c.Constraint) out.push({ c: c.Constraint, column: a.def.ColumnDef.colname });
    }
  }
  return out;
}

/** What in the DDL `s` (node of kind `tag`) would be unique per shard only, or null. `key`: the
 *  sharded table's key column (folded). */
export function uniqueWithoutKey(tag: string, s: N, key: string): string | null {
  if (tag === 'IndexStmt') {
    if (!s.unique) return null;
    return (s.indexParams ?? []).some((e: N) => e.IndexElem?.name === key) ? null : 'a unique index';
  }
  if (tag !== 'CreateStmt' && tag !== 'AlterTableStmt') return null;
  const constraints = constraintsOf(tag, s);
  for (const { c, column } of constraints) {
    if (c.indexname) continue; // USING INDEX: the index was checked when it was created
    if (c.contype === 'CONSTR_UNIQUE' || c.contype === 'CONSTR_PRIMARY') {
      const cols: string[] = column !== undefined ? [column] : (c.keys ?? []).map((k: N) => k.String?.sval);
      if (!cols.includes(key)) return c.contype === 'CONSTR_PRIMARY' ? 'a PRIMARY KEY' : 'a UNIQUE constraint';
    } else if (c.contype === 'CONSTR_EXCLUSION') {
      const withKey = (c.exclusions ?? []).some((x: N) => {
        const [elem, ops] = x.List?.items ?? [];
        return elem?.IndexElem?.name === key && (ops?.List?.items ?? []).some((o: N) => o.String?.sval === '=');
      });
      if (!withKey) return 'an EXCLUDE constraint';
    }
  }
  return null;
}

/**
 * A FOREIGN KEY in the DDL `s` that shards cannot check, or null. `childKey`: the key column of the
 * table it is declared on (folded), null when that table is not sharded; `keyOf(rv)`: the key
 * column (folded) of a sharded table named by a RangeVar, null for any other.
 */
export function foreignKeyProblem(tag: string, s: N, childKey: string | null, keyOf: (rv: N) => string | null): string | null {
  for (const { c, column } of constraintsOf(tag, s)) {
    if (c.contype !== 'CONSTR_FOREIGN' || !c.pktable) continue;
    const parentKey = keyOf(c.pktable);
    if (parentKey === null) continue;    // a reference table: on every shard
    const parent = c.pktable.relname as string;
    if (childKey === null) return `a FOREIGN KEY from a table that is not sharded to sharded table "${parent}" (its rows would be on every shard, the rows they reference on one; to shard the table by the column that references "${parent}", register it first: pgring table shard ${s.relation?.relname ?? 'TABLE'} --column COLUMN --type TYPE)`;
    const fk: string[] = column !== undefined ? [column] : (c.fk_attrs ?? []).map((x: N) => x.String?.sval);
    const pk: string[] = (c.pk_attrs ?? []).map((x: N) => x.String?.sval);
    const i = fk.indexOf(childKey);
    // Without a column list it references the parent's primary key, which includes its key column
    // (the order of a composite one is not known here: accepted).
    const colocated = i >= 0 && (pk.length === 0 || pk[i] === parentKey);
    if (!colocated) return `a FOREIGN KEY to sharded table "${parent}" that does not pair the shard key columns (each shard would find only its own rows of "${parent}"; reference "${parent}" by its shard key from this table's shard key)`;
  }
  return null;
}
