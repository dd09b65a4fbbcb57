// Returns a server connection to its pool after its client went away, running
// the statements that make it safe for the next client (ROLLBACK, DISCARD ALL).
// Anything unexpected destroys the connection instead: never hand out a doubtful one.
import { B } from '../protocol/codes';
import { query } from '../protocol/messages';
import type { Pool } from './pool';
import type { ServerConnection } from './server';

export function resetAndRelease(pool: Pool, conn: ServerConnection, statements: string[], timeoutMs = 5000): void {
  if (conn.closed) { pool.release(conn); return; }
  if (statements.length === 0) { pool.release(conn); return; }
  let remaining = statements.length;
  let failed = false;
  const timer = setTimeout(() => { conn.owner = null; conn.destroy(); }, timeoutMs);
  conn.tag = null;
  conn.owner = {
    onServerMessage(_c, type) {
      if (type === B.ErrorResponse) failed = true;
      if (type === B.ReadyForQuery && --remaining === 0) {
        clearTimeout(timer);
        conn.owner = null;
        if (failed || conn.status !== 'I') conn.destroy();
        else pool.release(conn);
      }
    },
    onServerBatchEnd() { /* nothing to flush */ },
    onServerClose() { clearTimeout(timer); },
  };
  for (const s of statements) conn.write(query(s));
}
