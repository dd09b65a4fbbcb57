// Several pgring proxies over one ZooKeeper: fairness and a kill soak.
//
//   node dist/bench/proxies.js [--scale 2] [--clients 6,12] [--reps 3] [--duration 10] [--out bench/RESULTS-proxies.md]
//   node dist/bench/proxies.js --soak [--minutes 10] [--kill-every 30] [--out bench/RESULTS-soak.md]
//   node dist/bench/proxies.js --lock-modes --before DIST [--clients 8] [--out bench/RESULTS-lockmodes.md]
//
// Fairness: TPC-B (-M prepared --max-tries=10, locks.mode all, 3 shards) with the same total
// clients through one, two and three proxies, interleaved per repetition; the ratio of the
// several-proxy throughput to the one-proxy throughput, the slowest transaction (which bounds the
// longest lock wait) and the whole ledger after every run.
//
// Lock modes: TPC-B through one proxy in each locks.mode (all, multi_shard, off), for this build and
// for another build (`--before`: the dist/ directory of an earlier commit), interleaved.
//
// Soak: three proxies, TPC-B with --max-tries through all of them, one proxy SIGKILLed and
// restarted every --kill-every seconds (chosen at random); at the end, after recovery, the ledger
// must hold (history rows >= what pgbench saw commit; the excess is bounded by the transactions
// in flight at the kills).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { LocalCluster, ClusterInfo } from '../src/local/cluster';
import { chownPostgres, freePort, sleep } from '../src/local/proc';
import { demoConfig } from '../src/cli/demo';
import { BenchPgring } from './pgring';
import { runPgbench, runTool, PgbenchRun } from './pgbench';
import { Ledger, ledger, lockNodes, preparedLeft, unaccountedLocks } from '../test/helpers/tpcb';
import { cpuSeconds } from './procstat';
import * as net from 'node:net';

/** Requests ZooKeeper has received so far (its `srvr` four-letter word), or 0. */
function zkReceived(connect: string): Promise<number> {
  const [host, port] = connect.split(',')[0]!.split(':');
  return new Promise((resolve) => {
    let out = '';
    const s = net.connect(Number(port), host!, () => s.end('srvr'));
    s.on('data', (d) => { out += d; });
    s.on('close', () => resolve(Number(/Received: (\d+)/.exec(out)?.[1] ?? 0)));
    s.on('error', () => resolve(0));
  });
}

const DB = 'postgres';
const TPCB = ['-n', '-M', 'prepared', '--max-tries=10'];

interface Opts { warmup: number; forward: boolean; shapes: number[]; lockMode: string; leaseMs: number | null; idleOwnerMs: number | null; scale: number; clients: number[]; reps: number; duration: number; out: string; soak: boolean; minutes: number; killEvery: number; lockModes: boolean; before: string | null }

function parseOpts(): Opts {
  const a = yargs(hideBin(process.argv))
    .option('scale', { type: 'number', default: 2 })
    .option('clients', { type: 'string', default: '6,12' })
    .option('reps', { type: 'number', default: 3 })
    .option('duration', { type: 'number', default: 10 })
    .option('soak', { type: 'boolean', default: false })
    .option('minutes', { type: 'number', default: 10 })
    .option('kill-every', { type: 'number', default: 30 })
    .option('lock-modes', { type: 'boolean', default: false })
    .option('before', { type: 'string', describe: 'dist/ directory of an earlier build (for --lock-modes)' })
    .option('shapes', { type: 'string', default: '1,2,3', describe: 'numbers of proxies to compare (1 is the reference)' })
    .option('forward', { type: 'boolean', default: true, describe: 'locks.forward of the proxies (--no-forward: every proxy queues in ZooKeeper itself)' })
    .option('lock-mode', { type: 'string', default: 'all', describe: 'locks.mode of the proxies in the fairness runs' })
    .option('lease-ms', { type: 'number', describe: 'locks.leaseMs of the proxies (default: the config default)' })
    .option('idle-owner-ms', { type: 'number', describe: 'locks.idleOwnerMs of the proxies (default: the config default)' })
    .option('warmup', { type: 'number', default: 20, describe: 'unrecorded seconds of TPC-B after the set of running proxies changed, before a measured run' })
    .option('out', { type: 'string' })
    .strict().parseSync();
  return {
    warmup: a.warmup,
    forward: a.forward, shapes: a.shapes.split(',').map(Number), lockMode: a['lock-mode'], leaseMs: a['lease-ms'] ?? null, idleOwnerMs: a['idle-owner-ms'] ?? null, scale: a.scale, clients: a.clients.split(',').map(Number), reps: a.reps, duration: a.duration, soak: a.soak,
    minutes: a.minutes, killEvery: a['kill-every'], lockModes: a['lock-modes'], before: a.before ?? null,
    out: a.out ?? path.resolve(__dirname, '../../bench', a.soak ? 'RESULTS-soak.md' : a['lock-modes'] ? 'RESULTS-lockmodes.md' : 'RESULTS-proxies.md'),
  };
}

