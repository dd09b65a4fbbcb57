// SHOW HELP: the commands of the admin console.
import { cols, resultSet } from './result';
import type { AdminCommand } from './types';

export const showHelp: AdminCommand = {
  name: 'SHOW HELP',
  help: 'this list',
  run: ({ commands }) => resultSet(cols('command', 'description'), commands.map((c) => [c.name, c.help])),
};
