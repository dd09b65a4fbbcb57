// Recovery of in-doubt two-phase-commit transactions.
//
// Every proxy runs one pass at start; afterwards the elected controller (LeaderLatch on
// controller/) runs one every `intervalMs`. A pass lists pg_prepared_xacts on every shard over
// a plain `pg` connection (gids starting with pgring_), then, for each whose proxy is gone (no
// ephemeral proxies/<id> node, checked *after* the listing) finishes it: COMMIT PREPARED when
// a decision record of that proxy names the txid (txns/<proxy>_<txid>, or a group-committed
// record listing it in `txids`), else ROLLBACK PREPARED. Finally it removes
// decision records of gone proxies none of whose transactions is still prepared anywhere.
//
// Why checking the proxy node after the listing is safe: a proxy prepares only while its
// session (which owns its proxy node) is connected, and writes a decision only in that same
// session. A missing node therefore means the session that prepared is dead and can no longer
// write a decision; the decision read afterwards is final.
//
// A proxy also sweeps its own prepared transactions that it no longer tracks (a rollback or
// commit that could not reach a shard), whether it leads or not, when its manager asks.
import pg from 'pg';
import type { Config } from '../config/types';
import type { Topology } from '../backend/topology';
import type { Logger } from '../log';
import { LeaderLatch } from '../cluster/election';
import type { Layout } from '../cluster/layout';
import type { ZkSession } from '../cluster/session';
import { isZkError, Zk } from '../cluster/zk';
import { decidedTxids, deleteDecision, listDecisions, parseGid, recordTxids } from '../cluster/txns';

export interface ShardTarget { name: string; host: string; port: number }

/** Credentials for pgring's own connections: the first admin user, else the first user. */
export function serviceCredentials(config: Config): { user: string; password?: string } {
  const u = config.users.find((x) => x.admin) ?? config.users[0];
  if (!u) return { user: 'postgres' };
  return { user: u.serverUser ?? u.name, password: u.serverPassword ?? u.password };
}

export function shardTargets(topology: Topology): ShardTarget[] {
  const out: ShardTarget[] = [];
  topology.shards.forEach((s, i) => {
    try {
      const p = topology.primary(i);
      out.push({ name: s.name, host: p.host, port: p.port });
    } catch {
      const b = s.backends.find((x) => x.role === 'primary') ?? s.backends[0];
      if (b) out.push({ name: s.name, host: b.host, port: b.port });
    }
  });
  return out;
}

export async function withPg<T>(t: ShardTarget, cred: { user: string; password?: string }, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: t.host, port: t.port, user: cred.user, password: cred.password, database, connectionTimeoutMillis: 5000, statement_timeout: 30000, application_name: 'pgring-recovery' });
  c.on('error', () => undefined);
  await c.connect();
  try { return await fn(c); } finally { await c.end().catch(() => undefined); }
}

function quoteLit(s: string): string { return `'${s.replace(/'/g, "''")}'`; }

/** COMMIT/ROLLBACK PREPARED over a plain connection; true when done (or already gone). */
export async function finishPrepared(t: ShardTarget, cred: { user: string; password?: string }, database: string, gid: string, commit: boolean): Promise<boolean> {
  return withPg(t, cred, database, async (c) => {
    try {
      await c.query(`${commit ? 'COMMIT' : 'ROLLBACK'} PREPARED ${quoteLit(gid)}`);
      return true;
    } catch (e) {
      if ((e as { code?: string }).code === '42704') return true;   // no such prepared transaction: finished already
      throw e;
    }
  });
}

export interface RecoveryHost {
  /** txids this proxy is still working on (skipped by its own sweep) */
  inflight: ReadonlySet<string>;
  /** true when the manager left prepared transactions of its own behind */
  needsSweep: boolean;
  sweepDone(): void;
  /** a sweep could not finish (a shard unreachable, a statement failed): sweep again later */
  sweepAgain(): void;
}

export interface RecoveryStats { passes: number; committed: number; rolledBack: number; decisionsRemoved: number; lastError: string | null }

export class Recovery {
  private latch: LeaderLatch | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  readonly stats: RecoveryStats = { passes: 0, committed: 0, rolledBack: 0, decisionsRemoved: 0, lastError: null };

  constructor(
    readonly session: ZkSession, readonly layout: Layout, readonly proxyId: string,
    readonly config: Config, readonly topology: Topology, readonly log: Logger,
    readonly host: RecoveryHost, readonly opts: { intervalMs?: number } = {},
  ) {}

  get isLeader(): boolean { return this.latch?.isLeader() ?? false; }

  async start(): Promise<void> {
    this.latch = new LeaderLatch(this.session, this.layout, { id: this.proxyId, logger: { warn: (o, m) => this.log.warn(o, m) } });
    this.latch.on('leader', () => { this.log.info({ proxy: this.proxyId }, 'elected controller: running transaction recovery'); void this.runPass('all'); });
    await this.latch.start();
    await this.runPass('all').catch(() => undefined);
    const interval = this.opts.intervalMs ?? 5000;
    this.timer = setInterval(() => {
      if (this.latch?.isLeader()) void this.runPass('all');
      else if (this.host.needsSweep) void this.runPass('own');
    }, interval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
    await this.latch?.stop().catch(() => undefined);
  }

  /** Runs one pass (one at a time; a second call waits for the running one, then runs). */
  async runPass(scope: 'all' | 'own', override?: ShardTarget): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
    if (this.stopped) return;
    const p = this.pass(scope, override).catch((e) => {
      this.host.sweepAgain();
      this.stats.lastError = (e as Error).message;
      if (!isZkError(e, 'CONNECTIONLOSS', 'SESSIONEXPIRED')) this.log.warn({ err: (e as Error).message }, 'transaction recovery pass failed');
    }).finally(() => { this.running = null; });
    this.running = p;
    await p;
  }

