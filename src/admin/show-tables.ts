// SHOW TABLES: the cluster definition this proxy routes by: one row per sharded or reference
// table (kind, key column and type, column list), and the policy for tables named nowhere.
import { Cell, cols, resultSet } from './result';
import type { AdminCommand } from './types';

export const showTables: AdminCommand = {
  name: 'SHOW TABLES',
  help: 'the cluster definition routed by: sharded tables (key column, type), reference tables, unknown-table policy',
  run: ({ proxy }) => {
    const d = proxy.definition;
    const rows: Cell[][] = [
      ...d.sharded.map((t) => [d.version, t.name, 'sharded', t.column, t.type, t.columns ? t.columns.join(', ') : null, d.unknownTables]),
      ...d.reference.map((r) => [d.version, r, 'reference', null, null, null, d.unknownTables]),
    ];
    return resultSet(cols('definition_version:int8', 'table', 'kind', 'key_column', 'key_type', 'columns', 'unknown_tables'), rows);
  },
};
