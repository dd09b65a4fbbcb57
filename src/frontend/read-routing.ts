// Read routing for a client session: which plain reads may go to a replica, and read-your-writes.
//
// Policy, most specific first: the statement's hint (/* pgring: reads=replica */), the
// session's `SET pgring.reads` or startup option (`options=-c pgring.reads=replica`, so
// PGOPTIONS works), the config's `reads` (default primary). Only a plain SELECT outside any
// transaction block, pin or session pooling may go to a replica: a link to a replica is
// released when the statement's transaction ends, so no later write can reach it.
//
// Read-your-writes: a session that used a shard for anything but an autocommit plain read
// notes the time its link was released (the transaction committed or ended by then). Its
// next reads of that shard go to a replica only once a heartbeat sample of the primary's WAL
// position taken *after* that time is known and the replica has replayed up to it; that
// position is at or after the commit's LSN, so no extra round trip per commit is needed (the
// cost: reads go to the primary for up to one heartbeat interval after a write).
// The state is kept beside the session (WeakMap), so the client path only calls these hooks.
import type { Plan } from '../router/types';
import type { Config } from '../config/types';
import type { ReplicaRead } from '../backend/topology';
import type { ReadsPolicy } from '../backend/replica-choice';
import { PgError, SQLSTATE } from '../protocol/errors';

/** false: not a plain read; true: a plain read under the session's policy; a policy: the hint's. */
export type ReadUse = boolean | ReadsPolicy;

export interface ReadSession {
  readonly ctx: { config: Config };
  readonly txStatus: string;
  readonly virtualTx: unknown;
  readonly pins: ReadonlySet<unknown>;
  readonly poolMode: string;
}

interface SessionReads { policy: ReadsPolicy | null; lastWriteAt: number[]; used: Set<number> }
const states = new WeakMap<object, SessionReads>();

function stateOf(s: object): SessionReads {
  let st = states.get(s);
  if (!st) states.set(s, st = { policy: null, lastWriteAt: [], used: new Set() });
  return st;
}

const POLICIES: readonly string[] = ['primary', 'replica', 'any'];

export function parsePolicy(v: string, where: string): ReadsPolicy {
  const x = v.trim().toLowerCase();
  if (!POLICIES.includes(x)) throw new PgError(SQLSTATE.InvalidParameterValue, `invalid value for parameter "pgring.reads" in ${where}: "${v}"`, { hint: 'available values: primary, replica, any' });
  return x as ReadsPolicy;
}

/** What a planned statement means for read routing. */
export function planReadUse(p: Plan): ReadUse {
  if (p.command !== 'select' || p.write) return false;
  const h = p.hint?.reads;
  return h && POLICIES.includes(h) ? (h as ReadsPolicy) : true;
}

/** `-c pgring.reads=X` / `--pgring.reads=X` in the startup `options`, or a `pgring.reads` startup parameter. */
export function startupPolicy(params: [string, string][]): ReadsPolicy | null {
  let out: ReadsPolicy | null = null;
  for (const [k, v] of params) {
    if (k === 'pgring.reads') out = parsePolicy(v, 'the startup packet');
    if (k !== 'options') continue;
    const re = /(?:-c\s*|--)pgring\.reads=(\S+)/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(v))) out = parsePolicy(m[1]!, 'the startup options');
  }
  return out;
}

/** Hook: the startup packet was read. */
export function onStartup(session: object, params: [string, string][]): void {
  stateOf(session).policy = startupPolicy(params);
}

/** Hook: SET / RESET pgring.reads (null: back to the config's default). */
export function setReads(session: object, value: string | null): void {
  stateOf(session).policy = value === null ? null : parsePolicy(value, 'SET');
}

export function sessionPolicy(session: ReadSession): ReadsPolicy {
  return stateOf(session).policy ?? session.ctx.config.reads;
}

/**
 * Hook: a server connection for `shard` is being chosen for a statement whose read use is `use`.
 * Returns what Topology.pool takes: false (primary), true (primary, or a live replica when the
 * primary is down: the older fallback), or a replica read.
 */
export function readIntent(session: ReadSession, shard: number, use: ReadUse): boolean | ReplicaRead {
  const st = stateOf(session);
  const inBlock = session.txStatus !== 'I' || session.virtualTx !== null || session.pins.size > 0 || session.poolMode === 'session';
  if (use === false || inBlock) { st.used.add(shard); return use !== false; }
  const policy = typeof use === 'string' ? use : st.policy ?? session.ctx.config.reads;
  if (policy === 'primary') return true;
  return { policy, lastWriteAt: session.ctx.config.readYourWrites ? st.lastWriteAt[shard] ?? 0 : 0 };
}

/** Hook: the session's link to `shard` went back to its pool (its transaction is over). */
export function onReleased(session: object, shard: number): void {
  const st = states.get(session);
  if (!st || !st.used.has(shard)) return;
  st.used.delete(shard);
  st.lastWriteAt[shard] = Date.now();
}
