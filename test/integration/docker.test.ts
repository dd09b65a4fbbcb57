// The container image without a Docker engine: parses the Dockerfile, reproduces
// its runtime stage in a temp dir (package*.json + built dist/src + `npm ci
// --omit=dev`, which compiles the zookeeper addon), then runs the ENTRYPOINT from
// there: --help, and a start against the test cluster with a query through it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, createDatabase, dropDatabase, withClient } from '../helpers/proxy';
import { freePort, waitForPort } from '../../src/local/proc';

const ROOT = path.resolve(__dirname, '../../..');

interface ParsedDockerfile {
  stages: { image: string; name?: string }[];
  entrypoint: string[];
  cmd: string[];
  expose: number[];
  user: string | null;
  runtimeCopies: { from: string; src: string; dest: string }[];
  buildRuns: string[];
  workdir: string;
}

/** A small Dockerfile reader: joins continuation lines, reads the instructions this test checks. */
function parseDockerfile(text: string): ParsedDockerfile {
  const lines = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const out: ParsedDockerfile = { stages: [], entrypoint: [], cmd: [], expose: [], user: null, runtimeCopies: [], buildRuns: [], workdir: '/' };
  for (const line of lines) {
    const [instr, ...restParts] = line.split(/\s+/);
    const rest = line.slice(instr!.length).trim();
    const last = out.stages.length - 1;
    switch (instr!.toUpperCase()) {
      case 'FROM': {
        const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
        out.stages.push({ image: m[1]!, name: m[2] });
        out.user = null; // USER is per stage
        break;
      }
      case 'ENTRYPOINT': out.entrypoint = JSON.parse(rest) as string[]; break;
      case 'CMD': out.cmd = JSON.parse(rest) as string[]; break;
      case 'EXPOSE': out.expose.push(...restParts.map((p) => Number(p.split('/')[0]))); break;
      case 'USER': out.user = rest; break;
      case 'WORKDIR': if (last >= 1) out.workdir = rest; break;
      case 'RUN': if (last === 0) out.buildRuns.push(rest); break;
      case 'COPY': {
        const m = /^--from=(\S+)\s+(.+)\s+(\S+)$/.exec(rest);
        if (m && last >= 1) for (const src of m[2]!.trim().split(/\s+/)) out.runtimeCopies.push({ from: m[1]!, src, dest: m[3]! });
        break;
      }
      default: break;
    }
  }
  return out;
}

let df: ParsedDockerfile;
let dfText = '';
let appDir: string;
let db: string;
let pgPort: number;

before(async () => {
  dfText = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  df = parseDockerfile(dfText);
  const cluster = await testCluster();
  pgPort = cluster.pg[0]!.port;
  db = uniqueName('dock');
  createDatabase([pgPort], db);
});

after(() => {
  dropDatabase([pgPort], db);
  if (appDir) fs.rmSync(appDir, { recursive: true, force: true });
});

