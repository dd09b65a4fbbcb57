// Stops what a process started locally (PostgreSQL servers, ZooKeeper, child processes) when
// that process exits, for test files. Node's test runner ends a file that overran its timeout
// with SIGTERM; without a handler for it no 'exit' handler runs, and the file's servers and
// proxies kept running beside its retry (session 20's CI). Opt-in: the demo and the CLI stop
// their own parts on their signals.
import type { ChildProcess } from 'node:child_process';

interface Stoppable { stopNow(): void }

const parts = new Set<Stoppable>();
const children = new Map<ChildProcess, NodeJS.Signals>();
let enabled = false;

/** Installs the handlers (idempotent): SIGTERM exits, and exit stops every registered part. */
export function enableExitCleanup(): void {
  if (enabled) return;
  enabled = true;
  process.once('SIGTERM', () => process.exit(143));
  process.on('exit', () => {
    for (const [c, signal] of children) {
      if (c.exitCode === null && c.signalCode === null) try { c.kill(signal); } catch { /* gone */ }
    }
    for (const p of parts) try { p.stopNow(); } catch { /* best effort */ }
  });
}

/** Called by LocalPostgres / LocalZooKeeper when they start; does nothing unless enabled. */
export function trackStarted(p: Stoppable): void { if (enabled) parts.add(p); }
export function trackStopped(p: Stoppable): void { parts.delete(p); }

/**
 * A child process killed with `signal` at exit unless it ended before. SIGKILL for proxies
 * (their locks are ephemeral znodes); SIGTERM for a demo, which then stops its own servers.
 */
export function killAtExit<C extends ChildProcess>(child: C, signal: NodeJS.Signals = 'SIGKILL'): C {
  enableExitCleanup();
  children.set(child, signal);
  child.once('exit', () => children.delete(child));
  return child;
}
