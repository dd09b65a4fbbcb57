// RELOAD: re-reads the config file (see reload.ts). The reply lists what was applied
// and, as a NOTICE, the changed keys that need a restart. A config that fails
// validation is refused with an ErrorResponse (F0000) naming key and reason.
import { buildNotice, commandComplete } from '../protocol/messages';
import type { AdminCommand } from './types';

export const reloadCommand: AdminCommand = {
  name: 'RELOAD',
  help: 're-read the config file: users, pool sizes/timeouts, log level, lock timeouts apply at once',
  run: ({ proxy }) => {
    const r = proxy.reload(); // throws PgError (refused: old config stays)
    const out: Buffer[] = [];
    out.push(buildNotice({ code: '00000', message: r.applied.length ? `pgring config reloaded from ${r.file}; applied: ${r.applied.join(', ')}` : `pgring config reloaded from ${r.file}; no changes to apply` }));
    if (r.notApplied.length) {
      out.push(buildNotice({ severity: 'WARNING', code: '01000', message: `not applied (restart pgring to change): ${r.notApplied.join(', ')}` }));
    }
    out.push(commandComplete('RELOAD'));
    return out;
  },
};