  /** `override`: a shard's server to use instead of the topology's (failover: the promoted replica). */
  private async pass(scope: 'all' | 'own', override?: ShardTarget): Promise<void> {
    const zk: Zk = this.session.current();
    const cred = serviceCredentials(this.config);
    const targets = shardTargets(this.topology).map((t) => (override && t.name === override.name ? override : t));
    if (scope === 'own') this.host.sweepDone();
    // 1. List every shard first.
    const listed = new Map<string, { gid: string; database: string }[]>();
    for (const t of targets) {
      try {
        const r = await withPg(t, cred, 'postgres', (c) => c.query<{ gid: string; database: string }>(`SELECT gid, database FROM pg_catalog.pg_prepared_xacts WHERE gid LIKE 'pgring\\_%'`));
        listed.set(t.name, r.rows);
      } catch (e) {
        // What this proxy left there is still to do: a proxy that is not the controller sweeps
        // only when asked, and its request was taken at the start of this pass.
        this.host.sweepAgain();
        this.log.warn({ shard: t.name, err: (e as Error).message }, 'transaction recovery: cannot list prepared transactions');
      }
    }
    // 2. Then decide per transaction (liveness read after the listing).
    const live = new Map<string, boolean>();
    const isLive = async (proxy: string) => {
      if (proxy === this.proxyId) return false;
      let v = live.get(proxy);
      if (v === undefined) {
        let ok = true;
        try { this.layout.proxy(proxy); } catch { ok = false; }
        v = ok ? (await zk.exists(this.layout.proxy(proxy))) !== null : false;
        live.set(proxy, v);
      }
      return v;
    };
    const decisions = new Map<string, boolean>();
    // The txids a dead proxy's records decide, read once per pass after its node was seen gone
    // (it can write no more). This proxy's own are read fresh for each txid (after the txid was
    // seen out of flight): its other commits go on writing records meanwhile.
    const decidedBy = new Map<string, Set<string>>();
    const isDecided = async (proxy: string, txid: string): Promise<boolean> => {
      if (proxy === this.proxyId) return (await decidedTxids(zk, this.layout, proxy)).has(txid);
      let set = decidedBy.get(proxy);
      if (!set) { set = await decidedTxids(zk, this.layout, proxy); decidedBy.set(proxy, set); }
      return set.has(txid);
    };
    const remaining = new Set<string>();
    for (const t of targets) {
      for (const row of listed.get(t.name) ?? []) {
        const g = parseGid(row.gid);
        if (!g) { remaining.add(row.gid); continue; }
        if (g.cluster !== this.layout.cluster) continue; // another pgring cluster's transaction: its recovery decides
        if (g.proxy === this.proxyId) {
          if (this.host.inflight.has(g.txid)) { remaining.add(row.gid); continue; }
        } else if (scope === 'own' || await isLive(g.proxy)) { remaining.add(row.gid); continue; }
        const key = `${g.proxy}\u0000${g.txid}`;
        let commit = decisions.get(key);
        if (commit === undefined) { commit = await isDecided(g.proxy, g.txid); decisions.set(key, commit); }
        try {
          await finishPrepared(t, cred, row.database, row.gid, commit);
          if (commit) this.stats.committed++; else this.stats.rolledBack++;
          this.log.info({ gid: row.gid, shard: t.name, database: row.database, action: commit ? 'COMMIT PREPARED' : 'ROLLBACK PREPARED' }, 'transaction recovery finished an in-doubt transaction');
        } catch (e) {
          remaining.add(row.gid);
          if (g.proxy === this.proxyId) this.host.sweepAgain();
          this.log.warn({ gid: row.gid, shard: t.name, err: (e as Error).message }, 'transaction recovery: could not finish a prepared transaction');
        }
      }
    }
    // 3. Stale decision records (proxy gone, nothing of it prepared any more on shards we could list).
    if (scope === 'all') {
      for (const { rec, version } of await listDecisions(zk, this.layout)) {
        if (!rec || typeof rec.proxy !== 'string' || !Array.isArray(rec.gids)) continue;
        if (rec.proxy === this.proxyId ? recordTxids(rec).some((x) => this.host.inflight.has(x)) : await isLive(rec.proxy)) continue;
        const pending = rec.gids.some((g) => remaining.has(g.gid) || !listed.has(g.shard));
        if (pending) continue;
        // At the version read: a proxy's rolling record may have been rewritten meanwhile.
        if (!(await deleteDecision(zk, this.layout, rec.proxy, rec.txid, version))) continue;
        this.stats.decisionsRemoved++;
        this.log.info({ proxy: rec.proxy, txid: rec.txid }, 'transaction recovery removed a finished decision record');
      }
    }
    this.stats.passes++;
  }
}
