// Small pure helpers of the client-session modules.
import { integralOfNumeric } from '../ring/hash';
import { planReadUse } from './read-routing';
import { F } from '../protocol/codes';
import { PgError, SQLSTATE, parseErrorFields } from '../protocol/errors';
import { Writer } from '../protocol/messages';
import type { Plan, RoutedStatement } from '../router/router';

export function isTxControl(p: Plan): boolean {
  return p.command === 'begin' || p.command === 'commit' || p.command === 'rollback';
}

/** A plain SELECT (no locking clause, no write): what a replica may answer (and the hint's reads=). */
export const isPlainRead = planReadUse;

export const msg_flush = Buffer.from([F.Flush, 0, 0, 0, 4]);

// The client session that last used each server backend (shard, pid): a NotificationResponse
// names the notifying backend's pid, which clients compare with the BackendKeyData pid pgring
// gave the notifier (asyncpg's listeners do). Keyed by a number (no string built per attach);
// an entry moves to the recent end only when its owner changes.
export const backendOwners = new Map<number, number>();

const ownerKey = (shard: number, backendPid: number): number => shard * 4294967296 + (backendPid >>> 0);

export function noteBackendOwner(shard: number, backendPid: number, clientPid: number): void {
  const key = ownerKey(shard, backendPid);
  if (backendOwners.get(key) === clientPid) return;
  backendOwners.delete(key);
  backendOwners.set(key, clientPid);
  if (backendOwners.size > 100000) backendOwners.delete(backendOwners.keys().next().value as number);
}

export function notifierAsClient(shard: number, msg: Buffer): Buffer {
  const owner = backendOwners.get(ownerKey(shard, msg.readInt32BE(5)));
  if (owner === undefined) return msg;
  const out = Buffer.from(msg);
  out.writeInt32BE(owner, 5);
  return out;
}

export interface InternalStatement { name: string; parse: Buffer; bindExecute: Buffer }

export function internalStatement(name: string, sql: string): InternalStatement {
  return {
    name,
    parse: new Writer().cstr(name).cstr(sql).int16(0).msg(F.Parse),
    bindExecute: Buffer.concat([
      new Writer().cstr('').cstr(name).int16(0).int16(0).int16(0).msg(F.Bind),
      new Writer().cstr('').int32(0).msg(F.Execute),
    ]),
  };
}

export const BEGIN_STMT = internalStatement('pgring_begin', 'BEGIN');

export const COMMIT_STMT = internalStatement('pgring_commit', 'COMMIT');

export const ROLLBACK_STMT = internalStatement('pgring_rollback', 'ROLLBACK');

/** A PgError as it is, anything else as pgring's own internal error (XX000). */
export function internalError(e: unknown): PgError {
  return e instanceof PgError ? e : new PgError(SQLSTATE.InternalError, `pgring: ${(e as Error).message}`);
}

export function quoteLiteral(s: string): string { return `'${s.replace(/'/g, "''")}'`; }

/** A string as a dollar-quoted literal (the same whatever standard_conforming_strings says). */
export function dollarQuote(s: string): string {
  let tag = 'q';
  while (s.includes(`$${tag}$`)) tag += 'q';
  return `$${tag}$${s}$${tag}$`;
}

export function quoteIdent(s: string): string { return `"${s.replace(/"/g, '""')}"`; }

/** Adds a key value, or the elements of an array literal such as {1,2,"x y",NULL}. */
export function pushKey(out: (string | null)[], text: string | null, array?: boolean): void {
  if (!array || text === null) { out.push(text); return; }
  for (const e of parseArrayLiteral(text)) out.push(e);
}

export function parseArrayLiteral(text: string): (string | null)[] {
  const s = text.trim();
  if (!s.startsWith('{') || !s.endsWith('}')) throw new PgError(SQLSTATE.InvalidTextRepresentation, `malformed array literal: "${text}"`);
  const out: (string | null)[] = [];
  let i = 1;
  const end = s.length - 1;
  while (i < end) {
    while (i < end && /\s/.test(s[i]!)) i++;
    if (i >= end) break;
    let v = '';
    let quoted = false;
    if (s[i] === '"') {
      quoted = true; i++;
      while (i < end && s[i] !== '"') { if (s[i] === '\\') i++; v += s[i++]; }
      i++;
    } else {
      while (i < end && s[i] !== ',') { if (s[i] === '\\') i++; v += s[i++]; }
      v = v.trim();
    }
    if (s[i] === '{' ) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: multi-dimensional key arrays are not supported');
    out.push(!quoted && v.toUpperCase() === 'NULL' ? null : v);
    while (i < end && s[i] !== ',') i++;
    i++;
  }
  return out;
}

export function needsColumns(st: RoutedStatement): boolean {
  return st.plan.unsupported !== undefined && st.plan.table !== undefined && /without a column list/.test(st.plan.unsupported);
}

/** Whether an ErrorResponse has severity FATAL or PANIC (the 'S' field comes first). */
export function isFatal(msg: Buffer): boolean {
  const f = parseErrorFields(msg);
  return f.S === 'FATAL' || f.S === 'PANIC';
}

/** "cached plan must not change result type" (the routine is the same in every server locale). */
export function isResultTypeChange(msg: Buffer): boolean {
  const f = parseErrorFields(msg);
  return f.C === SQLSTATE.FeatureNotSupported && (f.R === 'RevalidateCachedQuery' || f.M === 'cached plan must not change result type');
}

const INT_KEYS = new Set(['smallint', 'integer', 'bigint']);
/** The key text of literal `slot`: an unquoted numeric constant (`id = 5.0`) against an integer key
 *  is the integer PostgreSQL compares it as (rounded half away from zero); before, pgring answered
 *  22P02 where PostgreSQL returns the row. */
export function keyLiteral(stmt: { literals: string[]; literalKinds: number[] }, slot: number, type: string | undefined): string | null {
  const t = stmt.literals[slot] ?? null;
  if (t === null || stmt.literalKinds[slot] !== 2 || !type || !INT_KEYS.has(type)) return t;
  return integralOfNumeric(t) ?? t;
}
