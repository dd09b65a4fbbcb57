// Runs the real PostgreSQL client tools (psql, pgbench) against pgring.
import { spawn } from 'node:child_process';
import { pgBin } from '../../src/local/proc';

export interface ToolResult { code: number | null; stdout: string; stderr: string }

export function runTool(tool: 'psql' | 'pgbench', args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ToolResult> {
  return new Promise((resolve) => {
    const child = spawn(pgBin(tool), args, { env: { ...process.env, PGCONNECT_TIMEOUT: '10', ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 180000);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    child.stdin.on('error', () => undefined);   // EPIPE when the tool exits before reading (e.g. nothing listens)
    child.stdin.end(opts.input ?? '');
  });
}

export function psql(port: number, db: string, sql: string, extra: string[] = []): Promise<ToolResult> {
  return runTool('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', db, '-X', '-v', 'ON_ERROR_STOP=1', ...extra, '-c', sql]);
}

/** Parses pgbench's summary. */
export function pgbenchSummary(out: string): { processed: number; failed: number; tps: number } {
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? NaN);
  const failed = Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0);
  const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? NaN);
  return { processed, failed, tps };
}
