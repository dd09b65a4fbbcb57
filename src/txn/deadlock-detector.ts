// Distributed deadlock detection, the I/O part. Every proxy, while one of its transactions has
// waited for a ZooKeeper lock longer than WAIT_MS or has a server backend stuck on a row lock,
// publishes its waiting and holding transactions in an ephemeral znode waits/<proxy>, reads the
// other proxies' nodes, builds the wait-for graph (src/txn/deadlock.ts) and ends the wait of the
// victim of every cycle it is part of — only its own victims: every proxy picks the same victim
// for a cycle, so exactly one acts. A victim waiting for a bucket gets 40P01 "deadlock detected"
// naming the bucket and what held it; a victim stuck on a row lock has its statement cancelled
// on the server. With nothing waiting a proxy publishes nothing and reads nothing.
import pg from 'pg';
import type { ClientSession } from '../frontend/client';
import type { Logger } from '../log';
import type { Layout } from '../cluster/layout';
import type { ZkSession } from '../cluster/session';
import { decodeJson, encodeJson, isZkError, Zk } from '../cluster/zk';
import { PgError, SQLSTATE } from '../protocol/errors';
import { chooseVictim, findCycles, ProxyWaits, waitGraph, WaitingTxn, Backend } from './deadlock';
import { serviceCredentials, shardTargets } from './recovery';
import type { Config } from '../config/types';
import type { Topology } from '../backend/topology';

/** A transaction as the detector sees it (implemented by txn/manager.ts's Txn). */
export interface DetectableTxn {
  readonly id: string;
  readonly session: ClientSession;
  readonly startedAt: number;
  waitingSince: number;
  waitingFor: number;
}

export interface DetectorHost {
  liveTxns(): Iterable<DetectableTxn>;
  held(t: DetectableTxn): number[];
  /** ends t's lock wait with err; false when it no longer waits */
  abortWait(t: DetectableTxn, err: PgError): boolean;
}

const TICK_MS = 400;
const WAIT_MS = 300;
const ROW_WAIT_MS = 500;

export class DeadlockDetector {
  private timer: NodeJS.Timeout | null = null;
  private published = false;
  private running = false;
  readonly stats = { passes: 0, cycles: 0, victims: 0 };

  constructor(
    readonly zs: ZkSession, readonly layout: Layout, readonly proxyId: string, readonly host: DetectorHost,
    readonly config: Config, readonly topology: Topology, readonly log: Logger,
  ) {}

  get dir(): string { return `${this.layout.base}/waits`; }
  get node(): string { return `${this.dir}/${this.proxyId}`; }

