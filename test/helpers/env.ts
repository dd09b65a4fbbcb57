// Access to the shared test cluster started by scripts/run-tests.js.
// Each test file isolates itself with its own databases / ZooKeeper cluster names.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ClusterInfo, LocalCluster } from '../../src/local/cluster';
import { runAsPostgres, pgBin } from '../../src/local/proc';
import { enableExitCleanup } from '../../src/local/exit-cleanup';

// Servers, ZooKeepers and proxies this test file starts are stopped when it exits, also when
// the runner ends it at its timeout (SIGTERM).
enableExitCleanup();

let own: LocalCluster | null = null;

/** The shared cluster, or (when a file is run on its own) one started for this process. */
export async function testCluster(): Promise<ClusterInfo> {
  const env = process.env.PGRING_TEST_CLUSTER;
  if (env) return JSON.parse(env) as ClusterInfo;
  if (!own) {
    own = new LocalCluster({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-own-')), shards: 4 });
    await own.start();
    own.zk.unref();   // its servers are stopped at exit (enableExitCleanup)
  }
  return own.info();
}

export async function stopOwnCluster(): Promise<void> {
  if (own) { await own.stop(); own = null; }
}

/** psql as superuser against a port. */
export function psqlAt(port: number, sql: string, db = 'postgres'): string {
  return runAsPostgres(pgBin('psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', db, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
}

let counter = 0;
/** A fresh database name unique to this process (create it on each shard you use). */
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`.toLowerCase();
}
