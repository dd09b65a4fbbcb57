// `pgring proxy --config FILE`: runs until SIGTERM (drain, exit 0) or SIGINT.
import { loadConfig } from '../config/load';
import { Proxy } from '../proxy';

export async function runProxy(configFile: string, logLevel?: string): Promise<void> {
  const config = loadConfig(configFile);
  if (logLevel) config.logLevel = logLevel as typeof config.logLevel;
  const proxy = new Proxy({ config, configFile });
  await proxy.start();
  let stopping = false;
  const shutdown = async (graceful: boolean) => {
    if (stopping) return;
    stopping = true;
    proxy.log.info({ graceful }, 'pgring shutting down');
    if (graceful) await proxy.drain(config.shutdownGraceMs);
    else await proxy.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown(true));
  process.on('SIGINT', () => void shutdown(false));
}
