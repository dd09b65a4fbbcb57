// Prometheus metrics (prom-client) and the /metrics + /healthz HTTP endpoint.
//
// One Registry per Proxy (never the global one), so several proxies can run in one
// process (tests). Hot-path hooks (query, transaction, error: called by client
// sessions through ctx.metrics) only bump numbers in preallocated per-shard typed
// arrays: no label objects, no hashing, no allocation per call. (prom-client's own
// `labels(x).inc()` children still build a label hash on every call.) These
// accumulators are exposed as prom-client custom metrics, read at scrape time.
// Everything that is state rather than events (connections, pools, ring, ZooKeeper)
// is a Gauge whose collect() reads the live objects when scraped.
import * as http from 'node:http';
import type * as net from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { SessionMetrics } from './frontend/client';
import type { Proxy } from './proxy';

/** Hooks for the transaction layer (locks, two-phase commit): `(ctx.metrics as Partial<TxMetrics>)?.lockWait?.(us)`. */
export interface TxMetrics {
  /** Time a transaction waited for a lock (acquired or not), in microseconds. */
  lockWait(us: number): void;
  /** Time a lock was held (acquire to release), in microseconds. */
  lockHeld(us: number): void;
  /** A lock was not acquired within locks.timeoutMs (40P01). */
  lockTimeout(): void;
  /** A multi-shard commit finished: 'committed' | 'aborted' | 'failed'. */
  twoPhaseCommit(outcome: string): void;
  /** An in-doubt transaction (of this or a dead proxy) was resolved: 'committed' | 'rolled_back' | 'failed'. */
  recovery(outcome: string): void;
}

const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

type MetricValue = { labels: Record<string, string | number>; value: number; metricName?: string };

/** A histogram over seconds with one series per index (shard), kept in flat arrays. */
class IndexedHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private counts: Float64Array[] = [];
  private sums: number[] = [];
  private totals: number[] = [];
  constructor(readonly name: string, readonly help: string, private readonly label: string | null,
    private readonly labelOf: (i: number) => string, private readonly bounds: number[] = DURATION_BUCKETS) {}

  observe(i: number, seconds: number): void {
    let c = this.counts[i];
    if (c === undefined) c = this.grow(i);
    const b = this.bounds;
    let k = 0;
    while (k < b.length && seconds > b[k]!) k++;
    c[k]!++;
    this.sums[i]! += seconds;
    this.totals[i]!++;
  }

  count(i: number): number { return this.totals[i] ?? 0; }
  indexes(): number[] { const out: number[] = []; for (let i = 0; i < this.counts.length; i++) if (this.counts[i]) out.push(i); return out; }

  private grow(i: number): Float64Array {
    const c = new Float64Array(this.bounds.length + 1);
    this.counts[i] = c;
    this.sums[i] = 0;
    this.totals[i] = 0;
    return c;
  }

  get(): { name: string; help: string; type: string; values: MetricValue[]; aggregator: string } {
    const values: MetricValue[] = [];
    for (const i of this.indexes()) {
      const c = this.counts[i]!;
      const base: Record<string, string> = this.label ? { [this.label]: this.labelOf(i) } : {};
      let acc = 0;
      for (let k = 0; k < this.bounds.length; k++) {
        acc += c[k]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...base, le: this.bounds[k]! }, value: acc });
      }
      acc += c[this.bounds.length]!;
      values.push({ metricName: `${this.name}_bucket`, labels: { ...base, le: '+Inf' }, value: acc });
      values.push({ metricName: `${this.name}_sum`, labels: base, value: this.sums[i]! });
      values.push({ metricName: `${this.name}_count`, labels: base, value: this.totals[i]! });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

/** A counter (or gauge) read at scrape time from a function (e.g. a histogram's count per shard). */
class DerivedCounter {
  readonly aggregator = 'sum';
  constructor(readonly name: string, readonly help: string, private readonly read: () => MetricValue[], readonly type: 'counter' | 'gauge' = 'counter') {}
  get() { return { name: this.name, help: this.help, type: this.type, values: this.read(), aggregator: this.aggregator }; }
}

