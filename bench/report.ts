// RESULTS.md: machine facts, commands, one table per workload and client count,
// proxy CPU and memory, connection scale.
import type { PgbenchRun, Workload } from './pgbench';

/** A B C D N, and D-<lock mode> for the extra lock-mode proxies. */
export type TargetId = string;

export interface TargetInfo { id: TargetId; label: string; proxy: boolean }

export interface RunRecord extends PgbenchRun { cpuPer1000: number | null }

export interface Cell { runs: RunRecord[]; na?: string }

export interface ScaleResult {
  target: string;
  clients: number;
  ok: boolean;
  error?: string;
  openMs?: number;
  rssBeforeKb?: number;
  rssWithKb?: number;
  rssAfterCloseKb?: number;
  perClientKb?: number;
}

export interface MemoryRow { target: string; peakKb: number | null; rssKb: number | null }

export interface ReportInput {
  title: string;
  complete: boolean;
  startedAt: Date;
  finishedAt?: Date;
  facts: [string, string][];
  mode: string;
  commands: string[];
  notes: string[];
  setup: string[];
  workloads: Workload[];
  clients: number[];
  reps: number;
  targets: TargetInfo[];
  cells: Map<string, Cell>;
  /** 1-minute load averages sampled before each run, per `workload|clients`. */
  load: Map<string, number[]>;
  memory: MemoryRow[];
  scale: ScaleResult[];
  scaleNote?: string;
  configs: [string, string][];
  /** Hand-written analysis (bench/ANALYSIS.md) placed after the measurements in full runs. */
  appendix?: string;
}

export const cellKey = (w: string, c: number, t: TargetId) => `${w}|${c}|${t}`;

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export interface CellSummary { tps: number; best: number; latAvgMs: number; p99Ms: number; cpuPer1000: number; okRuns: number; errors: string[] }

export function summarize(cell: Cell | undefined): CellSummary | null {
  if (!cell || cell.na || cell.runs.length === 0) return null;
  const ok = cell.runs.filter((r) => r.ok);
  return {
    tps: median(ok.map((r) => r.tps)),
    best: ok.length ? Math.max(...ok.map((r) => r.tps)) : NaN,
    latAvgMs: median(ok.map((r) => r.latAvgMs)),
    p99Ms: median(ok.map((r) => r.p99Ms)),
    cpuPer1000: median(ok.map((r) => r.cpuPer1000 ?? NaN)),
    okRuns: ok.length,
    errors: [...new Set(cell.runs.filter((r) => !r.ok).map((r) => r.error ?? 'failed'))],
  };
}

const f = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : '—');
const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
/** "median ratio (best-run ratio)". */
const ratio2 = (a: CellSummary | null | undefined, b: CellSummary | null | undefined) => {
  const m = ratio(a?.tps, b?.tps);
  const x = ratio(a?.best, b?.best);
  return m === '—' ? m : `${m} (${x})`;
};
const mb = (kb: number | null | undefined) => (kb === null || kb === undefined ? '—' : (kb / 1024).toFixed(1));
const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function workloadTable(input: ReportInput, w: Workload, clients: number): string[] {
  const sums = new Map<TargetId, CellSummary | null>();
  for (const t of input.targets) sums.set(t.id, summarize(input.cells.get(cellKey(w.id, clients, t.id))));
  const tps = (id: TargetId) => sums.get(id)?.tps;
  const lines = [
    '| Target | TPS (median) | TPS (best run) | TPS per run | avg latency ms | p99 latency ms | vs direct | vs PgBouncer session | vs PgBouncer transaction | proxy CPU s / 1000 tx |',
    '|---|---:|---:|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const t of input.targets) {
    const cell = input.cells.get(cellKey(w.id, clients, t.id));
    const s = sums.get(t.id);
    if (!cell) continue;
    if (cell.na) { lines.push(`| ${t.label} | n/a | | ${esc(cell.na)} | | | | | | |`); continue; }
    const per = cell.runs.map((r) => (r.ok ? f(r.tps, 0) : 'error')).join(', ') + (cell.runs.some((r) => !r.ok) ? ' (see Failed runs)' : '');
    const isPgring = t.id === 'C' || t.id === 'D' || t.id === 'N' || t.id.startsWith('D-');
    lines.push(`| ${t.label} | ${s && s.okRuns ? f(s.tps, 0) : 'error'} | ${f(s?.best ?? NaN, 0)} | ${per} | ${f(s?.latAvgMs ?? NaN, 3)} | ${f(s?.p99Ms ?? NaN, 3)} | `
      + `${t.id === 'A' ? '1.00×' : ratio(s?.tps, tps('A'))} | ${isPgring ? ratio(s?.tps, tps('Bs')) : ''} | ${isPgring ? ratio(s?.tps, tps('Bt')) : ''} | `
      + `${t.proxy ? f(s?.cpuPer1000 ?? NaN, 3) : ''} |`);
  }
  return lines;
}