  start(): void {
    this.timer = setInterval(() => { if (!this.running) void this.tick(); }, TICK_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private shardName(i: number): string { return this.topology.shards[i]?.name ?? `#${i}`; }

  private backends(t: DetectableTxn): Backend[] {
    return t.session.attachedLinks.filter((l) => l.conn.pid).map((l) => ({ shard: this.shardName(l.shard), pid: l.conn.pid }));
  }

  /** One pass: returns after publishing/reading (or at once when nothing waits). */
  async tick(): Promise<void> {
    this.running = true;
    try {
      const now = Date.now();
      const all = [...this.host.liveTxns()];
      const zkWaiting = all.filter((t) => t.waitingSince > 0 && now - t.waitingSince >= WAIT_MS);
      // Transactions whose statement has run long while they hold buckets: maybe stuck on a row lock.
      const rowSuspects = all.filter((t) => t.waitingSince === 0 && this.host.held(t).length > 0
        && t.session.queryStart > 0 && now - t.session.queryStart >= ROW_WAIT_MS
        && t.session.attachedLinks.some((l) => l.queue.length > 0));
      if (!zkWaiting.length && !rowSuspects.length) { await this.unpublish(); return; }
      this.stats.passes++;
      const blocked = rowSuspects.length ? await this.rowWaits(rowSuspects) : new Map<DetectableTxn, Backend[]>();
      const mine: WaitingTxn[] = all.map((t) => ({
        id: t.id, proxy: this.proxyId, started: t.startedAt, holds: this.host.held(t),
        waitsBucket: t.waitingSince > 0 && t.waitingFor >= 0 ? t.waitingFor : null,
        backends: this.backends(t), blockedBy: blocked.get(t) ?? [],
      })).filter((w) => w.holds.length || w.waitsBucket !== null);
      const zk = this.zs.handle();
      if (!zk || this.zs.state !== 'connected') return;
      await this.publish(zk, { proxy: this.proxyId, at: now, txns: mine });
      const others = await this.readOthers(zk);
      const graphIn: ProxyWaits[] = [{ proxy: this.proxyId, at: now, txns: mine }, ...others];
      const byId = new Map<string, WaitingTxn>();
      for (const p of graphIn) for (const t of p.txns) byId.set(t.id, t);
      const cycles = findCycles(waitGraph(graphIn));
      for (const cyc of cycles) {
        const victim = chooseVictim(cyc, byId);
        if (!victim || victim.proxy !== this.proxyId) continue;
        this.stats.cycles++;
        this.end(victim, cyc, byId, all);
      }
    } catch (e) {
      if (!isZkError(e, 'CONNECTIONLOSS', 'SESSIONEXPIRED', 'OPERATIONTIMEOUT')) this.log.warn({ err: (e as Error).message }, 'deadlock detection pass failed');
    } finally {
      this.running = false;
    }
  }

  private end(victim: WaitingTxn, cyc: string[], byId: Map<string, WaitingTxn>, all: DetectableTxn[]): void {
    const t = all.find((x) => x.id === victim.id);
    if (!t) return;
    const describe = (id: string) => {
      const w = byId.get(id)!;
      return w.waitsBucket !== null ? `${id} waits for lock bucket ${w.waitsBucket}` : `${id} waits for a row lock (backend ${w.blockedBy.map((b) => `${b.pid} on shard ${b.shard}`).join(', ')})`;
    };
    const detail = `Cycle of ${cyc.length} transactions across pgring proxies: ${cyc.map(describe).join('; ')}.`;
    this.log.info({ victim: victim.id, cycle: cyc }, 'distributed deadlock: cancelling the youngest waiting transaction');
    if (victim.waitsBucket !== null && t.waitingFor === victim.waitsBucket) {
      const err = new PgError(SQLSTATE.DeadlockDetected, 'deadlock detected', { detail, hint: `pgring ended this transaction's wait for ZooKeeper lock bucket ${victim.waitsBucket}; retry the transaction.` });
      if (this.host.abortWait(t, err)) this.stats.victims++;
    } else if (victim.waitsBucket === null) {
      this.stats.victims++;
      void t.session.cancelRunning();
    }
  }

  /** Which of the suspects' backends wait for a row lock, and on whom (pg_blocking_pids). */
  private async rowWaits(suspects: DetectableTxn[]): Promise<Map<DetectableTxn, Backend[]>> {
    const out = new Map<DetectableTxn, Backend[]>();
    const byShard = new Map<string, Map<number, DetectableTxn>>();
    for (const t of suspects) for (const b of this.backends(t)) (byShard.get(b.shard) ?? byShard.set(b.shard, new Map()).get(b.shard)!).set(b.pid, t);
    const cred = serviceCredentials(this.config);
    for (const target of shardTargets(this.topology)) {
      const pids = byShard.get(target.name);
      if (!pids) continue;
      const c = new pg.Client({ host: target.host, port: target.port, user: cred.user, password: cred.password, database: 'postgres', connectionTimeoutMillis: 2000, statement_timeout: 2000, application_name: 'pgring-deadlock' });
      c.on('error', () => undefined);
      try {
        await c.connect();
        const r = await c.query<{ pid: number; by: number[] }>(`SELECT pid, pg_blocking_pids(pid) AS by FROM pg_stat_activity WHERE pid = ANY($1::int[]) AND wait_event_type = 'Lock'`, [[...pids.keys()]]);
        for (const row of r.rows) {
          const t = pids.get(row.pid);
          if (!t || !row.by?.length) continue;
          const list = out.get(t) ?? out.set(t, []).get(t)!;
          for (const b of row.by) list.push({ shard: target.name, pid: b });
        }
      } catch { /* a shard we cannot ask: its waits stay unseen this pass */ } finally {
        await c.end().catch(() => undefined);
      }
    }
    return out;
  }

  private async publish(zk: Zk, w: ProxyWaits): Promise<void> {
    const data = encodeJson(w);
    if (this.published) {
      try { await zk.set(this.node, data, -1); return; } catch (e) { if (!isZkError(e, 'NONODE')) throw e; }
    }
    try { await zk.create(this.node, data, 'ephemeral'); } catch (e) {
      if (isZkError(e, 'NONODE')) { await zk.mkdirp(this.dir); await zk.create(this.node, data, 'ephemeral'); }
      else if (isZkError(e, 'NODEEXISTS')) await zk.set(this.node, data, -1);
      else throw e;
    }
    this.published = true;
  }

  private async unpublish(): Promise<void> {
    if (!this.published) return;
    this.published = false;
    const zk = this.zs.handle();
    if (!zk) return;
    try { await zk.delete(this.node, -1); } catch { /* gone with the session, or never made */ }
  }

  private async readOthers(zk: Zk): Promise<ProxyWaits[]> {
    const out: ProxyWaits[] = [];
    const names = await zk.children(this.dir).catch(() => [] as string[]);
    await Promise.all(names.filter((n) => n !== this.proxyId).map(async (n) => {
      try {
        const { data } = await zk.get(`${this.dir}/${n}`);
        const w = decodeJson<ProxyWaits>(data, `waits/${n}`);
        // A stale snapshot (a proxy that stopped waiting long ago but kept its node) is ignored.
        if (w && Array.isArray(w.txns) && Date.now() - w.at < 5000) out.push(w);
      } catch { /* deleted meanwhile */ }
    }));
    return out;
  }
}
