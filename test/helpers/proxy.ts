// Starts pgring for tests: in-process (fast) or as a child process (for kill tests).
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { parseConfig } from '../../src/config/load';
import { Proxy } from '../../src/proxy';
import { silentLogger } from '../../src/log';
import { freePort, waitForPort } from '../../src/local/proc';
import { ClusterInfo } from '../../src/local/cluster';
import { psqlAt } from './env';
import { killAtExit } from '../../src/local/exit-cleanup';

export type RawConfig = Record<string, unknown>;

/** A config over the first `shards` servers of the cluster; `extra` is merged at the top level. */
export async function baseConfig(cluster: ClusterInfo, shards: number, extra: RawConfig = {}): Promise<RawConfig> {
  return {
    listen: { host: '127.0.0.1', port: await freePort() },
    metrics: { enabled: false },
    logLevel: 'silent',
    users: [{ name: 'postgres', auth: 'trust', admin: true }],
    shards: cluster.pg.slice(0, shards).map((p, i) => ({ name: `s${i + 1}`, backends: [{ host: '127.0.0.1', port: p.port }] })),
    ...extra,
  };
}

export interface RunningProxy { proxy: Proxy; port: number; stop(): Promise<void> }

export async function startProxy(raw: RawConfig): Promise<RunningProxy> {
  const proxy = new Proxy({ config: parseConfig(raw), log: silentLogger });
  await proxy.start();
  return { proxy, port: proxy.port, stop: () => proxy.stop() };
}

export interface ChildProxy { child: ChildProcess; port: number; configFile: string; output: () => string; stop(signal?: NodeJS.Signals): Promise<number | null> }

/** Runs `node dist/src/cli/main.js proxy --config FILE` as a separate process. */
export async function spawnProxy(raw: RawConfig): Promise<ChildProxy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-proxy-'));
  const configFile = path.join(dir, 'proxy.json');
  fs.writeFileSync(configFile, JSON.stringify(raw, null, 2));
  const main = path.resolve(__dirname, '../../src/cli/main.js');
  const child = killAtExit(spawn(process.execPath, [main, 'proxy', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  const port = (raw.listen as { port: number }).port;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await Promise.race([
    waitForPort(port, 20000),
    exited.then((code) => { throw new Error(`proxy exited (${code}) at start: ${out}`); }),
  ]);
  return {
    child, port, configFile, output: () => out,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

/** Creates `db` on the given server ports (idempotent). */
export function createDatabase(ports: number[], db: string): void {
  for (const p of ports) {
    const exists = psqlAt(p, `SELECT 1 FROM pg_database WHERE datname = '${db}'`).trim();
    if (!exists) psqlAt(p, `CREATE DATABASE ${db}`);
  }
}

export function dropDatabase(ports: number[], db: string): void {
  for (const p of ports) {
    try { psqlAt(p, `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`); } catch { /* ignore */ }
  }
}

export function client(port: number, db: string, opts: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: db, ...opts });
}

export async function withClient<T>(port: number, db: string, fn: (c: pg.Client) => Promise<T>, opts: Partial<pg.ClientConfig> = {}): Promise<T> {
  const c = client(port, db, opts);
  await c.connect();
  try { return await fn(c); } finally { await c.end().catch(() => undefined); }
}
