// How a migration is shown: one progress line (CLI), a summary block (CLI, status) and rows (SHOW MIGRATIONS).
import type { Migration } from './store';

function bytes(n: number | null): string {
  if (n === null) return '-';
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(0)} kB` : `${(n / 1048576).toFixed(1)} MB`;
}

export function totals(m: Migration): { copied: number; expected: number; etaS: number | null } {
  let copied = 0, expected = 0;
  for (const p of m.progress) { copied += Math.min(p.copied, p.expected); expected += p.expected; }
  const elapsed = (m.updatedAt - m.createdAt) / 1000;
  const rate = elapsed > 0 ? copied / elapsed : 0;
  const etaS = m.phase === 'copying' && rate > 0 ? Math.max(0, Math.round((expected - copied) / rate)) : null;
  return { copied, expected, etaS };
}

export function progressLine(m: Migration): string {
  const t = totals(m);
  const pct = t.expected ? ((t.copied / t.expected) * 100).toFixed(0) : '100';
  return `${m.id} ${m.phase.padEnd(12)} rows ${t.copied}/${t.expected} (${pct}%)  lag ${bytes(m.lagBytes)}${t.etaS !== null ? `  ETA ${t.etaS}s` : ''}${m.attempts ? `  cut-over tries ${m.attempts}` : ''}`;
}

export function formatMigration(m: Migration): string {
  const c = m.change;
  const what = c.kind === 'rebalance' ? `rebalance ${Object.entries(c.weights).map(([k, v]) => `${k}=${v}`).join(',')}` : `${c.kind} ${c.name}`;
  const lines = [
    `migration ${m.id}: ${what}  database ${m.database}  ring ${m.fromVersion} -> ${m.toVersion}  phase ${m.phase}${m.error ? `  error: ${m.error}` : ''}`,
    `  arcs: ${m.moves.map((x) => `${x.source}->${x.target} ${x.ranges.length} ranges ${x.percent.toFixed(1)}%`).join(', ')}`,
    ...m.progress.map((p) => `  ${p.table.padEnd(22)} ${p.kind.padEnd(9)} ${p.source}->${p.target}  ${p.copied}/${p.expected} rows`),
    `  ${progressLine(m)}`,
  ];
  return lines.join('\n');
}

/** Rows of the admin console's SHOW MIGRATIONS. */
export function migrationRows(ms: Migration[]): (string | number | null)[][] {
  return ms.map((m) => {
    const t = totals(m);
    const c = m.change;
    return [m.id, c.kind === 'rebalance' ? 'rebalance' : `${c.kind} ${c.name}`, m.phase, m.fromVersion, m.toVersion, m.moves.map((x) => `${x.source}->${x.target}`).join(' '),
      t.copied, t.expected, m.lagBytes, t.etaS, m.attempts, m.error];
  });
}