export class ProxyMetrics implements SessionMetrics, TxMetrics {
  readonly registry = new Registry();
  private readonly queries: IndexedHistogram;
  private readonly xacts: IndexedHistogram;
  private readonly lockWaits: IndexedHistogram;
  private readonly lockHolds: IndexedHistogram;
  private readonly errorsByClass = new Map<string, number>();
  private lockTimeouts = 0;
  private readonly twoPc = new Map<string, number>();
  private readonly recoveries = new Map<string, number>();
  private readonly reloads = new Map<string, number>();
  private bytesSeen = new Map<string, { rx: number; tx: number }>();
  private server: http.Server | null = null;

  constructor(private readonly proxy: Proxy) {
    const reg = this.registry;
    const shardName = (i: number) => this.proxy.ctx.topology.shards[i]?.name ?? String(i);
    collectDefaultMetrics({ register: reg, eventLoopMonitoringPrecision: 10 });

    this.queries = new IndexedHistogram('pgring_query_duration_seconds', 'Statements forwarded to a shard, by duration (first message to completion)', 'shard', shardName);
    this.xacts = new IndexedHistogram('pgring_transaction_duration_seconds', 'Server-side transactions per shard (link acquired to released), by duration', 'shard', shardName);
    this.lockWaits = new IndexedHistogram('pgring_lock_wait_seconds', 'Time write transactions waited for ZooKeeper locks', null, () => '');
    this.lockHolds = new IndexedHistogram('pgring_lock_hold_seconds', 'Time ZooKeeper locks were held', null, () => '');
    for (const h of [this.queries, this.xacts, this.lockWaits, this.lockHolds]) reg.registerMetric(h as never);

    this.registerCounters(shardName);
    this.registerPoolGauges();
    this.registerTopologyGauges();
    this.registerStateGauges();
  }

  /** Counters derived from the histograms and the maps the hot path and the transaction layer update. */
  private registerCounters(shardName: (i: number) => string): void {
    const reg = this.registry;
    const perShard = (h: IndexedHistogram) => () => h.indexes().map((i) => ({ labels: { shard: shardName(i) }, value: h.count(i) }));
    const fromMap = (m: Map<string, number>, label: string) => () => [...m].map(([k, v]) => ({ labels: { [label]: k }, value: v }));
    reg.registerMetric(new DerivedCounter('pgring_queries_total', 'Statements forwarded to each shard', perShard(this.queries)) as never);
    reg.registerMetric(new DerivedCounter('pgring_transactions_total', 'Server-side transactions completed on each shard', perShard(this.xacts)) as never);
    reg.registerMetric(new DerivedCounter('pgring_errors_total', 'Errors sent to clients, by SQLSTATE class (first two characters)', fromMap(this.errorsByClass, 'class')) as never);
    reg.registerMetric(new DerivedCounter('pgring_lock_timeouts_total', 'Locks not acquired within locks.timeoutMs (40P01)', () => [{ labels: {}, value: this.lockTimeouts }]) as never);
    reg.registerMetric(new DerivedCounter('pgring_two_phase_commits_total', 'Multi-shard commits (PREPARE TRANSACTION / COMMIT PREPARED), by outcome', fromMap(this.twoPc, 'outcome')) as never);
    reg.registerMetric(new DerivedCounter('pgring_two_phase_recoveries_total', 'In-doubt transactions resolved, by outcome', fromMap(this.recoveries, 'outcome')) as never);
    reg.registerMetric(new DerivedCounter('pgring_config_reloads_total', 'Config reloads (SIGHUP / RELOAD), by result', fromMap(this.reloads, 'result')) as never);
  }

