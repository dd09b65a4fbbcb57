// PAUSE / RESUME: client sessions stop before their next message until RESUME
// (server connections stay open; a transaction in progress waits too). Admin
// sessions are never paused.
import { buildNotice, commandComplete } from '../protocol/messages';
import type { AdminCommand } from './types';

export const pauseCommand: AdminCommand = {
  name: 'PAUSE',
  help: 'hold all client statements before their next message until RESUME',
  run: ({ proxy }) => {
    const changed = proxy.ops.pause.pause();
    if (changed) proxy.log.warn('pgring paused (admin PAUSE)');
    return changed ? [commandComplete('PAUSE')] : [buildNotice({ code: '00000', message: 'pgring is already paused' }), commandComplete('PAUSE')];
  },
};

export const resumeCommand: AdminCommand = {
  name: 'RESUME',
  help: 'resume after PAUSE',
  run: ({ proxy }) => {
    const changed = proxy.ops.pause.resume();
    if (changed) proxy.log.warn('pgring resumed (admin RESUME)');
    return changed ? [commandComplete('RESUME')] : [buildNotice({ code: '00000', message: 'pgring is not paused' }), commandComplete('RESUME')];
  },
};
