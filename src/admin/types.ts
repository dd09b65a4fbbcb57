// One admin console command (one file per command in src/admin).
import type { ClientSession } from '../frontend/client';
import type { Proxy } from '../proxy';

export interface AdminCall { proxy: Proxy; session: ClientSession; commands: readonly AdminCommand[] }

export interface AdminCommand {
  /** Upper-case words, e.g. 'SHOW POOLS'. */
  name: string;
  help: string;
  run(call: AdminCall): Buffer[] | Promise<Buffer[]>;
}