  /** Client connections and pools: read from the sessions and pools at scrape time. */
  private registerPoolGauges(): void {
    const reg = this.registry;
    const proxyRef = this.proxy;
    const poolLabels = ['shard', 'backend', 'database', 'user'] as const;
    new Gauge({
      name: 'pgring_client_connections', help: 'Client connections by database, user and state (active: holds a server connection; waiting: queued for one; idle)',
      labelNames: ['database', 'user', 'state'], registers: [reg],
      collect() {
        this.reset();
        const n = new Map<string, { d: string; u: string; s: string; v: number }>();
        for (const s of proxyRef.ctx.sessions.values()) {
          const st = s.admin ? 'admin' : s.waitingSince > 0 ? 'waiting' : s.attachedLinks.length ? 'active' : 'idle';
          const k = `${s.database}\0${s.user}\0${st}`;
          const e = n.get(k);
          if (e) e.v++; else n.set(k, { d: s.database, u: s.user, s: st, v: 1 });
        }
        for (const e of n.values()) this.set({ database: e.d, user: e.u, state: e.s }, e.v);
      },
    });
    new Gauge({
      name: 'pgring_server_connections', help: 'Server connections per pool and state (active: linked to a client; idle; connecting)',
      labelNames: [...poolLabels, 'state'], registers: [reg],
      collect() {
        this.reset();
        for (const p of proxyRef.ctx.topology.allPools()) {
          const s = p.snapshot();
          const l = { shard: p.target.shardName, backend: `${p.target.host}:${p.target.port}`, database: p.cred.database, user: p.cred.user };
          this.set({ ...l, state: 'active' }, s.active);
          this.set({ ...l, state: 'idle' }, s.idle);
          this.set({ ...l, state: 'connecting' }, s.connecting);
        }
      },
    });
    new Gauge({
      name: 'pgring_pool_waiting_clients', help: 'Clients queued for a server connection, per pool',
      labelNames: [...poolLabels], registers: [reg],
      collect() {
        this.reset();
        for (const p of proxyRef.ctx.topology.allPools()) {
          this.set({ shard: p.target.shardName, backend: `${p.target.host}:${p.target.port}`, database: p.cred.database, user: p.cred.user }, p.snapshot().waiting);
        }
      },
    });
    new Gauge({
      name: 'pgring_pool_max_wait_seconds', help: 'Age of the oldest queued client, per pool',
      labelNames: [...poolLabels], registers: [reg],
      collect() {
        this.reset();
        for (const p of proxyRef.ctx.topology.allPools()) {
          this.set({ shard: p.target.shardName, backend: `${p.target.host}:${p.target.port}`, database: p.cred.database, user: p.cred.user }, p.snapshot().maxWaitMs / 1000);
        }
      },
    });
    new Gauge({
      name: 'pgring_pool_size_max', help: 'Configured maximum server connections, per pool',
      labelNames: [...poolLabels], registers: [reg],
      collect() {
        this.reset();
        for (const p of proxyRef.ctx.topology.allPools()) {
          this.set({ shard: p.target.shardName, backend: `${p.target.host}:${p.target.port}`, database: p.cred.database, user: p.cred.user }, p.opts.maxSize);
        }
      },
    });
    new Counter({
      name: 'pgring_pool_queue_wait_seconds_total', help: 'Total time clients waited in the pool queue for a server connection',
      labelNames: [...poolLabels], registers: [reg],
      collect() {
        this.reset();
        for (const p of proxyRef.ctx.topology.allPools()) {
          const v = p.stats.totalWaitMs / 1000;
          if (v > 0) this.inc({ shard: p.target.shardName, backend: `${p.target.host}:${p.target.port}`, database: p.cred.database, user: p.cred.user }, v);
        }
      },
    });
  }

  /** Traffic per shard, shard and backend liveness, the ring. */
  private registerTopologyGauges(): void {
    const reg = this.registry;
    const proxyRef = this.proxy;
    const self = this;
    new Counter({
      name: 'pgring_bytes_total', help: 'Bytes through pgring per shard: direction "in" = from servers (sent on to clients), "out" = to servers (received from clients)',
      labelNames: ['shard', 'direction'], registers: [reg],
      collect() {
        this.reset();
        for (const [shard, b] of self.bytesByShard()) {
          if (b.rx > 0) this.inc({ shard, direction: 'in' }, b.rx);
          if (b.tx > 0) this.inc({ shard, direction: 'out' }, b.tx);
        }
      },
    });
    new Gauge({
      name: 'pgring_shard_up', help: 'Whether a shard has a live primary backend (1) or not (0)',
      labelNames: ['shard'], registers: [reg],
      collect() {
        this.reset();
        const t = proxyRef.ctx.topology;
        t.shards.forEach((s, i) => this.set({ shard: s.name }, t.isUp(i) ? 1 : 0));
      },
    });
    new Gauge({
      name: 'pgring_backend_up', help: 'Backend liveness (heartbeat / health check)',
      labelNames: ['shard', 'backend', 'role'], registers: [reg],
      collect() {
        this.reset();
        const t = proxyRef.ctx.topology;
        t.shards.forEach((s, i) => {
          for (const b of t.backends[i] ?? []) this.set({ shard: s.name, backend: `${b.host}:${b.port}`, role: b.role }, b.healthy ? 1 : 0);
        });
      },
    });
    new Gauge({
      name: 'pgring_ring_version', help: 'Version of the ring this proxy routes with (0: none loaded)', registers: [reg],
      collect() { this.set(proxyRef.ring.version); },
    });
    new Gauge({
      name: 'pgring_ring_share_percent', help: 'Share of the hash circle owned by each shard, in percent',
      labelNames: ['shard'], registers: [reg],
      collect() {
        this.reset();
        if (proxyRef.ring.version === 0) return;
        for (const s of proxyRef.ring.shares()) this.set({ shard: s.name }, s.percent);
      },
    });
  }

