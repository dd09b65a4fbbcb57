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
    code = await new Promise((resolve) => {
      const child = spawn(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=300000', ...files], {
        stdio: 'inherit',
        env: { ...process.env, PGRING_TEST_CLUSTER: JSON.stringify(info) },
      });
      child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
    });
  } finally {
    await stop();
  }
  process.exit(code);
}
main().catch((e) => { console.error(e); process.exit(1); });
