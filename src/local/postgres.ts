// A real PostgreSQL 15 server in a directory of its own, on a loopback port.
import * as fs from 'node:fs';
import * as path from 'node:path';
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
    runAsPostgres(pgBin('pg_ctl'), ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', 'start']);
  }

  stop(mode: 'fast' | 'immediate' = 'fast'): void {
    if (!this.running()) return;
    try { runAsPostgres(pgBin('pg_ctl'), ['-D', this.dataDir, '-m', mode, '-w', '-t', '60', 'stop']); } catch { /* already gone */ }
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
