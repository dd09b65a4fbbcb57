// Automatic failover and planned switchover of a shard's primary, run by the elected
// controller. The state machine and its decisions are in failover-plan.ts (pure); this module
// keeps the state in ZooKeeper (failover/<shard>, compare-and-set on its version) and does each
// step against ZooKeeper and the servers (src/backend/replication-admin.ts).
import type { Config } from '../config/types';
import type { Logger } from '../log';
import * as admin from '../backend/replication-admin';
import { Layout } from './layout';
import { ZkSession } from './session';
import { decodeJson, encodeJson, isZkError, Watcher, Zk } from './zk';
import { WatchSet, watchedRead } from './sync';
import {
  advance, chooseCandidate, fail, FailoverState, isFinished, newFailover, replicaSlotName, ReplicaPosition,
  shouldFailover, splitAddr, syncStandbyNames,
} from './failover-plan';

export function failoverDir(layout: Layout): string { return `${layout.base}/failover`; }
export function failoverPath(layout: Layout, shard: string): string { return `${failoverDir(layout)}/${layout.shard(shard).slice(layout.shards.length + 1)}`; }

export async function readFailover(zk: Zk, layout: Layout, shard: string, watch?: Watcher): Promise<{ state: FailoverState; version: number } | null> {
  const path = failoverPath(layout, shard);
  for (;;) {
    try {
      const { data, stat } = await zk.get(path, watch);
      return { state: decodeJson<FailoverState>(data, path), version: stat.version };
    } catch (e) { if (!isZkError(e, 'NONODE')) throw e; }
    // a get of a missing node leaves no watch: exists does (it fires when a run is started)
    if (!watch || !(await zk.exists(path, watch))) return null;
  }
}

/** Starts a run unless one is unfinished; returns the stored state (ours or the running one). */
export async function startFailover(zk: Zk, layout: Layout, s: FailoverState): Promise<{ state: FailoverState; version: number; started: boolean }> {
  await zk.mkdirp(failoverDir(layout));
  const path = failoverPath(layout, s.shard);
  const cur = await readFailover(zk, layout, s.shard);
  if (cur && !isFinished(cur.state)) return { ...cur, started: false };
  if (!cur) {
    try { await zk.create(path, encodeJson(s), 'persistent'); return { state: s, version: 0, started: true }; } catch (e) {
      if (isZkError(e, 'NODEEXISTS')) return { ...(await readFailover(zk, layout, s.shard))!, started: false };
      throw e;
    }
  }
  const st = await zk.set(path, encodeJson(s), cur.version);   // BADVERSION: someone else started one
  return { state: s, version: st.version, started: true };
}

/** The shard record with its znode version (epoch and primary live there). */
async function shardRecord(zk: Zk, layout: Layout, shard: string): Promise<{ rec: Record<string, unknown>; version: number }> {
  const { data, stat } = await zk.get(layout.shard(shard));
  return { rec: decodeJson<Record<string, unknown>>(data, layout.shard(shard)), version: stat.version };
}

export interface MemberView { host: string; port: number; role: 'primary' | 'replica'; healthy: boolean }

export interface FailoverDeps {
  session: ZkSession;
  layout: Layout;
  id: string;
  config: Config;
  log: Logger;
  isLeader(): boolean;
  /** shard names and their known backends (config and registered), host:port with role */
  shards(): { name: string; backends: { addr: string; role: 'primary' | 'replica' }[] }[];
  /** ZooKeeper's view of liveness: shard -> backend records */
  members(): Map<string, MemberView[]>;
  /** two-phase-commit recovery with this server as the shard's primary */
  recover(target: { name: string; host: string; port: number }): Promise<void>;
  /**
   * The shard record's epoch and primary as this proxy's watch last delivered them (undefined
   * before any failover, or when the caller keeps no such copy: the record is then read).
   */
  designated?(shard: string): { epoch: number; primary: string | null } | undefined;
}

const QUIET_REREAD_MS = 30000;

