// The benchmark harness (`npm run bench`): a local cluster (ZooKeeper + 3 PostgreSQL),
// PgBouncer in session and in transaction mode in front of the first server, and
// pgring in two set-ups (C: one shard, D: three shards with the pgbench tables
// sharded), then pgbench against each target in turn (A B B N C D, A B B N C D, ...),
// the proxies' CPU time per transaction and memory, and an idle-connection scale
// test. Writes bench/RESULTS.md (full) or bench/RESULTS-quick.md (--quick).
//
//   node dist/bench/run.js [--quick | --smoke] [--out FILE] [--duration S] [--reps N]
//        [--clients 1,8,32] [--workloads select-simple,select-prepared,tpcb-prepared]
//        [--scale 10] [--scale-clients 5000] [--skip-scale] [--with-zk] [--lock-mode all] [--keep]
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { LocalCluster, ClusterInfo } from '../src/local/cluster';
import { chownPostgres, freePort, pgBin, sleep } from '../src/local/proc';
import { BenchPgBouncer, pgbouncerVersion } from './pgbouncer';
import { BenchPgring } from './pgring';
import { DEFAULT_WORKLOADS, pgbenchArgs, runPgbench, runTool, Workload, WORKLOADS } from './pgbench';
import { clockTicks, cpuSeconds, memKb, openFilesLimit } from './procstat';
import { openIdleClients } from './scale';
import {
  Cell, cellKey, keyRatios, MemoryRow, renderReport, ReportInput, RunRecord, ScaleResult, TargetId, TargetInfo,
} from './report';

const ROOT = path.resolve(__dirname, '../..');
const DB = 'bench';
const DB_SHARDED = 'bench_sharded';
const POOL_SIZE = 20;

type LockMode = 'all' | 'multi_shard' | 'off';
const LOCK_MODES: LockMode[] = ['all', 'multi_shard', 'off'];

interface Options {
  mode: 'full' | 'quick' | 'smoke';
  out: string;
  duration: number;
  reps: number;
  clients: number[];
  workloads: Workload[];
  scale: number;
  scaleClients: number;
  skipScale: boolean;
  warmup: number;
  withZk: boolean;
  /** D runs with the first; the TPC-B workloads also run on one more D per further mode. */
  lockModes: LockMode[];
  keep: boolean;
}