describe('Dockerfile', () => {
  it('is multi-stage: node:20-bookworm build, node:20-bookworm-slim runtime, non-root, ports, entrypoint', () => {
    assert.equal(df.stages.length, 2);
    assert.equal(df.stages[0]!.image, 'node:20-bookworm');
    assert.equal(df.stages[1]!.image, 'node:20-bookworm-slim');
    const build = df.buildRuns.join(' && ');
    for (const step of ['python3', 'make', 'g++', 'npm ci', 'npx tsc', 'npm prune --omit=dev']) assert.ok(build.includes(step), `build stage runs ${step}`);
    assert.ok(df.user && df.user !== 'root' && df.user !== '0', `runtime user is not root (${df.user})`);
    assert.deepEqual(df.entrypoint, ['node', 'dist/src/cli/main.js', 'proxy']);
    assert.deepEqual(df.cmd, ['--config', '/etc/pgring/proxy.json']);
    assert.deepEqual([...df.expose].sort(), [6432, 9930]);
    assert.ok(df.runtimeCopies.every((c) => c.from === df.stages[0]!.name), 'runtime copies from the build stage only');
  });

  it('the runtime contents install and run: --help and a proxy against the test cluster', { timeout: 600000 }, async () => {
    const built = path.join(ROOT, 'dist/src/cli/main.js');
    assert.ok(fs.existsSync(built), 'dist is built (npx tsc -p tsconfig.json)');
    appDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-image-'));
    // Reproduce the runtime stage's COPY --from=build lines: the build stage's WORKDIR is the repo root here.
    let sawModules = false;
    for (const c of df.runtimeCopies) {
      const rel = c.src.replace(/^\/build\/?/, '');
      const dest = path.resolve(appDir, path.relative(df.workdir, path.resolve(df.workdir, c.dest)));
      if (rel === 'node_modules') { sawModules = true; continue; } // produced by npm ci --omit=dev below
      const from = path.join(ROOT, rel);
      assert.ok(fs.existsSync(from), `${rel} exists in the repo`);
      if (fs.statSync(from).isDirectory()) fs.cpSync(from, dest, { recursive: true });
      else { fs.mkdirSync(c.dest.endsWith('/') ? dest : path.dirname(dest), { recursive: true }); fs.copyFileSync(from, c.dest.endsWith('/') ? path.join(dest, path.basename(from)) : dest); }
    }
    assert.ok(sawModules, 'the runtime stage copies node_modules');
    // The build stage's npm ci runs the postinstall patch of the zookeeper binding, so it copies
    // the script first; the node_modules made here stand for that stage's.
    assert.match(dfText, /^COPY scripts\/patch-zookeeper\.js \.\/scripts\/\s*$/m, 'the build stage copies the postinstall script before npm ci');
    fs.mkdirSync(path.join(appDir, 'scripts'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'scripts/patch-zookeeper.js'), path.join(appDir, 'scripts/patch-zookeeper.js'));
    const npm = spawnSync('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], { cwd: appDir, encoding: 'utf8', timeout: 540000, env: { ...process.env, NODE_ENV: 'production' } });
    assert.equal(npm.status, 0, `npm ci --omit=dev failed:\n${npm.stdout}\n${npm.stderr}`);
    assert.ok(!fs.existsSync(path.join(appDir, 'node_modules/typescript')), 'no dev dependencies in the image');

    const [node, entry, ...entryArgs] = df.entrypoint;
    assert.equal(node, 'node');
    assert.ok(fs.existsSync(path.join(appDir, entry!)), `ENTRYPOINT script ${entry} is in the image`);
    const help = spawnSync(process.execPath, [entry!, '--help'], { cwd: appDir, encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /pgring <command>/);
    assert.match(help.stdout, /proxy/);
    const proxyHelp = spawnSync(process.execPath, [entry!, ...entryArgs, '--help'], { cwd: appDir, encoding: 'utf8' });
    assert.equal(proxyHelp.status, 0, proxyHelp.stderr);
    assert.match(proxyHelp.stdout, /--config/);
    assert.match(proxyHelp.stdout, /--log-level/);

    const cluster = await testCluster();
    const metricsPort = await freePort();
    const raw = await baseConfig(cluster, 1, { metrics: { enabled: true, host: '127.0.0.1', port: metricsPort }, logLevel: 'info' });
    const cfgFile = path.join(appDir, 'proxy.json');
    fs.writeFileSync(cfgFile, JSON.stringify(raw));
    // CMD's --config replaced by our file, as `docker run pgring --config ...` would.
    const args = [...df.cmd];
    args[args.indexOf('--config') + 1] = cfgFile;
    const child = spawn(process.execPath, [entry!, ...entryArgs, ...args], { cwd: appDir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const port = (raw.listen as { port: number }).port;
      await Promise.race([waitForPort(port, 30000), exited.then((c) => { throw new Error(`proxy exited (${c}): ${out}`); })]);
      await withClient(port, db, async (c) => {
        assert.equal((await c.query('SELECT 40 + $1::int AS x', [2])).rows[0].x, 42);
      });
      const h = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      assert.equal(h.status, 200);
      const v = await withClient(port, 'pgring', (c) => c.query('SHOW VERSION'));
      const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
      assert.match(v.rows[0].version, new RegExp(`^pgring ${pkg.version.replace(/\./g, '\\.')}`));
      child.kill('SIGTERM');
      assert.equal(await exited, 0, out);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