export function keyRatios(input: ReportInput): string[] {
  const lines = [
    '| Workload | Clients | C / direct | C / PgBouncer session | C / PgBouncer transaction | D / direct | D / C | N (Node relay) / PgBouncer session | C / N | CPU s/1000 tx: C | N | PgBouncer tx | PgBouncer session |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const w of input.workloads) {
    for (const c of input.clients) {
      const s = (id: TargetId) => summarize(input.cells.get(cellKey(w.id, c, id)));
      const [A, Bs, Bt, N, C, D] = (['A', 'Bs', 'Bt', 'N', 'C', 'D'] as TargetId[]).map(s);
      lines.push(`| ${w.id} | ${c} | ${ratio2(C, A)} | ${ratio2(C, Bs)} | ${Bt ? ratio2(C, Bt) : 'n/a'} | ${ratio2(D, A)} | ${ratio2(D, C)} | ${N ? ratio2(N, Bs) : '—'} | ${N ? ratio2(C, N) : '—'} | `
        + `${f(C?.cpuPer1000 ?? NaN, 3)} | ${N ? f(N.cpuPer1000, 3) : '—'} | ${Bt ? f(Bt.cpuPer1000, 3) : 'n/a'} | ${f(Bs?.cpuPer1000 ?? NaN, 3)} |`);
    }
  }
  return lines;
}

/** TPC-B through D under each lock mode (when the run has the extra D-<mode> proxies). */
export function lockModeTable(input: ReportInput): string[] {
  const ds = input.targets.filter((t) => t.id === 'D' || t.id.startsWith('D-'));
  if (ds.length < 2) return [];
  const mode = (t: TargetInfo) => t.label.replace(/^.*locks /, '');
  const off = ds.find((t) => mode(t) === 'off');
  const lines = [
    `| Workload | Clients | ${ds.map((t) => `TPS, locks ${mode(t)}`).join(' | ')} | ${off ? ds.filter((t) => t !== off).map((t) => `${mode(t)} / off`).join(' | ') + ' | ' : ''}${ds.map((t) => `p99 ms, ${mode(t)}`).join(' | ')} | ${ds.map((t) => `CPU s/1000 tx, ${mode(t)}`).join(' | ')} |`,
    `|---|---:|${ds.map(() => '---:').join('|')}|${off ? ds.filter((t) => t !== off).map(() => '---:').join('|') + '|' : ''}${ds.map(() => '---:').join('|')}|${ds.map(() => '---:').join('|')}|`,
  ];
  for (const w of input.workloads) {
    if (!w.id.startsWith('tpcb')) continue;
    for (const c of input.clients) {
      const sum = (t: TargetInfo) => summarize(input.cells.get(cellKey(w.id, c, t.id)));
      const offS = off ? sum(off) : null;
      lines.push(`| ${w.id} | ${c} | ${ds.map((t) => f(sum(t)?.tps ?? NaN, 0)).join(' | ')} | `
        + `${off ? ds.filter((t) => t !== off).map((t) => ratio2(sum(t), offS)).join(' | ') + ' | ' : ''}`
        + `${ds.map((t) => f(sum(t)?.p99Ms ?? NaN, 3)).join(' | ')} | ${ds.map((t) => f(sum(t)?.cpuPer1000 ?? NaN, 3)).join(' | ')} |`);
    }
  }
  return lines;
}

