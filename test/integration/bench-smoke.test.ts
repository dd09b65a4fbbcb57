// Smoke test of the benchmark harness (bench/run.ts) in its tiny mode: it starts its
// own cluster, PgBouncers and pgring processes, runs one 1-second pgbench per target,
// and must exit 0 with a well-formed results table. No assertions on timings.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

function runHarness(args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const main = path.resolve(__dirname, '../../bench/run.js');
    const child = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    // SIGTERM lets the harness stop what it started.
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

describe('benchmark harness', () => {
  it('runs in smoke mode and writes a results table with a row per target', { timeout: 150000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-bench-smoke-'));
    const out = path.join(dir, 'RESULTS.md');
    try {
      const r = await runHarness(['--smoke', '--out', out], 120000);
      assert.equal(r.code, 0, r.out);
      const md = fs.readFileSync(out, 'utf8');
      assert.doesNotMatch(md, /Incomplete/);
      assert.match(md, /^# pgring benchmark results/m);
      assert.match(md, /\| nproc \| \d+ \|/);
      assert.match(md, /pgbench .*-S -M simple -c 1 -j 1 -T 1/);

      // The table of the one case: header, separator, one row per target.
      const section = md.split('## SELECT only (-S), simple protocol (-M simple)')[1]?.split('\n## ')[0];
      assert.ok(section, 'workload section missing');
      const table = section.split('\n').filter((l) => l.startsWith('|'));
      const header = table[0]!.split('|').slice(1, -1).map((c) => c.trim());
      assert.deepEqual(header.slice(0, 6), ['Target', 'TPS (median)', 'TPS (best run)', 'TPS per run', 'avg latency ms', 'p99 latency ms']);
      assert.match(table[1]!, /^\|(-{3}|-{3}:|---:)(\|(-{3}:?|---))+\|$/);
      const rows = table.slice(2).map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
      const labels = ['A: direct PostgreSQL', 'B: PgBouncer, session mode', 'B: PgBouncer, transaction mode', 'N: bare Node.js TCP relay (reference)', 'C: pgring, 1 shard', 'D: pgring, 3 shards'];
      assert.deepEqual(rows.map((r) => r[0]), labels);
      for (const row of rows) {
        assert.equal(row.length, header.length, `row ${row[0]} has ${row.length} cells`);
        const tps = Number(row[1]);
        const failed = md.split('## Failed runs')[1]?.split('\n## ')[0]?.trim() ?? '';
        assert.ok(Number.isFinite(tps) && tps > 0, `${row[0]}: TPS "${row[1]}" is not a positive number (${row[3]})${failed ? `\nFailed runs:\n${failed}` : ''}\nharness output (end):\n${r.out.slice(-3000)}`);
        assert.ok(Number.isFinite(Number(row[4])) && Number.isFinite(Number(row[5])), `${row[0]}: latencies "${row[4]}", "${row[5]}"`);
      }
      // Proxies get a CPU figure; direct PostgreSQL does not.
      for (const row of rows.slice(1)) assert.match(row[9]!, /^\d+\.\d+$/, `${row[0]}: CPU "${row[9]}"`);
      // Its own processes are gone: no pgring or PgBouncer of this run still listens.
      assert.doesNotMatch(r.out, /bench: kept/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