async function parseOptions(): Promise<Options> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('bench/run.js')
    .option('quick', { type: 'boolean', default: false, describe: 'fewer cases, 3 s runs; writes bench/RESULTS-quick.md' })
    .option('smoke', { type: 'boolean', default: false, describe: 'tiny run for the smoke test (1 s, 1 client, select-simple, scale 1, no scale test)' })
    .option('out', { type: 'string', describe: 'results file (default bench/RESULTS.md, --quick: bench/RESULTS-quick.md)' })
    .option('duration', { type: 'number', describe: 'seconds per pgbench run (-T)' })
    .option('reps', { type: 'number', describe: 'repetitions of each case' })
    .option('clients', { type: 'string', describe: 'comma-separated client counts' })
    .option('workloads', { type: 'string', describe: `comma-separated: ${WORKLOADS.map((w) => w.id).join(', ')}` })
    .option('scale', { type: 'number', describe: 'pgbench -i scale factor (default 10)' })
    .option('scale-clients', { type: 'number', describe: 'idle clients for the connection-scale test (default 5000)' })
    .option('skip-scale', { type: 'boolean', describe: 'skip the connection-scale test' })
    .option('warmup', { type: 'number', describe: 'seconds of unrecorded pgbench per target and workload before the measured runs (0: none)' })
    .option('with-zk', { type: 'boolean', describe: 'pgring D with ZooKeeper and locks (default on, off in --smoke; --no-with-zk: ring from the config, no locks)' })
    .option('lock-modes', { type: 'string', describe: 'with ZooKeeper: comma-separated locks.mode values; D runs with the first, TPC-B also on one more D per further mode (default all,multi_shard,off)' })
    .option('lock-mode', { choices: LOCK_MODES, describe: 'only this locks.mode (same as --lock-modes MODE)' })
    .option('keep', { type: 'boolean', default: false, describe: 'keep the temporary directory (data, logs)' })
    .strict()
    .help()
    .parseAsync();
  const mode = argv.smoke ? 'smoke' : argv.quick ? 'quick' : 'full';
  const d = {
    full: { duration: 10, reps: 3, clients: [1, 8, 32], workloads: DEFAULT_WORKLOADS, scale: 10, skipScale: false, warmup: 3, out: 'bench/RESULTS.md' },
    quick: { duration: 3, reps: 1, clients: [8], workloads: DEFAULT_WORKLOADS, scale: 10, skipScale: false, warmup: 2, out: 'bench/RESULTS-quick.md' },
    smoke: { duration: 1, reps: 1, clients: [1], workloads: ['select-simple'], scale: 1, skipScale: true, warmup: 0, out: 'bench/RESULTS-smoke.md' },
  }[mode];
  const list = (s: string | undefined) => s?.split(',').map((x) => x.trim()).filter(Boolean);
  const workloadIds = list(argv.workloads) ?? d.workloads;
  const workloads = workloadIds.map((id) => {
    const w = WORKLOADS.find((x) => x.id === id);
    if (!w) throw new Error(`unknown workload ${id}; known: ${WORKLOADS.map((x) => x.id).join(', ')}`);
    return w;
  });
  const clients = (list(argv.clients)?.map(Number) ?? d.clients);
  if (clients.some((c) => !Number.isInteger(c) || c < 1)) throw new Error(`bad --clients ${argv.clients}`);
  const out = argv.out ?? d.out;
  return {
    mode, workloads, clients,
    out: path.isAbsolute(out) ? out : path.resolve(argv.out ? process.cwd() : ROOT, out),
    duration: argv.duration ?? d.duration,
    reps: argv.reps ?? d.reps,
    scale: argv.scale ?? d.scale,
    scaleClients: argv['scale-clients'] ?? 5000,
    skipScale: argv['skip-scale'] ?? d.skipScale,
    warmup: argv.warmup ?? d.warmup,
    withZk: argv['with-zk'] ?? mode !== 'smoke',
    lockModes: parseLockModes(argv['lock-mode'] ?? argv['lock-modes']),
    keep: argv.keep,
  };
}

function parseLockModes(s: string | undefined): LockMode[] {
  if (!s) return [...LOCK_MODES];
  const modes = s.split(',').map((x) => x.trim()).filter(Boolean);
  for (const m of modes) if (!LOCK_MODES.includes(m as LockMode)) throw new Error(`unknown lock mode ${m}; known: ${LOCK_MODES.join(', ')}`);
  if (!modes.length) throw new Error('--lock-modes is empty');
  return [...new Set(modes)] as LockMode[];
}

/** The idle-connection test needs more open files than the usual 1024: re-run under a raised `ulimit -n`. */
function ensureFileLimit(needed: number): boolean {
  const limit = openFilesLimit() ?? 0;
  if (limit >= needed || process.env.PGRING_BENCH_ULIMIT) return false;
  console.log(`bench: open-file limit ${limit} < ${needed}; re-running under ulimit -n 65536`);
  const child = spawn('bash', ['-c', 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"', 'bench',
    process.execPath, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, PGRING_BENCH_ULIMIT: '1' } });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, sig) => process.exit(code ?? (sig ? 1 : 0)));
  return true;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (r.stdout || '').trim();
}

function machineFacts(): [string, string][] {
  const cpu = os.cpus();
  const gitRev = sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = sh('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src']) ? ' (src/ has uncommitted changes)' : '';
  return [
    ['nproc', sh('nproc', []) || String(cpu.length)],
    ['CPU', cpu[0]?.model ?? 'unknown'],
    ['memory', `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`],
    ['kernel', `${os.type()} ${os.release()}`],
    ['node', process.version],
    ['PostgreSQL', sh(pgBin('postgres'), ['--version'])],
    ['pgbench', sh(pgBin('pgbench'), ['--version'])],
    ['PgBouncer', pgbouncerVersion()],
    ['pgring commit', (gitRev || 'unknown') + dirty],
    ['CLK_TCK', String(clockTicks())],
    ['load average at start', os.loadavg().map((x) => x.toFixed(2)).join(' ')],
  ];
}

