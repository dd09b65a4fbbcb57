#!/usr/bin/env node
// The pgring command line (yargs): proxy, agent, ring, shard, demo.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError } from '../config/load';

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('pgring')
    .usage('$0 <command> [options]')
    .command('proxy', 'run the PostgreSQL routing proxy', (y) => y
      .option('config', { alias: 'c', type: 'string', demandOption: true, describe: 'path of proxy.json' })
      .option('log-level', { type: 'string', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], describe: 'overrides logLevel of the config' }),
    async (argv) => {
      const { runProxy } = await import('./proxy-command');
      await runProxy(argv.config, argv['log-level']);
    })
    .command('demo', 'start a local cluster: ZooKeeper + 3 PostgreSQL shards + pgring on 127.0.0.1', (y) => y
      .option('dir', { type: 'string', default: path.join(os.tmpdir(), 'pgring-demo'), describe: 'directory that holds all demo data' })
      .option('port', { type: 'number', default: 6432, describe: 'pgring port' }),
    async (argv) => {
      const { runDemo } = await import('./demo');
      await runDemo(argv.dir, { proxyPort: argv.port });
    })
    .demandCommand(1)
    .strict()
    .help()
    .parseAsync();
}

main().catch((e) => {
  if (e instanceof ConfigError) console.error(e.message);
  else console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exit(1);
});
