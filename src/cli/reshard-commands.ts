// `pgring shard add | remove | rebalance | resume | abort | status`: online resharding.
// The command plans the migration (next ring, moving arcs), runs the preflight, records the
// migration in ZooKeeper and then advances it itself, as the holder of the migration latch
// (migrations/lock): only one process advances migrations at a time; if it dies, `shard resume`
// (or the same `shard add` again) takes over from the recorded phase.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readActiveDefinition } from '../cluster/definition-store';
import { LeaderLatch } from '../cluster/election';
import { Layout } from '../cluster/layout';
import { readActiveRing, writeRingVersion } from '../cluster/ring-store';
import type { ZkSession } from '../cluster/session';
import { MigrationRunner, shardAddr } from '../reshard/controller';
import { computeMoves, nextRing, RingChange } from '../reshard/plan';
import { preflight, PreflightError } from '../reshard/preflight';
import type { Creds } from '../reshard/shard-sql';
import { createMigration, FINAL, listMigrations, lockDir, Migration } from '../reshard/store';
import { formatMigration, progressLine } from '../reshard/progress';
import type { RingDefinition } from '../ring/ring';
import { withSession, zkTarget, ZkArgs } from './cluster-commands';

export interface ShardArgs extends ZkArgs {
  action: 'add' | 'remove' | 'rebalance' | 'resume' | 'abort' | 'status';
  name?: string; host?: string; port?: number; weight?: number;
  database: string; user: string; password?: string;
  json?: boolean; wait?: boolean; /** --max-pause-ms; unset: the config's resharding.maxWritePauseMs, else 5000 */ maxPauseMs?: number; tries: number; batch: number; cleanLeftovers?: boolean; id?: string;
  /** tests: stop once this phase is reached (simulates a controller that dies there) */
  stopAt?: string;
}

function changeOf(a: ShardArgs): RingChange {
  if (!a.name) throw new Error(`pgring shard ${a.action} needs the shard name`);
  if (a.action === 'add') return { kind: 'add', name: a.name, weight: a.weight ?? 1 };
  if (a.action === 'remove') return { kind: 'remove', name: a.name };
  if (a.weight === undefined) throw new Error('pgring shard rebalance NAME needs --weight W');
  return { kind: 'rebalance', weights: { [a.name]: a.weight } };
}

export async function shardCommand(a: ShardArgs): Promise<void> {
  const { connect, cluster, config } = zkTarget(a);
  const layout = new Layout(cluster);
  a = { ...a, maxPauseMs: a.maxPauseMs ?? config?.resharding?.maxWritePauseMs ?? 5000 };
  await withSession(connect, async (s) => {
    if (a.action === 'status') return status(s, layout, a);
    const creds: Creds = { user: a.user, password: a.password };
    let id: string;
    if (a.action === 'resume' || a.action === 'abort') id = await pickUnfinished(s, layout, a);
    else id = await plan(s, layout, a, creds);
    if (a.wait === false) { background(a, id); console.log(a.json ? JSON.stringify({ migration: id }) : id); return; }
    await advance(s, layout, a, creds, id);
  }, { auth: config?.zookeeper?.auth, protectedRoot: layout.base });
}

async function pickUnfinished(s: ZkSession, layout: Layout, a: ShardArgs): Promise<string> {
  const open = (await listMigrations(s, layout)).filter((m) => !FINAL.includes(m.phase) && (!a.id || m.id === a.id));
  if (!open.length) throw new Error(a.id ? `migration ${a.id} is not in progress` : 'no migration in progress');
  const m = open[0]!;
  if (a.action === 'abort') {
    if (!['planned', 'copying', 'catching-up', 'fencing', 'rolling-back'].includes(m.phase) || m.dropped) {
      throw new Error(`migration ${m.id} is past its cut-over (phase ${m.phase}); it can only be finished (pgring shard resume)`);
    }
    m.phase = 'rolling-back';
    const { readMigration, casMigration } = await import('../reshard/store');
    const cur = await readMigration(s, layout, m.id);
    await casMigration(s, layout, cur!, { ...cur!.value, phase: 'rolling-back', error: 'aborted by pgring shard abort' });
  }
  return m.id;
}

