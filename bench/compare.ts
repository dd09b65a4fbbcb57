// What each change gained: builds pgring at several commits and runs pgbench against
// each build (pgring C: one shard, transaction pooling) and against PgBouncer, all
// in front of one PostgreSQL, interleaved (Bs Bt c1 c2 …, Bs Bt c1 c2 …) so that
// drifting machine load hits every build alike. Prints a Markdown table per workload.
//
//   node dist/bench/compare.js [--clients 8] [--duration 5] [--reps 3]
//        [--workloads select-simple,select-prepared] [--rate TPS] [--out FILE] COMMIT...
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { LocalPostgres } from '../src/local/postgres';
import { chownPostgres, freePort } from '../src/local/proc';
import { BenchPgBouncer } from './pgbouncer';
import { BenchPgring } from './pgring';
import { pgbenchArgs, runPgbench, runTool, WORKLOADS } from './pgbench';
import { cpuSeconds } from './procstat';
import { median } from './report';

const ROOT = path.resolve(__dirname, '../..');
const git = (...args: string[]) => execFileSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' }).trim();

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('bench/compare.js')
    .usage('$0 [options] COMMIT...')
    .option('clients', { type: 'number', default: 8 })
    .option('duration', { type: 'number', default: 5, describe: 'seconds per pgbench run' })
    .option('reps', { type: 'number', default: 3 })
    .option('scale', { type: 'number', default: 10 })
    .option('workloads', { type: 'string', default: 'select-simple,select-prepared' })
    .option('rate', { type: 'number', describe: 'pgbench -R: the same offered load for every target, so CPU per transaction compares at equal TPS' })
    .option('out', { type: 'string', describe: 'also write the tables to this file' })
    .demandCommand(1, 'name at least one commit')
    .strict()
    .parseAsync();
  const short = (s: string) => (s.length > 70 ? `${s.slice(0, 67).replace(/[ ,;:(]+\S*$/, '')}…` : s);
  const commits = argv._.map(String).map((c) => ({ ref: c, sha: git('rev-parse', '--short', c), subject: short(git('log', '-1', '--format=%s', c)) }));
  const rateArgs = argv.rate ? ['-R', String(argv.rate)] : [];
  const args = (port: number, w: (typeof WORKLOADS)[number], seconds: number) => {
    const a = pgbenchArgs('127.0.0.1', port, 'bench', w, argv.clients, seconds);
    return [...a.slice(0, -1), ...rateArgs, a[a.length - 1]!];
  };
  const workloads = argv.workloads.split(',').map((id) => {
    const w = WORKLOADS.find((x) => x.id === id.trim());
    if (!w) throw new Error(`unknown workload ${id}`);
    return w;
  });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-compare-'));
  chownPostgres(tmp);
  const pg = new LocalPostgres({ dir: path.join(tmp, 'pg'), port: await freePort() });
  const procs: { stop(): Promise<void> }[] = [];
  const worktrees: string[] = [];
  const cleanup = async () => {
    for (const p of procs) await p.stop().catch(() => undefined);
    pg.stop('fast');
    for (const w of worktrees) try { git('worktree', 'remove', '--force', w); } catch { /* gone */ }
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  process.on('SIGINT', () => { void cleanup().finally(() => process.exit(130)); });
  try {
    // One build per commit, in a worktree that borrows this checkout's node_modules.
    const builds: { ref: string; sha: string; subject: string; main: string }[] = [];
    for (const c of commits) {
      const wt = path.join(tmp, `wt-${c.sha}`);
      git('worktree', 'add', '--detach', wt, c.sha);
      worktrees.push(wt);
      fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(wt, 'node_modules'));
      console.log(`building ${c.sha} ${c.subject}`);
      execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', wt], { stdio: 'inherit' });
      builds.push({ ...c, main: path.join(wt, 'dist/src/cli/main.js') });
    }
    pg.init();
    pg.start();
    pg.psql('CREATE DATABASE bench');
    const init = await runTool('pgbench', ['-i', '-s', String(argv.scale), '-q', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'bench'], 600000);
    if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
    const bs = new BenchPgBouncer({ dir: path.join(tmp, 'bs'), mode: 'session', serverPort: pg.port, databases: ['bench'], poolSize: argv.clients + 8, maxClientConn: 1000 });
    const bt = new BenchPgBouncer({ dir: path.join(tmp, 'bt'), mode: 'transaction', serverPort: pg.port, databases: ['bench'], poolSize: 20, maxClientConn: 1000 });
    procs.push(bs, bt);
    await bs.start();
    await bt.start();
    const targets: { id: string; label: string; port: number; pid: () => number | null }[] = [
      { id: 'Bs', label: 'PgBouncer, session mode', port: bs.port, pid: () => bs.pid },
      { id: 'Bt', label: 'PgBouncer, transaction mode', port: bt.port, pid: () => bt.pid },
    ];
    for (const b of builds) {
      const port = await freePort();
      const config = {
        listen: { host: '127.0.0.1', port }, metrics: { enabled: false }, logLevel: 'warn',
        pool: { mode: 'transaction', maxSize: 20 }, users: [{ name: 'postgres', auth: 'trust', admin: true }],
        shards: [{ name: 's1', backends: [{ host: '127.0.0.1', port: pg.port, role: 'primary' }] }],
      };
      const p = new BenchPgring(b.sha, tmp, config, [b.main, 'proxy', '--config', path.join(tmp, `pgring-${b.sha}.json`)]);
      procs.push(p);
      await p.start();
      targets.push({ id: b.sha, label: `pgring ${b.sha} ${b.subject}`, port, pid: () => p.pid });
    }
    const logDir = path.join(tmp, 'logs');
    fs.mkdirSync(logDir);
    const out: string[] = [`pgring builds compared on ${os.cpus().length} cores, ${new Date().toISOString()}: pgbench -c ${argv.clients} -j 2 -T ${argv.duration}${argv.rate ? ` -R ${argv.rate}` : ''}, ${argv.reps} interleaved repetitions, scale ${argv.scale}; median TPS; CPU of the proxy process (utime + stime from /proc) per transaction, median.`, ''];
    for (const w of workloads) {
      const tps = new Map<string, number[]>();
      const cpu = new Map<string, number[]>();
      const active = targets.filter((t) => !(t.id === 'Bt' && w.prepared));
      for (const t of active) { // warm-up (JIT)
        await runPgbench(args(t.port, w, 2), logDir, 2);
      }
      for (let r = 0; r < argv.reps; r++) {
        for (const t of active) {
          const c0 = cpuSeconds(t.pid());
          const res = await runPgbench(args(t.port, w, argv.duration), logDir, argv.duration);
          const c1 = cpuSeconds(t.pid());
          if (!res.ok) { console.log(`${w.id} ${t.id}: ERROR ${res.error}`); continue; }
          (tps.get(t.id) ?? tps.set(t.id, []).get(t.id)!).push(res.tps);
          if (c0 !== null && c1 !== null) (cpu.get(t.id) ?? cpu.set(t.id, []).get(t.id)!).push((c1 - c0) / res.processed * 1e6);
          console.log(`${w.id} rep ${r + 1} ${t.id}: ${res.tps.toFixed(0)} tps`);
        }
      }
      const ref = w.prepared ? 'Bs' : 'Bt';
      const refTps = median(tps.get(ref) ?? []);
      out.push(`### ${w.title}, ${argv.clients} clients${argv.rate ? `, rate-limited to ${argv.rate} TPS` : ''}`, '', `| Target | TPS (median) | TPS per run | vs PgBouncer ${w.prepared ? 'session' : 'transaction'} mode | proxy CPU µs / tx |`, '|---|---:|---|---:|---:|');
      for (const t of active) {
        const m = median(tps.get(t.id) ?? []);
        out.push(`| ${t.label} | ${m.toFixed(0)} | ${(tps.get(t.id) ?? []).map((x) => x.toFixed(0)).join(', ')} | ${(m / refTps).toFixed(2)}× | ${median(cpu.get(t.id) ?? []).toFixed(1)} |`);
      }
      out.push('');
    }
    const text = out.join('\n');
    console.log(`\n${text}`);
    if (argv.out) fs.writeFileSync(argv.out, text);
  } finally {
    await cleanup();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
