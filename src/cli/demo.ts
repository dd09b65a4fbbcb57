// `pgring demo`: a whole local cluster for newcomers — ZooKeeper on 2181, three
// PostgreSQL shards on 5433-5435 and pgring on 6432, all on 127.0.0.1 — in the
// foreground until Ctrl-C / SIGTERM, which stops everything it started.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LocalCluster } from '../local/cluster';
import { LocalCerts, makeLocalCerts } from '../local/certs';
import { chownPostgres } from '../local/proc';
import { parseConfig } from '../config/load';
import { Proxy } from '../proxy';

/** `certs`: the demo's own CA (src/local/certs.ts): its shards run with ssl = on, pgring
 *  connects to them with verify-full, and offers TLS (and SCRAM-SHA-256-PLUS) to clients. */
export function demoConfig(zk: string, pgPorts: number[], proxyPort: number, metricsPort: number, certs?: LocalCerts): Record<string, unknown> {
  return {
    ...(certs ? {
      tls: { certFile: certs.certFile, keyFile: certs.keyFile },
      serverTls: { sslmode: 'verify-full', caFile: certs.caFile },
    } : {}),
    listen: { host: '127.0.0.1', port: proxyPort },
    metrics: { host: '127.0.0.1', port: metricsPort },
    logLevel: 'info',
    // every znode under /pgring/demo carries this digest ACL: ZooKeeper clients without it can read nothing
    zookeeper: { connect: zk, cluster: 'demo', sessionTimeoutMs: 10000, auth: { scheme: 'digest', user: 'pgring', password: 'demo-zk-secret' } },
    pool: { mode: 'transaction', maxSize: 20 },
    users: [{ name: 'postgres', auth: 'trust', admin: true }],
    shards: pgPorts.map((port, i) => ({ name: `s${i + 1}`, backends: [{ host: '127.0.0.1', port, role: 'primary' }] })),
    sharding: {
      tables: [
        { name: 'pgbench_accounts', column: 'aid', type: 'integer', columns: ['aid', 'bid', 'abalance', 'filler'] },
        { name: 'pgbench_tellers', column: 'tid', type: 'integer', columns: ['tid', 'bid', 'tbalance', 'filler'] },
        { name: 'pgbench_branches', column: 'bid', type: 'integer', columns: ['bid', 'bbalance', 'filler'] },
        { name: 'pgbench_history', column: 'aid', type: 'integer', columns: ['tid', 'bid', 'aid', 'delta', 'mtime', 'filler'] },
      ],
    },
    locks: { mode: 'all' },
  };
}

export async function runDemo(dir: string, opts: { proxyPort?: number; zkPort?: number; pgPorts?: number[]; metricsPort?: number; spares?: number } = {}): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  chownPostgres(dir);
  const pgPorts = opts.pgPorts ?? [5433, 5434, 5435];
  // Spare servers (not in the ring) on the next ports, for `pgring shard add`.
  const spares = Array.from({ length: Math.max(0, opts.spares ?? 0) }, (_, i) => Math.max(...pgPorts) + 1 + i);
  const certs = makeLocalCerts(path.join(dir, 'tls'), 'pgring demo');
  const cluster = new LocalCluster({ dir, zkPort: opts.zkPort ?? 2181, pgPorts: [...pgPorts, ...spares], ssl: certs });
  let proxy: Proxy | null = null;
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log('\npgring demo: stopping');
    try { await proxy?.stop(); } catch { /* ignore */ }
    await cluster.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  console.log(`pgring demo: starting ZooKeeper and ${pgPorts.length} PostgreSQL shards in ${dir}`);
  try {
    const info = await cluster.start();
    const raw = demoConfig(info.zk, pgPorts, opts.proxyPort ?? 6432, opts.metricsPort ?? 9930, certs);
    const file = path.join(dir, 'proxy.json');
    fs.writeFileSync(file, JSON.stringify(raw, null, 2));
    proxy = new Proxy({ config: parseConfig(raw, file) });
    await proxy.start();
    const port = proxy.port;
    console.log([
      '',
      'pgring demo is running:',
      `  ZooKeeper   127.0.0.1:${info.zkPort}`,
      ...info.pg.slice(0, pgPorts.length).map((p) => `  shard ${p.name}    127.0.0.1:${p.port}`),
      `  pgring      127.0.0.1:${port}   (config: ${file})`,
      '',
      'Connect with:',
      `  psql -h 127.0.0.1 -p ${port} -U postgres postgres`,
      'TLS to the shards (verify-full, CA in tls/ca.crt) and to clients:',
      `  psql "host=127.0.0.1 port=${port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${certs.caFile}"`,
      'Admin console:',
      `  psql -h 127.0.0.1 -p ${port} -U postgres pgring`,
      'Try pgbench through the ring:',
      `  pgbench -h 127.0.0.1 -p ${port} -U postgres -i -s 3 postgres && pgbench -h 127.0.0.1 -p ${port} -U postgres -c 8 -T 10 postgres`,
      '',
      ...(spares.length ? [
        'Spare PostgreSQL servers (not in the ring yet):',
        ...spares.map((p, i) => `  s${pgPorts.length + i + 1}    127.0.0.1:${p}`),
        'Add one to the ring while pgbench runs (rows of the moving arcs are copied, then the ring flips):',
        `  node ${process.argv[1] ?? 'dist/src/cli/main.js'} shard add s${pgPorts.length + 1} --host 127.0.0.1 --port ${spares[0]} --config ${file}`,
        '',
      ] : []),
      'Ctrl-C stops everything.',
    ].join('\n'));
  } catch (e) {
    console.error(`pgring demo: ${(e as Error).message}`);
    await stop(1);
  }
}