/** Plans, preflights and records a new migration (or returns the unfinished one for the same change). */
async function plan(s: ZkSession, layout: Layout, a: ShardArgs, creds: Creds): Promise<string> {
  const change = changeOf(a);
  const open = (await listMigrations(s, layout)).filter((m) => !FINAL.includes(m.phase));
  if (open.length) {
    const m = open[0]!;
    if (JSON.stringify(m.change) === JSON.stringify(change)) { console.error(`resuming migration ${m.id} (phase ${m.phase})`); return m.id; }
    throw new PreflightError([`migration ${m.id} (${m.change.kind} ${describe(m.change)}) is in flight, phase ${m.phase}: finish it with \`pgring shard resume\` or \`pgring shard abort\``]);
  }
  const active = await readActiveRing(s, layout);
  if (!active) throw new Error(`cluster "${layout.cluster}" has no ring yet`);
  const def = await readActiveDefinition(s, layout);
  const from = active.ring as RingDefinition;
  const to = nextRing(from, change);
  if (change.kind === 'add' && (!a.host || !a.port)) throw new Error('pgring shard add NAME needs --host and --port');
  const draft: Omit<Migration, 'id'> = {
    change, database: a.database, phase: 'planned', fromVersion: active.version, toVersion: null, from, to,
    moves: computeMoves(from, to),
    newShards: change.kind === 'add' ? [{ name: change.name, host: a.host!, port: a.port! }] : [],
    identityFull: [], sharded: (def?.def.sharded ?? []).map((t) => ({ name: t.name, column: t.column, type: t.type })),
    reference: def?.def.reference ?? [], progress: [], dropped: false, lagBytes: null, attempts: 0, fenceToken: null,
    createdAt: Date.now(), updatedAt: Date.now(), error: null, log: [],
  };
  if (draft.moves.length === 0) throw new Error('the new ring moves no keys: nothing to do');
  const addr = (name: string) => shardAddr(s, layout, draft.newShards, name);
  const problems = await preflight({ ...draft, id: 'm0000000000' }, addr, creds, !!a.cleanLeftovers);
  if (problems.length) throw new PreflightError(problems);
  const toVersion = await writeRingVersion(s, layout, to);   // inactive until the cut-over
  const m = await createMigration(s, layout, { ...draft, toVersion, to: { ...to, version: toVersion } });
  console.error(`migration ${m.value.id}: ${describe(change)}; ring ${active.version} -> ${toVersion}; ${draft.moves.map((x) => `${x.source}->${x.target} ${x.percent.toFixed(1)}%`).join(', ')}`);
  return m.value.id;
}

function describe(c: RingChange): string {
  return c.kind === 'rebalance' ? `rebalance ${Object.entries(c.weights).map(([k, v]) => `${k}=${v}`).join(', ')}` : `${c.kind} ${c.name}`;
}

/** Takes the migration latch and runs the state machine to its end, printing progress. */
async function advance(s: ZkSession, layout: Layout, a: ShardArgs, creds: Creds, id: string): Promise<void> {
  const latch = new LeaderLatch(s, layout, { id: `shard-cli-${os.hostname()}-${process.pid}`, path: lockDir(layout) });
  await latch.start();
  if (!latch.isLeader()) console.error('waiting for the migration latch (another pgring shard command advances migrations)');
  await latch.waitLeader(24 * 3600 * 1000);
  const lost = () => { console.error('pgring shard: lost the migration latch (ZooKeeper session); stopping. Run `pgring shard resume` to carry on.'); process.exit(3); };
  latch.on('follower', lost);
  let lastJson = '', lastAt = 0;
  const tty = process.stderr.isTTY && !a.json;
  const runner = new MigrationRunner(s, layout, {
    creds, maxPauseMs: a.maxPauseMs!, tries: a.tries, batch: a.batch, stopAt: a.stopAt as Migration['phase'] | undefined,
    onUpdate: (m) => {
      // JSON lines: at each phase change, at most one a second otherwise.
      if (a.json && (m.phase !== lastJson || Date.now() - lastAt > 1000)) {
        lastJson = m.phase; lastAt = Date.now();
        console.log(JSON.stringify({ migration: m.id, phase: m.phase, lagBytes: m.lagBytes, progress: m.progress }));
      }
      else if (tty) process.stderr.write(`\r\x1b[K${progressLine(m)}`);
    },
  });
  try {
    const m = await runner.run(id);
    if (tty) process.stderr.write('\n');
    if (!a.json) console.log(formatMigration(m));
    if (m.phase === 'aborted') process.exitCode = 1;
  } finally { latch.off('follower', lost); await latch.stop(); }
}

/** --no-wait: a detached `pgring shard resume` advances the migration; its output goes to a log file. */
function background(a: ShardArgs, id: string): void {
  const log = path.join(os.tmpdir(), `pgring-${id}.log`);
  const fd = fs.openSync(log, 'a');
  const args = [process.argv[1]!, 'shard', 'resume', '--id', id, '--database', a.database, '--user', a.user,
    '--max-pause-ms', String(a.maxPauseMs), '--tries', String(a.tries), '--batch', String(a.batch),
    ...(a.config ? ['--config', a.config] : []), ...(a.zk ? ['--zk', a.zk] : []), ...(a.cluster ? ['--cluster', a.cluster] : [])];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, ...(a.password ? { PGPASSWORD: a.password } : {}) } });
  child.unref();
  console.error(`migration ${id} runs in the background (pid ${child.pid}, log ${log}); follow it with \`pgring shard status\``);
}

async function status(s: ZkSession, layout: Layout, a: ShardArgs): Promise<void> {
  const all = await listMigrations(s, layout);
  const shown = a.id ? all.filter((m) => m.id === a.id) : all.slice(-5);
  if (a.json) { console.log(JSON.stringify(shown, null, 2)); return; }
  if (!shown.length) { console.log(`cluster "${layout.cluster}": no migrations`); return; }
  for (const m of shown) console.log(formatMigration(m));
}
