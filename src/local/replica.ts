// Streaming replicas of a LocalPostgres: pg_basebackup (as the postgres OS user) with -R and a
// physical replication slot on the primary, then the primary lists its replicas in
// synchronous_standby_names, so a commit it acknowledges is on a replica (what failover of a
// two-phase-commit shard relies on: see docs/ARCHITECTURE.md "Replicas and failover").
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LocalPostgres } from './postgres';
import { chownPostgres, pgBin, runAsPostgres } from './proc';

import { replicaSlotName as replicaName, syncStandbyNames } from '../cluster/failover-plan';

/**
 * Makes (or restarts) a streaming replica of `primary` in `dir` on `port`. The primary must run
 * with `replication: true`. Does not change the primary's synchronous_standby_names.
 */
export function createReplica(primary: LocalPostgres, opts: { dir: string; port: number; shard: string }): LocalPostgres {
  const name = replicaName(opts.shard, opts.port);
  const dataDir = path.join(opts.dir, 'data');
  fs.mkdirSync(opts.dir, { recursive: true });
  chownPostgres(opts.dir);
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
    const exists = primary.psql(`SELECT 1 FROM pg_replication_slots WHERE slot_name = '${name}'`).trim() === '1';
    runAsPostgres(pgBin('pg_basebackup'), ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', dataDir,
      '-R', '-X', 'stream', '-S', name, ...(exists ? [] : ['-C']), '-c', 'fast']);
  }
  const replica = new LocalPostgres({ dir: opts.dir, port: opts.port, ssl: primary.opts.ssl, standbyOf: { host: '127.0.0.1', port: primary.port, slot: name, appName: name } });
  if (replica.running()) replica.stop('immediate');
  replica.start();
  return replica;
}

/** Gives `primary` these replicas and makes them synchronous. */
export function makeReplicasSynchronous(primary: LocalPostgres, shard: string, replicas: LocalPostgres[]): void {
  primary.setSyncStandbys(syncStandbyNames(replicas.map((r) => replicaName(shard, r.port))));
}
