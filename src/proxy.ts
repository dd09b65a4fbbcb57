// The running proxy: owns the config, topology (pools), router, ring and listener,
// and wires the optional ZooKeeper cluster state, health checks, admin console and
// metrics around them.
import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Config } from './config/types';
import { loadConfig } from './config/load';
import { Topology } from './backend/topology';
import { serverTlsFor } from './backend/server-tls';
import { ClientSession, ProxyContext } from './frontend/client';
import { Router } from './router/router';
import { Ring, RingDefinition, RING_HASH_V1 } from './ring/ring';
import { RingShardMap } from './ring/shard-map';
import { createLogger, Logger } from './log';
import { Coordinator, ringDocFromConfig } from './cluster/coordinator';
import { TxnManager } from './txn/manager';
import { Recovery } from './txn/recovery';
import { FailoverController } from './cluster/failover';
import type { WriteGate } from './reshard/gate';
import { ownedSqlOf, startGate } from './reshard/proxy-gate';
import type { ShardConfig } from './config/types';
import { Operations } from './admin/ops';
import type { ReloadResult } from './admin/reload';
import { PgError, SQLSTATE } from './protocol/errors';
import { ClusterDefinition, definitionFromConfig, tableKey } from './cluster/definition';
import { closeUnix, listenUnix } from './frontend/unix-listener';

/** Ring version `version` from the shards of a config (same document `pgring ring init` publishes). */
export function ringFromConfig(cfg: Config, version = 1): RingDefinition {
  return { version, ...ringDocFromConfig(cfg) };
}

export interface ProxyOptions {
  configFile?: string; config?: Config; log?: Logger;
  /** --log-level: wins over the config's logLevel, also at reload. */
  logLevel?: string;
}

export class Proxy {
  config: Config;
  readonly log: Logger;
  readonly ctx: ProxyContext;
  private server: net.Server | null = null;
  /** listen.unixSocketDir's listener, and the port in its file name. */
  private unixServer: net.Server | null = null;
  private unixPort = 0;
  coordinator: Coordinator | null = null;
  /** Locks and two-phase commit (with ZooKeeper), and recovery of in-doubt transactions. */
  txn: TxnManager | null = null;
  recovery: Recovery | null = null;
  /** Failover and switchover of shard primaries (advanced only while this proxy is the controller). */
  failover: FailoverController | null = null;
  /** holds writes to moving keys during a resharding cut-over (src/reshard/gate.ts) */
  gate: WriteGate | null = null;
  readonly startedAt = Date.now();
  ring: Ring;
  /** Admin console, metrics, PAUSE/RESUME, reload (src/admin). */
  readonly ops: Operations;
  /** The tables routing is by: the config's without ZooKeeper, else the cluster's active definition. */
  definition: ClusterDefinition;

  constructor(readonly opts: ProxyOptions) {
    this.config = opts.config ?? loadConfig(opts.configFile!);
    this.log = opts.log ?? createLogger(this.config.logLevel);
    const topology = new Topology(this.config.shards, this.config);
    // Without shards in the config the ring comes from ZooKeeper at start.
    this.ring = new Ring(this.config.shards.length ? ringFromConfig(this.config) : { version: 0, shards: [{ name: '(none)', weight: 1 }], vnodes: 1, seed: 0, hash: RING_HASH_V1 });
    this.definition = { version: 0, ...definitionFromConfig(this.config) };
    this.ctx = {
      config: this.config,
      topology,
      router: this.makeRouter(this.definition.sharded),
      shards: new RingShardMap(this.ring, this.config.shards.length ? this.config.shards.map((s) => s.name) : ['(none)']),
      log: this.log,
      sessions: new Map(),
      paramCache: new Map(),
      routerFor: (db) => this.dbRouters.get(db),
      learnedColumns: (db, table, columns) => this.learnedColumns(db, table, columns),
      forgetColumns: (db) => this.forgetColumns(db),
      tlsContext: () => this.tlsContext(),
      admit: (s) => this.admit(s),
      // Cancel keys name this proxy; a key of another proxy of the cluster is forwarded to it.
      // (Before the proxy has its number, keys carry number 0: a cancel for them is never forwarded.)
      cancelSecret: () => this.coordinator?.cancelPeers?.secret() ?? (this.coordinator ? randomInt(1 << 21) : randomInt(0x7fffffff)),
      forwardCancel: (pid, secret) => this.coordinator?.cancelPeers?.forward(pid, secret) ?? Promise.resolve(),
    };
    this.ops = new Operations(this);
  }

