// SHOW VERSION.
import { cols, resultSet } from './result';
import type { AdminCommand } from './types';

export const showVersion: AdminCommand = {
  name: 'SHOW VERSION',
  help: 'pgring version',
  run: ({ proxy }) => resultSet(cols('version'), [[`pgring ${proxy.ops.version} (node ${process.version})`]]),
};
