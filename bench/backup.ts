// What a consistent backup costs (issue 16): the pause `pgring backup create` causes to TPC-B
// at 8 clients through pgring (3 shards, ZooKeeper locks, two-phase commit), and the wall time
// of `backup create` and `backup restore` at pgbench scale 10.
//
//   node dist/bench/backup.js [--scale 10] [--clients 8] [--cuts 5] [--gap 6] [--out bench/RESULTS-backup.md]
//
// A LocalCluster of its own (ZooKeeper + 3 PostgreSQL with WAL archived by pgBackRest) on free
// loopback ports in a temporary directory; pgring as a child process; everything is stopped at
// the end. TPC-B runs for (cuts + 1) * gap seconds with per-transaction logs; a cut is taken
// every `gap` seconds. For each cut: the time commits were held (from the manifest), and the
// max and p99 latency of the transactions that were in flight while the barrier existed,
// against the p99 of the transactions that were not.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalCluster } from '../src/local/cluster';
import { chownPostgres, freePort, freePorts, pgBin, runAsPostgres, sleep } from '../src/local/proc';
import { demoConfig } from '../src/cli/demo';
import { BenchPgring } from './pgring';
import { arg, ms, p99, readLogs, runTool, Tx } from './pgbench';

const SCALE = Number(arg('scale', '10'));
const CLIENTS = Number(arg('clients', '8'));
const CUTS = Number(arg('cuts', '5'));
const GAP = Number(arg('gap', '6'));
const OUT = arg('out', path.resolve(__dirname, '../../bench/RESULTS-backup.md'));
const MAIN = path.resolve(__dirname, '../src/cli/main.js');

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, 'backup', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - t0 }));
  });
}

function must<T extends { code: number | null; stderr: string }>(r: T, what: string): T {
  if (r.code !== 0) throw new Error(`${what} failed: ${r.stderr.slice(-2000)}`);
  return r;
}


async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-bench-backup-'));
  chownPostgres(dir);
  const cluster = new LocalCluster({ dir: path.join(dir, 'live'), shards: 3, archive: true });
  let proxy: BenchPgring | null = null;
  const restored: string[] = [];
  try {
    const info = await cluster.start();
    const raw = demoConfig(info.zk, info.pg.map((p) => p.port), await freePort(), 0) as Record<string, unknown>;
    Object.assign(raw, { metrics: { enabled: false }, logLevel: 'warn', zookeeper: { connect: info.zk, cluster: 'benchbackup', sessionTimeoutMs: 10000 }, pool: { mode: 'transaction', maxSize: 20 } });
    proxy = new BenchPgring('backup', dir, raw);
    await proxy.start();
    const cfg = proxy.configFile;
    console.error(`bench backup: pgbench -i -s ${SCALE} through pgring`);
    const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres', '-i', '-s', String(SCALE), '-q', 'postgres'], 1800000);
    if (init.code !== 0) throw new Error(init.stderr);
    const bInit = must(await cli(['init', '--config', cfg]), 'backup init');
    const logDir = path.join(dir, 'logs');
    fs.mkdirSync(logDir);
    const seconds = (CUTS + 1) * GAP;
    console.error(`bench backup: TPC-B, ${CLIENTS} clients, ${seconds} s, a cut every ${GAP} s`);
    const bench = runTool('pgbench', ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres', '-n', '-M', 'prepared', '--max-tries=10', '-c', String(CLIENTS), '-j', '2',
      '-T', String(seconds), '-l', '--log-prefix', path.join(logDir, 'tpcb'), 'postgres'], (seconds + 300) * 1000, logDir);
    const cuts: { name: string; createMs: number; pauseMs: number; fromUs: number; toUs: number }[] = [];
    for (let i = 1; i <= CUTS; i++) {
      await sleep(GAP * 1000);
      const r = must(await cli(['create', `bench${i}`, '--config', cfg, '--json']), `backup create bench${i}`);
      const m = JSON.parse(r.stdout) as { createdAt: number; pauseMs: number };
      // The barrier existed from createdAt - pauseMs (approximately) to createdAt + release.
      cuts.push({ name: `bench${i}`, createMs: r.ms, pauseMs: m.pauseMs, fromUs: (m.createdAt - m.pauseMs) * 1000, toUs: (m.createdAt + 20) * 1000 });
    }
    const b = await bench;
    if (b.code !== 0) throw new Error(`pgbench: ${b.stderr.slice(-2000)}`);
    const txs = readLogs(logDir, 'tpcb');
    const overlaps = (t: Tx, c: { fromUs: number; toUs: number }) => t.endUs >= c.fromUs && t.endUs - t.latUs <= c.toUs;
    const quiet = txs.filter((t) => !cuts.some((c) => overlaps(t, c))).map((t) => t.latUs);
    const rows = cuts.map((c) => {
      const lat = txs.filter((t) => overlaps(t, c)).map((t) => t.latUs);
      return `| ${c.name} | ${c.pauseMs} | ${lat.length} | ${ms(Math.max(...lat))} | ${ms(p99(lat))} | ${(c.createMs / 1000).toFixed(1)} |`;
    });
    const ports = await freePorts(3);
    const target = path.join(dir, 'restored');
    const rest = must(await cli(['restore', `bench${CUTS}`, '--config', cfg, '--dir', target, '--ports', ports.join(','), '--cluster', 'benchbackup_restored']), 'backup restore');
    for (const s of ['s1', 's2', 's3']) restored.push(path.join(target, s));
    const tps = /tps = ([\d.]+)/.exec(b.stdout)?.[1] ?? '?';
    const report = [
      '# Backups: the pause of a consistent cut, create and restore times',
      '',
      `Generated by \`node dist/bench/backup.js --scale ${SCALE} --clients ${CLIENTS} --cuts ${CUTS} --gap ${GAP}\` on ${new Date().toISOString()} (${os.cpus().length} CPUs).`,
      `pgring with 3 shards, ZooKeeper locks (mode all), pgbench TPC-B \`-M prepared --max-tries=10\` at ${CLIENTS} clients (${tps} TPS over ${seconds} s), WAL archived by pgBackRest (lz4).`,
      '',
      '| cut | commits held (ms) | transactions in flight during the barrier | max latency (ms) | p99 latency (ms) | `backup create` wall time (s) |',
      '|---|---|---|---|---|---|',
      ...rows,
      '',
      `Transactions not in flight during any cut: ${quiet.length}, p99 ${ms(p99(quiet))} ms, max ${ms(Math.max(...quiet))} ms. Target: p99 of the pause under 200 ms.`,
      '',
      `\`backup init\` (stanza-create, check, full backup of 3 shards at scale ${SCALE}): ${(bInit.ms / 1000).toFixed(1)} s.`,
      `\`backup restore\` of the last cut (3 shards, recovery to the restore point, settlement, ring installed): ${(rest.ms / 1000).toFixed(1)} s.`,
      '',
    ].join('\n');
    fs.writeFileSync(OUT, report);
    console.log(report);
  } finally {
    await proxy?.stop().catch(() => undefined);
    for (const d of restored) { try { runAsPostgres(pgBin('pg_ctl'), ['-D', d, '-m', 'immediate', '-w', 'stop']); } catch { /* not running */ } }
    await cluster.stop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e instanceof Error ? e.stack : e); process.exit(1); });
