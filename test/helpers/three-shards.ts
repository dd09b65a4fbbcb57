// Three shards with the tables `items` (sharded by id) and `codes` (reference) in a fresh
// database, behind two in-process proxies: one with ZooKeeper (two-phase commit), one without.
// Shared by the tests of statements that run on several shards (atomic-statements, reference-writes).
import pg from 'pg';
import { testCluster, uniqueName } from './env';
import { baseConfig, createDatabase, dropDatabase, RunningProxy, startProxy } from './proxy';
import type { ClusterInfo } from '../../src/local/cluster';
import type { ShardedTableConfig } from '../../src/config/types';

export interface ThreeShards {
  cluster: ClusterInfo; ports: number[]; db: string; withZk: RunningProxy; noZk: RunningProxy;
  /** per-shard values of `sql` (first column of the first row), read on each shard directly */
  onShards(sql: string): Promise<string[]>;
  /** runs `sql` on each shard directly */
  onEach(sql: string): Promise<void>;
  stop(): Promise<void>;
}

export async function threeShards(name: string, tables: ShardedTableConfig[]): Promise<ThreeShards> {
  const cluster = await testCluster();
  const ports = cluster.pg.slice(0, 3).map((p) => p.port);
  const db = uniqueName(name);
  createDatabase(ports, db);
  const direct = async <T>(port: number, fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: db });
    await c.connect();
    try { return await fn(c); } finally { await c.end(); }
  };
  for (const p of ports) await direct(p, (c) => c.query('CREATE TABLE items (id int PRIMARY KEY, note text); CREATE TABLE codes (code int PRIMARY KEY, label text)'));
  const sharding = { tables, referenceTables: ['codes'] };
  const withZk = await startProxy(await baseConfig(cluster, 3, { sharding, zookeeper: { connect: cluster.zk, cluster: uniqueName(name), sessionTimeoutMs: 4000 } }));
  const noZk = await startProxy(await baseConfig(cluster, 3, { sharding }));
  return {
    cluster, ports, db, withZk, noZk,
    onShards: (sql) => Promise.all(ports.map((port) => direct(port, async (c) => String(Object.values((await c.query(sql)).rows[0] ?? {})[0])))),
    onEach: async (sql) => { for (const port of ports) await direct(port, (c) => c.query(sql)); },
    stop: async () => { await withZk.stop(); await noZk.stop(); dropDatabase(ports, db); },
  };
}