  /** ZooKeeper session, locks, open transactions, PAUSE, version. */
  private registerStateGauges(): void {
    const reg = this.registry;
    const proxyRef = this.proxy;
    const self = this;
    reg.registerMetric(new DerivedCounter('pgring_zookeeper_connected', 'ZooKeeper session connected (1) or not (0); absent when ZooKeeper is not configured',
      () => (proxyRef.config.zookeeper ? [{ labels: {}, value: self.zkState() === 'connected' ? 1 : 0 }] : []), 'gauge') as never);
    reg.registerMetric(new DerivedCounter('pgring_write_fence_closed', 'Writes refused because this proxy cannot see ZooKeeper (1: self-fenced, 57P03); absent when ZooKeeper is not configured',
      () => (proxyRef.coordinator?.fence ? [{ labels: {}, value: proxyRef.coordinator.fence.closed ? 1 : 0 }] : []), 'gauge') as never);
    new Gauge({
      name: 'pgring_zookeeper_session_state', help: 'ZooKeeper session state (1 for the current state)',
      labelNames: ['state'], registers: [reg],
      collect() {
        this.reset();
        if (!proxyRef.config.zookeeper) return;
        const cur = self.zkState();
        for (const s of ['connecting', 'connected', 'suspended', 'lost', 'closed']) this.set({ state: s }, s === cur ? 1 : 0);
      },
    });
    new Gauge({
      name: 'pgring_locks', help: 'ZooKeeper lock buckets of this proxy by state (held, acquiring, releasing; waiters: local transactions queued)',
      labelNames: ['state'], registers: [reg],
      collect() {
        this.reset();
        // TODO(lock manager): a counter hook would avoid building a snapshot per scrape.
        const rows = lockSnapshot(proxyRef);
        if (!rows) return;
        const n: Record<string, number> = { held: 0, acquiring: 0, releasing: 0, waiters: 0 };
        for (const r of rows) {
          const st = String(r.state ?? 'held');
          n[st] = (n[st] ?? 0) + 1;
          n.waiters! += typeof r.waiting === 'number' ? r.waiting : 0;
        }
        for (const [state, v] of Object.entries(n)) this.set({ state }, v);
      },
    });
    new Gauge({
      name: 'pgring_transactions_in_flight', help: 'Client transactions open now (multi_shard: attached to more than one shard)',
      labelNames: ['kind'], registers: [reg],
      collect() {
        this.reset();
        let single = 0, multi = 0;
        for (const s of proxyRef.ctx.sessions.values()) {
          if (s.admin || s.txStatus === 'I') continue;
          if (s.attachedLinks.length > 1) multi++; else single++;
        }
        this.set({ kind: 'single_shard' }, single);
        this.set({ kind: 'multi_shard' }, multi);
      },
    });
    new Gauge({
      name: 'pgring_paused', help: 'Admin PAUSE in effect (1) or not (0)', registers: [reg],
      collect() { this.set(proxyRef.ops.pause.isPaused ? 1 : 0); },
    });
    new Gauge({
      name: 'pgring_info', help: 'pgring version and start time', labelNames: ['version'], registers: [reg],
      collect() { this.reset(); this.set({ version: proxyRef.ops.version }, proxyRef.startedAt / 1000); },
    });
  }

  // ---- hot path (client sessions) -----------------------------------------------

  query(shard: number, us: number): void { this.queries.observe(shard, us / 1e6); }
  transaction(shard: number, us: number): void { this.xacts.observe(shard, us / 1e6); }
  error(code: string): void {
    // A SQLSTATE is 5 characters; anything else (e.g. an internal marker) is counted as "unknown".
    const cls = code.length === 5 ? code.slice(0, 2) : 'unknown';
    this.errorsByClass.set(cls, (this.errorsByClass.get(cls) ?? 0) + 1);
  }

