#!/usr/bin/env node
// The pgring command line (yargs): proxy, agent, ring, table, shard, backup, demo.
import yargs from 'yargs';
import type { Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError } from '../config/load';

/** Running pgring: the proxy and the local demo cluster. */
function runCommands(y: Argv): Argv {
  return y
    .command('proxy', 'run the PostgreSQL routing proxy', (y) => y
      .option('config', { alias: 'c', type: 'string', demandOption: true, describe: 'path of proxy.json' })
      .option('log-level', { type: 'string', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], describe: 'overrides logLevel of the config' }),
    async (argv) => {
      const { runProxy } = await import('./proxy-command');
      await runProxy(argv.config, argv['log-level']);
    })
    .command('demo', 'start a local cluster: ZooKeeper + 3 PostgreSQL shards + pgring on 127.0.0.1', (y) => y
      .option('dir', { type: 'string', default: path.join(os.tmpdir(), 'pgring-demo'), describe: 'directory that holds all demo data' })
      .option('port', { type: 'number', default: 6432, describe: 'pgring port' })
      .option('zk-port', { type: 'number', default: 2181, describe: 'ZooKeeper port' })
      .option('pg-ports', { type: 'string', default: '5433,5434,5435', describe: 'PostgreSQL shard ports, comma-separated' })
      .option('metrics-port', { type: 'number', default: 9930, describe: 'Prometheus metrics port' })
      .option('replicas', { type: 'number', default: 0, describe: 'streaming replicas per shard (synchronous, made with pg_basebackup)' })
      .option('replica-base-port', { type: 'number', default: 5443, describe: 'port of the first replica; the others follow shard by shard' })
      .option('replica-ports', { type: 'string', describe: 'replica ports, comma-separated, shard by shard (instead of --replica-base-port)' })
      .option('spares', { type: 'number', default: 0, describe: 'more PostgreSQL servers on the next ports, not in the ring (for `pgring shard add`)' })
      .option('fresh', { type: 'boolean', default: false, describe: 'delete the demo directory of an earlier run first (its data and ZooKeeper state) and start over' }),
    async (argv) => {
      const { runDemo } = await import('./demo');
      const pgPorts = argv['pg-ports'].split(',').map((p) => Number(p.trim()));
      await runDemo(argv.dir, { fresh: argv.fresh, proxyPort: argv.port, zkPort: argv['zk-port'], pgPorts, metricsPort: argv['metrics-port'], replicas: argv.replicas, replicaBasePort: argv['replica-base-port'],
        replicaPorts: argv['replica-ports']?.split(',').map((p) => Number(p.trim())), spares: argv.spares });
    });
}

/** The cluster state in ZooKeeper: ring and cluster definition. */
function clusterStateCommands(y: Argv): Argv {
  return y
    .command('ring <action>', 'show or bootstrap the consistent-hash ring kept in ZooKeeper', (y) => y
      .positional('action', { choices: ['init', 'status'] as const, describe: 'init: create ring version 1 from the config; status: version, shards, shares, live backends' })
      .option('config', { alias: 'c', type: 'string', describe: 'proxy.json (zookeeper section and shards)' })
      .option('zk', { type: 'string', describe: 'ZooKeeper connect string (overrides the config)' })
      .option('cluster', { type: 'string', describe: 'cluster name (overrides the config)' })
      .option('json', { type: 'boolean', default: false, describe: 'status as JSON' }),
    async (argv) => {
      const c = await import('./cluster-commands');
      if (argv.action === 'init') await c.ringInit(argv);
      else await c.ringStatus(argv);
    })
    .command('table <action> [name]', 'show or change the cluster definition in ZooKeeper (sharded and reference tables)', (y) => y
      .positional('action', { choices: ['list', 'shard', 'reference', 'forget'] as const, describe: 'list; shard NAME --column C --type T; reference NAME; forget NAME' })
      .positional('name', { type: 'string', describe: 'table name' })
      .option('config', { alias: 'c', type: 'string', describe: 'proxy.json (zookeeper section; users for the row clean-up of shard)' })
      .option('zk', { type: 'string', describe: 'ZooKeeper connect string (overrides the config)' })
      .option('cluster', { type: 'string', describe: 'cluster name (overrides the config)' })
      .option('column', { type: 'string', describe: 'shard: the key column' })
      .option('type', { type: 'string', choices: ['smallint', 'integer', 'bigint', 'text', 'varchar', 'uuid'], describe: 'shard: the key type' })
      .option('columns', { type: 'string', describe: 'shard: all columns in table order, comma-separated (for COPY without a column list)' })
      .option('batch', { type: 'number', default: 10000, describe: 'shard: rows deleted per statement' })
      .option('user', { type: 'string', describe: 'shard: PostgreSQL user for the clean-up (default: from the config, else postgres)' })
      .option('password', { type: 'string' })
      .option('ack-timeout', { type: 'number', default: 30, describe: 'shard: seconds to wait for every proxy to route by the new version' })
      .option('json', { type: 'boolean', default: false, describe: 'list as JSON' }),
    async (argv) => {
      const { tableCommand } = await import('./table-commands');
      await tableCommand({ ...argv, action: argv.action!, ackTimeout: argv['ack-timeout'] });
    });
}

