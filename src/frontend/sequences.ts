// Sequences created on several shards at once (CREATE SEQUENCE, bigserial and bigint identity
// columns through pgring's DDL broadcast) would each count from 1, so the ids a table's default
// hands out on different shards would repeat (tickets sharded by tenant: id 1 on every shard).
// Each shard k > 0 therefore moves its new bigint sequences to a range of its own, k * 2^48 + 1
// to (k + 1) * 2^48, in the same transaction as the DDL (as Citus gives each node's bigserial
// sequences a range). Shard 0 keeps PostgreSQL's own start, so a one-shard cluster sees nothing
// new; MAXVALUE ends each range, so a shard that used up 2^48 ids fails instead of repeating.
// Only sequences created by the statement's transaction, of type bigint, with PostgreSQL's
// default start, minimum and increment are moved; serial (int4) and smallserial ones are too
// small to split and keep counting from 1 on every shard (documented).

import { internalStatement, type InternalStatement } from './session-util';

/** Range `slot` of bigint sequence values: slot * 2^48 + 1 to (slot + 1) * 2^48. */
export function sequenceRange(slot: number): { lo: bigint; hi: bigint } {
  return { lo: (BigInt(slot) << 48n) + 1n, hi: BigInt(slot + 1) << 48n };
}

/** The range slot a sequence with this MINVALUE counts in (0: PostgreSQL's own start). */
export function sequenceSlot(min: bigint): number {
  return min <= 1n ? 0 : Number((min - 1n) >> 48n);
}

/** The statement that moves this transaction's new bigint sequences to shard `slot`'s range ('' for slot 0). */
export function sequenceRangeSql(slot: number): string {
  if (slot <= 0) return '';
  const { lo, hi } = sequenceRange(slot);
  return `DO $pgring_seq$ DECLARE r record; BEGIN
  FOR r IN SELECT c.oid::pg_catalog.regclass AS seq FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
    WHERE c.relkind = 'S' AND c.xmin = pg_catalog.pg_current_xact_id()::xid AND s.seqtypid = 'pg_catalog.int8'::pg_catalog.regtype
      AND s.seqstart = 1 AND s.seqmin = 1 AND s.seqincrement = 1
  LOOP
    EXECUTE pg_catalog.format('ALTER SEQUENCE %s MINVALUE ${lo} MAXVALUE ${hi} START WITH ${lo} RESTART', r.seq);
  END LOOP;
END $pgring_seq$`;
}

/** sequenceRangeSql(slot) as one of pgring's own named statements (the extended protocol runs it
 *  after the client's DDL, in the same unit). */
const rangeStatements = new Map<number, InternalStatement>();
export function sequenceRangeStatement(slot: number): InternalStatement {
  let st = rangeStatements.get(slot);
  if (!st) rangeStatements.set(slot, st = internalStatement(`pgring_seqrange_${slot}`, sequenceRangeSql(slot)));
  return st;
}
