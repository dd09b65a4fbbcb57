// Replicas benchmark (run by hand: `node dist/bench/replicas.js [--quick]`; not part of
// `npm run bench`): a LocalCluster of 3 shards with one synchronous streaming replica each,
// pgring in front (child process, sharded pgbench tables, ZooKeeper, failover on).
//
//  1. `pgbench -S` at 8 and 32 clients with reads=primary against reads=replica (PGOPTIONS
//     '-c pgring.reads=replica'), interleaved, 3 repetitions each (1 with --quick).
//  2. Failover time over 5 tries (1 with --quick): SIGKILL of s1's primary postmaster, then a
//     write to a key of s1 through pgring every 100 ms until one succeeds: kill -> first
//     successful write. After each try the old primary rejoins as a replica (`pgring shard
//     rejoin`, pg_rewind) so that the next try has a replica to promote.
// Writes bench/RESULTS-replicas.md (median and max) and prints it.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { LocalCluster } from '../src/local/cluster';
import { LocalPostgres } from '../src/local/postgres';
import { freePort, pgBin, sleep } from '../src/local/proc';
import { demoConfig } from '../src/cli/demo';
import { BenchPgring } from './pgring';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 3 : 10;
const REPS = quick ? 1 : 3;
const TRIES = quick ? 1 : 5;
const CLUSTER = 'bench-replicas';

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 300000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: { ...process.env, PGCONNECT_TIMEOUT: '10', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => { clearTimeout(t); resolve({ code, out }); });
  });
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN; };

async function firstWrite(port: number, aid: number, t0: number): Promise<number> {
  for (;;) {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('SET statement_timeout = 2000');
      await c.query('UPDATE pgbench_accounts SET abalance = abalance WHERE aid = $1', [aid]);
      return Date.now() - t0;
    } catch { /* 57P03 while failing over */ } finally { await c.end().catch(() => undefined); }
    if (Date.now() - t0 > 120000) throw new Error('no successful write within 120 s');
    await sleep(100);
  }
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-bench-replicas-'));
  const lc = new LocalCluster({ dir, shards: 3, replicas: 1 });
  let proxy: BenchPgring | null = null;
  try {
    const info = await lc.start();
    const port = await freePort();
    proxy = new BenchPgring('replicas', dir, {
      listen: { host: '127.0.0.1', port }, metrics: { enabled: false }, logLevel: 'warn',
      users: [{ name: 'postgres', auth: 'trust', admin: true }],
      zookeeper: { connect: info.zk, cluster: CLUSTER, sessionTimeoutMs: 10000 },
      shards: info.pg.map((p, i) => ({ name: p.name, backends: [{ port: p.port }, { port: info.replicas![i]!.port, role: 'replica' }] })),
      sharding: (demoConfig(info.zk, [], 0, 0) as { sharding: unknown }).sharding,
      locks: { mode: 'all' }, pool: { maxSize: 40 }, health: { intervalMs: 250, timeoutMs: 1000 },
      failover: { enabled: true, graceMs: 1000 },
    });
    await proxy.start();
    const base = ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres'];
    const init = await run(pgBin('pgbench'), [...base, '-i', '-s', quick ? '2' : '10', '-q', 'postgres']);
    if (init.code !== 0) throw new Error(init.out);
    await sleep(2000);

    // 1. -S, interleaved primary / replica
    const tps = new Map<string, number[]>();
    for (let rep = 0; rep < REPS; rep++) {
      for (const clients of [8, 32]) {
        for (const reads of ['primary', 'replica']) {
          const r = await run(pgBin('pgbench'), [...base, '-n', '-S', '-M', 'prepared', '-c', String(clients), '-j', '2', '-T', String(SECONDS), 'postgres'], { PGOPTIONS: `-c pgring.reads=${reads}` });
          const v = Number(/tps = ([\d.]+)/.exec(r.out)?.[1] ?? NaN);
          const key = `${clients}:${reads}`;
          tps.set(key, [...(tps.get(key) ?? []), v]);
          console.log(`-S -M prepared  ${String(clients).padStart(2)} clients  reads=${reads.padEnd(7)}  tps ${v}`);
        }
      }
    }

    // 2. failover time
    const times: number[] = [];
    let primary: LocalPostgres = lc.pgs[0]!, replica: LocalPostgres = lc.replicas[0]![0]!;
    const main = path.resolve(__dirname, '../src/cli/main.js');
    for (let t = 0; t < TRIES; t++) {
      const c = new pg.Client({ host: '127.0.0.1', port: primary.port, user: 'postgres', database: 'postgres' });
      await c.connect();
      const key = Number((await c.query('SELECT aid FROM pgbench_accounts ORDER BY aid LIMIT 1')).rows[0].aid);
      await c.end();
      const t0 = Date.now();
      process.kill(primary.pid()!, 'SIGKILL');
      const ms = await firstWrite(port, key, t0);
      times.push(ms);
      console.log(`failover try ${t + 1}: kill -> first successful write ${ms} ms`);
      if (t < TRIES - 1) {
        const r = await run(process.execPath, [main, 'shard', 'rejoin', 's1', '--zk', info.zk, '--cluster', CLUSTER, '--port', String(primary.port), '--data-dir', primary.dataDir]);
        if (r.code !== 0) throw new Error(`rejoin failed: ${r.out}`);
        [primary, replica] = [replica, primary];
        await sleep(3000); // heartbeats see the rejoined replica
      }
    }

    const lines = [
      '# Replicas benchmark',
      '',
      `${new Date().toISOString()}, ${os.cpus().length} CPUs, ${quick ? 'quick' : 'full'} run: 3 shards with one synchronous streaming replica each, pgring (locks all, failover.graceMs 1000, health.intervalMs 250).`,
      '',
      `## pgbench -S -M prepared, ${SECONDS} s, ${REPS} interleaved repetition(s): median tps`,
      '',
      '| clients | reads=primary | reads=replica | replica/primary |',
      '|---|---|---|---|',
      ...[8, 32].map((c) => { const p = median(tps.get(`${c}:primary`)!), r = median(tps.get(`${c}:replica`)!); return `| ${c} | ${p.toFixed(0)} | ${r.toFixed(0)} | ${(r / p).toFixed(2)}x |`; }),
      '',
      `## Failover: SIGKILL of a primary postmaster -> first successful write through pgring (${TRIES} tries)`,
      '',
      `median ${median(times)} ms, max ${Math.max(...times)} ms (tries: ${times.join(', ')} ms)`,
      '',
    ];
    const file = path.resolve(__dirname, '../../bench/RESULTS-replicas.md');
    fs.writeFileSync(file, lines.join('\n'));
    console.log(lines.join('\n'));
  } finally {
    await proxy?.stop().catch(() => undefined);
    for (const p of [...lc.pgs, ...lc.replicas.flat()]) { try { p.stop('immediate'); } catch { /* gone */ } }
    await lc.stop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