/** Moving data: backups, resharding and shard primaries. */
function dataCommands(y: Argv): Argv {
  return y
    .command('backup <action> [name]', 'consistent backups of the whole cluster with pgBackRest: init | create NAME | list | restore NAME', (y) => y
      .positional('action', { choices: ['init', 'create', 'list', 'restore'] as const, describe: 'init: stanzas + full base backups; create: a consistent cut; list; restore: to a cut, as a new cluster' })
      .positional('name', { type: 'string', describe: 'backup name (create, restore)' })
      .option('config', { alias: 'c', type: 'string', describe: 'proxy.json (zookeeper section; its backup.maxPauseMs and sharding are used)' })
      .option('zk', { type: 'string', describe: 'ZooKeeper connect string (overrides the config)' })
      .option('cluster', { type: 'string', describe: 'cluster name; for restore: the NEW cluster name (default <cluster>-<name>)' })
      .option('from', { type: 'string', describe: 'restore: the cluster the backup belongs to (default: the config\'s, else found by name)' })
      .option('base', { type: 'boolean', default: false, describe: 'create: take new full base backups first' })
      .option('max-pause-ms', { type: 'number', describe: 'create: overrides backup.maxPauseMs' })
      .option('dir', { type: 'string', describe: 'restore: target directory (D/<shard> must not exist)' })
      .option('ports', { type: 'string', describe: 'restore: ports of the restored shards, comma-separated, in shard order' })
      .option('json', { type: 'boolean', default: false, describe: 'print the result as JSON' }),
    async (argv) => {
      const { runBackup } = await import('./backup-commands');
      await runBackup({ ...argv, action: argv.action! });
    })
    .command('shard <action> [name]', 'online resharding (add, remove, rebalance, status, resume, abort) and the primary of a shard (switchover, rejoin, failover-status)', (y) => y
      .positional('action', { choices: ['add', 'remove', 'rebalance', 'status', 'resume', 'abort', 'switchover', 'rejoin', 'failover-status'] as const, describe: 'add NAME --host H --port P [--weight W]; remove NAME; rebalance NAME --weight W; status; resume; abort' })
      .positional('name', { type: 'string', describe: 'shard name' })
      .option('config', { alias: 'c', type: 'string', describe: 'proxy.json (zookeeper section)' })
      .option('zk', { type: 'string', describe: 'ZooKeeper connect string (overrides the config)' })
      .option('cluster', { type: 'string', describe: 'cluster name (overrides the config)' })
      .option('host', { type: 'string', describe: 'add: the new shard\'s PostgreSQL host' })
      .option('port', { type: 'number', describe: 'add: the new shard\'s PostgreSQL port' })
      .option('weight', { type: 'number', describe: 'add (default 1) / rebalance: the shard\'s weight' })
      .option('database', { type: 'string', default: 'postgres', describe: 'the database whose tables move' })
      .option('user', { type: 'string', default: 'postgres', describe: 'PostgreSQL superuser (replication, publications, subscriptions)' })
      .option('password', { type: 'string', describe: 'its password (default: PGPASSWORD)' })
      .option('json', { type: 'boolean', default: false, describe: 'progress and status as JSON' })
      .option('wait', { type: 'boolean', default: true, describe: '--no-wait: print the migration id and advance it in the background' })
      .option('max-pause-ms', { type: 'number', describe: 'longest write pause of one cut-over attempt (default: resharding.maxWritePauseMs of --config, else 5000)' })
      .option('tries', { type: 'number', default: 5, describe: 'cut-over attempts before the migration rolls back' })
      .option('batch', { type: 'number', default: 5000, describe: 'rows per DELETE when moved rows leave their old shard' })
      .option('clean-leftovers', { type: 'boolean', default: false, describe: 'delete rows of the moving arcs already on a target (an aborted move) instead of refusing' })
      .option('id', { type: 'string', describe: 'status / resume / abort: the migration id' })
      .option('stop-at', { type: 'string', hidden: true })
      .option('to', { type: 'string', describe: 'switchover: the replica (HOST:PORT) to promote' })
      .option('timeout', { type: 'number', default: 120000, describe: 'switchover: ms to wait for the controller' })
      .option('data-dir', { type: 'string', describe: 'rejoin: its data directory (pg_rewind runs on it)' })
      .option('log-file', { type: 'string', describe: 'rejoin: server log (default: postgres.log beside the data directory)' }),
    async (argv) => {
      if (argv.action === 'switchover' || argv.action === 'rejoin' || argv.action === 'failover-status') {
        const c = await import('./shard-commands');
        if (!argv.name) throw new Error(`pgring shard ${argv.action} needs the shard name`);
        const a = { ...argv, name: String(argv.name), host: argv.host ?? '127.0.0.1' };
        if (argv.action === 'switchover') await c.switchover(a);
        else if (argv.action === 'failover-status') await c.failoverStatus(a);
        else {
          if (!argv.port || !argv['data-dir']) throw new Error('rejoin needs --port and --data-dir');
          await c.rejoin({ ...a, port: argv.port, dataDir: argv['data-dir'], logFile: argv['log-file'] });
        }
        return;
      }
      const { shardCommand } = await import('./reshard-commands');
      await shardCommand({ ...argv, action: argv.action!, password: argv.password ?? process.env.PGPASSWORD, maxPauseMs: argv['max-pause-ms'], cleanLeftovers: argv['clean-leftovers'], stopAt: argv['stop-at'] });
    });
}

