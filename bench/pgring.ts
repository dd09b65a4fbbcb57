// pgring as a child process (`node dist/src/cli/main.js proxy --config FILE`), the way
// it runs in production, so that its CPU time and memory are its own.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { waitForPort } from '../src/local/proc';

export class BenchPgring {
  private child: ChildProcess | null = null;
  private exited: Promise<void> | null = null;
  readonly configFile: string;
  readonly logFile: string;
  /** `argv`: run this Node.js script and arguments instead of the proxy (the relay reference target). */
  constructor(readonly name: string, readonly dir: string, readonly config: Record<string, unknown>, readonly argv?: string[]) {
    this.configFile = path.join(dir, `pgring-${name}.json`);
    this.logFile = path.join(dir, `pgring-${name}.log`);
  }
  get port(): number { return (this.config.listen as { port: number }).port; }
  get pid(): number | null { return this.child?.pid ?? null; }

  async start(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    fs.writeFileSync(this.configFile, JSON.stringify(this.config, null, 2));
    const main = path.resolve(__dirname, '../src/cli/main.js');
    const out = fs.openSync(this.logFile, 'a');
    // PGRING_BENCH_NODE_ARGS: extra node options for the pgring processes (e.g. --cpu-prof --cpu-prof-dir=DIR).
    const extra = (process.env.PGRING_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const args = this.argv ?? [...extra, main, 'proxy', '--config', this.configFile];
    const child = spawn(process.execPath, args, { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    this.child = child;
    let exitCode: number | null | undefined;
    this.exited = new Promise((resolve) => child.once('exit', (code) => { exitCode = code; resolve(); }));
    const deadline = Date.now() + 30000;
    for (;;) {
      try { await waitForPort(this.port, 500); break; } catch { /* retry */ }
      if (exitCode !== undefined) throw new Error(`${this.argv ? 'relay' : 'pgring'} ${this.name} exited at start (${exitCode}): ${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`pgring ${this.name} did not listen on ${this.port}: ${this.tail()}`);
    }
  }

  tail(lines = 20): string {
    try { return fs.readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n'); } catch { return ''; }
  }

  running(): boolean { return !!this.child && this.child.exitCode === null && this.child.signalCode === null; }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, 5000);
    await this.exited;
    clearTimeout(timer);
  }

  killNow(): void { try { this.child?.kill('SIGKILL'); } catch { /* gone */ } }
}
