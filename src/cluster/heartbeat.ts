// Health-checks one PostgreSQL backend and keeps its ephemeral liveness znode
// backends/<shard>/<host:port> up to date (healthy=false when the check fails: the node stays
// and marks the backend down; it vanishes with our session or on stop()).
import { EventEmitter } from 'node:events';
import { Client } from 'pg';
import { Layout } from './layout';
import { BackendRecord, BackendRole, EphemeralNode, backendNode } from './registry';
import { ClusterLogger, ZkSession } from './session';

export interface BackendHeartbeatOptions {
  session: ZkSession;
  layout: Layout;
  shard: string;
  host: string;
  port: number;
  /** role reported until the first successful check (then pg_is_in_recovery() decides); default 'primary' */
  role?: BackendRole;
  intervalMs?: number;       // default 1000
  timeoutMs?: number;        // connect + statement timeout, default 2000
  /** consecutive failed checks (timeouts) before a healthy backend is marked down; default 3 */
  failureThreshold?: number;
  user?: string;             // default 'postgres'
  database?: string;         // default 'postgres'
  password?: string;
  /** TLS options of the `pg` driver (serverTls of the config); undefined: plain. */
  ssl?: import('node:tls').ConnectionOptions;
  logger?: ClusterLogger;
}

interface CheckRow { r: boolean; lsn: string | null; recv: string | null; lag_ms: string | null }

// Role, WAL position and, on a replica, what it received and how far its replay is behind (0
// when it has replayed all it received: an idle primary makes no replay lag).
const CHECK_SQL = `SELECT pg_is_in_recovery() AS r,
  (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
  pg_last_wal_receive_lsn()::text AS recv,
  CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
       ELSE (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::int8 END AS lag_ms`;

/**
 * Every intervalMs runs `SELECT pg_is_in_recovery()` on its own connection (re-opened after a
 * failure) and writes {host, port, shard, role, healthy, checkedAt, error?}.
 * Events: 'beat' (record), 'up' (record), 'down' (record) on transitions.
 */
export class BackendHeartbeat extends EventEmitter {
  readonly node: EphemeralNode<BackendRecord>;
  private client: Client | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = true;
  private lastHealthy: boolean | null = null;
  private role: BackendRole;
  private readonly logger: ClusterLogger;

  constructor(readonly opts: BackendHeartbeatOptions) {
    super();
    this.role = opts.role ?? 'primary';
    this.logger = opts.logger ?? opts.session.logger;
    this.node = backendNode(opts.session, opts.layout, {
      host: opts.host, port: opts.port, shard: opts.shard, role: this.role,
      healthy: false, checkedAt: Date.now(), error: 'not checked yet',
    });
  }

  get record(): BackendRecord { return this.node.data; }

  /** Runs the first check, writes the node (waiting for ZooKeeper), then beats every intervalMs. */
  private failures = 0;

  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    await this.beat();
    await this.node.start();
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => { void this.beat().finally(() => this.schedule()); }, this.opts.intervalMs ?? 1000);
  }

  /** One check + write (exposed for tests and for `pgring agent --once`). */
  async beat(): Promise<BackendRecord> {
    if (this.running) return this.node.data;
    this.running = true;
    try {
      let rec: BackendRecord;
      try {
        const sampledAt = Date.now();
        const st = await this.check();
        this.role = st.r ? 'replica' : 'primary';
        rec = {
          host: this.opts.host, port: this.opts.port, shard: this.opts.shard, role: this.role, healthy: true, checkedAt: Date.now(), sampledAt,
          ...(st.lsn ? { lsn: st.lsn } : {}), ...(st.recv ? { receiveLsn: st.recv } : {}), ...(st.r ? { lagMs: st.lag_ms === null ? null : Number(st.lag_ms) } : {}),
        };
        this.failures = 0;
      } catch (e) {
        this.dropClient();
        this.failures++;
        const err = e as Error & { code?: string };
        // A refused connection or a server that says it is shutting down is down now; a slow
        // answer (timeout under load) only after `failureThreshold` misses in a row.
        const definite = /ECONNREFUSED|EHOSTUNREACH|ENOENT/.test(`${err.code ?? ''} ${err.message}`) || /^57P0/.test(err.code ?? '');
        if (!definite && this.lastHealthy === true && this.failures < (this.opts.failureThreshold ?? 3)) return this.node.data;
        rec = { host: this.opts.host, port: this.opts.port, shard: this.opts.shard, role: this.role, healthy: false, checkedAt: Date.now(), error: err.message || String(e) };
      }
      if (this.stopped) return rec;
      this.node.update(rec);
      this.emit('beat', rec);
      if (rec.healthy !== this.lastHealthy) {
        if (this.lastHealthy !== null || !rec.healthy) {
          this.logger.warn({ shard: rec.shard, backend: `${rec.host}:${rec.port}`, healthy: rec.healthy, error: rec.error }, rec.healthy ? 'backend is up' : 'backend is down');
        }
        this.lastHealthy = rec.healthy;
        this.emit(rec.healthy ? 'up' : 'down', rec);
      }
      return rec;
    } finally {
      this.running = false;
    }
  }

  private async check(): Promise<CheckRow> {
    const timeout = this.opts.timeoutMs ?? 2000;
    if (!this.client) {
      const c = new Client({
        host: this.opts.host, port: this.opts.port, user: this.opts.user ?? 'postgres',
        database: this.opts.database ?? 'postgres', password: this.opts.password,
        connectionTimeoutMillis: timeout, statement_timeout: timeout, query_timeout: timeout,
        application_name: 'pgring-heartbeat', ssl: this.opts.ssl,
      });
      c.on('error', () => { if (this.client === c) this.dropClient(); });
      this.client = c;
      try { await c.connect(); } catch (e) { this.dropClient(); throw e; }
    }
    const r = await this.client.query<CheckRow>(CHECK_SQL);
    const row = r.rows[0];
    if (!row) throw new Error('health check returned no row');
    return row;
  }

  private dropClient(): void {
    const c = this.client;
    this.client = null;
    if (c) { c.end().catch(() => { /* broken anyway */ }); }
  }

  /** Stops beating and deletes the liveness node. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.dropClient();
    await this.node.stop();
  }
}