/** The health-check agent beside a PostgreSQL server. */
function agentCommand(y: Argv): Argv {
  return y
    .command('agent', 'health-check one PostgreSQL server and keep its liveness znode in ZooKeeper', (y) => y
      .option('config', { alias: 'c', type: 'string' })
      .option('zk', { type: 'string' })
      .option('cluster', { type: 'string' })
      .option('shard', { type: 'string', demandOption: true })
      .option('host', { type: 'string', default: '127.0.0.1' })
      .option('port', { type: 'number', demandOption: true })
      .option('role', { choices: ['primary', 'replica'] as const, default: 'primary' as const })
      .option('interval', { type: 'number', default: 1000, describe: 'heartbeat interval (ms)' })
      .option('user', { type: 'string', default: 'postgres' })
      .option('password', { type: 'string' }),
    async (argv) => {
      const { runAgent } = await import('./cluster-commands');
      await runAgent(argv);
    });
}

async function main(): Promise<void> {
  const cli = yargs(hideBin(process.argv)).scriptName('pgring').usage('$0 <command> [options]');
  await agentCommand(dataCommands(clusterStateCommands(runCommands(cli))))
    .demandCommand(1)
    .strict()
    // A command that fails (an invalid config, a refused start) is reported by main's catch
    // with its message only; yargs' own usage text is for wrong arguments.
    .fail((msg, err, y) => {
      if (err) throw err;
      y.showHelp();
      console.error(`\n${msg}`);
      process.exit(1);
    })
    .help()
    .parseAsync();
}

main().catch((e) => {
  if (e instanceof ConfigError) console.error(e.message);
  // A command's own error is for the user: its message (the stack with PGRING_DEBUG=1).
  else console.error(e instanceof Error ? (process.env.PGRING_DEBUG ? e.stack ?? e.message : e.message) : e);
  process.exit(1);
});
