// SHOW MIGRATIONS: resharding migrations of the cluster (read from ZooKeeper at each call), with
// phase, arcs, rows copied, replication lag, ETA and cut-over attempts, and whether this proxy
// holds writes for a cut-over right now.
import { listMigrations } from '../reshard/store';
import { migrationRows } from '../reshard/progress';
import { PgError, SQLSTATE } from '../protocol/errors';
import { cols, resultSet } from './result';
import type { AdminCommand } from './types';

export const showMigrations: AdminCommand = {
  name: 'SHOW MIGRATIONS',
  help: 'resharding migrations: phase, arcs, rows copied/expected, lag, ETA, cut-over tries; and the fence this proxy holds writes for',
  run: async ({ proxy }) => {
    const c = proxy.coordinator;
    if (!c) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: SHOW MIGRATIONS needs ZooKeeper (zookeeper section of the config)');
    const all = await listMigrations(c.session, c.layout);
    const fence = proxy.gate?.fence ?? null;
    const rows = migrationRows(all).map((r) => [...r, fence && fence.migration === r[0] ? `holding (token ${fence.token})` : null]);
    return resultSet(cols('id', 'change', 'phase', 'from_version:int8', 'to_version:int8', 'arcs', 'rows_copied:int8', 'rows_expected:int8', 'lag_bytes:int8', 'eta_s:int8', 'cutover_tries:int8', 'error', 'this_proxy'), rows);
  },
};
