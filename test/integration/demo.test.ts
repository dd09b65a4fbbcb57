// `pgring demo` (what `npm run demo` runs after set-up): starts ZooKeeper, three
// shards and pgring, prints the psql command, serves psql, stops everything on
// SIGTERM, and works a second time on the same directory.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { killAtExit } from '../../src/local/exit-cleanup';
import { freePorts } from '../../src/local/proc';
import { psql, runTool } from '../helpers/tools';
import { psqlAt } from '../helpers/env';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-demo-test-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let round = 0;

function runCli(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [path.resolve(__dirname, '../../src/cli/main.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { out += d; });
    c.once('close', (code) => resolve({ code, out }));
  });
}

async function runDemoOnce(ports: number[]): Promise<void> {
  round++;
  const [proxyPort, zkPort, metricsPort, ...pgPorts] = ports;
  const main = path.resolve(__dirname, '../../src/cli/main.js');
  const child = killAtExit(spawn(process.execPath, [main, 'demo', '--dir', dir, '--port', String(proxyPort), '--zk-port', String(zkPort), '--metrics-port', String(metricsPort), '--pg-ports', pgPorts.join(',')], { stdio: ['ignore', 'pipe', 'pipe'] }), 'SIGTERM');
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const deadline = Date.now() + 90000;
  while (!out.includes('Ctrl-C stops everything')) {
    if (child.exitCode !== null) assert.fail(`demo exited early: ${out}`);
    if (Date.now() > deadline) { child.kill('SIGKILL'); assert.fail(`demo did not start: ${out}`); }
    await new Promise((r) => setTimeout(r, 200));
  }
  try {
    assert.match(out, new RegExp(`psql -h 127\\.0\\.0\\.1 -p ${proxyPort} -U postgres postgres`));
    const r = await psql(proxyPort!, 'postgres', 'SELECT 6 * 7', ['-At']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '42');
    const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(proxyPort), '-U', 'postgres', '-i', '-s', '1', '-q', 'postgres']);
    assert.equal(init.code, 0, init.stderr);
    const counts = await psql(proxyPort!, 'postgres', 'SELECT count(*) FROM pgbench_accounts', ['-At']);
    assert.equal(counts.stdout.trim(), '100000');
    // TLS: clients verify pgring with the demo's CA; pgring's connections to the shards are
    // encrypted (verify-full), as the shard itself reports in pg_stat_ssl
    const caFile = path.join(dir, 'tls', 'ca.crt');
    const vf = await runTool('psql', ['-X', '-At', '-c', 'SELECT 1', `host=127.0.0.1 port=${proxyPort} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${caFile}`]);
    assert.equal(vf.code, 0, vf.stderr);
    const ssl = psqlAt(pgPorts[0]!, "SELECT count(*) FILTER (WHERE NOT s.ssl) || ' ' || count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() AND a.application_name <> 'pgring-recovery'").trim().split(' ').map(Number);
    assert.equal(ssl[0], 0, 'no plain connection from pgring');
    assert.ok(ssl[1]! > 0, 'pgring has connections to the shard');
    // WAL archiving works from the start, before any `backup init`: a segment switched now is
    // archived and none failed (the stanzas once did not exist until init, so every server
    // logged a failure every few seconds and kept all of its WAL)
    if (round === 1) {
      for (const p of pgPorts) {
        psqlAt(p, 'SELECT pg_switch_wal()');
        let st = '';
        for (let i = 0; i < 50; i++) {
          st = psqlAt(p, 'SELECT archived_count || \' \' || failed_count FROM pg_stat_archiver').trim();
          if (Number(st.split(' ')[0]) > 0) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        assert.ok(Number(st.split(' ')[0]) > 0, `shard on ${p}: nothing archived (${st})`);
        assert.equal(st.split(' ')[1], '0', `shard on ${p}: archive_command failed`);
      }
    }
    // WAL is archived with pgBackRest: backups work on the demo as it is.
    const cfg = path.join(dir, 'proxy.json');
    const binit = round === 1 ? await runCli(['backup', 'init', '--config', cfg]) : { code: 0, out: '' };
    assert.equal(binit.code, 0, binit.out);
    const create = await runCli(['backup', 'create', `demo${round}`, '--config', cfg]);
    assert.equal(create.code, 0, create.out);
    assert.match(create.out, new RegExp(`backup "demo${round}" of cluster "demo"`));
    // A table sharded with `pgring table shard` is cluster state: the next start must keep it
    // (the demo's file once listed only the pgbench tables, and the start refused the difference).
    if (round === 1) {
      const t = await psql(proxyPort!, 'postgres', 'CREATE TABLE demo_orders (id bigint PRIMARY KEY, note text)');
      assert.equal(t.code, 0, t.stderr);
      const sh = await runCli(['table', 'shard', 'demo_orders', '--column', 'id', '--type', 'bigint', '--config', cfg]);
      assert.equal(sh.code, 0, sh.out);
    } else {
      const list = await runCli(['table', 'list', '--config', cfg]);
      assert.match(list.out, /demo_orders\s+sharded\s+id bigint/);
    }
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0);
  // everything it started is gone: the ports are free again
  for (const p of [proxyPort!, zkPort!, ...pgPorts]) {
    const r = await runTool('psql', ['-h', '127.0.0.1', '-p', String(p), '-U', 'postgres', '-c', 'select 1'], { timeoutMs: 5000 });
    assert.notEqual(r.code, 0, `port ${p} still answers`);
  }
}

describe('pgring demo', () => {
  it('starts the local cluster, serves psql and pgbench, stops on SIGTERM, and starts again', async () => {
    const ports = await freePorts(6);
    await runDemoOnce(ports);
    await runDemoOnce(ports);
  });
});
