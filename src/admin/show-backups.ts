// SHOW BACKUPS: the consistent cuts recorded in ZooKeeper for this proxy's cluster (newest
// last), and a first row 'in progress' while a cut's barrier holds this proxy's decisions.
import { recordTxids } from '../cluster/txns';
import { listManifests } from '../cluster/backups';
import { PgError, SQLSTATE } from '../protocol/errors';
import { cols, fmtTime, resultSet } from './result';
import type { AdminCommand } from './types';

export const showBackups: AdminCommand = {
  name: 'SHOW BACKUPS',
  help: 'consistent cuts (pgring backup create): name, state, time, restore point, ring version, per-shard LSNs, decisions, pause',
  run: async ({ proxy }) => {
    const c = proxy.coordinator;
    const zk = c?.session.handle();
    if (!c || !zk || !zk.connected) throw new PgError(SQLSTATE.CannotConnectNow, 'pgring: SHOW BACKUPS needs ZooKeeper, which this proxy is not connected to');
    const rows = [];
    const b = proxy.txn?.backupGate?.barrier;
    if (b) rows.push([b.name, 'in progress', fmtTime(b.createdAt), null, null, null, null, null, Date.now() - b.createdAt]);
    for (const m of await listManifests(zk, c.layout)) {
      rows.push([m.name, 'complete', fmtTime(m.createdAt), m.restorePoint, m.ringVersion, m.shards.map((s) => `${s.name}:${s.lsn}`).join(','),
        m.shards.map((s) => `${s.name}:${s.backupSet}`).join(','), m.decisions.reduce((n, d) => n + recordTxids(d).length, 0), m.pauseMs]);
    }
    return resultSet(cols('name', 'state', 'created_at', 'restore_point', 'ring_version:int8', 'shard_lsns', 'base_backups', 'decisions:int8', 'pause_ms:int8'), rows);
  },
};
