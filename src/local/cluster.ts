// A whole local cluster on loopback: one ZooKeeper and N PostgreSQL servers.
// Used by `pgring demo`, by the test runner (one shared cluster per run) and by bench/.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LocalPostgres } from './postgres';
import { LocalZooKeeper } from './zookeeper';
import { chownPostgres, freePorts } from './proc';
import { archiveSettings, writeLocalConfig } from '../backup/pgbackrest';

export interface LocalClusterOptions {
  dir: string;
  zkPort?: number;        // default: a free port
  pgPorts?: number[];     // default: `shards` free ports
  shards?: number;
  /** Servers run with `ssl = on` and this certificate (src/local/certs.ts). */
  ssl?: { certFile: string; keyFile: string };
  /** WAL archiving into a pgBackRest repository under <dir>/pgbackrest (one stanza per server, s1..sN) */
  archive?: boolean;
}

export interface ClusterInfo {
  dir: string;
  zk: string;                  // connect string
  zkPort: number;
  pg: { name: string; port: number; dir: string }[];
  /** the pgBackRest config file when archiving is on */
  pgbackrestConfig?: string;
}

export class LocalCluster {
  zk!: LocalZooKeeper;
  pgs: LocalPostgres[] = [];
  pgbackrestConfig: string | undefined;
  constructor(readonly opts: LocalClusterOptions) {}

  async start(): Promise<ClusterInfo> {
    const n = this.opts.pgPorts?.length ?? this.opts.shards ?? 3;
    fs.mkdirSync(this.opts.dir, { recursive: true });
    chownPostgres(this.opts.dir);
    const ports = this.opts.pgPorts ?? await freePorts(n);
    const zkPort = this.opts.zkPort ?? (await freePorts(1))[0]!;
    this.zk = new LocalZooKeeper({ dir: path.join(this.opts.dir, 'zookeeper'), port: zkPort });
    const dirs = ports.map((_, i) => path.join(this.opts.dir, `pg${i + 1}`));
    // Archiving must be configured before the servers start (archive_mode needs a restart).
    const conf = this.opts.archive
      ? writeLocalConfig(path.join(this.opts.dir, 'pgbackrest'), ports.map((port, i) => ({ stanza: `s${i + 1}`, dataDir: path.join(dirs[i]!, 'data'), port, socketDir: dirs[i]! })))
      : undefined;
    this.pgbackrestConfig = conf;
    this.pgs = ports.map((port, i) => new LocalPostgres({ dir: dirs[i]!, port, ssl: this.opts.ssl, extraConf: conf ? archiveSettings({ config: conf, stanza: `s${i + 1}` }) : [] }));
    const zkStarted = this.zk.start();
    // pg_ctl -w blocks synchronously; start them one after the other while ZooKeeper boots.
    for (const pg of this.pgs) { if (pg.running()) pg.stop('immediate'); pg.start(); }
    await zkStarted;
    return this.info();
  }

  info(): ClusterInfo {
    return {
      dir: this.opts.dir,
      zk: this.zk.connectString,
      zkPort: this.zk.port,
      pg: this.pgs.map((pg, i) => ({ name: `s${i + 1}`, port: pg.port, dir: pg.opts.dir })),
      ...(this.pgbackrestConfig ? { pgbackrestConfig: this.pgbackrestConfig } : {}),
    };
  }

  async stop(): Promise<void> {
    for (const pg of this.pgs) pg.stop('fast');
    await this.zk?.stop();
  }
}
