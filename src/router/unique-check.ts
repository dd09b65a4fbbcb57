// A UNIQUE, PRIMARY KEY or EXCLUDE constraint (or a unique index) on a sharded table is checked by
// each shard against its own rows only. It holds for the whole table only when it includes the
// shard key column (with `=` for EXCLUDE): rows that could conflict then have the same key, so
// they live on the same shard. Without it two shards each accept a row the other already has
// (`email text UNIQUE` on a table sharded by id: two accounts with one email). Citus refuses such
// constraints for the same reason; pgring refuses them over several shards (0A000).
import type { N } from './plan-ast';

/** What in the DDL `s` (node of kind `tag`) would be unique per shard only, or null. `key`: the
 *  sharded table's key column (folded). */
export function uniqueWithoutKey(tag: string, s: N, key: string): string | null {
  if (tag === 'IndexStmt') {
    if (!s.unique) return null;
    return (s.indexParams ?? []).some((e: N) => e.IndexElem?.name === key) ? null : 'a unique index';
  }
  const constraints: { c: N; column?: string }[] = [];
  if (tag === 'CreateStmt') {
    for (const el of s.tableElts ?? []) {
      if (el.Constraint) constraints.push({ c: el.Constraint });
      for (const c of el.ColumnDef?.constraints ?? []) if (c.Constraint) constraints.push({ c: c.Constraint, column: el.ColumnDef.colname });
    }
  } else if (tag === 'AlterTableStmt') {
    for (const cmd of s.cmds ?? []) {
      const a = cmd.AlterTableCmd;
      if (a?.subtype === 'AT_AddConstraint' && a.def?.Constraint) constraints.push({ c: a.def.Constraint });
      if (a?.subtype === 'AT_AddColumn') for (const c of a.def?.ColumnDef?.constraints ?? []) if (c.Constraint) constraints.push({ c: c.Constraint, column: a.def.ColumnDef.colname });
    }
  } else return null;
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
