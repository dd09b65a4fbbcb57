// A real PostgreSQL 15 server in a directory of its own, on a loopback port.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { trackStarted, trackStopped } from './exit-cleanup';
import { chownPostgres, pgBin, runAsPostgres, sleep } from './proc';

export interface LocalPostgresOptions {
  dir: string;           // data lives in <dir>/data, log in <dir>/postgres.log
  port: number;
  maxPreparedTransactions?: number;
  maxConnections?: number;
  extraConf?: string[];
  /** `ssl = on` with this certificate and key (files the postgres user owns, key mode 0600);
   *  `caFile`: the CA client certificates are checked against (pg_hba `cert`). */
  ssl?: { certFile: string; keyFile: string; caFile?: string };
  /** Settings for streaming replication (as a primary and, after promotion, as a replica's
   *  new primary): logical WAL (resharding needs it too), WAL senders and slots, full-page
   *  writes and hint bits (pg_rewind needs both), and durable commits (synchronous standbys
   *  only wait when synchronous_commit is on). */
  replication?: boolean;
  /** synchronous_standby_names of a primary (kept here: init() rewrites postgresql.auto.conf). */
  syncStandbyNames?: string;
  /** This server is a streaming replica of that primary (data made by pg_basebackup). */
  standbyOf?: { host: string; port: number; slot: string; appName: string };
}

/** The replication settings of a LocalPostgres (pure: unit-testable). */
export function replicationConf(o: Pick<LocalPostgresOptions, 'replication' | 'syncStandbyNames' | 'standbyOf'>): string[] {
  const out: string[] = [];
  if (o.replication || o.standbyOf) {
    out.push('wal_level = logical', 'max_wal_senders = 10', 'max_replication_slots = 10', 'wal_keep_size = 256MB',
      'full_page_writes = on', 'wal_log_hints = on', 'synchronous_commit = on', 'hot_standby = on', 'hot_standby_feedback = on',
      'wal_receiver_status_interval = 1s');
  }
  if (o.syncStandbyNames) out.push(`synchronous_standby_names = '${o.syncStandbyNames.replace(/'/g, "''")}'`);
  if (o.standbyOf) {
    const s = o.standbyOf;
    out.push(`primary_conninfo = 'host=${s.host} port=${s.port} user=postgres application_name=${s.appName}'`, `primary_slot_name = '${s.slot}'`);
  }
  return out;
}

export class LocalPostgres {
  readonly dataDir: string;
  readonly logFile: string;
  constructor(readonly opts: LocalPostgresOptions) {
    this.dataDir = path.join(opts.dir, 'data');
    this.logFile = path.join(opts.dir, 'postgres.log');
  }
  get port(): number { return this.opts.port; }

  /** initdb on first use; later calls only rewrite the port-dependent settings. */
  init(): void {
    fs.mkdirSync(this.opts.dir, { recursive: true });
    chownPostgres(this.opts.dir);
    if (!fs.existsSync(path.join(this.dataDir, 'PG_VERSION'))) {
      runAsPostgres(pgBin('initdb'), ['-D', this.dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8', '-N']);
      // Loopback only. `postgres` and the test users authenticate per the lines below;
      // pgring proxies authenticate to servers with md5 or SCRAM as the server asks.
      fs.writeFileSync(path.join(this.dataDir, 'pg_hba.conf'), [
        'local all all trust',
        'host all postgres 127.0.0.1/32 trust',
        'host all all 127.0.0.1/32 trust',
        'host all postgres ::1/128 trust',
        // replication connections (pg_recvlogical, pg_receivewal; through pgring too): "all" does not match them
        'local replication all trust',
        'host replication all 127.0.0.1/32 trust',
        '',
      ].join('\n'));
    }
    const conf = [
      `port = ${this.opts.port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${this.opts.dir}'`,
      `max_connections = ${this.opts.maxConnections ?? 200}`,
      `max_prepared_transactions = ${this.opts.maxPreparedTransactions ?? 50}`,
      `fsync = off`,
      `synchronous_commit = off`,
      `full_page_writes = off`,
      `shared_buffers = 64MB`,
      `password_encryption = 'scram-sha-256'`,
      `log_min_messages = warning`,
      // Online resharding copies arcs with logical replication (src/reshard).
      `wal_level = logical`,
      `max_replication_slots = 20`,
      `max_wal_senders = 20`,
      `max_logical_replication_workers = 8`,
      `max_worker_processes = 16`,
      ...(this.opts.ssl ? ['ssl = on', `ssl_cert_file = '${this.opts.ssl.certFile}'`, `ssl_key_file = '${this.opts.ssl.keyFile}'`] : []),
      ...(this.opts.ssl?.caFile ? [`ssl_ca_file = '${this.opts.ssl.caFile}'`] : []),
      ...replicationConf(this.opts),
      ...(this.opts.extraConf ?? []),
      '',
    ].join('\n');
    fs.writeFileSync(path.join(this.dataDir, 'postgresql.auto.conf'), conf);
    chownPostgres(this.opts.dir);
  }

  /** Replaces pg_hba.conf (tests that exercise md5/SCRAM to servers). */
  setHba(lines: string[]): void {
    fs.writeFileSync(path.join(this.dataDir, 'pg_hba.conf'), lines.join('\n') + '\n');
    chownPostgres(this.dataDir);
  }

  start(): void {
    this.init();
    try {
      runAsPostgres(pgBin('pg_ctl'), ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', 'start']);
    } catch (e) {
      // pg_ctl only says "Examine the log output": the reason (a port taken, bad settings) is there
      let tail = '';
      try { tail = fs.readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-8).join('\n'); } catch { /* no log */ }
      throw new Error(`${(e as Error).message.trim()}${tail ? `\n${this.logFile} ends with:\n${tail}` : ''}`);
    }
    trackStarted(this);
  }

  /** Immediate stop, synchronous (exit cleanup). */
  stopNow(): void { this.stop('immediate'); }

  stop(mode: 'fast' | 'immediate' = 'fast'): void {
    trackStopped(this);
    if (!this.running()) return;
    try { runAsPostgres(pgBin('pg_ctl'), ['-D', this.dataDir, '-m', mode, '-w', '-t', '60', 'stop']); } catch { /* already gone */ }
  }

  /** Sets synchronous_standby_names (empty: none) and reloads a running server. */
  setSyncStandbys(names: string): void {
    this.opts.syncStandbyNames = names || undefined;
    this.init();
    if (this.running()) this.reload();
  }

  reload(): void { runAsPostgres(pgBin('pg_ctl'), ['-D', this.dataDir, 'reload']); }

  running(): boolean {
    return fs.existsSync(path.join(this.dataDir, 'postmaster.pid'));
  }

  pid(): number | null {
    try { return Number(fs.readFileSync(path.join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]); } catch { return null; }
  }

  /** Runs SQL with psql as the postgres superuser (for set-up and checks). */
  psql(sql: string, db = 'postgres'): string {
    return runAsPostgres(pgBin('psql'), ['-h', '127.0.0.1', '-p', String(this.opts.port), '-U', 'postgres', '-d', db, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
  }

  async waitReady(timeoutMs = 30000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try { this.psql('SELECT 1'); return; } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(100);
      }
    }
  }
}