export function renderReport(input: ReportInput): string {
  const out: string[] = [];
  out.push(`# ${input.title}`, '');
  if (!input.complete) out.push('> **Incomplete:** the run was still in progress or was aborted when this file was written.', '');
  out.push(`Started ${input.startedAt.toISOString()}${input.finishedAt ? `, finished ${input.finishedAt.toISOString()} (${Math.round((input.finishedAt.getTime() - input.startedAt.getTime()) / 1000)} s)` : ''}. Mode: ${input.mode}.`, '');
  out.push('## Machine', '', '| | |', '|---|---|', ...input.facts.map(([k, v]) => `| ${k} | ${esc(v)} |`), '');
  out.push('## Targets', '',
    ...input.targets.map((t) => `- **${t.label}**`), '');
  if (input.notes.length) out.push('## Notes', '', ...input.notes.map((n) => `- ${n}`), '');
  out.push('## Set-up', '', ...input.setup.map((s) => `- ${s}`), '');
  out.push('## Commands', '', 'Each run (the same for every target; `<port>` and `<db>` per target, `-j 2` when clients ≥ 2, `-j 1` for 1 client):', '', '```', ...input.commands, '```', '');
  out.push('## Key ratios', '', 'TPS ratios of the medians, in parentheses of the best runs (other load on the machine only ever lowers a run\'s TPS, so the best run is the less noisy estimate when the machine is busy). CPU seconds per 1000 transactions are medians.', '', ...keyRatios(input), '');
  const locks = lockModeTable(input);
  if (locks.length) out.push('## Lock modes (TPC-B through D)', '', 'The same sharded data and ZooKeeper cluster through one pgring per `locks.mode`, interleaved with the other targets. Ratios: TPS medians (best runs) against `off` (no ZooKeeper locks; multi-shard transactions still use two-phase commit).', '', ...locks, '');
  for (const w of input.workloads) {
    out.push(`## ${w.title}`, '');
    for (const c of input.clients) {
      const la = input.load.get(`${w.id}|${c}`) ?? [];
      const laText = la.length ? `Load average (1 min) before the runs: ${Math.min(...la).toFixed(1)}–${Math.max(...la).toFixed(1)}.` : '';
      out.push(`### ${c} client${c === 1 ? '' : 's'}`, '', ...workloadTable(input, w, c), '', ...(laText ? [laText, ''] : []));
    }
  }
  const failed: string[] = [];
  for (const w of input.workloads) for (const c of input.clients) for (const t of input.targets) {
    const cell = input.cells.get(cellKey(w.id, c, t.id));
    const bad = cell?.runs.filter((r) => !r.ok) ?? [];
    // Group by the message with client numbers taken out ("client 3 command 10" = "client 5 command 10").
    const norm = (r: RunRecord) => (r.error ?? 'failed').replace(/\bclient \d+/g, 'client N').replace(/\(pool size (\d+), \d+ waiting\)/, '(pool size $1, N waiting)');
    for (const e of new Set(bad.map(norm))) {
      failed.push(`| ${t.label} | ${w.id} | ${c} | ${bad.filter((r) => norm(r) === e).length} of ${cell!.runs.length} | ${esc(e)} |`);
    }
  }
  if (failed.length) out.push('## Failed runs', '', '| Target | Workload | Clients | Runs | pgbench error |', '|---|---|---:|---:|---|', ...failed, '');
  out.push('## Proxy memory during the pgbench runs', '', '| Process | peak RSS (VmHWM) MB | RSS at the end MB |', '|---|---:|---:|',
    ...input.memory.map((m) => `| ${m.target} | ${mb(m.peakKb)} | ${mb(m.rssKb)} |`), '');
  out.push('## Connection scale (idle clients)', '');
  if (input.scaleNote) out.push(input.scaleNote, '');
  if (input.scale.length) {
    out.push('| Target | idle clients | time to open s | RSS before MB | RSS with clients MB | RSS per client kB | RSS after closing MB |', '|---|---:|---:|---:|---:|---:|---:|');
    for (const s of input.scale) {
      if (!s.ok) { out.push(`| ${s.target} | ${s.clients} | error: ${esc(s.error ?? '')} | | | | |`); continue; }
      out.push(`| ${s.target} | ${s.clients} | ${f((s.openMs ?? NaN) / 1000, 1)} | ${mb(s.rssBeforeKb)} | ${mb(s.rssWithKb)} | ${f(s.perClientKb ?? NaN, 1)} | ${mb(s.rssAfterCloseKb)} |`);
    }
    out.push('');
  }
  if (input.appendix) out.push(input.appendix.trim(), '');
  if (input.configs.length) {
    out.push('## Configurations', '');
    for (const [name, text] of input.configs) out.push(`<details><summary>${name}</summary>`, '', '```', text.trim(), '```', '', '</details>', '');
  }
  return out.join('\n');
}