let LEASE_MS: number | null = null;
let IDLE_OWNER_MS: number | null = null;
let LOCK_MODE = 'all';
let FORWARD = true;

async function proxyConfig(cluster: ClusterInfo): Promise<Record<string, unknown>> {
  const c = demoConfig(cluster.zk, cluster.pg.map((p) => p.port), await freePort(), 0);
  return { ...c, metrics: { enabled: false }, logLevel: 'warn', zookeeper: { connect: cluster.zk, cluster: 'bench', sessionTimeoutMs: 8000 }, locks: { mode: LOCK_MODE, forward: FORWARD, ...(LEASE_MS !== null ? { leaseMs: LEASE_MS } : {}), ...(IDLE_OWNER_MS !== null ? { idleOwnerMs: IDLE_OWNER_MS } : {}) } };
}

function pgbench(port: number, clients: number, seconds: number, dir: string): Promise<PgbenchRun> {
  return runPgbench(['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', ...TPCB, '-c', String(clients), '-j', String(Math.min(2, clients)), '-T', String(seconds), DB], dir, seconds);
}

function ledgerOk(before: Ledger, after: Ledger, committed: number, atLeast: boolean): string | null {
  const d = after.map((v, i) => v - before[i]!);
  if (new Set(d.slice(0, 4)).size !== 1) return `sums moved apart: ${d.slice(0, 4).join(', ')}`;
  if (atLeast ? d[4]! < committed : d[4] !== committed) return `history rows +${d[4]} vs committed ${committed}`;
  return null;
}

