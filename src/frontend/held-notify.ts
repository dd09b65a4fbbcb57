// `SELECT pg_notify(channel, payload)` in a transaction over several shards, held until the
// commit as NOTIFY is (simple.ts heldNotify): sent with the transaction it would make a write
// transaction over several shards refuse PREPARE TRANSACTION ("cannot PREPARE a transaction
// that has executed LISTEN, UNLISTEN, or NOTIFY"), and listeners could hear it before the
// commit. pgring answers the call as PostgreSQL does (one void column per call, the checks
// Async_Notify makes at the call) and runs it after the commit on the shard of every LISTEN.
import { PgError } from '../protocol/errors';
import { buildDataRow, buildRowDescription } from '../router/merge';
import type { NotifyArg, Plan } from '../router/types';

const VOID_OID = 2278;
/** NAMEDATALEN and NOTIFY_PAYLOAD_MAX_LENGTH (BLCKSZ - NAMEDATALEN - 128) of a default build */
const NAMEDATALEN = 64;
const PAYLOAD_MAX = 8000;

type Calls = NonNullable<Plan['notifyCalls']>;

function literal(s: string): string {
  return s.includes('\\') ? `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'` : `'${s.replace(/'/g, "''")}'`;
}

/**
 * The statement to run after the commit, or the error PostgreSQL gives at the call.
 * `value` resolves an argument (null: SQL NULL; pg_notify takes NULL as '').
 */
export function heldNotifySql(calls: Calls, value: (a: NotifyArg) => string | null): string {
  const parts: string[] = [];
  for (const c of calls) {
    const channel = value(c.args[0]) ?? '';
    const payload = value(c.args[1]) ?? '';
    if (channel === '') throw new PgError('22023', 'channel name cannot be empty');
    if (Buffer.byteLength(channel, 'utf8') >= NAMEDATALEN) throw new PgError('22023', 'channel name too long');
    if (Buffer.byteLength(payload, 'utf8') >= PAYLOAD_MAX) throw new PgError('22023', 'payload string too long');
    parts.push(`pg_notify(${literal(channel)}, ${literal(payload)})`);
  }
  return `SELECT ${parts.join(', ')}`;
}

/** PostgreSQL's answer to the call: RowDescription (void columns) and its one DataRow. */
export function heldNotifyResult(calls: Calls, formats: number[] = []): { rowDescription: Buffer; dataRow: Buffer } {
  const fmt = (i: number): number => (formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : formats[i] ?? 0);
  return {
    rowDescription: buildRowDescription(calls.map((c, i) => ({ name: c.name, tableOid: 0, attnum: 0, typeOid: VOID_OID, typlen: 4, typmod: -1, format: fmt(i) }))),
    // void's text output and binary send are both empty
    dataRow: buildDataRow(calls.map(() => Buffer.alloc(0))),
  };
}