  // ---- transaction layer hooks -------------------------------------------------------

  lockWait(us: number): void { this.lockWaits.observe(0, us / 1e6); }
  lockHeld(us: number): void { this.lockHolds.observe(0, us / 1e6); }
  lockTimeout(): void { this.lockTimeouts++; }
  twoPhaseCommit(outcome: string): void { this.twoPc.set(outcome, (this.twoPc.get(outcome) ?? 0) + 1); }
  recovery(outcome: string): void { this.recoveries.set(outcome, (this.recoveries.get(outcome) ?? 0) + 1); }
  reload(result: 'ok' | 'refused'): void { this.reloads.set(result, (this.reloads.get(result) ?? 0) + 1); }

  // ---- scrape-time helpers ---------------------------------------------------------------

  zkState(): string {
    const c = this.proxy.coordinator;
    return c?.session?.state ?? 'connecting';
  }

  /** Bytes per shard: finished transactions (pool stats) plus the open ones; never decreases. */
  private bytesByShard(): Map<string, { rx: number; tx: number }> {
    const cur = new Map<string, { rx: number; tx: number }>();
    for (const p of this.proxy.ctx.topology.allPools()) {
      const name = p.target.shardName;
      let e = cur.get(name);
      if (!e) { e = { rx: 0, tx: 0 }; cur.set(name, e); }
      e.rx += p.stats.bytesIn;
      e.tx += p.stats.bytesOut;
      for (const c of p.all) {
        const link = c.tag as { bytesIn0?: number; bytesOut0?: number } | null;
        if (link && typeof link.bytesIn0 === 'number') { e.rx += c.bytesIn - link.bytesIn0; e.tx += c.bytesOut - (link.bytesOut0 ?? 0); }
      }
    }
    for (const [k, v] of cur) {
      const prev = this.bytesSeen.get(k);
      if (prev) { v.rx = Math.max(v.rx, prev.rx); v.tx = Math.max(v.tx, prev.tx); }
    }
    this.bytesSeen = cur;
    return cur;
  }

  /** Why the proxy is not healthy (empty when it is). */
  healthProblems(): string[] {
    const out: string[] = [];
    if (this.proxy.ring.version === 0) out.push('no ring loaded');
    if (this.proxy.config.zookeeper && this.zkState() !== 'connected') out.push(`ZooKeeper session is ${this.zkState()}`);
    if (this.proxy.ctx.draining) out.push('shutting down');
    return out;
  }

  // ---- HTTP endpoint ------------------------------------------------------------------------

  get port(): number | null { return (this.server?.address() as net.AddressInfo | null)?.port ?? null; }

  async listen(host: string, port: number): Promise<void> {
    const server = http.createServer((req, res) => { void this.serve(req, res); });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { server.off('error', reject); resolve(); });
    });
    server.unref();
    this.server = server;
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = (req.url ?? '/').split('?')[0];
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { allow: 'GET, HEAD' }).end(); return; }
      if (url === '/metrics') {
        const body = await this.registry.metrics();
        res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
      } else if (url === '/healthz') {
        const problems = this.healthProblems();
        const body = JSON.stringify({ status: problems.length ? 'unavailable' : 'ok', problems, ringVersion: this.proxy.ring.version, zookeeper: this.proxy.config.zookeeper ? this.zkState() : null });
        res.writeHead(problems.length ? 503 : 200, { 'content-type': 'application/json' }).end(body + '\n');
      } else if (url === '/') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('pgring: /metrics /healthz\n');
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      }
    } catch (e) {
      this.proxy.log.warn({ err: e }, 'metrics endpoint error');
      if (!res.headersSent) res.writeHead(500).end(); else res.end();
    }
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections?.();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/** The lock manager's snapshot rows, when the transaction layer exposes one. */
export function lockSnapshot(proxy: Proxy): Record<string, unknown>[] | null {
  type Snap = { snapshot?: () => unknown } | null | undefined;
  const tx = proxy.ctx.tx as unknown as { lockService?: Snap; locks?: Snap } | undefined;
  const svc = tx?.lockService ?? tx?.locks;
  const snap = svc?.snapshot?.();
  return Array.isArray(snap) ? (snap as Record<string, unknown>[]) : null;
}
