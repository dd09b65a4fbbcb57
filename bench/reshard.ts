// What online resharding costs (issue 14, item 7): `pgring shard add s4` on a cluster of three
// shards at pgbench scale 10 while TPC-B runs at 8 clients through pgring.
//
//   node dist/bench/reshard.js [--scale 10] [--clients 8] [--seconds 180] [--start 30] [--out bench/RESULTS-reshard.md]
//
// A LocalCluster of its own (ZooKeeper + 4 PostgreSQL on free loopback ports, the fourth outside
// the ring) in a temporary directory; pgring as a child process; everything is stopped at the end.
// One pgbench run (-M prepared --max-tries, per-transaction logs) of `seconds`; `shard add` starts
// `start` seconds in. From the logs and the phase changes `shard add --json` prints: time to move,
// rows copied per second, TPS before / during the copy / after, and the write pause (max and p99
// latency of the transactions in flight during the cut-over); then the TPC-B ledger.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { LocalCluster } from '../src/local/cluster';
import { chownPostgres, freePort, sleep } from '../src/local/proc';
import { demoConfig } from '../src/cli/demo';
import { BenchPgring } from './pgring';
import { arg, ms, p99, readLogs, runTool } from './pgbench';

const SCALE = Number(arg('scale', '10'));
const CLIENTS = Number(arg('clients', '8'));
const SECONDS = Number(arg('seconds', '180'));
const START = Number(arg('start', '30'));
const OUT = arg('out', path.resolve(__dirname, '../../bench/RESULTS-reshard.md'));
const MAIN = path.resolve(__dirname, '../src/cli/main.js');
const CLUSTER = 'benchreshard';

const max = (xs: number[]) => xs.reduce((a, b) => Math.max(a, b), 0);

/** `pgring shard add` with --json: the time each phase was first reported (epoch ms), and the last progress. */
function shardAdd(args: string[]): Promise<{ code: number | null; phases: Map<string, number>; rows: number; out: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, 'shard', 'add', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const phases = new Map<string, number>();
    let buf = '', out = '', rows = 0;
    child.stdout.on('data', (d) => {
      buf += d; out += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i); buf = buf.slice(i + 1);
        try {
          const j = JSON.parse(line) as { phase?: string; progress?: { kind: string; expected: number }[] };
          if (j.phase && !phases.has(j.phase)) phases.set(j.phase, Date.now());
          if (j.progress?.length) rows = j.progress.filter((p) => p.kind === 'sharded').reduce((a, p) => a + p.expected, 0);
        } catch { /* not JSON */ }
      }
    });
    child.stderr.on('data', (d) => { out += d; });
    child.on('close', (code) => resolve({ code, phases, rows, out, ms: Date.now() - t0 }));
  });
}

async function onShard<T extends pg.QueryResultRow>(port: number, sql: string): Promise<T[]> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  await c.connect();
  try { return (await c.query<T>(sql)).rows; } finally { await c.end(); }
}