const PGBENCH_TABLES = [
  { name: 'pgbench_accounts', column: 'aid', type: 'integer', columns: ['aid', 'bid', 'abalance', 'filler'] },
  { name: 'pgbench_tellers', column: 'tid', type: 'integer', columns: ['tid', 'bid', 'tbalance', 'filler'] },
  { name: 'pgbench_branches', column: 'bid', type: 'integer', columns: ['bid', 'bbalance', 'filler'] },
  { name: 'pgbench_history', column: 'aid', type: 'integer', columns: ['tid', 'bid', 'aid', 'delta', 'mtime', 'filler'] },
];

// Each D has a ZooKeeper cluster of its own (same shards, same rules, so the same placement):
// proxies of one cluster share lock buckets (lock forwarding), and a D measured while another
// D of its cluster sat idle paid a link round trip for every bucket the idle one owned.
async function pgringConfig(info: ClusterInfo, shards: number, sharded: boolean, zk: { connect: string; lockMode: string; cluster: string } | null): Promise<Record<string, unknown>> {
  return {
    listen: { host: '127.0.0.1', port: await freePort() },
    metrics: { enabled: true, host: '127.0.0.1', port: await freePort() },
    logLevel: 'warn',
    pool: { mode: 'transaction', maxSize: POOL_SIZE },
    users: [{ name: 'postgres', auth: 'trust', admin: true }],
    shards: info.pg.slice(0, shards).map((p, i) => ({ name: `s${i + 1}`, backends: [{ host: '127.0.0.1', port: p.port, role: 'primary' }] })),
    ...(sharded ? { sharding: { tables: PGBENCH_TABLES } } : {}),
    ...(zk ? { zookeeper: { connect: zk.connect, cluster: zk.cluster }, locks: { mode: zk.lockMode } } : {}),
    shutdownGraceMs: 2000,
  };
}

/** bench/ANALYSIS.md (hand-written: optimization log, where the time goes), carried into every full RESULTS.md. */
function readAnalysis(): string | undefined {
  try { return fs.readFileSync(path.join(ROOT, 'bench/ANALYSIS.md'), 'utf8'); } catch { return undefined; }
}

