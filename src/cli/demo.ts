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
import * as pgbackrest from '../backup/pgbackrest';

/** `certs`: the demo's own CA (src/local/certs.ts): its shards run with ssl = on, pgring
 *  connects to them with verify-full, and offers TLS (and SCRAM-SHA-256-PLUS) to clients. */
export function demoConfig(zk: string, pgPorts: number[], proxyPort: number, metricsPort: number, certs?: LocalCerts, replicaPorts: number[][] = [], unixSocketDir?: string): Record<string, unknown> {
  return {
    ...(certs ? {
      tls: { certFile: certs.certFile, keyFile: certs.keyFile },
      serverTls: { sslmode: 'verify-full', caFile: certs.caFile },
    } : {}),
    listen: { host: '127.0.0.1', port: proxyPort, ...(unixSocketDir ? { unixSocketDir } : {}) },
    metrics: { host: '127.0.0.1', port: metricsPort },
    logLevel: 'info',
    // every znode under /pgring/demo carries this digest ACL: ZooKeeper clients without it can read nothing
    zookeeper: { connect: zk, cluster: 'demo', sessionTimeoutMs: 10000, auth: { scheme: 'digest', user: 'pgring', password: 'demo-zk-secret' } },
    pool: { mode: 'transaction', maxSize: 20 },
    users: [{ name: 'postgres', auth: 'trust', admin: true }],
    shards: pgPorts.map((port, i) => ({
      name: `s${i + 1}`,
      backends: [{ host: '127.0.0.1', port, role: 'primary' }, ...(replicaPorts[i] ?? []).map((p) => ({ host: '127.0.0.1', port: p, role: 'replica' }))],
    })),
    sharding: {
      tables: [
        { name: 'pgbench_accounts', column: 'aid', type: 'integer', columns: ['aid', 'bid', 'abalance', 'filler'] },
        { name: 'pgbench_tellers', column: 'tid', type: 'integer', columns: ['tid', 'bid', 'tbalance', 'filler'] },
        { name: 'pgbench_branches', column: 'bid', type: 'integer', columns: ['bid', 'bbalance', 'filler'] },
        { name: 'pgbench_history', column: 'aid', type: 'integer', columns: ['tid', 'bid', 'aid', 'delta', 'mtime', 'filler'] },
      ],
    },
    locks: { mode: 'all' },
    // with replicas: automatic failover of a shard whose primary is gone for 5 s
    ...(replicaPorts.some((r) => r.length) ? { failover: { enabled: true, graceMs: 5000 } } : {}),
  };
}

export interface DemoOptions { fresh?: boolean; proxyPort?: number; zkPort?: number; pgPorts?: number[]; metricsPort?: number; replicas?: number; replicaBasePort?: number; replicaPorts?: number[]; spares?: number }

/** Replica ports per shard: base, base+1, ... shard by shard (5443, 5444, 5445 for 3 shards x 1). */
export function demoReplicaPorts(shards: number, per: number, base: number): number[][] {
  return Array.from({ length: shards }, (_, i) => Array.from({ length: per }, (_, r) => base + i * per + r));
}

/** A postmaster still running from one of the demo directory's data directories, or null. */
function runningServer(dir: string): string | null {
  let entries: string[] = [];
  try { entries = fs.readdirSync(dir); } catch { return null; }
  for (const e of entries) {
    const pidFile = path.join(dir, e, 'data', 'postmaster.pid');
    let pid = 0;
    try { pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]); } catch { continue; }
    try { if (pid > 0) { process.kill(pid, 0); return path.join(dir, e, 'data'); } } catch { /* gone */ }
  }
  return null;
}

/** --fresh: the directory of an earlier demo is removed (only one that looks like a demo's and runs nothing). */
export function startOver(dir: string): void {
  if (!fs.existsSync(dir)) return;
  const looksLikeDemo = ['proxy.json', 'zookeeper', 'pg1'].some((f) => fs.existsSync(path.join(dir, f)));
  if (fs.readdirSync(dir).length && !looksLikeDemo) {
    throw new Error(`pgring demo: --fresh would delete ${dir}, which does not look like a demo directory; remove it yourself`);
  }
  const running = runningServer(dir);
  if (running) throw new Error(`pgring demo: a PostgreSQL server still runs from ${running} (another demo?); stop it before --fresh`);
  fs.rmSync(dir, { recursive: true, force: true });
}

