// A statement the client prepared before DDL on something it reads. PostgreSQL analyses it again
// at its next Bind or Describe and fails it (0A000 "cached plan must not change result type")
// only when its result columns changed: after `ALTER TABLE t ADD COLUMN` or a DROP + CREATE of
// the same shape, `SELECT id FROM t` goes on working. pgring cannot leave that check to the
// server connection the statement lands on (a copy another client prepared after the DDL would
// answer with the new columns under the client's old RowDescription), so it compares itself:
// the columns the client was given (the first Describe of the statement or of a portal of it)
// with those of the text analysed now, inside the client's unit.
import { B, F } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import { parseMsg, targeted } from '../protocol/messages';
import { parseRowDescription } from '../router/merge';
import { ClientStatement, markRevalidated } from './prepared';
import { K } from './session-types';
import { msg_flush } from './session-util';
import type { ClientSession } from './client';

/** PostgreSQL's error for a statement whose result columns changed since its Parse. The routine
 *  field is what pgjdbc reads to decide that re-preparing heals it. */
export function staleError(): PgError {
  return new PgError(SQLSTATE.FeatureNotSupported, 'cached plan must not change result type', { file: 'plancache.c', routine: 'RevalidateCachedQuery' });
}

/** The same result columns as PostgreSQL's re-analysis compares them: names, types and type
 *  modifiers (not the table a column comes from, nor the format codes of a portal). */
export function sameResultColumns(a: Buffer | null, b: Buffer | null): boolean {
  if (a === null || b === null) return a === b;
  const x = parseRowDescription(a), y = parseRowDescription(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    if (x[i]!.name !== y[i]!.name || x[i]!.typeOid !== y[i]!.typeOid || x[i]!.typmod !== y[i]!.typmod) return false;
  }
  return true;
}

/**
 * Analyses the text of `cs` again on a server inside the client's unit (Parse under pgring's own
 * name, Describe, Close; no Sync, so the unit's implicit transaction and the client's unnamed
 * statement stay) and compares its result columns with those the client was given. true: the
 * same, and `cs` counts as parsed now; false: changed (the caller fails it as PostgreSQL does);
 * null: the text no longer analyses (a column it reads was dropped) — that error went to the
 * client as the unit's failure, as PostgreSQL's re-analysis fails the Bind.
 */
export async function sameColumnsNow(s: ClientSession, cs: ClientStatement): Promise<boolean | null> {
  const link = await s.servers.link(s.routing.preferredShardFor(cs.stmt));
  s.unitLinks.add(link);
  link.unsynced = true;
  const name = 'pgring_revalidate';
  let failed = false;
  s.responses.push(K.InternalParse, link, true).onError = () => { failed = true; };
  const d = s.responses.push(K.InternalDescribe, link, true);
  let now: Buffer | null = null;
  d.onRow = (m) => { now = Buffer.from(m); };
  const done = new Promise<void>((resolve) => { d.onDone = resolve; });
  s.responses.push(K.InternalClose, link, true);
  link.conn.write(Buffer.concat([parseMsg(name, cs.sql, cs.types, cs.codec), targeted(F.Describe, 'S', name), targeted(F.Close, 'S', name), msg_flush]));
  s.flush();
  await done;
  if (failed) return null;
  if (!sameResultColumns(now, cs.shape!)) return false;
  markRevalidated(cs);
  return true;
}

/** Records the columns a Describe gave the client for `cs` (the first time only: no copy per execution). */
export function noteShape(cs: ClientStatement, type: number, msg: Buffer): void {
  if (cs.shape === undefined && (type === B.RowDescription || type === B.NoData)) cs.shape = type === B.RowDescription ? Buffer.from(msg) : null;
}

/** A Bind or Describe of `cs` after DDL on what it reads: run (`again`) once its result columns are
 *  found unchanged; failed with PostgreSQL's error when they changed, or at once when the client
 *  was never given them. `skipped`: the message is not run (an earlier failure of the unit skips
 *  it, as PostgreSQL does). */
export function revalidated(s: ClientSession, unit: { unitFailed(): boolean }, cs: ClientStatement, again: () => Promise<void> | void, skipped: () => void): Promise<void> {
  if (cs.shape === undefined || cs.serverName === '') throw staleError();
  return revalidating(s, unit, cs, again, skipped);
}

async function revalidating(s: ClientSession, unit: { unitFailed(): boolean }, cs: ClientStatement, again: () => Promise<void> | void, skipped: () => void): Promise<void> {
  try {
    if (s.responses.inFlight()) await s.responses.afterInFlight();
    if (unit.unitFailed()) { skipped(); return; }
    const same = await sameColumnsNow(s, cs);
    if (same === null) { skipped(); return; }
    if (!same) throw staleError();
    await again();
  } catch (e) { s.simple.queryError(e, true); }
}
