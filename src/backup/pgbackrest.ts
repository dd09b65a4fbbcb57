// pgBackRest, run as the `postgres` OS user: the per-stanza configuration pgring writes for
// local clusters (demo, tests), the archive_command that goes with it, and the commands
// `backup init|create|restore` need (stanza-create, check, backup, info, restore).
// Nothing here touches /etc: every setting is in a config file given with --config.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chownPostgres, cleanSpawnArgs, isRoot } from '../local/proc';

export const PGBACKREST = 'pgbackrest';

/** Where one shard's archive goes: the config file and the stanza name. */
export interface StanzaRef { config: string; stanza: string }

export interface LocalStanza { stanza: string; dataDir: string; port: number; socketDir: string }

export class PgBackRestError extends Error {
  constructor(readonly command: string, readonly stanza: string, readonly output: string, readonly code: number | null) {
    super(`pgbackrest ${command} (stanza "${stanza}") failed${code === null ? '' : ` (exit ${code})`}: ${summarise(output)}`);
  }
}

/** The ERROR lines of pgBackRest's output (what explains a failure), else its last lines. */
export function summarise(out: string): string {
  const lines = out.split('\n').map((l) => l.trim()).filter(Boolean);
  const errs = lines.filter((l) => /ERROR:|FATAL:|WARN:/.test(l));
  return (errs.length ? errs : lines.slice(-3)).join(' | ').slice(0, 1500) || '(no output)';
}

/**
 * The pgBackRest config of a local cluster: one repository (repo1) under `dir`, one stanza per
 * server. Lock, log and spool paths are under `dir` too, so nothing is shared with other users
 * of the machine. Retention is large: expiring a full backup also expires the WAL that older
 * cuts need (see docs/ARCHITECTURE.md, "Backups").
 */
export function localConfigText(dir: string, stanzas: LocalStanza[]): string {
  const lines = [
    '[global]',
    `repo1-path=${path.join(dir, 'repo')}`,
    'repo1-retention-full=9999',
    `lock-path=${path.join(dir, 'lock')}`,
    `log-path=${path.join(dir, 'log')}`,
    `spool-path=${path.join(dir, 'spool')}`,
    'log-level-console=warn',
    'log-level-file=info',
    'start-fast=y',
    'compress-type=lz4',
    'archive-timeout=30',
    '',
  ];
  for (const s of stanzas) {
    lines.push(`[${s.stanza}]`, `pg1-path=${s.dataDir}`, `pg1-port=${s.port}`, `pg1-socket-path=${s.socketDir}`, '');
  }
  return lines.join('\n');
}

/** Writes <dir>/pgbackrest.conf (owned by postgres) and returns its path. */
export function writeLocalConfig(dir: string, stanzas: LocalStanza[]): string {
  for (const d of ['repo', 'lock', 'log', 'spool']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const file = path.join(dir, 'pgbackrest.conf');
  fs.writeFileSync(file, localConfigText(dir, stanzas));
  chownPostgres(dir);
  return file;
}

/** PostgreSQL settings that archive WAL into a stanza (must be set before the server starts). */
export function archiveSettings(ref: StanzaRef): string[] {
  return [
    'archive_mode = on',
    `archive_command = 'pgbackrest --config=${ref.config} --stanza=${ref.stanza} archive-push %p'`,
    // (no wal_level here: the servers run with logical, which archiving accepts; replica would
    // turn off resharding's logical replication)
  ];
}

/** The stanza an archive_command pushes to, or null when it is not pgBackRest's archive-push. */
export function parseArchiveCommand(cmd: string): StanzaRef | null {
  if (!/\bpgbackrest\b/.test(cmd) || !/\barchive-push\b/.test(cmd)) return null;
  const opt = (name: string) => new RegExp(`--${name}[= ]("([^"]*)"|'([^']*)'|(\\S+))`).exec(cmd);
  const st = opt('stanza');
  if (!st) return null;
  const cf = opt('config');
  return { stanza: st[2] ?? st[3] ?? st[4]!, config: cf ? (cf[2] ?? cf[3] ?? cf[4]!) : '/etc/pgbackrest.conf' };
}

/** repo1-path of a pgBackRest config file (null when not set or unreadable). */
export function repoPath(config: string): string | null {
  try {
    const m = /^\s*repo1-path\s*=\s*(.+?)\s*$/m.exec(fs.readFileSync(config, 'utf8'));
    return m ? m[1]! : null;
  } catch { return null; }
}

/** Runs `pgbackrest --config=C --stanza=S <command> [args]` as postgres; throws PgBackRestError. */
export function run(ref: StanzaRef, command: string, args: string[] = [], timeoutMs = 30 * 60000): Promise<string> {
  const full = [`--config=${ref.config}`, `--stanza=${ref.stanza}`, ...args, command];
  const [file, argv] = cleanSpawnArgs(...(isRoot ? ['runuser', ['-u', 'postgres', '--', PGBACKREST, ...full]] as [string, string[]] : [PGBACKREST, full] as [string, string[]]));
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { cwd: '/tmp', stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('error', (e) => { clearTimeout(t); reject(new PgBackRestError(command, ref.stanza, e.message, null)); });
    child.on('close', (code) => {
      clearTimeout(t);
      if (code === 0) resolve(out);
      else reject(new PgBackRestError(command, ref.stanza, out, code));
    });
  });
}

export interface BackupSetInfo { label: string; type: string; start: number; stop: number; lsnStart: string; lsnStop: string }

/** The stanza's backup sets (oldest first) and status from `pgbackrest info --output=json`. */
export async function stanzaInfo(ref: StanzaRef): Promise<{ sets: BackupSetInfo[]; status: { code: number; message: string } }> {
  const out = await run(ref, 'info', ['--output=json'], 60000);
  let parsed: unknown;
  try { parsed = JSON.parse(out); } catch { throw new PgBackRestError('info', ref.stanza, `unparsable output: ${out.slice(0, 300)}`, 0); }
  const st = (parsed as { name: string; backup?: unknown[]; status?: { code: number; message: string } }[]).find((x) => x.name === ref.stanza);
  const sets = ((st?.backup ?? []) as { label: string; type: string; timestamp: { start: number; stop: number }; lsn?: { start: string; stop: string } }[])
    .map((b) => ({ label: b.label, type: b.type, start: b.timestamp.start, stop: b.timestamp.stop, lsnStart: b.lsn?.start ?? '', lsnStop: b.lsn?.stop ?? '' }));
  return { sets, status: st?.status ?? { code: -1, message: 'stanza not found' } };
}

export async function backupSets(ref: StanzaRef): Promise<BackupSetInfo[]> {
  return (await stanzaInfo(ref)).sets;
}