export class FailoverController {
  private timer: NodeJS.Timeout | null = null;
  private ticking = false;
  private readonly downSince = new Map<string, number>();
  /** test hook (PGRING_TEST_FAILOVER_STALL_AFTER=<shard>:<step>): stop advancing after that step, as a controller that died */
  private stalled = false;
  /**
   * When failover/<shard> was last read showing no unfinished run. While the watch of that read
   * is armed (WatchSet: same handle, not fired) the tick skips the read (a switchover or failover
   * started by an operator or another controller fires it). Polling it every 250 ms was most of
   * an idle leader's ZooKeeper requests (12 a second over 3 shards).
   */
  private readonly quietSince = new Map<string, number>();
  private readonly ws = new WatchSet();

  constructor(readonly d: FailoverDeps, readonly opts: { intervalMs?: number } = {}) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.opts.intervalMs ?? 250);
    this.timer.unref();
  }

  stop(): void { if (this.timer) clearInterval(this.timer); this.timer = null; }

  private get cred() {
    const u = this.d.config.users.find((x) => x.admin) ?? this.d.config.users[0];
    return u ? { user: u.serverUser ?? u.name, password: u.serverPassword ?? u.password } : { user: 'postgres' };
  }

  async tick(): Promise<void> {
    if (this.ticking || this.stalled) return;
    this.ticking = true;
    try {
      let zk: Zk;
      try { zk = this.d.session.current(); } catch { this.downSince.clear(); return; }
      if (!this.d.isLeader()) { this.downSince.clear(); return; }
      for (const s of this.d.shards()) {
        try { await this.checkShard(zk, s); } catch (e) {
          if (!isZkError(e, 'CONNECTIONLOSS', 'SESSIONEXPIRED')) this.d.log.warn({ shard: s.name, err: (e as Error).message }, 'failover: step failed; retrying');
        }
        if (this.stalled) return;
      }
    } finally { this.ticking = false; }
  }

  private async checkShard(zk: Zk, s: ReturnType<FailoverDeps['shards']>[number]): Promise<void> {
    const since = this.quietSince.get(s.name);
    // re-read anyway after 30 s: cheap insurance against a watch lost in a way not foreseen
    if (since === undefined || !this.ws.isArmed(zk, s.name) || Date.now() - since > QUIET_REREAD_MS) {
      this.quietSince.delete(s.name);
      const running = await watchedRead(this.ws, zk, s.name, () => { this.quietSince.delete(s.name); void this.tick(); },
        (w) => readFailover(zk, this.d.layout, s.name, w));
      if (running && !isFinished(running.state)) { await this.run(zk, running.state, running.version); return; }
      this.quietSince.set(s.name, Date.now());
    }
    // Without automatic failover only planned switchovers (read above) run: the shard record is
    // not needed, which halves the controller's ZooKeeper reads on every tick.
    if (!this.d.config.failover.enabled) { this.downSince.delete(s.name); return; }
    // The watched copy of the shard record decides whether anything is to be done (reading the
    // record on every check cost 12 ZooKeeper requests a second over 3 shards); before acting,
    // the record itself is read and the decision taken again on it.
    const watched = this.d.designated !== undefined;
    const rec = watched ? (this.d.designated!(s.name) ?? {}) : (await shardRecord(zk, this.d.layout, s.name)).rec;
    let view = this.view(zk, s, rec);
    if (view?.act && watched) view = this.view(zk, s, (await shardRecord(zk, this.d.layout, s.name)).rec);
    if (!view?.act) return;
    const { epoch, primary, replicas } = view;
    const st = newFailover({ shard: s.name, kind: 'failover', currentEpoch: epoch, oldPrimary: primary, replicas, by: this.d.id, now: Date.now() });
    this.d.log.warn({ shard: s.name, primary, downMs: Date.now() - this.downSince.get(s.name)!, epoch: st.epoch }, 'failover: primary gone past failover.graceMs; starting');
    const r = await startFailover(zk, this.d.layout, st);
    this.downSince.delete(s.name);
    await this.run(zk, r.state, r.version);
  }

  /** What the shard record `rec` and the liveness nodes say: whether to start a failover now. */
  private view(zk: Zk, s: ReturnType<FailoverDeps['shards']>[number], rec: { epoch?: unknown; primary?: unknown }): { epoch: number; primary: string; replicas: string[]; act: boolean } | null {
    const epoch = typeof rec.epoch === 'number' ? rec.epoch : 0;
    const primary = typeof rec.primary === 'string' ? rec.primary : s.backends.find((b) => b.role === 'primary')?.addr;
    if (!primary) return null;
    const members = this.d.members().get(s.name) ?? [];
    const alive = members.some((m) => `${m.host}:${m.port}` === primary && m.healthy);
    if (alive) this.downSince.delete(s.name);
    else if (!this.downSince.has(s.name)) this.downSince.set(s.name, Date.now());
    const replicas = this.replicasOf(s, primary);
    const liveReplicas = members.filter((m) => m.healthy && m.role === 'replica' && replicas.includes(`${m.host}:${m.port}`)).length;
    const f = this.d.config.failover;
    const act = shouldFailover({ enabled: f.enabled, leader: this.d.isLeader(), zkConnected: zk.connected, downSince: this.downSince.get(s.name) ?? null, now: Date.now(), graceMs: f.graceMs, liveReplicas, running: false });
    return { epoch, primary, replicas, act };
  }

  /** Known replicas of a shard: configured/registered backends other than the primary. */
  private replicasOf(s: ReturnType<FailoverDeps['shards']>[number], primary: string): string[] {
    const out = new Set<string>();
    for (const b of s.backends) if (b.addr !== primary) out.add(b.addr);
    for (const m of this.d.members().get(s.name) ?? []) if (`${m.host}:${m.port}` !== primary) out.add(`${m.host}:${m.port}`);
    return [...out].sort();
  }

  /** Advances a run step by step, persisting each by CAS; stops when leadership or ZooKeeper is lost. */
  async run(zk: Zk, state: FailoverState, version: number): Promise<void> {
    const path = failoverPath(this.d.layout, state.shard);
    while (!isFinished(state)) {
      if (!this.d.isLeader() || !zk.connected) return;
      let r: Awaited<ReturnType<FailoverController['step']>>;
      try { r = await this.step(zk, state); } catch (e) {
        // A switchover that cannot reach its target before anything was promoted gives the
        // shard back to the old primary instead of leaving it without one.
        if (state.kind !== 'switchover' || (state.step !== 'fence' && state.step !== 'choose')) throw e;
        await this.abortSwitchover(zk, state, version, (e as Error).message);
        return;
      }
      const { msg, learned } = r;
      const next = advance(state, this.d.id, Date.now(), msg, learned);
      version = (await zk.set(path, encodeJson(next), version)).version;
      this.d.log.warn({ shard: state.shard, kind: state.kind, step: state.step, epoch: state.epoch, msg }, `${state.kind}: ${state.step} done`);
      if (process.env.PGRING_TEST_FAILOVER_STALL_AFTER === `${state.shard}:${state.step}`) { this.stalled = true; this.stop(); return; }
      state = next;
    }
  }

  private async step(zk: Zk, s: FailoverState): Promise<{ msg: string; learned?: Partial<FailoverState> }> {
    const cred = this.cred;
    switch (s.step) {
      case 'fence': {
        const { rec, version } = await shardRecord(zk, this.d.layout, s.shard);
        const cur = typeof rec.epoch === 'number' ? rec.epoch : 0;
        if (cur < s.epoch) await zk.set(this.d.layout.shard(s.shard), encodeJson({ ...rec, epoch: s.epoch, primary: null }), version);
        // The old primary refuses writes and loses its sessions (switchover; a failover tries too,
        // for a primary cut off from the proxies but still running).
        let fenceLsn: number | null = null;
        try { fenceLsn = await admin.fenceOldPrimary(splitAddr(s.oldPrimary), cred); } catch (e) {
          if (s.kind === 'switchover') throw e;
        }
        return { msg: `epoch ${s.epoch} written to the shard record: proxies stopped using ${s.oldPrimary}${fenceLsn !== null ? `; old primary read-only at WAL ${fenceLsn}` : ' (old primary unreachable)'}`, learned: { fenceLsn } };
      }
      case 'choose': {
        const want = s.target ?? null;
        if (s.kind === 'switchover' && s.fenceLsn !== null) {
          const t = want ?? chooseCandidate(await this.positions(s.replicas));
          if (t) await admin.waitReplayed(splitAddr(t), s.fenceLsn, cred, 30000);
        }
        const pos = await this.positions(s.replicas);
        const c = chooseCandidate(pos, want);
        if (!c) throw new Error(`no reachable replica to promote (${s.replicas.join(', ') || 'none known'})`);
        const p = pos.find((x) => x.addr === c)!;
        return { msg: `chose ${c} (received WAL ${p.receiveLsn ?? p.replayLsn}; ${pos.map((x) => `${x.addr}=${x.receiveLsn ?? x.replayLsn}`).join(' ')})`, learned: { candidate: c } };
      }
      case 'promote': return { msg: `${s.candidate}: ${await admin.promote(splitAddr(s.candidate!), cred)}` };
      case 'repoint': return { msg: await this.repointOthers(s) };
      case 'recover': {
        const a = splitAddr(s.candidate!);
        await this.d.recover({ name: s.shard, host: a.host, port: a.port });
        return { msg: `two-phase-commit recovery ran on ${s.candidate}` };
      }
      case 'record': {
        const { rec, version } = await shardRecord(zk, this.d.layout, s.shard);
        if (typeof rec.epoch === 'number' && rec.epoch > s.epoch) throw new Error(`superseded by epoch ${rec.epoch}`);
        if (rec.primary !== s.candidate) await zk.set(this.d.layout.shard(s.shard), encodeJson({ ...rec, epoch: s.epoch, primary: s.candidate }), version);
        return { msg: `shard record: primary ${s.candidate}, epoch ${s.epoch}` };
      }
      default: return { msg: 'nothing to do' };
    }
  }

  private async abortSwitchover(zk: Zk, s: FailoverState, version: number, why: string): Promise<void> {
    const old = splitAddr(s.oldPrimary);
    await admin.withServer(old, this.cred, async (c) => { await c.query('ALTER SYSTEM RESET default_transaction_read_only'); await c.query('SELECT pg_reload_conf()'); });
    const { rec, version: rv } = await shardRecord(zk, this.d.layout, s.shard);
    if (rec.epoch === s.epoch) await zk.set(this.d.layout.shard(s.shard), encodeJson({ ...rec, primary: s.oldPrimary }), rv);
    await zk.set(failoverPath(this.d.layout, s.shard), encodeJson(fail(s, this.d.id, Date.now(), `${why}; ${s.oldPrimary} is the primary again`)), version);
    this.d.log.warn({ shard: s.shard, err: why }, 'switchover: aborted; the old primary takes writes again');
  }

  private async positions(addrs: string[]): Promise<ReplicaPosition[]> {
    const out: ReplicaPosition[] = [];
    for (const addr of addrs) {
      try { out.push({ addr, ...(await admin.position(splitAddr(addr), this.cred)) }); } catch { /* unreachable: not a candidate */ }
    }
    return out;
  }

  /** The other replicas follow the new primary; those streaming within 5 s become its synchronous standbys. */
  private async repointOthers(s: FailoverState): Promise<string> {
    const primary = splitAddr(s.candidate!);
    const done: string[] = [];
    const failed: string[] = [];
    for (const r of s.replicas.filter((x) => x !== s.candidate)) {
      const a = splitAddr(r);
      try { await admin.repoint(a, primary, replicaSlotName(s.shard, a.port), this.cred); done.push(r); } catch { failed.push(r); }
    }
    const slots = done.map((r) => replicaSlotName(s.shard, splitAddr(r).port));
    const streaming = await this.waitStreaming(primary, slots, 5000);
    await admin.setSyncStandbys(primary, syncStandbyNames(streaming), this.cred);
    return `repointed [${done.join(', ')}]${failed.length ? `, unreachable [${failed.join(', ')}] (rejoin them with pgring shard rejoin)` : ''}; synchronous_standby_names '${syncStandbyNames(streaming)}'`;
  }

  private async waitStreaming(primary: { host: string; port: number }, slots: string[], ms: number): Promise<string[]> {
    if (!slots.length) return [];
    const deadline = Date.now() + ms;
    for (;;) {
      const names = await admin.withServer(primary, this.cred, async (c) => (await c.query(`SELECT application_name AS n FROM pg_stat_replication WHERE state = 'streaming'`)).rows.map((r) => r.n as string));
      const ok = slots.filter((x) => names.includes(x));
      if (ok.length === slots.length || Date.now() > deadline) return ok;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