/** Σabalance, Σtbalance, Σbbalance, Σdelta, history rows, accounts: over all shards. */
async function ledger(ports: number[]): Promise<number[]> {
  const out = [0, 0, 0, 0, 0, 0];
  for (const p of ports) {
    const [r] = await onShard<Record<string, string>>(p, `SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::int8 AS a,
      (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::int8 AS t, (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::int8 AS b,
      (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8 AS d, (SELECT count(*) FROM pgbench_history)::int8 AS n,
      (SELECT count(*) FROM pgbench_accounts)::int8 AS c`).catch((): Record<string, string>[] => [{ a: '0', t: '0', b: '0', d: '0', n: '0', c: '0' }]);
    ['a', 't', 'b', 'd', 'n', 'c'].forEach((k, i) => { out[i]! += Number(r![k]); });
  }
  return out;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-bench-reshard-'));
  chownPostgres(dir);
  const cluster = new LocalCluster({ dir: path.join(dir, 'live'), shards: 4 });
  let proxy: BenchPgring | null = null;
  const load0 = os.loadavg();
  try {
    const info = await cluster.start();
    const ports = info.pg.map((p) => p.port);
    const raw = demoConfig(info.zk, ports.slice(0, 3), await freePort(), 0) as Record<string, unknown>;
    Object.assign(raw, { metrics: { enabled: false }, logLevel: 'warn', zookeeper: { connect: info.zk, cluster: CLUSTER, sessionTimeoutMs: 10000 }, pool: { mode: 'transaction', maxSize: 20 } });
    proxy = new BenchPgring('reshard', dir, raw);
    await proxy.start();
    console.error(`bench reshard: pgbench -i -s ${SCALE} through pgring`);
    const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres', '-i', '-s', String(SCALE), '-q', 'postgres'], 1800000);
    if (init.code !== 0) throw new Error(init.stderr);
    const before = await ledger(ports);
    const logDir = path.join(dir, 'logs');
    fs.mkdirSync(logDir);
    console.error(`bench reshard: TPC-B, ${CLIENTS} clients, ${SECONDS} s; shard add s4 after ${START} s`);
    const t0 = Date.now();
    const bench = runTool('pgbench', ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres', '-n', '-M', 'prepared', '--max-tries=1000', '-c', String(CLIENTS), '-j', '2',
      '-T', String(SECONDS), '-l', '--log-prefix', path.join(logDir, 'tpcb'), 'postgres'], (SECONDS + 600) * 1000, logDir);
    await sleep(START * 1000);
    const add = await shardAdd(['s4', '--host', '127.0.0.1', '--port', String(ports[3]), '--config', proxy.configFile]);
    if (add.code !== 0) throw new Error(`shard add failed: ${add.out.slice(-3000)}`);
    const addEnd = Date.now();
    const b = await bench;
    if (b.code !== 0) throw new Error(`pgbench: ${b.stderr.slice(-2000)}`);
    const after = await ledger(ports);
    const load1 = os.loadavg();
    const txs = readLogs(logDir, 'tpcb');
    const ph = (p: string) => add.phases.get(p) ?? NaN;
    const copyFrom = ph('copying'), copyTo = ph('catching-up'), cutFrom = ph('fencing'), cutTo = ph('switched');
    const benchEnd = t0 + SECONDS * 1000;
    const tps = (fromMs: number, toMs: number) => {
      const n = txs.filter((t) => t.endUs >= fromMs * 1000 && t.endUs < toMs * 1000).length;
      return toMs > fromMs ? (n / ((toMs - fromMs) / 1000)).toFixed(0) : 'n/a';
    };
    // In flight during the cut-over: started before `switched` was reported and ended after `fencing` was.
    const cut = txs.filter((t) => t.endUs >= cutFrom * 1000 && t.endUs - t.latUs <= cutTo * 1000).map((t) => t.latUs);
    const rest = txs.filter((t) => !(t.endUs >= cutFrom * 1000 && t.endUs - t.latUs <= cutTo * 1000)).map((t) => t.latUs);
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(b.stdout)?.[1] ?? NaN);
    const failed = /number of failed transactions: (\d+)/.exec(b.stdout)?.[1] ?? '?';
    const retried = /number of transactions retried: (\d+)/.exec(b.stdout)?.[1] ?? '0';
    const d = after.map((v, i) => v - before[i]!);
    const ledgerOk = d[0] === d[1] && d[1] === d[2] && d[2] === d[3] && d[4] === processed;
    const perShard = await Promise.all(ports.map(async (p) => Number((await onShard<{ n: string }>(p, 'SELECT count(*) AS n FROM pgbench_accounts'))[0]!.n)));
    const fmt = (n: number) => (n / 1000).toFixed(1);
    const report = [
      '# Online resharding: `pgring shard add` under TPC-B',
      '',
      `Generated by \`node dist/bench/reshard.js --scale ${SCALE} --clients ${CLIENTS} --seconds ${SECONDS} --start ${START}\` on ${new Date().toISOString()}`,
      `(${os.cpus().length} CPUs shared with other work: load average ${load0.map((x) => x.toFixed(2)).join(' / ')} before, ${load1.map((x) => x.toFixed(2)).join(' / ')} after).`,
      `pgring (one proxy, ZooKeeper locks, two-phase commit) over 3 PostgreSQL 15 shards; a fourth server outside the ring. pgbench -i -s ${SCALE} through the proxy, then`,
      `\`pgbench -n -M prepared --max-tries=1000 -c ${CLIENTS} -j 2 -T ${SECONDS} -l\` through the proxy; ${START} s in:`,
      `\`pgring shard add s4 --host 127.0.0.1 --port <4th> --config <proxy config> --json\` (defaults: --max-pause-ms 5000, --tries 5, --batch 5000).`,
      '',
      '| measure | value |',
      '|---|---|',
      `| time to move (\`shard add\` wall time, plan to clean-up done) | ${fmt(add.ms)} s |`,
      `| initial copy (copying → catching-up) | ${fmt(copyTo - copyFrom)} s, ${add.rows} rows of sharded tables, ${(add.rows / ((copyTo - copyFrom) / 1000)).toFixed(0)} rows/s |`,
      `| cut-over (fencing → switched reported) | ${fmt(cutTo - cutFrom)} s |`,
      `| release + clean-up (switched → done) | ${fmt(addEnd - cutTo)} s |`,
      `| TPS before (${START - 5} s before \`shard add\`) | ${tps(t0 + 5000, t0 + START * 1000)} |`,
      `| TPS during the copy | ${tps(copyFrom, copyTo)} |`,
      `| TPS from the copy's end to done (catch-up, cut-over, clean-up) | ${tps(copyTo, addEnd)} |`,
      `| TPS after (done → end of the run) | ${tps(addEnd, benchEnd)} |`,
      `| transactions in flight during the cut-over | ${cut.length}: max ${ms(max(cut))} ms, p99 ${ms(p99(cut))} ms |`,
      `| all other transactions | ${rest.length}: max ${ms(max(rest))} ms, p99 ${ms(p99(rest))} ms |`,
      `| pgbench | ${processed} processed, ${failed} failed, ${retried} retried; ${/tps = ([\d.]+)/.exec(b.stdout)?.[1] ?? '?'} TPS over the run |`,
      `| ledger (Δ Σabalance, Σtbalance, Σbbalance, Σdelta; history rows) | ${d.slice(0, 4).join(', ')}; ${d[4]} (${ledgerOk ? 'holds' : 'BROKEN'}) |`,
      `| accounts per shard after | ${perShard.join(', ')} (s4: ${(perShard[3]! / (after[5]!) * 100).toFixed(1)}%) |`,
      '',
      'Targets of issue 14: write pause p99 under 1 s during the cut-over; TPS during the copy at least 0.7× before.',
      '',
    ].join('\n');
    fs.writeFileSync(OUT, report);
    console.log(report);
  } finally {
    await proxy?.stop().catch(() => undefined);
    await cluster.stop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e instanceof Error ? e.stack : e); process.exit(1); });
