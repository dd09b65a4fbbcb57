// Cursors whose query spans several shards (DECLARE without a shard key: psql's FETCH_COUNT,
// pg_dump --inserts, Django's and psycopg's server-side cursors). A cursor lives in one server
// session, so pgring runs the cursor's query on the shards as a multi-shard SELECT (merged like
// any other: ORDER BY, aggregates, LIMIT) inside the client's transaction, keeps the rows, and
// answers FETCH / MOVE / CLOSE itself. The rows are those of the DECLARE's moment, as a cursor's
// are; they are held in this process (documented in docs/ARCHITECTURE.md). Through the extended
// protocol (psycopg 3's server-side cursors: DECLARE with parameters, then Describe of the
// cursor's portal, then FETCH) the bound values are written into the DECLARE as literals of the
// parameters' declared types and it runs as above; Describe of the cursor's name answers its
// RowDescription.
import { B } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import { commandComplete, query } from '../protocol/messages';
import { tokenize } from '../router/lexer';
import type { RoutedStatement } from '../router/router';
import type { FetchSpec } from '../router/types';
import { Route, routeShards } from './routing';
import type { ClientSession } from './client';
import { dollarQuote } from './session-util';
import { withReadsFirst } from './subqueries';

/** Names of the parameter types a literal gets (others: an untyped literal, which PostgreSQL
 *  resolves from its context as it resolves a parameter of unspecified type). */
const TYPE_NAMES: Record<number, string> = {
  16: 'bool', 17: 'bytea', 18: 'char', 19: 'name', 20: 'int8', 21: 'int2', 23: 'int4', 25: 'text', 26: 'oid', 114: 'json',
  700: 'float4', 701: 'float8', 1042: 'bpchar', 1043: 'varchar', 1082: 'date', 1083: 'time', 1114: 'timestamp',
  1184: 'timestamptz', 1186: 'interval', 1266: 'timetz', 1700: 'numeric', 2950: 'uuid', 3802: 'jsonb',
  1000: 'bool[]', 1005: 'int2[]', 1007: 'int4[]', 1016: 'int8[]', 1009: 'text[]', 1015: 'varchar[]', 1231: 'numeric[]', 2951: 'uuid[]',
};

/** The text of a binary-format parameter of a type pgring can read, else null. */
function binaryText(b: Buffer, type: number): string | null {
  switch (type) {
    case 16: return b.length === 1 ? (b[0] ? 'true' : 'false') : null;
    case 21: return b.length === 2 ? String(b.readInt16BE(0)) : null;
    case 23: case 26: return b.length === 4 ? String(type === 26 ? b.readUInt32BE(0) : b.readInt32BE(0)) : null;
    case 20: return b.length === 8 ? b.readBigInt64BE(0).toString() : null;
    case 700: return b.length === 4 ? String(b.readFloatBE(0)) : null;
    case 701: return b.length === 8 ? String(b.readDoubleBE(0)) : null;
    case 25: case 1043: case 19: case 1042: case 114: return b.toString('utf8');
    case 2950: return b.length === 16 ? b.toString('hex').replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-') : null;
    default: return null;
  }
}

/**
 * `sql` with each `$n` replaced by the bound value as a literal (`$q$42$q$::int4`, `NULL::text`):
 * what runs on the shards for a DECLARE bound through the extended protocol. Throws 08P01 for a
 * wrong parameter count and 0A000 for a binary value of a type pgring does not read.
 */
