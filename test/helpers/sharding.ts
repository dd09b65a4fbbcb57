// Sharded pgbench tables as the demo configures them, and checks of row placement
// done on each shard with PostgreSQL's own hash (Ring.sqlPredicate).
import { Ring } from '../../src/ring/ring';
import { psqlAt } from './env';

export const pgbenchTables = [
  { name: 'pgbench_accounts', column: 'aid', type: 'integer', columns: ['aid', 'bid', 'abalance', 'filler'] },
  { name: 'pgbench_tellers', column: 'tid', type: 'integer', columns: ['tid', 'bid', 'tbalance', 'filler'] },
  { name: 'pgbench_branches', column: 'bid', type: 'integer', columns: ['bid', 'bbalance', 'filler'] },
  { name: 'pgbench_history', column: 'aid', type: 'integer', columns: ['tid', 'bid', 'aid', 'delta', 'mtime', 'filler'] },
];

/** For each shard: rows of `table` it holds, and how many of those it does not own (must be 0). */
export function placement(ring: Ring, ports: number[], db: string, table: string, column: string): { held: number; misplaced: number }[] {
  return ports.map((port, i) => {
    const [held, misplaced] = psqlAt(port, `SELECT count(*), count(*) FILTER (WHERE NOT (${ring.sqlPredicate(i, column, 'integer')})) FROM ${table}`, db).trim().split('|').map(Number);
    return { held: held!, misplaced: misplaced! };
  });
}