  private tlsFor: Config['tls'] | null = null;
  private tlsCached: tls.SecureContext | null = null;

  /** The TLS context of the current config (files read once per config, also after a reload). */
  private tlsContext(): tls.SecureContext | null {
    const t = this.ctx.config.tls;
    if (!t) return null;
    if (this.tlsFor !== t) {
      this.tlsCached = loadTls(t);
      this.tlsFor = t;
    }
    return this.tlsCached;
  }

  /** Port of the metrics HTTP endpoint (null when metrics are disabled). */
  get metricsPort(): number | null { return this.ops.metricsPort; }

  /** Routers for databases whose sharded tables' column lists were read from the catalog. */
  private dbRouters = new Map<string, Router>();
  private dbColumns = new Map<string, Map<string, string[]>>();

  private learnedColumns(db: string, table: string, columns: string[]): void {
    let m = this.dbColumns.get(db);
    if (!m) this.dbColumns.set(db, m = new Map());
    m.set(table, columns);
    const prev = this.dbRouters.get(db);
    const next = this.dbRouter(m);
    this.dbRouters.set(db, next);
    if (prev) prev.successor = next;
  }

  /** DDL through this proxy: column lists read from a database's catalog are read again when needed. */
  private forgetColumns(db: string): void {
    if (!this.dbColumns.has(db)) return;
    this.dbColumns.delete(db);
    const prev = this.dbRouters.get(db);
    this.dbRouters.delete(db);
    if (prev) prev.successor = this.ctx.router;
  }

  private dbRouter(learned: Map<string, string[]>): Router {
    return this.makeRouter(this.definition.sharded.map((t) => (t.columns || !learned.has(t.name) ? t : { ...t, columns: learned.get(t.name)! })));
  }

  private makeRouter(tables: ClusterDefinition['sharded']): Router {
    const d = this.definition;
    return new Router({ tables, reference: d.reference, unknownTables: d.unknownTables }, {
      cacheSize: this.config.sharding.planCacheSize,
      // With ZooKeeper, a table created through the proxy becomes a reference table of the definition.
      onCreateTable: (name) => { void this.coordinator?.registerReference(name); },
      // Named statements prepared before a definition change re-plan with the new router.
      live: this.config.zookeeper !== undefined,
    });
  }

  /** Swaps in a new cluster definition (from ZooKeeper): later statements route by it. */
  applyDefinition(def: ClusterDefinition): void {
    const prevEntries = new Map(this.definition.sharded.map((t) => [tableKey(t.name), JSON.stringify(t)]));
    this.definition = def;
    // The session code reads key types and column lists of sharded tables from the config.
    this.config.sharding.tables = def.sharded;
    const old = this.ctx.router;
    this.ctx.router = this.makeRouter(def.sharded);
    old.successor = this.ctx.router;
    // A table whose entry changed (its columns changed through some proxy: a new layout count) is
    // read from the catalog again: a list learned before a DROP COLUMN would take another column
    // for the shard key of an INSERT without a column list.
    const now = new Map(def.sharded.map((t) => [tableKey(t.name), JSON.stringify(t)]));
    for (const m of this.dbColumns.values()) {
      for (const table of [...m.keys()]) if (now.get(tableKey(table)) !== prevEntries.get(tableKey(table))) m.delete(table);
    }
    for (const [db, m] of this.dbColumns) {
      const prev = this.dbRouters.get(db);
      const next = this.dbRouter(m);
      this.dbRouters.set(db, next);
      if (prev) prev.successor = next;
    }
  }

  get port(): number { return (this.server?.address() as net.AddressInfo | null)?.port ?? this.config.listen.port; }

