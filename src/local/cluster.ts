// A whole local cluster on loopback: one ZooKeeper and N PostgreSQL servers.
// Used by `pgring demo`, by the test runner (one shared cluster per run) and by bench/.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LocalPostgres } from './postgres';
import { LocalZooKeeper } from './zookeeper';
import { createReplica, makeReplicasSynchronous } from './replica';
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
  /** streaming replicas per shard (pg_basebackup, synchronous); default 0 */
  replicas?: number;
  /** ports of the replicas, shard by shard (default: free ports) */
  replicaPorts?: number[];
}

export interface ClusterInfo {
  dir: string;
  zk: string;                  // connect string
  zkPort: number;
  pg: { name: string; port: number; dir: string }[];
  /** the pgBackRest config file when archiving is on */
  pgbackrestConfig?: string;
  /** streaming replicas: shard name, port, data directory */
  replicas?: { shard: string; port: number; dir: string }[];
}

export class LocalCluster {
  zk!: LocalZooKeeper;
  pgs: LocalPostgres[] = [];
  pgbackrestConfig: string | undefined;
  /** replicas[i]: the replicas of shard i */
  replicas: LocalPostgres[][] = [];
  constructor(readonly opts: LocalClusterOptions) {}

  async start(): Promise<ClusterInfo> {
    const n = this.opts.pgPorts?.length ?? this.opts.shards ?? 3;
    fs.mkdirSync(this.opts.dir, { recursive: true });
    chownPostgres(this.opts.dir);
    const ports = this.opts.pgPorts ?? await freePorts(n);
    const zkPort = this.opts.zkPort ?? (await freePorts(1))[0]!;
    this.zk = new LocalZooKeeper({ dir: path.join(this.opts.dir, 'zookeeper'), port: zkPort });
    const per = this.opts.replicas ?? 0;
    const dirs = ports.map((_, i) => path.join(this.opts.dir, `pg${i + 1}`));
    // Archiving must be configured before the servers start (archive_mode needs a restart).
    const conf = this.opts.archive
      ? writeLocalConfig(path.join(this.opts.dir, 'pgbackrest'), ports.map((port, i) => ({ stanza: `s${i + 1}`, dataDir: path.join(dirs[i]!, 'data'), port, socketDir: dirs[i]! })))
      : undefined;
    this.pgbackrestConfig = conf;
    this.pgs = ports.map((port, i) => new LocalPostgres({ dir: dirs[i]!, port, ssl: this.opts.ssl, replication: per > 0, extraConf: conf ? archiveSettings({ config: conf, stanza: `s${i + 1}` }) : [] }));
    const zkStarted = this.zk.start();
    zkStarted.catch(() => undefined);   // awaited below, after the servers
    try {
      // pg_ctl -w blocks synchronously; start them one after the other while ZooKeeper boots.
      for (const pg of this.pgs) { if (pg.running()) pg.stop('immediate'); pg.start(); }
      if (per > 0) await this.startReplicas(per);
      await zkStarted;
    } catch (e) {
      // A part that failed to start (ZooKeeper not installed, a port taken) must not leave the
      // parts that did start running behind the error.
      await this.stop().catch(() => undefined);
      throw e;
    }
    return this.info();
  }

  private async startReplicas(per: number): Promise<void> {
    const ports = this.opts.replicaPorts ?? await freePorts(per * this.pgs.length);
    this.replicas = this.pgs.map((pg, i) => {
      const shard = `s${i + 1}`;
      const list: LocalPostgres[] = [];
      for (let r = 0; r < per; r++) {
        list.push(createReplica(pg, { dir: path.join(this.opts.dir, `pg${i + 1}-replica${r + 1}`), port: ports[i * per + r]!, shard }));
      }
      makeReplicasSynchronous(pg, shard, list);
      return list;
    });
  }

  info(): ClusterInfo {
    return {
      dir: this.opts.dir,
      zk: this.zk.connectString,
      zkPort: this.zk.port,
      pg: this.pgs.map((pg, i) => ({ name: `s${i + 1}`, port: pg.port, dir: pg.opts.dir })),
      ...(this.pgbackrestConfig ? { pgbackrestConfig: this.pgbackrestConfig } : {}),
      replicas: this.replicas.flatMap((list, i) => list.map((r) => ({ shard: `s${i + 1}`, port: r.port, dir: r.opts.dir }))),
    };
  }

  async stop(): Promise<void> {
    // Replicas first: a primary waiting for its synchronous standby would not stop 'fast'.
    for (const list of this.replicas) for (const r of list) r.stop('fast');
    for (const pg of this.pgs) pg.stop('fast');
    await this.zk?.stop();
  }
}
