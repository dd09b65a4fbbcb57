// Cursors whose query spans several shards (DECLARE without a shard key: psql's FETCH_COUNT,
// pg_dump --inserts, Django's and psycopg's server-side cursors). A cursor lives in one server
// session, so pgring runs the cursor's query on the shards as a multi-shard SELECT (merged like
// any other: ORDER BY, aggregates, LIMIT) inside the client's transaction, keeps the rows, and
// answers FETCH / MOVE / CLOSE itself. The rows are those of the DECLARE's moment, as a cursor's
// are; they are held in this process (documented in docs/ARCHITECTURE.md). Simple protocol only:
// a DECLARE over several shards through the extended protocol is refused (0A000).
import { B } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import { commandComplete, query } from '../protocol/messages';
import type { RoutedStatement } from '../router/router';
import type { FetchSpec } from '../router/types';
import { Route, routeShards } from './routing';
import type { ClientSession } from './client';

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
    if (this.kept.size === 0) return false;
    const plan = stmt.plan;
    if (plan.command !== 'fetch' && plan.command !== 'close_cursor') return false;
    if (plan.command === 'close_cursor' && plan.cursor === null) { this.kept.clear(); return false; }
    const name = plan.cursor;
    const c = name ? this.kept.get(name) : undefined;
    if (!c || !name) return false;
    let out: Buffer[];
    if (plan.command === 'close_cursor') {
      this.kept.delete(name);
      out = [commandComplete('CLOSE CURSOR')];
    } else {
      const f = plan.fetch ?? { direction: 'forward', count: 1, move: false };
      const step = fetchStep(c.pos, c.rows.length, f);
      c.pos = step.pos;
      if (f.move) out = [commandComplete(`MOVE ${step.rows.length}`)];
      else {
        out = c.rowDescription ? [c.rowDescription] : [];
        for (const i of step.rows) out.push(c.rows[i - 1]!);
        out.push(commandComplete(`FETCH ${step.rows.length}`));
      }
    }
    this.s.responses.synth(out, false);
    this.s.responses.rfq();
    return true;
  }

  /** DECLARE whose query spans several shards: the query runs on them now, its rows are kept. */
  async declare(stmt: RoutedStatement, route: Route): Promise<void> {
    const plan = stmt.plan;
    const name = plan.cursor!;
    if (!plan.cursorHold && this.s.txStatus === 'I') throw new PgError('25P01', 'DECLARE CURSOR can only be used in transaction blocks');
    if (this.kept.has(name)) throw new PgError('42P03', `cursor "${name}" already exists`);
    if (plan.cursorBinary) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: a BINARY cursor over several shards is not supported');
    const sql = cursorQuery(stmt.sql);
    const inner = sql === null ? undefined : this.s.router.plan(sql);
    const q = inner?.length === 1 ? inner[0]! : null;
    if (!q || q.plan.command !== 'select' || q.plan.write) {
      throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: a cursor over several shards is supported for a plain SELECT only (no FOR UPDATE, no data-modifying query)');
    }
    const why = q.plan.unsupported ?? q.plan.scatterUnsupported;
    if (why) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${why} is not supported`);
    const hold = !!plan.cursorHold;
    await this.s.scatter.scatterSimple(q, query(q.sql, this.s.codec), routeShards(route, this.s.ctx.shards.shardCount), false, undefined, undefined, (msgs) => {
      if (msgs.some((m) => m[0] === B.ErrorResponse)) return msgs;
      this.kept.set(name, { hold, rowDescription: msgs.find((m) => m[0] === B.RowDescription) ?? null, rows: msgs.filter((m) => m[0] === B.DataRow), pos: 0 });
      return [commandComplete('DECLARE CURSOR')];
    });
  }
}