async function fairness(o: Opts, zkPid: number | undefined, zkConnect: string, proxies: BenchPgring[], dir: string, ports: number[]): Promise<string> {
  const rows: string[] = [];
  const summary: string[] = [];
  for (const total of o.clients) {
    const shapes = o.shapes.filter((n) => total % n === 0 && n <= proxies.length);
    const tps = new Map<number, number[]>();
    const maxMs = new Map<number, number[]>();
    // Exactly n proxies run for a run through n proxies: a proxy that runs idle still owns its
    // share of the lock buckets (src/cluster/lock-owner.ts), so "one proxy" means one proxy alone.
    const only = async (n: number) => {
      let changed = false;
      for (const [i, p] of proxies.entries()) {
        if (i < n && !p.running()) { await p.start(); changed = true; }
        if (i >= n && p.running()) { await p.stop(); changed = true; }
      }
      if (changed) await sleep(1500);   // the other proxies see the change (their proxies/ watch)
      return changed;
    };
    // A proxy that starts or stops moves the ownership of about 1/n of the lock buckets: each
    // moved bucket changes hands in ZooKeeper at its first use, and the new process compiles its
    // hot paths. That transient lasts 15-60 s on this machine (proxy CPU per transaction 4.2 ms in
    // the first 8 s after a second proxy started, 2.0 ms a minute later); measured right after a
    // restart it, not two proxies running together, would be compared. So every change of the
    // running proxies is followed by an unrecorded warm-up.
    const settle = (n: number) => Promise.all(proxies.slice(0, n).map((p) => pgbench(p.port, total / n, o.warmup, dir)));
    // Warm-up, unrecorded: every shape once (JIT, connection pools, lock buckets taken).
    for (const n of shapes) { await only(n); await Promise.all(proxies.slice(0, n).map((p) => pgbench(p.port, total / n, 3, dir))); }
    for (let rep = 1; rep <= o.reps; rep++) {
      for (const n of shapes) {
        if (await only(n) && o.warmup > 0) await settle(n);
        const before = await ledger(ports, DB);
        const cpu0 = proxies.slice(0, n).map((p) => cpuSeconds(p.pid) ?? 0), zk0 = cpuSeconds(zkPid) ?? 0, req0 = await zkReceived(zkConnect);
        const runs = await Promise.all(proxies.slice(0, n).map((p) => pgbench(p.port, total / n, o.duration, dir)));
        const cpu = proxies.slice(0, n).reduce((s, p, i) => s + (cpuSeconds(p.pid) ?? 0) - cpu0[i]!, 0), zkCpu = (cpuSeconds(zkPid) ?? 0) - zk0, zkReq = await zkReceived(zkConnect) - req0;
        const after = await ledger(ports, DB);
        const committed = runs.reduce((s, r) => s + (r.processed || 0), 0);
        const bad = ledgerOk(before, after, committed, false) ?? (runs.find((r) => !r.ok)?.error ?? null);
        const sum = runs.reduce((s, r) => s + (r.tps || 0), 0);
        const worst = Math.max(...runs.map((r) => r.maxMs || 0));
        (tps.get(n) ?? tps.set(n, []).get(n)!).push(sum);
        (maxMs.get(n) ?? maxMs.set(n, []).get(n)!).push(worst);
        rows.push(`| ${total} | ${n} × ${total / n} | ${rep} | ${sum.toFixed(0)} (${runs.map((r) => r.tps.toFixed(0)).join(' + ')}) | ${runs.map((r) => r.p99Ms.toFixed(0)).join(' / ')} | ${worst.toFixed(0)} | ${committed} | ${(cpu * 1000 / Math.max(1, committed)).toFixed(2)} | ${(zkCpu * 1000 / Math.max(1, committed)).toFixed(2)} | ${(zkReq / Math.max(1, committed)).toFixed(1)} | ${bad ?? 'holds'} |`);
        console.log(rows[rows.length - 1]);
      }
    }
    const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
    if (!tps.has(1)) continue;
    const one = med(tps.get(1)!);
    for (const n of shapes.filter((k) => k !== 1)) summary.push(`| ${total} | ${n} | ${med(tps.get(n)!).toFixed(0)} | ${one.toFixed(0)} | **${(med(tps.get(n)!) / one).toFixed(2)}×** | ${med(maxMs.get(n)!).toFixed(0)} ms (one proxy: ${med(maxMs.get(1)!).toFixed(0)} ms) |`);
  }
  return [
    `## Several proxies: TPC-B through 1, 2 and 3 proxies with the same total clients`,
    '',
    `${new Date().toISOString()}, ${os.cpus().length} cores, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end. 3 shards, ZooKeeper, \`locks.mode: ${o.lockMode}\`, pgbench -i -s ${o.scale} (${o.scale} branches: every transaction updates one of ${o.scale} hot rows),`,
    `\`pgbench ${TPCB.join(' ')} -c N -j 2 -T ${o.duration}\` per proxy, all proxies at once; the targets interleaved in each of ${o.reps} repetitions, after an unrecorded 3 s warm-up of each; for a run through n proxies exactly n proxies run, and every start or stop of a proxy is followed by ${o.warmup} s of unrecorded TPC-B through the proxies of the next run (the lock buckets whose owner changed move at their first use).`,
    `Command: \`node dist/bench/proxies.js${o.forward ? '' : ' --no-forward'}${o.lockMode !== 'all' ? ` --lock-mode ${o.lockMode}` : ''}${o.leaseMs !== null ? ` --lease-ms ${o.leaseMs}` : ''}${o.idleOwnerMs !== null ? ` --idle-owner-ms ${o.idleOwnerMs}` : ''} --scale ${o.scale} --clients ${o.clients.join(',')} --reps ${o.reps} --duration ${o.duration} --warmup ${o.warmup}\``,
    '',
    '| total clients | proxies | TPS (median) | one proxy TPS | ratio | slowest transaction (median of runs) |',
    '|---|---|---|---|---|---|',
    ...summary,
    '',
    'Every run (TPS sum and per proxy; p99 latency per proxy in ms; the slowest transaction in ms; CPU ms per transaction of the proxies together and of ZooKeeper, ZooKeeper requests per transaction (all proxies, heartbeats included); the ledger after the run: Σabalance = Σtbalance = Σbbalance = Σdelta and history rows = committed):',
    '',
    '| clients | proxies × clients | rep | TPS | p99 ms | max ms | committed | proxy CPU ms/tx | ZooKeeper CPU ms/tx | ZooKeeper requests/tx | ledger |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

const MODES = ['all', 'multi_shard', 'off'] as const;

async function lockModes(o: Opts, cluster: ClusterInfo, dir: string, ports: number[]): Promise<string> {
  const builds = [{ name: 'this build', main: path.resolve(__dirname, '../src/cli/main.js') }];
  if (o.before) builds.unshift({ name: `before (${o.before})`, main: path.resolve(o.before, 'src/cli/main.js') });
  const clients = o.clients[0] ?? 8;
  const targets: { build: string; mode: string; proxy: BenchPgring; tps: number[]; p99: number[] }[] = [];
  for (const b of builds) {
    for (const mode of MODES) {
      const cfg = await proxyConfig(cluster);
      Object.assign(cfg, { zookeeper: { connect: cluster.zk, cluster: `lm_${targets.length}`, sessionTimeoutMs: 8000 }, locks: { mode } });
      const p = new BenchPgring(`lm${targets.length}`, dir, cfg, [b.main, 'proxy', '--config', path.join(dir, `pgring-lm${targets.length}.json`)]);
      await p.start();
      targets.push({ build: b.name, mode, proxy: p, tps: [], p99: [] });
    }
  }
  const broken: string[] = [];
  try {
    for (let rep = 1; rep <= o.reps; rep++) {
      for (const t of targets) {
        const before = await ledger(ports, DB);
        const r = await pgbench(t.proxy.port, clients, o.duration, dir);
        const bad = ledgerOk(before, await ledger(ports, DB), r.processed, false) ?? (r.ok ? null : r.error ?? 'failed');
        if (bad) broken.push(`${t.build}, ${t.mode}, rep ${rep}: ${bad}`);
        t.tps.push(r.tps); t.p99.push(r.p99Ms);
        console.log(`${t.build} ${t.mode} rep ${rep}: ${r.tps.toFixed(0)} tps ${bad ?? ''}`);
      }
    }
  } finally {
    for (const t of targets) await t.proxy.stop();
  }
  const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  const rows = targets.map((t) => {
    const base = targets.find((x) => x.mode === t.mode && x.build === builds[0]!.name)!;
    return `| ${t.build} | ${t.mode} | ${med(t.tps).toFixed(0)} | ${t.tps.map((x) => x.toFixed(0)).join(', ')} | ${med(t.p99).toFixed(1)} | ${(med(t.tps) / med(base.tps)).toFixed(2)}× |`;
  });
  return [
    '## TPC-B by lock mode, before and after',
    '',
    `${new Date().toISOString()}, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end. One proxy at a time, 3 shards, ZooKeeper, scale ${o.scale}, \`pgbench ${TPCB.join(' ')} -c ${clients} -j 2 -T ${o.duration}\`, ${o.reps} repetitions interleaved over all targets.`,
    `Command: \`node dist/bench/proxies.js --lock-modes${o.before ? ` --before ${o.before}` : ''} --clients ${clients} --reps ${o.reps} --duration ${o.duration} --scale ${o.scale}\``,
    '',
    '| build | locks.mode | TPS (median) | every run | p99 ms | vs first build |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    broken.length ? `Ledger or run failures: ${broken.join('; ')}` : 'The whole ledger held after every run.',
    '',
  ].join('\n');
}

async function soak(o: Opts, cluster: ClusterInfo, proxies: BenchPgring[], dir: string, ports: number[]): Promise<string> {
  const end = Date.now() + o.minutes * 60000;
  const before = await ledger(ports, DB);
  let committed = 0, runsDone = 0, kills = 0;
  const log: string[] = [];
  const drive = async (p: BenchPgring) => {
    while (Date.now() < end - 2000) {
      if (!p.running()) { await sleep(200); continue; }
      const secs = Math.max(2, Math.min(60, Math.floor((end - Date.now()) / 1000)));
      const r = await pgbench(p.port, 2, secs, dir);
      if (Number.isFinite(r.processed)) committed += r.processed;
      runsDone++;
    }
  };
  const killer = async () => {
    while (Date.now() + o.killEvery * 1000 < end) {
      await sleep(o.killEvery * 1000);
      const p = proxies[Math.floor(Math.random() * proxies.length)]!;
      p.killNow();
      kills++;
      const t = new Date().toISOString();
      await sleep(1000 + Math.random() * 2000);
      await p.start();
      log.push(`- ${t}: SIGKILL of proxy ${p.name}, restarted`);
      console.log(log[log.length - 1]);
    }
  };
  await Promise.all([...proxies.map(drive), killer()]);
  // Recovery: the elected controller finishes in-doubt transactions of killed proxies.
  const deadline = Date.now() + 90000;
  while ((await preparedLeft(ports, DB)).length && Date.now() < deadline) await sleep(1000);
  const left = await preparedLeft(ports, DB);
  await sleep(1000);
  // Running proxies keep idle buckets (locks.leaseMs 0): a node counts as left behind when no
  // running proxy lists it in SHOW LOCKS.
  const all = await lockNodes(cluster.zk, 'bench');
  const locks = await unaccountedLocks(cluster.zk, 'bench', proxies.filter((p) => p.running()).map((p) => p.port));
  const after = await ledger(ports, DB);
  const d = after.map((v, i) => v - before[i]!);
  const bad = ledgerOk(before, after, committed, true);
  const verdict = bad ?? (left.length ? `${left.length} prepared transactions left` : locks.length ? `${locks.length} lock znodes no running proxy holds` : null);
  return [
    `## Soak: ${o.minutes} minutes, 3 proxies, one SIGKILLed and restarted every ${o.killEvery} s`,
    '',
    `${new Date().toISOString()}. TPC-B \`pgbench ${TPCB.join(' ')} -c 2\` through each proxy (restarted after each kill), 3 shards, \`locks.mode: all\`, scale ${o.scale}.`,
    `Command: \`node dist/bench/proxies.js --soak --minutes ${o.minutes} --kill-every ${o.killEvery}\``,
    '',
    `- kills: ${kills}; pgbench runs: ${runsDone}; transactions pgbench saw commit: ${committed}`,
    `- changes over the soak: Σabalance ${d[0]}, Σtbalance ${d[1]}, Σbbalance ${d[2]}, Σdelta ${d[3]}, history rows +${d[4]} (at least the committed count; the excess, ${d[4]! - committed}, is transactions in flight at a kill that recovery committed: at most 2 clients × ${kills} kills)`,
    `- prepared transactions left: ${left.length}; lock znodes no running proxy holds: ${locks.length} (held idle by the running proxies: ${all.length - locks.length})`,
    `- **ledger: ${verdict ?? 'intact'}**`,
    '',
    ...log,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const o = parseOpts();
  LEASE_MS = o.leaseMs;
  IDLE_OWNER_MS = o.idleOwnerMs;
  LOCK_MODE = o.lockMode;
  FORWARD = o.forward;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-proxies-'));
  chownPostgres(dir);
  const cluster = new LocalCluster({ dir, shards: 3 });
  const proxies: BenchPgring[] = [];
  let code = 0;
  // Ctrl-C or kill: stop what this harness started (proxies, PostgreSQL, ZooKeeper) first.
  for (const [sig, exit] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(sig, () => {
      void (async () => {
        for (const p of proxies) await p.stop().catch(() => undefined);
        await cluster.stop().catch(() => undefined);
        fs.rmSync(dir, { recursive: true, force: true });
      })().finally(() => process.exit(exit));
    });
  }
  try {
    const info = await cluster.start();
    const ports = info.pg.map((p) => p.port);
    for (let i = 1; i <= 3; i++) {
      const p = new BenchPgring(`p${i}`, dir, await proxyConfig(info));
      await p.start();
      proxies.push(p);
    }
    if (o.lockModes) for (const p of proxies.splice(0)) await p.stop();
    const initProxy = proxies[0] ?? new BenchPgring('init', dir, await proxyConfig(info));
    if (!proxies[0]) await initProxy.start();
    const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(initProxy.port), '-U', 'postgres', '-i', '-s', String(o.scale), '-q', DB], 300000);
    if (!proxies[0]) await initProxy.stop();
    if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
    const md = o.soak ? await soak(o, info, proxies, dir, ports) : o.lockModes ? await lockModes(o, info, dir, ports) : await fairness(o, cluster.zk?.pid, info.zk, proxies, dir, ports);
    fs.writeFileSync(o.out, `# pgring: several proxies\n\n${md}`);
    console.log(`wrote ${o.out}`);
    if (o.soak && !/ledger: intact/.test(md)) code = 1;
  } catch (e) {
    console.error(e);
    code = 1;
  } finally {
    for (const p of proxies) await p.stop().catch(() => undefined);
    await cluster.stop().catch(() => undefined);
    // PGRING_BENCH_KEEP_LOGS=DIR: keep the proxies' logs (with PGRING_TXN_STATS=1 they end with lock statistics)
    const keep = process.env.PGRING_BENCH_KEEP_LOGS;
    if (keep) { fs.mkdirSync(keep, { recursive: true }); for (const f of fs.readdirSync(dir)) if (/^pgring-.*\.log$/.test(f)) fs.copyFileSync(path.join(dir, f), path.join(keep, f)); }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  process.exit(code);
}

void main();
