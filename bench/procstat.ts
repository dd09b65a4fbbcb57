// Per-process CPU time and memory from /proc (Linux): used to charge the proxies
// (pgring, PgBouncer) their CPU seconds per transaction and their memory.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

let clkTck: number | null = null;
/** Clock ticks per second (`getconf CLK_TCK`, practically always 100). */
export function clockTicks(): number {
  if (clkTck === null) {
    try { clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { clkTck = 100; }
  }
  return clkTck;
}

/** utime + stime of a process, in seconds; null when it is gone. */
export function cpuSeconds(pid: number | null | undefined): number | null {
  if (!pid) return null;
  let stat: string;
  try { stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return null; }
  // Fields after "(comm)": state is field 3, utime 14, stime 15 (1-based).
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return (utime + stime) / clockTicks();
}

/** A /proc/<pid>/status memory field (VmRSS, VmHWM, ...) in kB; null when it is gone. */
export function memKb(pid: number | null | undefined, field: 'VmRSS' | 'VmHWM'): number | null {
  if (!pid) return null;
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}

/** The soft limit on open files of a process (from /proc/<pid>/limits). */
export function openFilesLimit(pid: number | 'self' = 'self'): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
    if (!m) return null;
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch { return null; }
}
