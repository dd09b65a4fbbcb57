// `pgring proxy --config FILE`: runs until SIGTERM (stop accepting, let running
// transactions finish within shutdownGraceMs, exit 0) or SIGINT (immediate stop).
// SIGHUP re-reads the config file (an invalid one is refused and logged; the running
// config stays). SIGUSR1 / SIGUSR2 pause / resume clients (as PgBouncer does).
import { loadConfig } from '../config/load';
import { Proxy } from '../proxy';

export async function runProxy(configFile: string, logLevel?: string): Promise<void> {
  const config = loadConfig(configFile);
  if (logLevel) config.logLevel = logLevel as typeof config.logLevel;
  const proxy = new Proxy({ config, configFile, logLevel });
  await proxy.start();
  let stopping = false;
  const shutdown = async (graceful: boolean) => {
    if (stopping) return;
    stopping = true;
    const graceMs = proxy.config.shutdownGraceMs;
    proxy.log.info({ graceful, graceMs, clients: proxy.ctx.sessions.size }, 'pgring shutting down');
    try {
      if (graceful) await proxy.drain(graceMs);
      else await proxy.stop();
    } catch (e) {
      proxy.log.error({ err: e }, 'error during shutdown');
    }
    proxy.log.info('pgring stopped');
    proxy.log.flush?.();
    process.exit(0);
  };
  // One client's failure must never take every other client down with the process.
  process.on('unhandledRejection', (err) => proxy.log.error({ err }, 'unhandled rejection (kept running)'));
  process.on('uncaughtException', (err) => proxy.log.error({ err }, 'uncaught exception (kept running)'));
  process.on('SIGTERM', () => void shutdown(true));
  process.on('SIGINT', () => void shutdown(false));
  process.on('SIGHUP', () => {
    if (stopping) return;
    proxy.log.info({ file: configFile }, 'SIGHUP: reloading config');
    try { proxy.reload(); } catch { /* logged by reload; the running config stays */ }
  });
  process.on('SIGUSR1', () => { if (proxy.ops.pause.pause()) proxy.log.warn('pgring paused (SIGUSR1)'); });
  process.on('SIGUSR2', () => { if (proxy.ops.pause.resume()) proxy.log.warn('pgring resumed (SIGUSR2)'); });
}