export function withParamLiterals(sql: string, params: (Buffer | null)[], formats: number[], types: number[], text: (b: Buffer) => string): string {
  let out = '';
  let pos = 0;
  for (const t of tokenize(sql)) {
    if (t.type !== 'param') continue;
    const n = Number(t.text.slice(1));
    if (!(n >= 1 && n <= params.length)) throw new PgError(SQLSTATE.ProtocolViolation, `bind message supplies ${params.length} parameters, but the statement uses $${n}`);
    const v = params[n - 1]!;
    const type = types[n - 1] ?? 0;
    const name = TYPE_NAMES[type];
    const format = formats.length === 1 ? formats[0]! : formats[n - 1] ?? 0;
    let lit: string;
    if (v === null) lit = 'NULL';
    else if (format === 1) {
      const t2 = binaryText(v, type);
      if (t2 === null) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: a binary parameter of type ${type} in a DECLARE over several shards is not supported (send it in text format)`);
      lit = dollarQuote(t2);
    } else lit = dollarQuote(text(v));
    out += sql.slice(pos, t.start) + (name ? `(${lit}::${name})` : lit);
    pos = t.end;
  }
  return out + sql.slice(pos);
}

interface Kept {
  hold: boolean;
  rowDescription: Buffer | null;
  rows: Buffer[];
  /** PostgreSQL's cursor position: 0 before the first row, n + 1 after the last */
  pos: number;
}

/** The query of `DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [[NO] SCROLL] CURSOR [{WITH | WITHOUT} HOLD] FOR query`. */
export function cursorQuery(sql: string): string | null {
  const m = /^\s*declare\s+(?:"(?:[^"]|"")*"|\S+)\s+(?:(?:binary|asensitive|insensitive|no|scroll)\s+)*cursor\s+(?:(?:with|without)\s+hold\s+)?for\s+/i.exec(sql);
  return m ? sql.slice(m[0].length) : null;
}

/** Rows (1-based indices) a FETCH returns and the position after it, on a cursor of `n` rows at `pos`. */
export function fetchStep(pos: number, n: number, f: FetchSpec): { rows: number[]; pos: number } {
  const at = (p: number) => (p >= 1 && p <= n ? [p] : []);
  // FORWARD -n is BACKWARD n and the other way round (PostgreSQL's PerformPortalFetch)
  if ((f.direction === 'forward' || f.direction === 'backward') && f.count < 0) {
    return fetchStep(pos, n, { ...f, direction: f.direction === 'forward' ? 'backward' : 'forward', count: -f.count });
  }
  const count = f.count;
  switch (f.direction) {
    case 'forward': {
      if (count === 0) return { rows: at(pos), pos };
      const rows: number[] = [];
      for (let i = pos + 1; i <= n && i <= pos + count; i++) rows.push(i);
      return { rows, pos: pos + count > n ? n + 1 : pos + count };
    }
    case 'backward': {
      if (count === 0) return { rows: at(pos), pos };
      const rows: number[] = [];
      for (let i = Math.min(pos, n + 1) - 1; i >= 1 && i >= pos - count; i--) rows.push(i);
      return { rows, pos: pos - count < 1 ? 0 : pos - count };
    }
    case 'absolute': {
      if (count === 0) return { rows: [], pos: 0 };
      const target = count > 0 ? count : n + 1 + count;
      if (target < 1) return { rows: [], pos: 0 };
      if (target > n) return { rows: [], pos: n + 1 };
      return { rows: [target], pos: target };
    }
    case 'relative': {
      if (count === 0) return { rows: at(pos), pos };
      const target = pos + count;
      if (target < 1) return { rows: [], pos: 0 };
      if (target > n) return { rows: [], pos: n + 1 };
      return { rows: [target], pos: target };
    }
  }
}

export class Cursors {
  private readonly kept = new Map<string, Kept>();
  constructor(private readonly s: ClientSession) {}

  get size(): number { return this.kept.size; }

  /** ReadyForQuery 'I': a cursor without HOLD ended with its transaction. */
  transactionEnded(): void {
    for (const [name, c] of this.kept) if (!c.hold) this.kept.delete(name);
  }

  /** FETCH / MOVE / CLOSE of a cursor kept here: answered (true). CLOSE ALL also reaches the servers. */
  answers(stmt: RoutedStatement): boolean {
    const out = this.answer(stmt, true);
    if (out === null) return false;
    this.s.responses.synth(out, false);
    this.s.responses.rfq();
    return true;
  }

  /** Whether `stmt` is a FETCH / MOVE / CLOSE of a cursor kept here. */
  keeps(stmt: RoutedStatement): boolean {
    const plan = stmt.plan;
    return (plan.command === 'fetch' || plan.command === 'close_cursor') && !!plan.cursor && this.kept.has(plan.cursor);
  }

  /** Describe of a FETCH portal: the cursor's RowDescription (MOVE and CLOSE return no rows). */
  describeStatement(stmt: RoutedStatement): Buffer | null {
    const plan = stmt.plan;
    if (plan.command !== 'fetch' || plan.fetch?.move || !plan.cursor) return null;
    return this.kept.get(plan.cursor)?.rowDescription ?? null;
  }

  /** The answer to a FETCH / MOVE / CLOSE of a cursor kept here (the cursor moves), or null when
   *  it is not one. `withDescription`: the simple protocol's RowDescription before the rows. */
  answer(stmt: RoutedStatement, withDescription: boolean): Buffer[] | null {
    if (this.kept.size === 0) return null;
    const plan = stmt.plan;
    if (plan.command !== 'fetch' && plan.command !== 'close_cursor') return null;
    if (plan.command === 'close_cursor' && plan.cursor === null) { this.kept.clear(); return null; }
    const name = plan.cursor;
    const c = name ? this.kept.get(name) : undefined;
    if (!c || !name) return null;
    if (plan.command === 'close_cursor') {
      this.kept.delete(name);
      return [commandComplete('CLOSE CURSOR')];
    }
    const f = plan.fetch ?? { direction: 'forward', count: 1, move: false };
    const step = fetchStep(c.pos, c.rows.length, f);
    c.pos = step.pos;
    if (f.move) return [commandComplete(`MOVE ${step.rows.length}`)];
    const out = withDescription && c.rowDescription ? [c.rowDescription] : [];
    for (const i of step.rows) out.push(c.rows[i - 1]!);
    out.push(commandComplete(`FETCH ${step.rows.length}`));
    return out;
  }

  /** The RowDescription of a cursor kept here (Describe of its portal), null when it has none, undefined when it is not kept here. */
  describe(name: string): Buffer | null | undefined {
    const c = this.kept.get(name);
    return c ? c.rowDescription : undefined;
  }

  /** DECLARE whose query spans several shards: the query runs on them now, its rows are kept.
   *  `ext`: an Execute of the extended protocol (no ReadyForQuery; an error skips to Sync). */
  async declare(stmt: RoutedStatement, route: Route, ext = false): Promise<void> {
    const plan = stmt.plan;
    const name = plan.cursor!;
    if (!plan.cursorHold && this.s.txStatus === 'I') throw new PgError('25P01', 'DECLARE CURSOR can only be used in transaction blocks');
    if (this.kept.has(name)) throw new PgError('42P03', `cursor "${name}" already exists`);
    if (plan.cursorBinary) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: a BINARY cursor over several shards is not supported');
    const sql = cursorQuery(stmt.sql);
    const inner = sql === null ? undefined : this.s.router.plan(sql);
    let q = inner?.length === 1 ? inner[0]! : null;
    if (!q || q.plan.command !== 'select' || q.plan.write) {
      throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: a cursor over several shards is supported for a plain SELECT only (no FOR UPDATE, no data-modifying query)');
    }
    // its subqueries (or its tables: materialize.ts) read first; the query then runs where it routes
    ({ q, route } = await withReadsFirst(this.s, q, route, ext));
    const scatters = route.kind !== 'direct';
    const why = q.plan.unsupported ?? (scatters ? q.plan.scatterUnsupported ?? q.plan.finalize : undefined) ?? q.plan.subqueries;
    if (why) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${why} is not supported`);
    const hold = !!plan.cursorHold;
    await this.s.scatter.scatterSimple(q, query(q.sql, this.s.codec), routeShards(route, this.s.ctx.shards.shardCount), false, undefined, undefined, (msgs) => {
      if (msgs.some((m) => m[0] === B.ErrorResponse)) return msgs.filter((m) => m[0] !== B.ReadyForQuery);
      this.kept.set(name, { hold, rowDescription: msgs.find((m) => m[0] === B.RowDescription) ?? null, rows: msgs.filter((m) => m[0] === B.DataRow), pos: 0 });
      return [commandComplete('DECLARE CURSOR')];
    }, ext);
  }
}
