// SHOW CONFIG: the running configuration as key/value (passwords masked), and
// whether RELOAD applies a change of the key.
import { flatten, isRestartKey } from './reload';
import { cols, resultSet } from './result';
import type { AdminCommand } from './types';

export const MASK = '********';

export const showConfig: AdminCommand = {
  name: 'SHOW CONFIG',
  help: 'running configuration (passwords masked); changeable = applied by RELOAD',
  run: ({ proxy }) => {
    const rows = [...flatten(proxy.config)].map(([k, v]) => [
      k, /password$/i.test(k) ? MASK : typeof v === 'string' ? v : JSON.stringify(v), isRestartKey(k) ? 'no' : 'yes',
    ]);
    return resultSet(cols('key', 'value', 'changeable'), rows);
  },
};
