// The failover state machine's decisions (pure: unit-tested in test/unit/failover-plan.test.ts).
//
// One JSON znode per shard, failover/<shard>, holds a FailoverState. Only the elected controller
// advances it, one step at a time, each step idempotent, the node changed by compare-and-set on
// its version after each step: a controller that dies mid-way is replaced by one that resumes
// at the recorded step. Steps:
//   fence    bump the shard record's epoch, primary := null (proxies stop using the old primary
//            at once and end their connections there; switchover also makes the old primary
//            read-only and ends its sessions, then notes its WAL position)
//   choose   the live replica that received the most WAL (switchover: --to, once caught up)
//   promote  SELECT pg_promote() on it (skipped when it is no longer in recovery)
//   repoint  the other replicas follow it (primary_conninfo, a slot on the new primary), and
//            it lists them in synchronous_standby_names
//   recover  two-phase-commit recovery against it (in-doubt transactions of gone proxies)
//   record   the shard record's primary := the new primary (proxies write there again)
//   done
export type FailoverStep = 'fence' | 'choose' | 'promote' | 'repoint' | 'recover' | 'record' | 'done' | 'failed';
export const STEPS: FailoverStep[] = ['fence', 'choose', 'promote', 'repoint', 'recover', 'record', 'done'];

export interface FailoverState {
  shard: string;
  kind: 'failover' | 'switchover';
  step: FailoverStep;
  /** the new epoch (fencing token) this run writes into the shard record */
  epoch: number;
  oldPrimary: string;
  /** replicas known when the run started (host:port) */
  replicas: string[];
  /** switchover --to */
  target: string | null;
  candidate: string | null;
  /** switchover: the old primary's WAL position once fenced; the candidate must replay it */
  fenceLsn: number | null;
  startedAt: number;
  updatedAt: number;
  /** the controller that last advanced it */
  by: string;
  log: { at: number; step: FailoverStep; msg: string }[];
  error?: string;
}

export function nextStep(s: FailoverStep): FailoverStep {
  const i = STEPS.indexOf(s);
  return i < 0 || i === STEPS.length - 1 ? s : STEPS[i + 1]!;
}

export function isFinished(s: FailoverState): boolean { return s.step === 'done' || s.step === 'failed'; }

export function newFailover(o: { shard: string; kind: 'failover' | 'switchover'; currentEpoch: number; oldPrimary: string; replicas: string[]; target?: string | null; by: string; now: number }): FailoverState {
  return {
    shard: o.shard, kind: o.kind, step: 'fence', epoch: o.currentEpoch + 1, oldPrimary: o.oldPrimary,
    replicas: o.replicas.filter((r) => r !== o.oldPrimary), target: o.target ?? null, candidate: null, fenceLsn: null,
    startedAt: o.now, updatedAt: o.now, by: o.by, log: [{ at: o.now, step: 'fence', msg: `${o.kind} of ${o.oldPrimary} started by ${o.by}` }],
  };
}

/** The state after `step` succeeded (with what it learned). */
export function advance(s: FailoverState, by: string, now: number, msg: string, learned: Partial<Pick<FailoverState, 'candidate' | 'fenceLsn'>> = {}): FailoverState {
  const next = nextStep(s.step);
  return { ...s, ...learned, step: next, by, updatedAt: now, log: [...s.log, { at: now, step: s.step, msg }].slice(-50) };
}

export function fail(s: FailoverState, by: string, now: number, error: string): FailoverState {
  return { ...s, step: 'failed', by, updatedAt: now, error, log: [...s.log, { at: now, step: s.step, msg: `failed: ${error}` }].slice(-50) };
}

/** Starts a failover when the primary has been gone for graceMs, a replica is live, nothing runs,
 *  and this controller sees ZooKeeper (a controller cut off from the majority does nothing). */
export function shouldFailover(o: { enabled: boolean; leader: boolean; zkConnected: boolean; downSince: number | null; now: number; graceMs: number; liveReplicas: number; running: boolean }): boolean {
  return o.enabled && o.leader && o.zkConnected && !o.running && o.downSince !== null && o.now - o.downSince >= o.graceMs && o.liveReplicas > 0;
}

export interface ReplicaPosition { addr: string; receiveLsn: number | null; replayLsn: number | null; inRecovery: boolean }

/**
 * The replica to promote: the one that received the most WAL (replayed when nothing was
 * received), ties broken by address for determinism. Servers not in recovery are never chosen
 * (a former primary that came back is fenced, not a replica). `target`: only that one.
 */
export function chooseCandidate(list: ReplicaPosition[], target: string | null = null): string | null {
  const pool = (target ? list.filter((r) => r.addr === target) : list).filter((r) => r.inRecovery);
  let best: ReplicaPosition | null = null;
  const pos = (r: ReplicaPosition) => Math.max(r.receiveLsn ?? -1, r.replayLsn ?? -1);
  for (const r of pool) {
    if (pos(r) < 0) continue;
    if (!best || pos(r) > pos(best) || (pos(r) === pos(best) && r.addr < best.addr)) best = r;
  }
  return best?.addr ?? null;
}

/** A replica's slot / application_name on its primary (a valid identifier). */
export function replicaSlotName(shard: string, port: number): string {
  return `pgring_${shard.replace(/[^A-Za-z0-9_]/g, '_').toLowerCase()}_${port}`;
}

/** synchronous_standby_names for these standbys: one of them must confirm every commit. */
export function syncStandbyNames(names: string[]): string {
  if (names.length === 0) return '';
  const q = names.map((n) => `"${n}"`).join(', ');
  return names.length === 1 ? `FIRST 1 (${q})` : `ANY 1 (${q})`;
}

export function splitAddr(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
}