  async start(): Promise<void> {
    await Router.init();
    this.tlsContext(); // unreadable certificate or key: fail at start, as PostgreSQL does
    for (const s of this.config.shards) for (const b of s.backends) serverTlsFor(this.config, b.host, b.port); // likewise for serverTls files
    if (this.config.zookeeper) {
      this.coordinator = new Coordinator(this.config, this.log, {
        onRing: (ring, shards) => this.applyRing(ring, shards),
        onDefinition: (def) => this.applyDefinition(def),
        onMembership: (all) => this.ctx.topology.applyMembership(all),
        onLocalHealth: (shard, host, port, healthy, error) => this.ctx.topology.setLocalHealth(shard, host, port, healthy, error),
        onLocalBeat: (rec) => this.ctx.topology.applyLocalBeat(rec.shard, rec),
        onShardPrimary: (p) => {
          this.ctx.topology.applyShardPrimary(p.shard, p);
          // A PREPARE whose answer the dead primary never sent may sit on the promoted replica
          // with nobody tracking it: this proxy's own sweep settles it by its decision record.
          // (again a little later: one still being rolled back now is in flight and skipped)
          if (p.primary) for (const ms of [0, 5000, 15000]) setTimeout(() => void this.recovery?.runPass('own'), ms).unref();
        },
      }, () => this.port, { configFile: this.opts.configFile });
      this.txn = new TxnManager(this.ctx, this.log);
      this.ctx.tx = this.txn;
    }
    // Statements wait until the cluster definition is read: routing by the file's rules meanwhile
    // could write a sharded table's row to every shard.
    let opened = () => undefined as void;
    if (this.coordinator) this.ctx.paused = new Promise<void>((r) => { opened = r; });
    // Accepted paused: the session switches the socket to reading into pgring's own buffer (socket-reader).
    this.server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    this.server.maxConnections = 100000;
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.config.listen.port, this.config.listen.host, () => { this.server!.off('error', reject); resolve(); });
    });
    const unixDir = this.config.listen.unixSocketDir;
    if (unixDir) {
      this.unixPort = this.port;
      try {
        this.unixServer = await listenUnix(unixDir, this.unixPort, (socket) => this.accept(socket, true));
      } catch (e) { await this.stop(); throw e; }
    }
    if (this.coordinator) {
      try {
        await this.coordinator.start();
        const c = this.coordinator;
        this.txn!.start(c.session, c.layout, c.id, c.fence, c.lockPeers);
        this.recovery = new Recovery(c.session, c.layout, c.id, this.config, this.ctx.topology, this.log, this.txn!);
        await this.recovery.start();
        this.failover = this.startFailover();
        this.gate = startGate(c, this.txn!, this.log, () => this.ring.version, (shards) => { for (const s of shards) this.ctx.topology.addShard(s); });
        this.txn!.gate = this.gate;
        this.ctx.ownedSql = ownedSqlOf(this.gate, () => this.ring, this.ctx.topology);
        this.ctx.followInDefinition = (f) => this.coordinator!.followInDefinition(f);
        await this.gate.start();
      } catch (e) { await this.stop(); opened(); throw e; }
      this.ctx.paused = null;
      opened();
    }
    // Statements run only once coordinator.start() has read the shard records (failover epochs,
    // recorded primaries) and liveness: a restarted proxy never writes to a fenced former primary.
    try { await this.ops.start(); } catch (e) { await this.stop(); throw e; }
    this.log.info({ host: this.config.listen.host, port: this.port, shards: this.ctx.topology.shards.map((s) => s.name), ring: this.ring.version }, 'pgring listening');
  }

  private startFailover(): FailoverController {
    const c = this.coordinator!;
    const t = this.ctx.topology;
    const f = new FailoverController({
      session: c.session, layout: c.layout, id: c.id, config: this.config, log: this.log,
      isLeader: () => this.recovery?.isLeader ?? false,
      shards: () => t.shards.map((s, i) => ({ name: s.name, backends: (t.backends[i] ?? []).map((b) => ({ addr: `${b.host}:${b.port}`, role: b.role })) })),
      members: () => c.membership.all(),
      recover: (target) => this.recovery!.runPass('all', target),
      designated: (name) => t.designated[t.shardIndex(name)],
    });
    f.start();
    return f;
  }

  private accept(socket: net.Socket, unixSocket = false): void {
    socket.on('error', () => { /* handled by the session */ });
    const session = new ClientSession(socket, this.ctx, { unixSocket }); // lives through its socket's listeners
    socket.once('close', () => this.admitted.delete(session));
  }

  /** Sessions past their startup packet (what maxClientConnections counts). */
  private readonly admitted = new Set<ClientSession>();

  /** maxClientConnections, checked once a startup packet names the database (cancel requests
   *  and SSL negotiation are not counted; neither is the admin console, so an operator can
   *  always get in), refused as PostgreSQL refuses past max_connections. */
  private admit(s: ClientSession): boolean {
    if (s.database !== 'pgring') {
      if (this.admitted.size >= this.ctx.config.maxClientConnections) {
        this.log.warn({ max: this.ctx.config.maxClientConnections }, 'client refused: maxClientConnections reached');
        s.fatal(PgError.fatal(SQLSTATE.TooManyConnections, 'sorry, too many clients already'));
        return false;
      }
      this.admitted.add(s);
    }
    return true;
  }

  /** Swaps in a new ring (from ZooKeeper): later statements route with it. */
  applyRing(def: RingDefinition, shards: ShardConfig[]): void {
    for (const s of shards) this.ctx.topology.addShard(s);
    const ring = new Ring(def);
    this.ctx.shards = new RingShardMap(ring, this.ctx.topology.shards.map((s) => s.name));
    this.ring = ring;
    this.gate?.ringChanged();
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server?.listening ? this.server.close(() => resolve()) : resolve()));
    await closeUnix(this.unixServer, this.config.listen.unixSocketDir ?? '', this.unixPort);
    this.unixServer = null;
    await this.ops.stop();
    this.failover?.stop();
    await this.recovery?.stop().catch(() => undefined);
    this.gate?.stop();
    await this.txn?.stop().catch(() => undefined);
    await this.coordinator?.stop().catch(() => undefined);
    for (const s of [...this.ctx.sessions.values()]) s.close();
    this.ctx.topology.close();
  }

  /** Closes the listener immediately (new clients refused) and waits for clients to finish. */
  async drain(graceMs: number): Promise<void> {
    this.ctx.draining = true;
    this.ops.pause.resume();
    this.server?.close();
    this.unixServer?.close();
    const deadline = Date.now() + graceMs;
    // Busy: inside a transaction, a statement on a server, or waiting for a server connection.
    const busy = (s: ClientSession) => !s.admin && (s.txStatus !== 'I' || s.waitingSince > 0 || s.attachedLinks.some((l) => l.queue.length > 0 || l.conn.status !== 'I'));
    for (;;) {
      // Clients between transactions are told why they are disconnected, as PostgreSQL does.
      for (const s of [...this.ctx.sessions.values()]) if (!busy(s)) s.fatal(PgError.fatal(SQLSTATE.AdminShutdown, 'terminating connection: pgring is shutting down'));
      if (this.ctx.sessions.size === 0 || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const s of [...this.ctx.sessions.values()]) {
      s.fatal(PgError.fatal(SQLSTATE.AdminShutdown, `terminating connection: pgring shut down after shutdownGraceMs (${graceMs} ms) with the transaction still open`));
    }
    await this.stop();
  }

  /** Re-reads the config file (SIGHUP, RELOAD): throws a PgError and keeps the running config when it is invalid. */
  reload(): ReloadResult { return this.ops.reload(); }
}

/** Reads config.tls into a secure context; names the file and the reason when that fails. */
export function loadTls(t: NonNullable<Config['tls']>): tls.SecureContext {
  const read = (file: string, what: string): Buffer => {
    try { return fs.readFileSync(file); } catch (e) { throw new Error(`tls.${what}: cannot read ${file}: ${(e as Error).message}`); }
  };
  const cert = read(t.certFile, 'certFile');
  const key = read(t.keyFile, 'keyFile');
  try { return tls.createSecureContext({ cert, key }); } catch (e) { throw new Error(`tls: invalid certificate or key (${t.certFile}, ${t.keyFile}): ${(e as Error).message}`); }
}
