// Helpers for starting real PostgreSQL / ZooKeeper processes on loopback.
// PostgreSQL refuses to run as root, so when we are root its commands run
// as the `postgres` OS user through runuser.
import { spawn, spawnSync, SpawnOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

export function pgBin(name: string): string {
  const p = `/usr/lib/postgresql/15/bin/${name}`;
  return fs.existsSync(p) ? p : name;
}

/** Runs a command (as `postgres` when root) and throws with its output on failure. */
// The native ZooKeeper client does not mark its sockets close-on-exec: a server
// started while a ZooKeeper handle is open would inherit (and keep) them. Every
// child starts through this wrapper, which closes inherited descriptors first.
// (No `2>/dev/null` on the loop: bash keeps a copy of stderr on a high fd for that redirection,
// the loop closed that copy too, and the child then ran with stderr closed.)
const CLOSE_FDS = 'for f in /proc/$$/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done; exec "$@"';
export function cleanSpawnArgs(cmd: string, args: string[]): [string, string[]] {
  return ['bash', ['-c', CLOSE_FDS, 'pgring-spawn', cmd, ...args]];
}

export function runAsPostgres(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const [file, argv] = cleanSpawnArgs(...(isRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] as [string, string[]] : [cmd, args] as [string, string[]]));
  const r = spawnSync(file, argv, { encoding: 'utf8', cwd: opts.cwd ?? '/tmp', env: opts.env ?? process.env });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  }
  return r.stdout;
}

export function chownPostgres(path: string): void {
  if (!isRoot) return;
  spawnSync('chown', ['-R', 'postgres:postgres', path]);
}

/** Asks the kernel for a free loopback TCP port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function freePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

export function waitForPort(port: number, timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(port, host);
      s.once('connect', () => { s.destroy(); resolve(); });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`port ${host}:${port} did not open within ${timeoutMs} ms`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

export function spawnDetached(cmd: string, args: string[], opts: SpawnOptions & { logFile: string }) {
  const out = fs.openSync(opts.logFile, 'a');
  const [file, argv] = cleanSpawnArgs(cmd, args);
  const child = spawn(file, argv, { ...opts, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  return child;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
