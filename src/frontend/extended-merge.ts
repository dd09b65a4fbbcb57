// Extended-protocol SELECTs merged across shards (pure helpers, no I/O).
//
// A statement whose merge rewrites the per-shard SQL (avg as sum + count, OFFSET pushed down as
// LIMIT + OFFSET, hidden sort / group columns) runs on the shards as a second prepared statement:
// the rewritten text under a name derived from that text (shared like every server statement).
// The client's own statement stays prepared on one shard, unchanged, so Describe of the statement
// answers with the RowDescription PostgreSQL gives for the original text. A portal with a row
// limit (Execute max_rows) runs to completion on the shards; the merged rows are kept in the
// portal and handed out max_rows at a time with PortalSuspended, as a server portal would.
import { B } from '../protocol/codes';
import { commandComplete, parseMsg } from '../protocol/messages';
import { ClientStatement, makeStatement } from './prepared';
import type { InsertPart } from './insert-split';

const derived = new WeakMap<ClientStatement, ClientStatement>();

/** The statement the shards run for `cs` when its merge rewrites the SQL; null when it does not. */
export function shardStatement(cs: ClientStatement): ClientStatement | null {
  const sql = cs.stmt.plan.merge?.shardSql;
  if (sql === undefined) return null;
  let d = derived.get(cs);
  if (!d) {
    // Named even for the client's unnamed statement: the shard keeps the client's unnamed one.
    d = makeStatement('pgring-merge', sql, cs.types, cs.stmt, parseMsg('', sql, cs.types, cs.codec), cs.scope, cs.codec);
    derived.set(cs, d);
  }
  return d;
}

/** A Bind of the client's `msg` (decoded up to its result formats at `resultOffset`) for the
 *  shard statement `statement`: hidden trailing columns get the text format when the client gave
 *  one format per column. */
export function shardBind(msg: Buffer, resultOffset: number, statement: string, hidden: number): Buffer {
  let off = 5;
  off = msg.indexOf(0, off) + 1; // portal
  const portalEnd = off;
  off = msg.indexOf(0, off) + 1; // statement
  const paramsStart = off;
  const nres = msg.readUInt16BE(resultOffset);
  const extra = nres > 1 ? hidden : 0;
  const name = Buffer.from(statement + '\0', 'utf8');
  const body = msg.subarray(paramsStart, resultOffset);
  const res = Buffer.alloc(2 + 2 * (nres + extra));
  res.writeUInt16BE(nres + extra, 0);
  msg.copy(res, 2, resultOffset + 2, resultOffset + 2 + 2 * nres);
  const out = Buffer.concat([msg.subarray(0, portalEnd), name, body, res]);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

/** Rows of a multi-shard portal run to completion for an Execute with a row limit. */
export interface PortalRows {
  /** DataRows, then null until the shards answered */
  rows: Buffer[] | null;
  pos: number;
  /** the shards' error instead of rows */
  error: Buffer | null;
  waiters: (() => void)[];
}

export function newPortalRows(): PortalRows { return { rows: null, pos: 0, error: null, waiters: [] }; }

/** Stores the merged answer of the shards (DataRows + CommandComplete, or an ErrorResponse);
 *  returns the Executes that waited for it, to run after the one that ran the shards took its rows. */
export function fillPortalRows(pr: PortalRows, msgs: Buffer[]): (() => void)[] {
  const err = msgs.find((m) => m[0] === B.ErrorResponse);
  if (err) pr.error = err;
  pr.rows = msgs.filter((m) => m[0] === B.DataRow);
  const w = pr.waiters;
  pr.waiters = [];
  return w;
}

/** The answer to one Execute of `maxRows` (0 = all) rows, as PostgreSQL's portal gives it:
 *  PortalSuspended when the limit was reached, else CommandComplete with this call's count. */
export function takeRows(pr: PortalRows, maxRows: number): Buffer[] {
  if (pr.error) return [pr.error];
  const rows = pr.rows!;
  const left = rows.length - pr.pos;
  if (maxRows > 0 && left >= maxRows) {
    const out = rows.slice(pr.pos, pr.pos + maxRows);
    pr.pos += maxRows;
    out.push(PORTAL_SUSPENDED);
    return out;
  }
  const out = rows.slice(pr.pos);
  pr.pos = rows.length;
  out.push(commandComplete(`SELECT ${left}`));
  return out;
}

const PORTAL_SUSPENDED = Buffer.from([B.PortalSuspended, 0, 0, 0, 4]);

const insertParts = new WeakMap<ClientStatement, Map<string, ClientStatement>>();

/** The statement one shard runs for its part of a split multi-row INSERT (renumbered parameters,
 *  their types taken from the client's Parse), named by its text like every server statement. */
export function insertStatement(cs: ClientStatement, part: InsertPart): ClientStatement {
  let m = insertParts.get(cs);
  if (!m) insertParts.set(cs, m = new Map());
  let d = m.get(part.sql);
  if (!d) {
    const types = part.params.map((i) => cs.types[i] ?? 0);
    while (types.length && types[types.length - 1] === 0) types.pop();
    d = makeStatement('pgring-insert', part.sql, types, cs.stmt, parseMsg('', part.sql, types, cs.codec), cs.scope, cs.codec);
    m.set(part.sql, d);
  }
  return d;
}

const ownedParts = new WeakMap<ClientStatement, Map<string, ClientStatement>>();

/** The statement a shard runs for `cs` during a resharding migration: `sql` reads only the rows it owns. */
export function ownedStatement(cs: ClientStatement, sql: string): ClientStatement {
  let m = ownedParts.get(cs);
  if (!m) ownedParts.set(cs, m = new Map());
  let d = m.get(sql);
  if (!d) {
    if (m.size > 64) m.clear();   // predicates change with the ring version
    d = makeStatement('pgring-owned', sql, cs.types, cs.stmt, parseMsg('', sql, cs.types, cs.codec), cs.scope, cs.codec);
    m.set(sql, d);
  }
  return d;
}
