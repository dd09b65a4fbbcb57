// `pgring demo --replicas 1`: every shard gets a synchronous streaming replica (pg_basebackup),
// printed at start; SHOW BACKENDS lists them with their lag; PGOPTIONS reads=replica reads there.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { killAtExit } from '../../src/local/exit-cleanup';
import { freePorts } from '../../src/local/proc';
import { psql, runTool } from '../helpers/tools';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-demo-replicas-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('pgring demo --replicas 1', () => {
  it('starts a synchronous streaming replica per shard, prints them, and serves reads=replica from them', async () => {
    const [proxyPort, zkPort, metricsPort, ...rest] = await freePorts(9);
    const pgPorts = rest.slice(0, 3), repPorts = rest.slice(3);
    const main = path.resolve(__dirname, '../../src/cli/main.js');
    const child = killAtExit(spawn(process.execPath, [main, 'demo', '--dir', dir, '--port', String(proxyPort), '--zk-port', String(zkPort), '--metrics-port', String(metricsPort),
      '--pg-ports', pgPorts.join(','), '--replicas', '1', '--replica-ports', repPorts.join(',')], { stdio: ['ignore', 'pipe', 'pipe'] }), 'SIGTERM');
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const deadline = Date.now() + 120000;
    while (!out.includes('Ctrl-C stops everything')) {
      if (child.exitCode !== null) assert.fail(`demo exited early: ${out}`);
      if (Date.now() > deadline) { child.kill('SIGKILL'); assert.fail(`demo did not start: ${out}`); }
      await new Promise((r) => setTimeout(r, 200));
    }
    try {
      for (const p of repPorts) assert.match(out, new RegExp(`replica s\\d+\\s+127\\.0\\.0\\.1:${p}`));
      for (const p of pgPorts) {
        const r = await runTool('psql', ['-h', '127.0.0.1', '-p', String(p), '-U', 'postgres', '-At', '-c', 'SELECT sync_state FROM pg_stat_replication']);
        assert.equal(r.stdout.trim(), 'sync', r.stderr);
      }
      const rec = await runTool('psql', ['-h', '127.0.0.1', '-p', String(proxyPort), '-U', 'postgres', '-At', '-c', 'SELECT pg_is_in_recovery()', 'postgres'], { env: { PGOPTIONS: '-c pgring.reads=replica' } });
      assert.equal(rec.stdout.trim(), 't', rec.stderr);
      const b = await psql(proxyPort!, 'pgring', 'SHOW BACKENDS', ['-At', '-F', ',']);
      const replicas = b.stdout.trim().split('\n').filter((l) => l.split(',')[3] === 'replica');
      assert.equal(replicas.length, 3, b.stdout);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
  });
});
