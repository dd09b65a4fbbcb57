// Set-up shared by the tests that compare pgring with plain PostgreSQL on the same server:
// two fresh databases on the first test server (one used directly, one through pgring) and
// one pgring (one shard) per pool config given.
import { after, before } from 'node:test';
import type { ClusterInfo } from '../../src/local/cluster';
import { psqlAt, testCluster, uniqueName } from './env';
import { baseConfig, createDatabase, RawConfig, RunningProxy, startProxy } from './proxy';

export interface Compared { cluster: ClusterInfo; serverPort: number; directDb: string; proxiedDb: string; proxies: RunningProxy[] }

/** Registers the before/after hooks; `ready` gets the set-up at the end of `before`. */
export function comparedDatabases(prefix: string, proxyConfigs: RawConfig[], ready: (c: Compared) => void): Compared {
  const c = { proxies: [] as RunningProxy[] } as Compared;
  before(async () => {
    c.cluster = await testCluster();
    c.serverPort = c.cluster.pg[0]!.port;
    c.directDb = uniqueName(`${prefix}_direct`);
    c.proxiedDb = uniqueName(`${prefix}_proxied`);
    createDatabase([c.serverPort], c.directDb);
    createDatabase([c.serverPort], c.proxiedDb);
    for (const extra of proxyConfigs) c.proxies.push(await startProxy(await baseConfig(c.cluster, 1, extra)));
    ready(c);
  });
  after(async () => {
    for (const p of c.proxies) await p.stop();
    for (const d of [c.directDb, c.proxiedDb]) if (d) psqlAt(c.serverPort, `DROP DATABASE IF EXISTS ${d} WITH (FORCE)`);
  });
  return c;
}
