// The admin console: simple queries on database `pgring` by users with admin: true
// (enforced at login). Commands are case-insensitive, a trailing semicolon is
// optional, several commands may be separated by semicolons. Each answer is a real
// result set (RowDescription / DataRow / CommandComplete) or an ErrorResponse.
import type { ClientSession } from '../frontend/client';
import { PgError, SQLSTATE } from '../protocol/errors';
import { commandComplete, emptyQueryResponse } from '../protocol/messages';
import type { Proxy } from '../proxy';
import { pauseCommand, resumeCommand } from './pause-command';
import { reloadCommand } from './reload-command';
import { showBackends } from './show-backends';
import { showBackups } from './show-backups';
import { showClients } from './show-clients';
import { showConfig } from './show-config';
import { showHelp } from './show-help';
import { showLocks } from './show-locks';
import { showPools } from './show-pools';
import { showRing } from './show-ring';
import { showServers } from './show-servers';
import { showShards } from './show-shards';
import { showStats } from './show-stats';
import { showTables } from './show-tables';
import { showMigrations } from './show-migrations';
import { showTransactions } from './show-transactions';
import { showVersion } from './show-version';
import type { AdminCommand } from './types';

export const COMMANDS: readonly AdminCommand[] = [
  showHelp, showShards, showBackends, showRing, showTables, showPools, showStats, showClients, showServers,
  showLocks, showTransactions, showBackups, showMigrations, showConfig, showVersion, reloadCommand, pauseCommand, resumeCommand,
];

const BY_NAME = new Map(COMMANDS.map((c) => [c.name, c]));

/** Removes comments and normalises case and blanks: ' show  pools ' -> 'SHOW POOLS'. */
export function normalize(sql: string): string {
  return sql.replace(/--[^\n]*/g, ' ').replace(/\/\*[\s\S]*?\*\//g, ' ').trim().replace(/\s+/g, ' ').toUpperCase();
}

export class AdminConsole {
  constructor(private readonly proxy: Proxy) {}

  async handle(session: ClientSession, sql: string): Promise<Buffer[]> {
    const parts = sql.split(';').map(normalize).filter((s) => s.length > 0);
    if (parts.length === 0) return [emptyQueryResponse];
    const out: Buffer[] = [];
    for (const cmd of parts) {
      try {
        out.push(...await this.run(session, cmd));
      } catch (e) {
        // Like PostgreSQL: the first failing statement of a query string ends it.
        const err = e instanceof PgError ? e
          : (e as Error)?.name === 'ConfigError' ? new PgError(SQLSTATE.ConfigFileError, (e as Error).message, { hint: 'the running configuration is unchanged' })
          : new PgError(SQLSTATE.InternalError, `pgring admin: ${(e as Error).message}`);
        if (!(e instanceof PgError) && (e as Error)?.name !== 'ConfigError') this.proxy.log.error({ err: e, command: cmd }, 'admin command failed');
        out.push(err.toMessage());
        break;
      }
    }
    return out;
  }

  private async run(session: ClientSession, cmd: string): Promise<Buffer[]> {
    const c = BY_NAME.get(cmd);
    if (c) {
      this.proxy.log.debug({ user: session.user, command: cmd }, 'admin command');
      return c.run({ proxy: this.proxy, session, commands: COMMANDS });
    }
    if (cmd === 'SHOW') return BY_NAME.get('SHOW HELP')!.run({ proxy: this.proxy, session, commands: COMMANDS });
    // Drivers and poolers sometimes send SET on connect: accept and ignore, as PgBouncer does.
    if (/^SET\s/.test(cmd) || /^(BEGIN|COMMIT|ROLLBACK)$/.test(cmd)) return [commandComplete(cmd.split(' ')[0]!)];
    if (/^SHOW\s/.test(cmd)) {
      throw new PgError(SQLSTATE.FeatureNotSupported, `unsupported admin command "${cmd}": see SHOW HELP`, { hint: `known: ${COMMANDS.map((x) => x.name).join(', ')}` });
    }
    throw new PgError(SQLSTATE.SyntaxError, `unknown admin command "${cmd.slice(0, 60)}": the pgring console accepts the commands listed by SHOW HELP`, { hint: 'try SHOW HELP' });
  }
}