export async function runDemo(dir: string, opts: DemoOptions = {}): Promise<void> {
  if (opts.fresh) startOver(dir);
  const reusing = fs.existsSync(path.join(dir, 'zookeeper'));
  if (reusing) {
    // Its ZooKeeper state wins over this run's options: a shard whose primary moved to a replica
    // in that run (failover, switchover) stays there, so starting without --replicas leaves it down.
    console.log(`pgring demo: reusing ${dir} from an earlier run (its data, and the cluster state in its ZooKeeper, including the primary a failover or switchover chose); --fresh starts over`);
  }
  fs.mkdirSync(dir, { recursive: true });
  chownPostgres(dir);
  const pgPorts = opts.pgPorts ?? [5433, 5434, 5435];
  const per = opts.replicas ?? 0;
  const replicaPorts = opts.replicaPorts?.length
    ? pgPorts.map((_, i) => opts.replicaPorts!.slice(i * per, (i + 1) * per))
    : demoReplicaPorts(pgPorts.length, per, opts.replicaBasePort ?? 5443);
  // Spare servers (not in the ring) on the next ports, for `pgring shard add`.
  const spares = Array.from({ length: Math.max(0, opts.spares ?? 0) }, (_, i) => Math.max(...pgPorts) + 1 + i);
  // WAL archiving into a pgBackRest repository under <dir>/pgbackrest: `pgring backup init` works as is.
  const certs = makeLocalCerts(path.join(dir, 'tls'), 'pgring demo');
  if (spares.length && per) throw new Error('pgring demo: --spares and --replicas cannot be combined yet (a spare would need replicas of its own)');
  const cluster = new LocalCluster({ dir, zkPort: opts.zkPort ?? 2181, pgPorts: [...pgPorts, ...spares], ssl: certs, archive: true, replicas: per, replicaPorts: replicaPorts.flat() });
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
  console.log(`pgring demo: starting ZooKeeper and ${pgPorts.length} PostgreSQL shards${per ? ` with ${per} synchronous streaming replica(s) each` : ''} in ${dir}`);
  try {
    const info = await cluster.start();
    // The stanzas the archive_command pushes to exist from the start: without them every WAL
    // segment fails to archive, each server logs the failure every few seconds and keeps all its
    // WAL until `pgring backup init` runs (idempotent: init creates them again as it must).
    if (cluster.pgbackrestConfig) {
      const config = cluster.pgbackrestConfig;
      await Promise.all([...pgPorts, ...spares].map((_, i) => pgbackrest.run({ config, stanza: `s${i + 1}` }, 'stanza-create', [], 120000)));
    }
    // pgring's Unix-domain socket (psql -h <dir>/socket), as PostgreSQL's unix_socket_directories.
    const socketDir = path.join(dir, 'socket');
    fs.mkdirSync(socketDir, { recursive: true });
    const raw = demoConfig(info.zk, pgPorts, opts.proxyPort ?? 6432, opts.metricsPort ?? 9930, certs, replicaPorts, socketDir);
    // The pgbench tables seed the cluster definition of a new demo. Reused, the definition in its
    // ZooKeeper is the truth (tables sharded since with `pgring table shard`): the file states none.
    if (reusing) delete raw.sharding;
    const file = path.join(dir, 'proxy.json');
    fs.writeFileSync(file, JSON.stringify(raw, null, 2));
    proxy = new Proxy({ config: parseConfig(raw, file) });
    await proxy.start();
    const port = proxy.port;
    console.log([
      '',
      'pgring demo is running:',
      `  ZooKeeper   127.0.0.1:${info.zkPort}`,
      ...info.pg.slice(0, pgPorts.length).map((p) => `  shard ${p.name}    127.0.0.1:${p.port}${per ? '   (primary)' : ''}`),
      ...(info.replicas ?? []).map((r) => `  replica ${r.shard}  127.0.0.1:${r.port}   (streaming, synchronous)`),
      `  pgring      127.0.0.1:${port}   (config: ${file})`,
      '',
      'Connect with:',
      `  psql -h 127.0.0.1 -p ${port} -U postgres postgres`,
      'TLS to the shards (verify-full, CA in tls/ca.crt) and to clients:',
      `  psql "host=127.0.0.1 port=${port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${certs.caFile}"`,
      `  psql -h ${socketDir} -p ${port} -U postgres postgres   (Unix-domain socket)`,
      'Admin console:',
      `  psql -h 127.0.0.1 -p ${port} -U postgres pgring`,
      'Try pgbench through the ring:',
      `  pgbench -h 127.0.0.1 -p ${port} -U postgres -i -s 3 postgres && pgbench -h 127.0.0.1 -p ${port} -U postgres -c 8 -T 10 postgres`,
      'Backups (WAL is archived with pgBackRest into ' + path.join(dir, 'pgbackrest') + '):',
      `  pgring backup init --config ${file} && pgring backup create b1 --config ${file} && pgring backup list --config ${file}`,
      '',
      ...(per ? ['Reads from the replicas (per session; or "reads" in the config, or /* pgring: reads=replica */):', `  PGOPTIONS='-c pgring.reads=replica' pgbench -h 127.0.0.1 -p ${port} -U postgres -S -c 8 -T 10 postgres`, 'Replay lag and roles:', `  psql -h 127.0.0.1 -p ${port} -U postgres pgring -c 'SHOW BACKENDS'`, ''] : []),
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