function log(msg: string): void { console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`); }

async function main(): Promise<void> {
  const opts = await parseOptions();
  if (!opts.skipScale && ensureFileLimit(opts.scaleClients + 1000)) return;

  const startedAt = new Date();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-bench-'));
  chownPostgres(tmp);
  const logDir = path.join(tmp, 'pgbench-logs');
  fs.mkdirSync(logDir);
  const facts = machineFacts();

  // Everything started here is stopped on the way out, also on errors and signals.
  const cluster = new LocalCluster({ dir: path.join(tmp, 'cluster'), shards: 3 });
  const bouncers: BenchPgBouncer[] = [];
  const pgrings: BenchPgring[] = [];
  let cleaning: Promise<void> | null = null;
  let interrupted = false;
  const checkInterrupted = () => { if (interrupted) throw new Error('interrupted'); };
  let cleaned = false;
  const cleanup = () => cleaning ??= (async () => {
    for (const p of pgrings) await p.stop().catch(() => undefined);
    for (const b of bouncers) await b.stop().catch(() => undefined);
    await cluster.stop().catch(() => undefined);
    if (!opts.keep) fs.rmSync(tmp, { recursive: true, force: true });
    else console.log(`bench: kept ${tmp}`);
    cleaned = true;
  })();
  process.on('exit', () => {
    if (cleaned) return;
    for (const p of pgrings) p.killNow();
    for (const b of bouncers) b.killNow();
    for (const pg of cluster.pgs) pg.stop('immediate');
    if (cluster.zk?.pid) try { process.kill(cluster.zk.pid, 'SIGKILL'); } catch { /* gone */ }
  });
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(sig, () => { interrupted = true; console.error(`bench: ${sig}, stopping`); void cleanup().finally(() => process.exit(code)); });
  }

  const notes: string[] = [
    `Everything (3 PostgreSQL servers, ZooKeeper, 2 PgBouncers, the pgring processes, the Node.js relay, pgbench) runs on this one machine (${facts[0]![1]} cores) and competes for CPU; other work may have been running on it too (load average at start: ${os.loadavg()[0]!.toFixed(2)}). Compare targets within one table (runs are interleaved A B B N C D, A B B N C D, … so drifting load hits all of them alike), not with numbers from other machines.`,
    'N is a reference, not a product: a dozen lines of Node.js that give each client its own server connection and copy bytes both ways with `net.Socket` (bench/relay.ts). No Node.js proxy can do less per transaction, so N / PgBouncer is the ceiling for any Node.js proxy on this machine and C / N is what pgring\'s parsing, routing and pooling cost on top of Node.js itself.',
    'D spreads the rows over 3 PostgreSQL servers that share the same CPUs, so D measures routing overhead plus multi-shard transaction handling, not scale-out.',
    'PgBouncer (transaction mode) cannot run `-M prepared` (PgBouncer before 1.21 does not track protocol-level prepared statements in transaction pooling; see its docs, "Feature matrix for pooling modes"): recorded as n/a.',
    `Pool sizes: pgring \`pool.maxSize\` ${POOL_SIZE} per shard (transaction pooling); PgBouncer transaction mode \`default_pool_size\` ${POOL_SIZE}; PgBouncer session mode needs one server connection per client, so its pool is larger than the largest client count; direct PostgreSQL has one backend per client.`,
    'TPS is the median over the repetitions of pgbench\'s "tps (without initial connection time)"; average latency is pgbench\'s; p99 is computed exactly from pgbench\'s per-transaction log (`-l`) of each run, median over the repetitions.',
    'Proxy CPU s / 1000 tx: utime+stime of the proxy process (from /proc/<pid>/stat) over the run, divided by the transactions pgbench processed; PgBouncer is single-threaded, pgring is one Node.js process (its libuv/GC threads included). CPU time is only charged while the process runs, so this is the figure least disturbed by other load on the machine.',
    opts.withZk
      ? `D runs with ZooKeeper (cluster "bench") and \`locks.mode: ${opts.lockModes[0]}\`${opts.lockModes.length > 1 ? `; the TPC-B workloads also run on ${opts.lockModes.slice(1).map((m) => `a D with \`locks.mode: ${m}\``).join(' and ')} (same data and ZooKeeper, each D its own pgring cluster \`bench-<mode>\` so that no idle D owns lock buckets of the measured one; one proxy used at a time), so the lock modes compare within one interleaved run` : ''}.`
      : 'D runs without ZooKeeper (`--no-with-zk`: ring built from the config, no locks).',
  ];
  const setup: string[] = [];
  const cells = new Map<string, Cell>();
  const load = new Map<string, number[]>();
  const memory: MemoryRow[] = [];
  const scale: ScaleResult[] = [];
  let scaleNote: string | undefined;
  const configs: [string, string][] = [];
  const targets: TargetInfo[] = [
    { id: 'A', label: 'A: direct PostgreSQL', proxy: false },
    { id: 'Bs', label: 'B: PgBouncer, session mode', proxy: true },
    { id: 'Bt', label: 'B: PgBouncer, transaction mode', proxy: true },
    { id: 'N', label: 'N: bare Node.js TCP relay (reference)', proxy: true },
    { id: 'C', label: 'C: pgring, 1 shard', proxy: true },
    { id: 'D', label: `D: pgring, 3 shards${opts.withZk ? `, ZooKeeper, locks ${opts.lockModes[0]}` : ''}`, proxy: true },
    ...(opts.withZk ? opts.lockModes.slice(1).map((m) => ({ id: `D-${m}`, label: `D: pgring, 3 shards, ZooKeeper, locks ${m}`, proxy: true })) : []),
  ];
  const isD = (t: TargetId) => t === 'D' || t.startsWith('D-');
  const commands = [
    `pgbench -i -s ${opts.scale} -q -h 127.0.0.1 -p <shard 1> -U postgres ${DB}              # A, B, C`,
    `pgbench -i -s ${opts.scale} -q -h 127.0.0.1 -p <pgring D> -U postgres ${DB_SHARDED}     # D (through pgring, after CREATE DATABASE ${DB_SHARDED} on each shard)`,
    ...opts.workloads.flatMap((w) => opts.clients.map((c) =>
      `pgbench ${pgbenchArgs('127.0.0.1', 0, '<db>', w, c, opts.duration).slice(0, -1).join(' ').replace('-p 0', '-p <port>')} -l --log-prefix <tmp>/runN <db>`)),
  ];
  const report = (complete: boolean): ReportInput => ({
    title: `pgring benchmark results${opts.mode === 'full' ? '' : ` (${opts.mode} mode)`}`,
    complete, startedAt, finishedAt: complete ? new Date() : undefined,
    facts: complete ? [...facts, ['load average at end', os.loadavg().map((x) => x.toFixed(2)).join(' ')]] : facts,
    mode: `${opts.mode}: ${opts.duration} s per run, ${opts.reps} repetition(s), clients ${opts.clients.join('/')}, pgbench scale ${opts.scale}, warm-up ${opts.warmup} s per target and workload`,
    commands, notes, setup, workloads: opts.workloads, clients: opts.clients, reps: opts.reps, targets, cells, load, memory, scale, scaleNote, configs,
    appendix: opts.mode === 'full' ? readAnalysis() : undefined,
  });
  // Progress goes to a side file, so an aborted run never replaces the last complete results.
  const partialFile = opts.out.replace(/(\.md)?$/, '.partial.md');
  const writeReport = (complete: boolean) => {
    fs.mkdirSync(path.dirname(opts.out), { recursive: true });
    if (complete) {
      fs.writeFileSync(opts.out, renderReport(report(true)));
      fs.rmSync(partialFile, { force: true });
    } else {
      fs.writeFileSync(partialFile, renderReport(report(false)));
    }
  };

  try {
    // ---- cluster, databases, data ------------------------------------------------
    log(`starting ZooKeeper + 3 PostgreSQL in ${tmp}`);
    const info = await cluster.start();
    const [p1, p2, p3] = cluster.pgs;
    for (const pg of [p1!, p2!, p3!]) pg.psql(`CREATE DATABASE ${DB_SHARDED}`);
    p1!.psql(`CREATE DATABASE ${DB}`);
    setup.push(`Cluster: ZooKeeper ${info.zk}; PostgreSQL ${info.pg.map((p) => `${p.name} 127.0.0.1:${p.port}`).join(', ')} (fsync off, synchronous_commit off, shared_buffers 64MB).`);

    log(`pgbench -i -s ${opts.scale} on shard 1 (${DB})`);
    let t0 = Date.now();
    const initA = await runTool('pgbench', ['-i', '-s', String(opts.scale), '-q', '-h', '127.0.0.1', '-p', String(p1!.port), '-U', 'postgres', DB], 600000);
    if (initA.code !== 0) throw new Error(`pgbench -i on shard 1 failed: ${initA.stderr}`);
    setup.push(`\`pgbench -i -s ${opts.scale}\` directly on shard 1 (database \`${DB}\`, for A, B, C): ${((Date.now() - t0) / 1000).toFixed(1)} s.`);

    // ---- proxies --------------------------------------------------------------------
    const maxClients = Math.max(...opts.clients);
    const maxClientConn = Math.max(opts.scaleClients, maxClients) + 500;
    const bs = new BenchPgBouncer({ dir: path.join(tmp, 'pgbouncer-session'), mode: 'session', serverPort: p1!.port, databases: [DB], poolSize: Math.max(maxClients + 8, 40), maxClientConn });
    const bt = new BenchPgBouncer({ dir: path.join(tmp, 'pgbouncer-transaction'), mode: 'transaction', serverPort: p1!.port, databases: [DB], poolSize: POOL_SIZE, maxClientConn });
    bouncers.push(bs, bt);
    const C = new BenchPgring('C', tmp, await pgringConfig(info, 1, false, null));
    const D = new BenchPgring('D', tmp, await pgringConfig(info, 3, true, opts.withZk ? { connect: info.zk, lockMode: opts.lockModes[0]!, cluster: 'bench' } : null));
    const dOthers = new Map<TargetId, BenchPgring>();
    for (const t of targets) {
      if (!t.id.startsWith('D-')) continue;
      dOthers.set(t.id, new BenchPgring(t.id, tmp, await pgringConfig(info, 3, true, { connect: info.zk, lockMode: t.id.slice(2), cluster: `bench-${t.id.slice(2)}` })));
    }
    pgrings.push(C, D, ...dOthers.values());
    log(`starting PgBouncer (session, transaction), pgring (C, ${['D', ...dOthers.keys()].join(', ')}) and the Node.js relay N`);
    await bs.start();
    await bt.start();
    await C.start();
    await D.start();
    for (const d of dOthers.values()) await d.start();
    // The relay's port is picked after the proxies have bound theirs (lock links listen on any
    // free port): picked before, one of them could take it, and the relay's port check would
    // then find that proxy listening while the relay had exited.
    const relayPort = await freePort();
    const N = new BenchPgring('N', tmp, { listen: { port: relayPort } }, [path.resolve(__dirname, 'relay.js'), String(relayPort), String(p1!.port)]);
    pgrings.push(N);
    await N.start();
    configs.push(['pgring C (pgring-C.json)', JSON.stringify(C.config, null, 2)], ['pgring D (pgring-D.json)', JSON.stringify(D.config, null, 2)],
      ...[...dOthers].map(([id, d]): [string, string] => [`pgring ${id} (pgring-${id}.json)`, JSON.stringify(d.config, null, 2)]),
      ['PgBouncer, session mode (pgbouncer.ini)', fs.readFileSync(bs.iniFile, 'utf8')], ['PgBouncer, transaction mode (pgbouncer.ini)', fs.readFileSync(bt.iniFile, 'utf8')]);
    setup.push(`PgBouncer session mode on 127.0.0.1:${bs.port}, transaction mode on 127.0.0.1:${bt.port} (run as the postgres OS user); pgring C on 127.0.0.1:${C.port}, D on 127.0.0.1:${D.port}${[...dOthers].map(([id, d]) => `, ${id} on 127.0.0.1:${d.port}`).join('')} (child processes \`node dist/src/cli/main.js proxy --config FILE\`); Node.js relay N on 127.0.0.1:${N.port} (\`node dist/bench/relay.js ${N.port} <shard 1>\`).`
      + ` Open-files limits: harness ${openFilesLimit()}, pgring ${openFilesLimit(C.pid ?? 0)}, PgBouncer ${openFilesLimit(bt.pid ?? 0)}.`);

    log(`pgbench -i -s ${opts.scale} through pgring D (${DB_SHARDED})`);
    t0 = Date.now();
    let dInitError: string | null = null;
    const initD = await runTool('pgbench', ['-i', '-s', String(opts.scale), '-q', '-h', '127.0.0.1', '-p', String(D.port), '-U', 'postgres', DB_SHARDED], 900000);
    const dInitSec = ((Date.now() - t0) / 1000).toFixed(1);
    if (initD.code !== 0) {
      dInitError = `pgbench -i through pgring D failed (exit ${initD.code}): ${(initD.stderr || initD.stdout).trim().split('\n').slice(-5).join(' / ')}`;
    } else {
      const expect = { pgbench_accounts: opts.scale * 100000, pgbench_tellers: opts.scale * 10, pgbench_branches: opts.scale };
      const parts: string[] = [];
      for (const [table, n] of Object.entries(expect)) {
        const per = [p1!, p2!, p3!].map((pg) => Number(pg.psql(`SELECT count(*) FROM ${table}`, DB_SHARDED).trim()));
        const sum = per.reduce((a, b) => a + b, 0);
        parts.push(`${table} ${per.join(' / ')}`);
        if (sum !== n) dInitError = `after pgbench -i through pgring D, ${table} has ${sum} rows over the shards (${per.join(' / ')}); expected ${n}`;
      }
      const viaD = await runTool('psql', ['-h', '127.0.0.1', '-p', String(D.port), '-U', 'postgres', '-d', DB_SHARDED, '-XAtq', '-c', 'SELECT count(*) FROM pgbench_branches'], 30000);
      if (!dInitError && viaD.stdout.trim() !== String(opts.scale)) {
        dInitError = `SELECT count(*) FROM pgbench_branches through pgring D returned "${(viaD.stdout + viaD.stderr).trim()}" (expected ${opts.scale}); pgbench would pick a wrong scale`;
      }
      setup.push(`\`pgbench -i -s ${opts.scale}\` through pgring D (database \`${DB_SHARDED}\` created on each shard first): ${dInitSec} s; rows per shard (s1 / s2 / s3): ${parts.join('; ')}.`);
    }
    if (dInitError) {
      setup.push(`**D initialisation failed: ${dInitError}** D's runs below are skipped.`);
      log(`WARNING: ${dInitError}`);
    }

    // ---- pgbench runs, interleaved ----------------------------------------------------
    const byId: Record<string, { port: number; pid: number | null } | undefined> = { A: { port: p1!.port, pid: null }, Bs: bs, Bt: bt, N, C, D, ...Object.fromEntries(dOthers) };
    const port = (t: TargetId) => byId[t]!.port;
    const pidOf = (t: TargetId) => byId[t]!.pid;
    const dbOf = (t: TargetId) => (isD(t) ? DB_SHARDED : DB);
    const naOf = (t: TargetId, w: Workload): string | undefined => {
      if (t === 'Bt' && w.prepared) return 'PgBouncer transaction mode does not support -M prepared';
      if (isD(t) && dInitError) return 'D initialisation failed (see Set-up)';
      return undefined;
    };
    // The extra lock-mode proxies run the TPC-B workloads only (SELECTs take no locks).
    const runsOn = (t: TargetId, w: Workload) => !t.startsWith('D-') || w.id.startsWith('tpcb');
    const plan: { w: Workload; c: number; rep: number; t: TargetId }[] = [];
    for (const w of opts.workloads) for (const c of opts.clients) for (let rep = 0; rep < opts.reps; rep++) {
      for (const t of targets) {
        if (!runsOn(t.id, w)) continue;
        const na = naOf(t.id, w);
        const key = cellKey(w.id, c, t.id);
        if (!cells.has(key)) cells.set(key, na ? { runs: [], na } : { runs: [] });
        if (!na) plan.push({ w, c, rep, t: t.id });
      }
    }
    writeReport(false);
    if (opts.warmup > 0) {
      const wc = Math.min(8, Math.max(...opts.clients));
      log(`warm-up: ${opts.warmup} s of each workload with ${wc} clients on each target (not recorded)`);
      for (const w of opts.workloads) for (const t of targets) {
        if (naOf(t.id, w) || !runsOn(t.id, w)) continue;
        checkInterrupted();
        const res = await runPgbench(pgbenchArgs('127.0.0.1', port(t.id), dbOf(t.id), w, wc, opts.warmup), logDir, opts.warmup);
        if (!res.ok) log(`  warm-up ${w.id} ${t.id}: ERROR ${res.error}`);
      }
    }
    log(`${plan.length} pgbench runs of ${opts.duration} s (about ${Math.ceil(plan.length * (opts.duration + 1.5) / 60)} min)`);
    let lastBlock = '';
    for (const [i, r] of plan.entries()) {
      checkInterrupted();
      const block = `${r.w.id}|${r.c}`;
      if (lastBlock && block !== lastBlock) writeReport(false);
      lastBlock = block;
      if (!load.has(block)) load.set(block, []);
      load.get(block)!.push(os.loadavg()[0]!);
      const pid = pidOf(r.t);
      const cpu0 = cpuSeconds(pid);
      const res = await runPgbench(pgbenchArgs('127.0.0.1', port(r.t), dbOf(r.t), r.w, r.c, opts.duration), logDir, opts.duration);
      const cpu1 = cpuSeconds(pid);
      const cpuPer1000 = cpu0 !== null && cpu1 !== null && res.processed > 0 ? (cpu1 - cpu0) / (res.processed / 1000) : null;
      const rec: RunRecord = { ...res, cpuPer1000 };
      cells.get(cellKey(r.w.id, r.c, r.t))!.runs.push(rec);
      const cpuTxt = cpuPer1000 === null ? '' : `, cpu ${cpuPer1000.toFixed(3)} s/1000tx`;
      log(`[${i + 1}/${plan.length}] ${r.w.id} c=${r.c} rep ${r.rep + 1} ${r.t.padEnd(2)}: `
        + (res.ok ? `${res.tps.toFixed(0)} tps, avg ${res.latAvgMs.toFixed(3)} ms, p99 ${res.p99Ms.toFixed(3)} ms${cpuTxt}` : `ERROR ${res.error}`));
      if (!res.ok && (r.t === 'C' || isD(r.t))) {
        const p = r.t === 'C' ? C : (dOthers.get(r.t) ?? D);
        if (!p.running()) { log(`pgring ${r.t} is not running: ${p.tail(5)}`); }
      }
      await sleep(300);
    }
    for (const [label, pid] of [['pgring C', C.pid], ['pgring D', D.pid], ...[...dOthers].map(([id, d]) => [`pgring ${id}`, d.pid] as const), ['Node relay N', N.pid], ['PgBouncer session', bs.pid], ['PgBouncer transaction', bt.pid]] as const) {
      memory.push({ target: label, peakKb: memKb(pid, 'VmHWM'), rssKb: memKb(pid, 'VmRSS') });
    }
    writeReport(false);

    // ---- connection scale ---------------------------------------------------------------
    if (opts.skipScale) {
      scaleNote = 'Skipped (--skip-scale).';
    } else {
      scaleNote = `${opts.scaleClients} idle clients opened from the harness process as raw sockets (StartupMessage, trust auth, wait for ReadyForQuery), 100 handshakes at a time, then held open for 2 s before measuring. RSS per client = (VmRSS with the clients − VmRSS before) / clients. pgring C has pool.maxSize ${POOL_SIZE}; PgBouncer transaction mode has max_client_conn ${maxClientConn}.`;
      for (const [label, pid, p] of [['pgring C', () => C.pid, C.port], ['PgBouncer transaction', () => bt.pid, bt.port]] as const) {
        checkInterrupted();
        log(`connection scale: ${opts.scaleClients} idle clients to ${label}`);
        const before = memKb(pid(), 'VmRSS');
        const row: ScaleResult = { target: label, clients: opts.scaleClients, ok: false, rssBeforeKb: before ?? undefined };
        try {
          const set = await openIdleClients(p, DB, opts.scaleClients, 100);
          try {
            await sleep(2000);
            const closed = set.closedEarly();
            if (closed) throw new Error(`${closed} idle clients were disconnected`);
            const withKb = memKb(pid(), 'VmRSS');
            row.ok = true;
            row.openMs = set.ms;
            row.rssWithKb = withKb ?? undefined;
            row.perClientKb = before !== null && withKb !== null ? (withKb - before) / opts.scaleClients : undefined;
          } finally {
            await set.close();
          }
          await sleep(2000);
          row.rssAfterCloseKb = memKb(pid(), 'VmRSS') ?? undefined;
          log(`  ${label}: open ${(row.openMs! / 1000).toFixed(1)} s, RSS ${((before ?? 0) / 1024).toFixed(1)} -> ${((row.rssWithKb ?? 0) / 1024).toFixed(1)} MB, ${row.perClientKb?.toFixed(1)} kB/client`);
        } catch (e) {
          row.error = (e as Error).message;
          log(`  ${label}: ERROR ${row.error}`);
        }
        scale.push(row);
      }
    }

    writeReport(true);
    console.log(`\nKey ratios (TPS medians, in parentheses best runs):\n${keyRatios(report(true)).join('\n')}`);
    if (scale.length) console.log(`\nConnection scale:\n${scale.map((s) => `  ${s.target}: ${s.ok ? `${s.perClientKb?.toFixed(1)} kB RSS per idle client (${s.clients} clients)` : `error: ${s.error}`}`).join('\n')}`);
    const failures = [...cells.values()].flatMap((c) => c.runs.filter((r) => !r.ok)).length;
    console.log(`\nWrote ${opts.out}${failures ? ` (${failures} failed runs: see the tables)` : ''}`);
  } catch (e) {
    if (interrupted) { await cleanup(); return; }
    console.error(`bench: ${(e as Error).stack ?? e}`);
    for (const p of pgrings) if (p.tail()) console.error(`--- pgring ${p.name} log ---\n${p.tail()}`);
    for (const b of bouncers) if (b.tail()) console.error(`--- PgBouncer ${b.opts.mode} log ---\n${b.tail()}`);
    notes.push(`**The run failed:** ${(e as Error).message}`);
    try { writeReport(false); console.error(`bench: partial results in ${partialFile}`); } catch { /* ignore */ }
    await cleanup();
    process.exit(1);
  }
  await cleanup();
  // Exit 0 even when some pgbench runs failed: they are reported in the file. Non-zero only for harness failures.
}

main().catch((e) => { console.error(e); process.exit(1); });
