// Runs pgbench against one target and reads its summary and per-transaction logs.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pgBin } from '../src/local/proc';

export interface Workload { id: string; title: string; args: string[]; prepared: boolean }

export const WORKLOADS: Workload[] = [
  { id: 'select-simple', title: 'SELECT only (-S), simple protocol (-M simple)', args: ['-S', '-M', 'simple'], prepared: false },
  { id: 'select-prepared', title: 'SELECT only (-S), prepared statements (-M prepared)', args: ['-S', '-M', 'prepared'], prepared: true },
  // --max-tries: pgbench retries a transaction that failed with 40001/40P01 (pgring's lock
  // timeouts under contention), as an application would; other errors still fail the run.
  { id: 'tpcb-prepared', title: 'TPC-B like (default script), prepared statements (-M prepared)', args: ['-M', 'prepared', '--max-tries=10'], prepared: true },
  // Not run by default: for comparing with tpcb-prepared when a proxy has trouble with one protocol.
  { id: 'tpcb-simple', title: 'TPC-B like (default script), simple protocol (-M simple)', args: ['-M', 'simple', '--max-tries=10'], prepared: false },
];

export const DEFAULT_WORKLOADS = ['select-simple', 'select-prepared', 'tpcb-prepared'];

export interface PgbenchRun {
  ok: boolean;
  error?: string;
  tps: number;
  latAvgMs: number;
  p99Ms: number;
  processed: number;
  failed: number;
  seconds: number;
  /** the slowest transaction (ms): bounds the longest lock wait */
  maxMs: number;
}

export interface ToolOutput { code: number | null; stdout: string; stderr: string }

export function runTool(tool: string, args: string[], timeoutMs: number, cwd?: string): Promise<ToolOutput> {
  return new Promise((resolve) => {
    const child = spawn(pgBin(tool), args, { cwd, env: { ...process.env, PGCONNECT_TIMEOUT: '10' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** The pgbench arguments of one run (without the log options), for RESULTS.md too. */
export function pgbenchArgs(host: string, port: number, db: string, w: Workload, clients: number, seconds: number): string[] {
  return ['-h', host, '-p', String(port), '-U', 'postgres', ...w.args, '-c', String(clients), '-j', String(clients >= 2 ? 2 : 1), '-T', String(seconds), db];
}

function firstError(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const hit = lines.find((l) => /error|abort|fatal|could not|failed/i.test(l) && !/ignoring this error/i.test(l));
  return (hit ?? lines[lines.length - 1] ?? 'no output').slice(0, 300);
}

/** p99 of latencies (µs) read from pgbench per-transaction logs `<prefix>.<pid>[.<thread>]`. */
export function p99FromLogs(dir: string, prefix: string): { p99Us: number; maxUs: number; count: number } {
  const lat: number[] = [];
  for (const f of fs.readdirSync(dir)) {
    if (!f.startsWith(prefix + '.')) continue;
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      // client_id transaction_no time script_no time_epoch time_us [...]: `time` is the latency in µs
      // ("failed"/"skipped" for transactions that did not complete).
      const line = text.slice(start, end);
      const a = line.indexOf(' ');
      const b = a < 0 ? -1 : line.indexOf(' ', a + 1);
      const c = b < 0 ? -1 : line.indexOf(' ', b + 1);
      if (c > 0) {
        const v = Number(line.slice(b + 1, c));
        if (Number.isFinite(v)) lat.push(v);
      }
      start = end + 1;
    }
    fs.rmSync(path.join(dir, f));
  }
  if (lat.length === 0) return { p99Us: NaN, maxUs: NaN, count: 0 };
  const sorted = Float64Array.from(lat).sort();
  return { p99Us: sorted[Math.max(0, Math.ceil(sorted.length * 0.99) - 1)]!, maxUs: sorted[sorted.length - 1]!, count: sorted.length };
}

let runCounter = 0;

export async function runPgbench(args: string[], logDir: string, seconds: number): Promise<PgbenchRun> {
  const prefix = `run${++runCounter}`;
  const t0 = Date.now();
  const r = await runTool('pgbench', [...args.slice(0, -1), '-l', '--log-prefix', path.join(logDir, prefix), args[args.length - 1]!], (seconds + 120) * 1000, logDir);
  const elapsed = (Date.now() - t0) / 1000;
  const out = r.stdout;
  const num = (re: RegExp) => { const m = re.exec(out); return m ? Number(m[1]) : NaN; };
  const processed = num(/number of transactions actually processed: (\d+)/);
  const failed = num(/number of failed transactions: (\d+)/) || 0;
  const tps = num(/tps = ([\d.]+) \(without initial connection time\)/);
  const latAvgMs = num(/latency average = ([\d.]+) ms/);
  const { p99Us, maxUs } = p99FromLogs(logDir, prefix);
  const res: PgbenchRun = { ok: true, tps, latAvgMs, p99Ms: p99Us / 1000, maxMs: maxUs / 1000, processed, failed, seconds: elapsed };
  if (r.code !== 0 || !Number.isFinite(tps) || !(processed > 0) || failed > 0) {
    res.ok = false;
    res.error = r.code === null ? 'pgbench timed out (killed)'
      : failed > 0 && r.code === 0 ? `${failed} failed transactions`
      : `exit ${r.code}: ${firstError(r.stderr + '\n' + r.stdout)}`;
  }
  return res;
}

/** One completed transaction of a pgbench per-transaction log: completion time (epoch µs) and latency (µs). */
export interface Tx { endUs: number; latUs: number }

/** Completed transactions from pgbench -l logs `<prefix>.<pid>[.<thread>]` in `dir`. */
export function readLogs(dir: string, prefix: string): Tx[] {
  const out: Tx[] = [];
  for (const f of fs.readdirSync(dir)) {
    if (!f.startsWith(prefix + '.')) continue;
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      const p = line.split(' ');
      const lat = Number(p[2]), sec = Number(p[4]), us = Number(p[5]);
      if (p.length >= 6 && Number.isFinite(lat) && Number.isFinite(sec)) out.push({ endUs: sec * 1e6 + us, latUs: lat });
    }
  }
  return out;
}

/** The 99th percentile of `xs` (NaN when empty). */
export const p99 = (xs: number[]): number => { if (!xs.length) return NaN; const s = Float64Array.from(xs).sort(); return s[Math.max(0, Math.ceil(s.length * 0.99) - 1)]!; };
/** µs as ms with one decimal. */
export const ms = (us: number): string => (us / 1000).toFixed(1);

/** `--name value` from the command line, or `def`. */
export function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
