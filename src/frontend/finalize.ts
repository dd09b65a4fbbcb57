// Expressions over aggregates across shards (router/finalize.ts splits the statement): the inner
// query runs through the ordinary merge; its rows are then bound as parameters of the outer query,
// which one of the shards' connections evaluates. In the same exchange that server describes the
// client's own statement, so the client gets exactly the RowDescription PostgreSQL gives for it
// (names, types, type modifiers, source columns), and the outer query's rows under it.
import { B, F } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import { bindMsg, decodeDataRowRaw, executeMsg, flushMsg, parseMsg, query, syncMsg, targeted } from '../protocol/messages';
import { finalizeSql, type Finalize } from '../router/finalize';
import { parseRowDescription } from '../router/merge';
import type { RoutedStatement } from '../router/router';
import type { ClientSession } from './client';
import { Route, routeShards } from './routing';
import { K, type Link } from './session-types';

/** PostgreSQL's limit on a statement's parameters. */
const MAX_PARAMS = 65535;

/** How the answer is given: in the extended protocol (`ext`: an Execute of a portal pgring bound
 *  with the values written in) in the client's result `formats`, without RowDescription; `after`
 *  makes the client's messages of it (a row limit keeps the rows in the portal; COPY (…) TO writes
 *  them as COPY data). */
export interface FinalizeOpts {
  ext?: boolean; formats?: number[]; after?: (msgs: Buffer[]) => Buffer[];
  /** a statement inside pgring's own work (a subquery run first): no ReadyForQuery of its own */
  partOfMany?: boolean;
  /** extended protocol: describe the outer query's portal too (pgring itself needs the RowDescription) */
  describe?: boolean;
}

/** Runs `stmt` (a SELECT with expressions over aggregates) over the shards of `route`. */
export async function runFinalized(s: ClientSession, stmt: RoutedStatement, route: Route, opts: FinalizeOpts = {}): Promise<void> {
  const f = finalizeSql(stmt.sql);
  if ('unsupported' in f) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${f.unsupported} is not supported`);
  const planned = s.router.plan(f.inner);
  const q = planned.length === 1 ? planned[0]! : null;
  const why = !q || q.plan.command !== 'select' || q.plan.write ? stmt.plan.finalize : q.plan.unsupported ?? q.plan.scatterUnsupported ?? q.plan.finalize;
  if (why || !q) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${why ?? 'this statement across shards'} is not supported`);
  const shards = routeShards(route, s.ctx.shards.shardCount);
  // Nothing of the client's may reach the servers before the outer query has run (the pump waits
  // for this promise): a later statement, or the unit's Sync, would change the transaction the
  // outer query runs in.
  // (the next macrotask: after scatter.ts has completed the answer with what this resolves to)
  let done!: () => void;
  const finished = new Promise<void>((resolve) => { done = () => setImmediate(resolve); });
  // a link the session still holds (outside a transaction the shards' may be back in the pool)
  const link = async (): Promise<Link> => s.links[shards[0]!] ?? s.servers.link(shards[0]!);
  await s.scatter.scatterSimple(q, query(q.sql, s.codec), shards, opts.partOfMany === true, undefined, undefined,
    (msgs) => link().then((l) => evaluate(s, l, opts.ext ? null : stmt.sql, f, msgs, opts.formats ?? [], opts.describe === true)).then(opts.after ?? ((m) => m)).finally(done),
    opts.ext === true);
  await finished;
}

/** The outer query over the merged inner rows `msgs`, on `link`: the client's RowDescription (simple
 *  protocol: `sql` is described; the extended one had its Describe), the rows in `formats`, `SELECT n`. */
async function evaluate(s: ClientSession, link: Link, sql: string | null, f: Finalize, msgs: Buffer[], formats: number[], describe: boolean): Promise<Buffer[]> {
  if (msgs.some((m) => m[0] === B.ErrorResponse)) return msgs;
  const rd = msgs.find((m) => m[0] === B.RowDescription);
  const types = rd ? parseRowDescription(rd).map((c) => c.typeOid) : [];
  if (types.length !== f.width) throw new PgError(SQLSTATE.InternalError, 'pgring: the inner rows of an expression over aggregates do not match it');
  const rows = msgs.filter((m) => m[0] === B.DataRow).map(decodeDataRowRaw);
  const w = f.width;
  if (Math.max(1, rows.length) * w > MAX_PARAMS) {
    throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: expressions over aggregates of more than ${Math.floor(MAX_PARAMS / w)} groups across shards are not supported`,
      { hint: 'Select the aggregates themselves (they are merged for any number of groups), or group by the shard key.' });
  }
  const ref = (r: number, c: number): string => `$${r * w + c + 1}`;
  const cols = types.map((_, c) => c);
  const source = rows.length
    ? `VALUES ${rows.map((_, r) => `(${cols.map((c) => ref(r, c)).join(', ')})`).join(', ')}`
    : `SELECT ${cols.map((c) => ref(0, c)).join(', ')} WHERE false`;
  const values = rows.length ? rows.flat() : cols.map(() => null);
  const paramTypes = rows.length ? rows.flatMap(() => types) : types;
  const outer = f.outerHead + source + f.outerTail;
  // In a client's extended-protocol unit pgring's messages end with Flush, not Sync: the unit's
  // implicit transaction and its Sync stay the client's.
  const describeOriginal = sql === null ? [] : [parseMsg('', sql, [], s.codec), targeted(F.Describe, 'S', '')];
  const answer = await exchange(s, link, sql === null, Buffer.concat([
    ...describeOriginal, parseMsg('', outer, paramTypes, s.codec), bindMsg('', '', 0, values, formats),
    ...(sql === null && describe ? [targeted(F.Describe, 'P', '')] : []), executeMsg('', 0), sql === null ? flushMsg : syncMsg,
  ]));
  const err = answer.find((m) => m[0] === B.ErrorResponse);
  if (err) return [err];
  const desc = answer.find((m) => m[0] === B.RowDescription);
  const out = answer.filter((m) => m[0] === B.DataRow || m[0] === B.CommandComplete);
  return desc ? [desc, ...out] : out;
}

/** Sends pgring's own extended-protocol exchange on `link` (ending in Sync, or Flush `inUnit`); resolves with every message the server answered. */
export function exchange(s: ClientSession, link: Link, inUnit: boolean, msg: Buffer): Promise<Buffer[]> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    // pgring's Parse replaces the server's unnamed statement: a client's unnamed one there must be parsed again
    link.unnamed = null;
    const p = s.responses.push(K.InternalRaw, link, inUnit);
    p.onRow = (m) => { got.push(m); };
    p.onDone = () => resolve(got);
    link.conn.write(msg);
    s.flush();
  });
}

/** A RowDescription with the format codes of a Bind's result formats (none: text; one: every column). */
export function withFormats(rd: Buffer, formats: number[]): Buffer {
  const out = Buffer.from(rd);
  const n = out.readUInt16BE(5);
  let p = 7;
  for (let i = 0; i < n; i++) {
    p = out.indexOf(0, p) + 1 + 16;   // name, then table oid, attnum, type oid, typlen, typmod
    out.writeInt16BE(formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : formats[i] ?? 0, p);
    p += 2;
  }
  return out;
}
