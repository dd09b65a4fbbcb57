// TPC-B under faults: pgbench through several proxies at once, the counts the ledger check
// needs from its output, and "the proxy still serves" checks.
import pg from 'pg';
import { sleep } from '../../src/local/proc';
import { pgbenchSummary, runTool, ToolResult } from './tools';

export interface TpcbRun {
  results: ToolResult[];
  /** transactions pgbench reported as committed, over all runs */
  committed: number;
  /** clients that pgbench aborted (non-retryable error), over all runs */
  aborted: number;
  /** aborted at COMMIT with an error that does not say the transaction was rolled back: the
   *  client cannot know whether it committed (connection lost while committing) */
  unknownOutcomes: number;
}

/** Clients pgbench aborted, and how many of them at COMMIT without "rolled back" in the error. */
export function pgbenchAborts(stderr: string): { aborted: number; atCommitUnknown: number } {
  let aborted = 0, atCommitUnknown = 0;
  for (const line of stderr.split('\n')) {
    // "client 3 script 0 aborted in command 10 query 0: ERROR: ..." (an error), or
    // "client 3 aborted in command 10 (SQL) of script 0; perhaps the backend died ..." (connection lost)
    const m = /client \d+ (?:script \d+ )?aborted in command (\d+)/.exec(line);
    if (!m) continue;
    aborted++;
    // Command 10 of the built-in tpcb-like script is END (its 4 \set, BEGIN, 5 statements, END).
    if (m[1] === '10' && !/rolled back/.test(line)) atCommitUnknown++;
  }
  return { aborted, atCommitUnknown };
}

/** pgbench TPC-B (simple protocol unless `extra` says otherwise) against every port at once. */
export async function tpcb(ports: number[], db: string, o: { seconds: number; clients?: number; extra?: string[] }): Promise<TpcbRun> {
  const results = await Promise.all(ports.map((port) => runTool('pgbench', [
    '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-n', '-c', String(o.clients ?? 4), '-j', '1',
    '-T', String(o.seconds), '--max-tries=20', ...(o.extra ?? []), db,
  ], { timeoutMs: (o.seconds + 120) * 1000 })));
  let committed = 0, aborted = 0, unknownOutcomes = 0;
  for (const r of results) {
    const s = pgbenchSummary(r.stdout);
    if (!Number.isFinite(s.processed)) throw new Error(`pgbench printed no summary (exit ${r.code}):\n${r.stderr.slice(-3000)}\n${r.stdout}`);
    committed += s.processed;
    const a = pgbenchAborts(r.stderr);
    aborted += a.aborted;
    unknownOutcomes += a.atCommitUnknown;
  }
  return { results, committed, aborted, unknownOutcomes };
}

/** First lines of pgbench's errors (for assertion messages and the test log). */
export function abortReasons(run: TpcbRun, max = 5): string {
  return run.results.flatMap((r) => r.stderr.split('\n').filter((l) => /aborted|error/i.test(l))).slice(0, max).join('\n');
}

/**
 * The proxy at `port` serves: a read and a write (a no-op UPDATE of an account) succeed, retried
 * for up to `ms` (a proxy that was fenced resumes writes after it re-read ZooKeeper).
 */
export async function assertServing(port: number, db: string, ms = 30000): Promise<void> {
  const deadline = Date.now() + ms;
  let last: unknown = null;
  while (Date.now() < deadline) {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: db });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('SELECT count(*) FROM pgbench_branches');
      await c.query('UPDATE pgbench_accounts SET abalance = abalance WHERE aid = 1');
      return;
    } catch (e) { last = e; } finally { await c.end().catch(() => undefined); }
    await sleep(250);
  }
  throw new Error(`proxy on port ${port} does not serve reads and writes: ${(last as Error)?.message}`);
}

/** Runs `fn`; a failure carries the tail of the proxies' logs (child proxies' output). */
export async function withProxyLogs<T>(proxies: { port: number; output: () => string }[], fn: () => Promise<T>): Promise<T> {
  try { return await fn(); } catch (e) {
    const logs = proxies.map((p) => `--- proxy :${p.port} log tail ---\n${p.output().slice(-1500)}`).join('\n');
    (e as Error).message += `\n${logs}`;
    throw e;
  }
}

/** Ports of the proxies whose process still runs. */
export function livePorts(proxies: { port: number; child: { exitCode: number | null; signalCode: NodeJS.Signals | null } }[]): number[] {
  return proxies.filter((p) => p.child.exitCode === null && p.child.signalCode === null).map((p) => p.port);
}
