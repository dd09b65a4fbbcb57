// Operations glue installed by the Proxy: the admin console hook, PAUSE/RESUME,
// the metrics registry and HTTP endpoint, SHOW STATS sampling and config reload.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../config/load';
import { PgError, SQLSTATE } from '../protocol/errors';
import { ProxyMetrics } from '../metrics';
import type { Proxy } from '../proxy';
import { AdminConsole } from './console';
import { PauseGate } from './pause';
import { reloadConfig, ReloadResult } from './reload';
import { StatsSampler } from './stats-sampler';

function readVersion(): string {
  for (const p of [path.resolve(__dirname, '../../../package.json'), path.resolve(__dirname, '../../package.json')]) {
    try {
      const pkg = JSON.parse(fs.readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'pgring' && pkg.version) return pkg.version;
    } catch { /* next */ }
  }
  return 'unknown';
}

export const VERSION = readVersion();

export class Operations {
  readonly pause = new PauseGate();
  readonly console: AdminConsole;
  readonly sampler: StatsSampler;
  readonly metrics: ProxyMetrics | null;
  readonly version = VERSION;

  constructor(private readonly proxy: Proxy) {
    this.console = new AdminConsole(proxy);
    this.sampler = new StatsSampler(() => proxy.ctx.topology.allPools());
    proxy.ctx.admin = (session, sql) => this.console.handle(session, sql);
    this.pause.install(proxy.ctx);
    this.metrics = proxy.config.metrics.enabled ? new ProxyMetrics(proxy) : null;
    if (this.metrics) proxy.ctx.metrics = this.metrics;
  }

  /** Port of the metrics HTTP endpoint (null when disabled or not started). */
  get metricsPort(): number | null { return this.metrics?.port ?? null; }

  async start(): Promise<void> {
    this.sampler.start();
    if (this.metrics) {
      const m = this.proxy.config.metrics;
      try {
        await this.metrics.listen(m.host, m.port);
      } catch (e) {
        throw new Error(`metrics: cannot listen on ${m.host}:${m.port}: ${(e as Error).message} (set metrics.port, or metrics.enabled: false)`);
      }
      this.proxy.log.info({ host: m.host, port: this.metrics.port }, 'metrics endpoint listening (/metrics, /healthz)');
    }
  }

  async stop(): Promise<void> {
    this.sampler.stop();
    this.pause.resume();
    await this.metrics?.close();
  }


  /** RELOAD / SIGHUP. Throws a PgError (F0000 for an invalid config) and keeps the running config. */
  reload(): ReloadResult {
    try {
      const r = reloadConfig(this.proxy);
      this.proxy.log.info({ file: r.file, applied: r.applied, notApplied: r.notApplied }, 'config reloaded');
      if (r.notApplied.length) this.proxy.log.warn({ keys: r.notApplied }, 'config changes not applied: restart pgring to change these keys');
      if (this.proxy.log.level !== this.proxy.config.logLevel) this.proxy.log.level = this.proxy.config.logLevel;
      this.metrics?.reload('ok');
      return r;
    } catch (e) {
      this.metrics?.reload('refused');
      const err = e instanceof PgError ? e
        : e instanceof ConfigError ? new PgError(SQLSTATE.ConfigFileError, `config reload refused: ${e.message}`, { hint: 'the running configuration is unchanged' })
        : new PgError(SQLSTATE.InternalError, `config reload failed: ${(e as Error).message}`);
      this.proxy.log.error({ error: err.message }, 'config reload refused; keeping the running config');
      throw err;
    }
  }
}
