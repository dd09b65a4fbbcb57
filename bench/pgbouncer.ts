// A PgBouncer (Debian package) on a free loopback port, in front of one PostgreSQL
// server, for comparison runs. PgBouncer refuses to run as root: when we are root
// it runs as the `postgres` OS user (runuser), with its config, pid file and log in
// a directory that user owns.
import { ChildProcess, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chownPostgres, freePort, isRoot, sleep, spawnDetached, waitForPort } from '../src/local/proc';

export interface PgBouncerOptions {
  dir: string;                      // its own directory (created, chowned to postgres)
  mode: 'session' | 'transaction';
  serverPort: number;               // the PostgreSQL server behind it
  databases: string[];
  poolSize: number;                 // default_pool_size
  maxClientConn: number;
}

export function pgbouncerBinary(): string {
  for (const p of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer']) if (fs.existsSync(p)) return p;
  return 'pgbouncer';
}

export function pgbouncerVersion(): string {
  const r = spawnSync(pgbouncerBinary(), ['--version'], { encoding: 'utf8' });
  return (r.stdout || r.stderr || '').split('\n')[0]!.trim() || 'unknown';
}

export class BenchPgBouncer {
  port = 0;
  pid: number | null = null;
  private child: ChildProcess | null = null;
  private exited: Promise<void> | null = null;
  readonly logFile: string;
  readonly iniFile: string;
  constructor(readonly opts: PgBouncerOptions) {
    this.logFile = path.join(opts.dir, 'pgbouncer.log');
    this.iniFile = path.join(opts.dir, 'pgbouncer.ini');
  }

  async start(): Promise<void> {
    const { dir } = this.opts;
    fs.mkdirSync(dir, { recursive: true });
    this.port = await freePort();
    const pidFile = path.join(dir, 'pgbouncer.pid');
    fs.writeFileSync(path.join(dir, 'userlist.txt'), '"postgres" ""\n');
    fs.writeFileSync(this.iniFile, [
      '[databases]',
      ...this.opts.databases.map((db) => `${db} = host=127.0.0.1 port=${this.opts.serverPort} dbname=${db}`),
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${this.port}`,
      `unix_socket_dir = ${dir}`,
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      'admin_users = postgres',
      `pool_mode = ${this.opts.mode}`,
      `default_pool_size = ${this.opts.poolSize}`,
      `max_client_conn = ${this.opts.maxClientConn}`,
      'listen_backlog = 4096',
      'ignore_startup_parameters = extra_float_digits',
      'log_connections = 0',
      'log_disconnections = 0',
      `logfile = ${this.logFile}`,
      `pidfile = ${pidFile}`,
      '',
    ].join('\n'));
    chownPostgres(dir);
    // runuser's PAM session (pam_limits) resets the soft open-files limit (often to 1024):
    // raise it again to the hard limit inside, or PgBouncer stops accepting at ~1000 clients.
    const launch = ['bash', '-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'pgbouncer', pgbouncerBinary(), this.iniFile];
    const [cmd, args] = isRoot ? ['runuser', ['-u', 'postgres', '--', ...launch]] : [launch[0]!, launch.slice(1)];
    const child = spawnDetached(cmd, args, { logFile: path.join(dir, 'stdout.log'), detached: false, cwd: dir });
    this.child = child;
    let exitCode: number | null | undefined;
    this.exited = new Promise((resolve) => child.once('exit', (code) => { exitCode = code; resolve(); }));
    const deadline = Date.now() + 20000;
    for (;;) {
      if (exitCode !== undefined) throw new Error(`pgbouncer (${this.opts.mode}) exited at start (${exitCode}): ${this.tail()}`);
      try {
        const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
        if (pid > 0) { this.pid = pid; break; }
      } catch { /* not yet */ }
      if (Date.now() > deadline) throw new Error(`pgbouncer (${this.opts.mode}) wrote no pid file: ${this.tail()}`);
      await sleep(50);
    }
    await waitForPort(this.port, 20000);
  }

  tail(lines = 20): string {
    const read = (f: string) => { try { return fs.readFileSync(f, 'utf8'); } catch { return ''; } };
    return (read(this.logFile) || read(path.join(this.opts.dir, 'stdout.log'))).trim().split('\n').slice(-lines).join('\n');
  }

  async stop(): Promise<void> {
    const pid = this.pid;
    const child = this.child;
    this.pid = null;
    this.child = null;
    if (!child) return;
    // SIGTERM = immediate shutdown; runuser exits when pgbouncer does.
    try { if (pid) process.kill(pid, 'SIGTERM'); else child.kill('SIGTERM'); } catch { /* gone */ }
    const timer = setTimeout(() => {
      try { if (pid) process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      try { child.kill('SIGKILL'); } catch { /* gone */ }
    }, 5000);
    await this.exited;
    clearTimeout(timer);
  }

  /** For an exit handler: no waiting. */
  killNow(): void {
    try { if (this.pid) process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
    try { this.child?.kill('SIGKILL'); } catch { /* gone */ }
  }
}
