// SHOW STATS: traffic per (database, shard) with PgBouncer's columns. Totals since
// start; avg_* over the last stats period (15 s): counts and bytes per second,
// times in microseconds per transaction / query. total_received / total_sent are
// the bytes forwarded from clients to servers and from servers to clients.
import { cols, resultSet } from './result';
import { totalsOf } from './stats-sampler';
import type { AdminCommand } from './types';

export const showStats: AdminCommand = {
  name: 'SHOW STATS',
  help: 'traffic per database and shard: total_* since start, avg_* over the last 15 s',
  run: ({ proxy }) => {
    const totals = totalsOf(proxy.ctx.topology.allPools());
    const rows = [...totals].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, t]) => {
      const [database, shard] = key.split('\u0000');
      const a = proxy.ops.sampler.averages(key, t);
      return [database, shard, t.xact, t.query, t.recv, t.sent, t.xactTimeUs, t.queryTimeUs, t.waitTimeUs,
        a.xact, a.query, a.recv, a.sent, a.xactTimeUs, a.queryTimeUs, a.waitTimeUs];
    });
    return resultSet(cols('database', 'shard',
      'total_xact_count:int8', 'total_query_count:int8', 'total_received:int8', 'total_sent:int8',
      'total_xact_time:int8', 'total_query_time:int8', 'total_wait_time:int8',
      'avg_xact_count:int8', 'avg_query_count:int8', 'avg_recv:int8', 'avg_sent:int8',
      'avg_xact_time:int8', 'avg_query_time:int8', 'avg_wait_time:int8'), rows);
  },
};
