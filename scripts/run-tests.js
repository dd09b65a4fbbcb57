#!/usr/bin/env node
// Runs the whole suite: starts one shared local cluster (ZooKeeper + 4 PostgreSQL
// servers on free loopback ports), hands its address to the test files through
// PGRING_TEST_CLUSTER, runs Node's test runner over dist/test, then stops it.
// Tests that stop or restart servers start clusters of their own.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { LocalCluster } = require('../dist/src/local/cluster');

function listTests(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listTests(p));
    else if (e.name.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

/**
 * How long one file may run. Node's runner applies --test-timeout to the file as a whole too;
 * reshard.test.js runs five resharding operations under TPC-B one after the other (about 235 s
 * on the 2-core CI machine, so 240 s cut it off mid-way: session 20's CI), and gets more.
 */
const SLOW_FILES = new Map([['reshard.test.js', 600000]]);

/** Runs one test file with Node's runner; resolves with its output and counts. */
function runFile(file, env) {
  return new Promise((resolve) => {
    const timeout = SLOW_FILES.get(path.basename(file)) ?? 240000;
    const child = spawn(process.execPath, ['--test', '--test-reporter=tap', `--test-timeout=${timeout}`, file], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('exit', (c, sig) => {
      const num = (k) => Number((new RegExp(`^# ${k} (\\d+)$`, 'm').exec(out) || [])[1] || 0);
      resolve({ code: c ?? (sig ? 1 : 0), out, pass: num('pass'), fail: num('fail'), cancelled: num('cancelled'), skipped: num('skipped'), todo: num('todo') });
    });
  });
}

/**
 * Runs the files two at a time. A file that fails is run once more on its own: the
 * suite drives real ZooKeeper and PostgreSQL processes on a 2-core machine, and a
 * second failure is a real one. Retries are reported, never hidden.
 */
async function runFiles(files, env) {
  const queue = [...files];
  const results = new Map();
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      let r = await runFile(f, env);
      process.stdout.write(r.out);
      if (r.code !== 0) {
        console.log(`# RETRY ${path.basename(f)}: failed (${r.fail} failed, ${r.cancelled} cancelled); running it once more`);
        r = await runFile(f, env);
        process.stdout.write(r.out);
        r.retried = true;
      }
      results.set(f, r);
    }
  };
  await Promise.all([worker(), worker()]);
  let pass = 0, fail = 0, skipped = 0, todo = 0;
  const failedFiles = [], retried = [];
  for (const [f, r] of results) {
    pass += r.pass; fail += r.fail + r.cancelled; skipped += r.skipped; todo += r.todo;
    if (r.code !== 0) { failedFiles.push(path.basename(f)); if (r.fail + r.cancelled === 0) fail++; }
    if (r.retried) retried.push(`${path.basename(f)} (${r.code === 0 ? 'passed on retry' : 'failed twice'})`);
  }
  console.log(`# files: ${files.length}, retried: ${retried.length ? retried.join(', ') : 'none'}`);
  if (failedFiles.length) console.log(`# failed files: ${failedFiles.join(', ')}`);
  console.log(`${pass} passed, ${fail} failed, ${skipped} skipped`);
  return failedFiles.length ? 1 : 0;
}

async function main() {
  const root = path.resolve(__dirname, '..');
  const filter = process.argv.slice(2);
  let files = listTests(path.join(root, 'dist/test'));
  if (filter.length) files = files.filter((f) => filter.some((x) => f.includes(x)));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-test-'));
  const cluster = new LocalCluster({ dir, shards: 4 });
  const t0 = Date.now();
  const info = await cluster.start();
  console.log(`test cluster up in ${Date.now() - t0} ms: zk ${info.zk}, pg ports ${info.pg.map((p) => p.port).join(',')}`);
  let code = 1;
  let stopping = false;
  const stop = async () => {
    if (stopping) return; stopping = true;
    await cluster.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => stop().then(() => process.exit(130)));
  process.on('SIGTERM', () => stop().then(() => process.exit(143)));
  try {
    code = await runFiles(files, { ...process.env, PGRING_TEST_CLUSTER: JSON.stringify(info) });
  } finally {
    await stop();
  }
  process.exit(code);
}
main().catch((e) => { console.error(e); process.exit(1); });
