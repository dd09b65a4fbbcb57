// How long a ZooKeeper lock wait may last: as long as a PostgreSQL lock wait would — until the
// client's own lock_timeout (55P03) or statement_timeout (57014) — with locks.timeoutMs only as a
// last-resort safety net. Pure: settings in, a limit out.
import { PgError, SQLSTATE } from '../protocol/errors';

export type WaitLimitKind = 'lock_timeout' | 'statement_timeout' | 'locks.timeoutMs';
export interface WaitLimit { ms: number; kind: WaitLimitKind }

const UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60000, h: 3600000, d: 86400000 };

/** A GUC time value in ms ('100ms', '2s', 250, '1min'); 0 = disabled; null when unreadable or DEFAULT. */
export function parseDurationMs(value: string): number | null {
  const m = /^\s*'?\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*'?\s*$/i.exec(value);
  if (!m) return null;
  return Math.round(Number(m[1]) * UNITS[(m[2] ?? 'ms').toLowerCase()]!);
}

/** The value of `SET [SESSION] name {=|TO} value` as pgring recorded it, or null. */
export function valueOfSetSql(sql: string): string | null {
  const m = /(?:=|\bto\b)\s*(.+?)\s*;?\s*$/is.exec(sql);
  return m ? m[1]! : null;
}

/** The value of `-c name=value` (or `--name=value`) in a startup `options` string, or null. */
export function valueInOptions(options: string, name: string): string | null {
  const re = new RegExp(`(?:-c\\s*|--)${name.replace(/_/g, '[_-]')}=(\\S+)`, 'i');
  const m = re.exec(options);
  return m ? m[1]! : null;
}

/** The smallest enabled limit; null when none applies. */
export function waitLimit(lockTimeoutMs: number | null, statementTimeoutMs: number | null, safetyNetMs: number): WaitLimit | null {
  const all: WaitLimit[] = [];
  if (lockTimeoutMs) all.push({ ms: lockTimeoutMs, kind: 'lock_timeout' });
  if (statementTimeoutMs) all.push({ ms: statementTimeoutMs, kind: 'statement_timeout' });
  if (safetyNetMs > 0) all.push({ ms: safetyNetMs, kind: 'locks.timeoutMs' });
  if (!all.length) return null;
  return all.reduce((a, b) => (b.ms < a.ms ? b : a));
}

/** The error PostgreSQL gives when that limit ends a lock wait (pgring's safety net names the bucket). */
export function waitLimitError(limit: WaitLimit, bucket: number): PgError {
  switch (limit.kind) {
    case 'lock_timeout':
      return new PgError(SQLSTATE.LockNotAvailable, 'canceling statement due to lock timeout', { detail: `pgring waited ${limit.ms} ms for ZooKeeper lock bucket ${bucket}.` });
    case 'statement_timeout':
      return new PgError(SQLSTATE.QueryCanceled, 'canceling statement due to statement timeout', { detail: `pgring waited ${limit.ms} ms for ZooKeeper lock bucket ${bucket}.` });
    default:
      // The safety net ends waits nothing else ended: a stuck holder or a cycle the detector did
      // not see. 40P01 tells clients (and pgbench --max-tries) to retry, as for a deadlock.
      return new PgError(SQLSTATE.DeadlockDetected, `pgring: lock timeout on lock bucket ${bucket} after ${limit.ms} ms`, { hint: 'locks.timeoutMs ended the wait; another transaction holds the lock bucket (possibly through another pgring proxy); retry the transaction.' });
  }
}
