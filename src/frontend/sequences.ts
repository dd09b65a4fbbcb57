// Sequences created on several shards at once (CREATE SEQUENCE, serial / bigserial and identity
// columns through pgring's DDL broadcast) would each count from 1, so the ids a table's default
// hands out on different shards would repeat (tickets sharded by tenant: id 1 on every shard).
// Each shard therefore moves its new sequences to a value range of its own, in the same
// transaction as the DDL (as Citus gives each node's bigserial sequences a range):
// - bigint: shard k > 0 counts k * 2^48 + 1 to (k + 1) * 2^48; shard 0 keeps PostgreSQL's own
//   start and end, so ids there look as on one server;
// - integer (serial, the default of Prisma's, TypeORM's and Sequelize's ids): 16 ranges of 2^27
//   (134,217,728) ids, shard k counting k * 2^27 + 1 to (k + 1) * 2^27; shard 0 keeps its start
//   and ends at 2^27. Shards beyond the 16th keep PostgreSQL's range (documented).
// MAXVALUE ends each range, so a shard that used up its range fails instead of repeating ids.
// Only sequences created by the statement's transaction with PostgreSQL's default start, minimum
// and increment are moved; smallserial (int2) ones are too small to split.

import { internalStatement, type InternalStatement } from './session-util';

/** Shards whose integer sequences get a range of their own. */
export const INT4_SLOTS = 16;

/** Range `slot` of sequence values: slot * 2^48 + 1 to (slot + 1) * 2^48 for bigint, 2^27 wide for integer. */
export function sequenceRange(slot: number, int4 = false): { lo: bigint; hi: bigint } {
  const bits = int4 ? 27n : 48n;
  return { lo: (BigInt(slot) << bits) + 1n, hi: BigInt(slot + 1) << bits };
}

/** The range slot a sequence with this MINVALUE counts in (0: PostgreSQL's own start). */
export function sequenceSlot(min: bigint, int4 = false): number {
  return min <= 1n ? 0 : Number((min - 1n) >> (int4 ? 27n : 48n));
}

/** The statement that moves this transaction's new sequences to shard `slot`'s ranges ('' when none applies). */
export function sequenceRangeSql(slot: number): string {
  const fresh = (type: string): string => `SELECT c.oid::pg_catalog.regclass AS seq FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
    WHERE c.relkind = 'S' AND c.xmin = pg_catalog.pg_current_xact_id()::xid AND s.seqtypid = 'pg_catalog.${type}'::pg_catalog.regtype
      AND s.seqstart = 1 AND s.seqmin = 1 AND s.seqincrement = 1`;
  const loops: string[] = [];
  if (slot > 0) {
    const { lo, hi } = sequenceRange(slot);
    loops.push(`FOR r IN ${fresh('int8')} LOOP
    EXECUTE pg_catalog.format('ALTER SEQUENCE %s MINVALUE ${lo} MAXVALUE ${hi} START WITH ${lo} RESTART', r.seq);
  END LOOP;`);
  }
  if (slot >= 0 && slot < INT4_SLOTS) {
    const { lo, hi } = sequenceRange(slot, true);
    loops.push(`FOR r IN ${fresh('int4')} LOOP
    EXECUTE pg_catalog.format('ALTER SEQUENCE %s ${slot > 0 ? `MINVALUE ${lo} MAXVALUE ${hi} START WITH ${lo} RESTART` : `MAXVALUE ${hi}`}', r.seq);
  END LOOP;`);
  }
  if (!loops.length) return '';
  return `DO $pgring_seq$ DECLARE r record; BEGIN
  ${loops.join('\n  ')}
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
