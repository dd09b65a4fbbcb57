// Returns a server connection to its pool after its client went away, running
// the statements that make it safe for the next client (ROLLBACK, DISCARD ALL).
// Anything unexpected destroys the connection instead: never hand out a doubtful one.
import { B } from '../protocol/codes';
import { parseErrorFields } from '../protocol/errors';
import { query } from '../protocol/messages';
import type { Pool } from './pool';
import type { ServerConnection } from './server';

export function resetAndRelease(pool: Pool, conn: ServerConnection, statements: string[], timeoutMs = 5000): void {
  if (conn.closed) { pool.release(conn); return; }
  if (statements.length === 0) { pool.release(conn); return; }
  conn.tag = null;
  runThenRelease(pool, conn, statements, timeoutMs, () => false);
}

/** Runs `statements` on a connection no client owns; releases it when each answered without an
 *  error (other than those `tolerated`) and it is idle, destroys it otherwise. */
function runThenRelease(pool: Pool, conn: ServerConnection, statements: string[], timeoutMs: number, tolerated: (err: Buffer) => boolean): void {
  let remaining = statements.length;
  let failed = false;
  const timer = setTimeout(() => { conn.owner = null; conn.destroy(); }, timeoutMs);
  conn.owner = {
    onServerMessage(_c, type, msg) {
      if (type === B.ErrorResponse && !tolerated(msg)) failed = true;
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

/**
 * A connection pgring sent a CancelRequest for goes to no other client before that cancel has
 * landed. The postmaster forks a process that signals the backend (some ms after pgring decided
 * to cancel); when the statement ended meanwhile, transaction pooling handed the connection to
 * the next client and the signal cancelled that client's statement (cancel-pool.test.ts: 15 of 40
 * times). PostgreSQL's double signal (process, then process group) can do the same after a cancel
 * that did work. So: wait until the signal was sent, then run a throw-away statement, which either
 * absorbs the cancel (57014) or finds it dropped by the idle backend, before releasing.
 */
export function settleCancel(pool: Pool, conn: ServerConnection, timeoutMs = 5000): void {
  const sent = conn.cancelSent!;
  conn.cancelSent = null;
  conn.owner = { onServerMessage() { /* nothing is in flight */ }, onServerBatchEnd() { /* nothing */ }, onServerClose() { /* forgotten by the pool */ } };
  void sent.then(() => {
    if (conn.closed) return;
    runThenRelease(pool, conn, ['SELECT 1'], timeoutMs, (err) => parseErrorFields(err).C === '57014');
  });
}
