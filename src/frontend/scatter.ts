// Statements that run on several shards (scatter-gather through Group) and multi-statement
// query strings.
import { B } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import { commandComplete, commandTag, query } from '../protocol/messages';
import type { RoutedStatement } from '../router/router';
import { routeShards } from './routing';
import { Group, GroupMode } from './group';
import type { ClientSession } from './client';
import { K } from './session-types';
import type { Pending, Link } from './session-types';
import { internalError, isTxControl, keyLiteral } from './session-util';
import { sequenceRangeSql } from './sequences';
import { textOrder } from '../router/collation';
import { fillsKeyDefault, withKeyDefault } from './key-default';
import { insertSelectValues, insertsViaProxy } from './insert-select';
import { mayNeedDefaults, withReferenceDefaults } from './reference-defaults';
import { checkVolatile, needsVolatileCheck } from './volatile-writes';
import { withSubqueryResults } from './subqueries';
import { sameColumns } from './responses';
import { InsertPart, renumberParams, splitInsertRows } from './insert-split';
import type { KeyRef } from '../router/types';

/** A read of sharded tables (what a resharding migration's read filter applies to). */
export function readsSharded(stmt: RoutedStatement): boolean {
  return stmt.plan.target === 'sharded' && !stmt.plan.write && stmt.plan.command === 'select';
}

export class Scatter {
  constructor(private readonly s: ClientSession) {}

  async runMulti(stmts: RoutedStatement[], msg: Buffer): Promise<void> {
    // One server can run the whole string when every statement goes to the same shard.
    let shard = -1;
    let single = true;
    try {
      for (const s of stmts) {
        if (s.plan.keyDefault && fillsKeyDefault(this.s, s)) { single = false; break; }   // its keys come first (key-default.ts)
        if (s.plan.insertVia && insertsViaProxy(this.s, s)) { single = false; break; }   // its rows come first (insert-select.ts)
        if (mayNeedDefaults(this.s, s)) { single = false; break; }   // its defaults may come first (reference-defaults.ts)
        if (s.plan.subqueries && this.s.ctx.shards.shardCount > 1 && this.s.routeShard === null && !s.hint?.shard && !s.plan.hint?.shard) { single = false; break; }   // subqueries or tables read first (subqueries.ts)
        this.s.simple.checkSupported(s, null);
        if (s.plan.setVar?.name.startsWith('pgring.')) { single = false; break; }
        if (s.plan.preparedView) { single = false; break; }   // the client's own statements (prepared-view.ts)
        // DEALLOCATE of a protocol-level statement is pgring's to answer: statement by statement.
        if (s.plan.deallocate !== undefined && this.s.stmts.has(s.plan.deallocate)) { single = false; break; }
        if (s.plan.target === 'none' && !s.plan.write && s.plan.command !== 'copy_from') continue;
        if (isTxControl(s.plan) || s.plan.command === 'set' || s.plan.command === 'reset') continue;
        const r = this.s.routing.route(s, null, null);
        this.s.simple.checkSupported(s, r);
        if (r.kind !== 'direct' || (shard >= 0 && r.shard !== shard)) { single = false; break; }
        shard = r.shard;
      }
      if (single) {
        if (shard < 0) shard = this.s.routing.preferredShard();
        for (const s of stmts) await this.s.simple.beforeWrite(s, [shard], null, null);
        const link = await this.s.servers.link(shard);
        const p = this.s.responses.push(K.Query, link, false);
        p.plans = stmts;
        link.conn.busy = true;
        link.conn.write(msg);
        this.s.responses.rfq();
        return;
      }
    } catch (e) {
      this.s.simple.queryError(e);
      return;
    }
    // Statements for different shards: run one by one, stop at the first error,
    // and answer with a single ReadyForQuery as PostgreSQL does. PostgreSQL runs the statements
    // of one query string in one implicit transaction: outside a transaction, and without
    // transaction control of its own, the string is one distributed transaction (BEGIN on each
    // shard it reaches, committed together at its end, or rolled back when a statement fails).
    const implicit = this.s.txStatus === 'I' && !this.s.virtualTx
      && !stmts.some((st) => isTxControl(st.plan) || st.plan.command === 'prepare_transaction');
    if (implicit) this.s.transaction.beginImplicit();
    let failed = false;
    for (const s of stmts) {
      failed = await this.runOneOfMany(s);
      if (failed) break;
    }
    if (implicit) await this.endImplicit(failed);
    this.s.responses.rfq();
  }

  /** The end of a query string's implicit transaction over several shards. */
  private async endImplicit(failed: boolean): Promise<void> {
    try { await this.s.responses.waitIdle(); } catch { failed = true; }
    const err = await this.s.transaction.endImplicit(failed);
    if (err) { this.s.ctx.metrics?.error(err.code); this.s.responses.synth([err.toMessage()], false); }
  }

  /** Runs one statement of a multi-statement string; resolves true when it failed. */
  async runOneOfMany(stmt: RoutedStatement): Promise<boolean> {
    let failed = false;
    try {
      const plan = stmt.plan;
      if ((plan.command === 'set' || plan.command === 'reset') && this.s.routing.ownSetting(stmt)) {
        this.s.responses.synth([commandComplete(plan.command === 'set' ? 'SET' : 'RESET')], false);
        return false;
      }
      if (isTxControl(plan) && this.s.transaction.txControlInMulti(stmt)) return false;
      if (this.s.simple.heldNotify(stmt)) return false;
      if (plan.deallocate !== undefined && this.s.stmts.has(plan.deallocate)) {
        this.s.stmts.delete(plan.deallocate);
        this.s.responses.synth([commandComplete('DEALLOCATE')], false);
        return false;
      }
      if (plan.preparedView) { const next = this.s.simple.preparedView(stmt); if (next) return await this.runOneOfMany(next); }
      if (plan.keyDefault && fillsKeyDefault(this.s, stmt)) return await this.runOneOfMany(await withKeyDefault(this.s, stmt));
      if (plan.insertVia && insertsViaProxy(this.s, stmt)) return await this.runOneOfMany(await insertSelectValues(this.s, stmt));
      // subqueries (or the tables of a read no merge answers) run first, their rows written in (subqueries.ts)
      if (plan.subqueries && this.s.ctx.shards.shardCount > 1 && this.s.routeShard === null && !stmt.hint?.shard && !plan.hint?.shard) return await this.runOneOfMany(await withSubqueryResults(this.s, stmt));
      if (!stmt.volatileChecked && needsVolatileCheck(this.s, stmt)) { await checkVolatile(this.s, stmt); stmt.volatileChecked = true; }
      if (!stmt.defaultsChecked && mayNeedDefaults(this.s, stmt)) {
        const next = (await withReferenceDefaults(this.s, stmt)) ?? stmt;
        next.defaultsChecked = true;
        return await this.runOneOfMany(next);
      }
      const route = this.s.routing.route(stmt, null, null);
      this.s.simple.checkSupported(stmt, route);
      const shards = routeShards(route, this.s.ctx.shards.shardCount);
      await this.s.simple.beforeWrite(stmt, shards, null, null);
      const sub = query(stmt.sql, this.s.codec);
      if (shards.length === 1) {
        const link = await this.s.servers.link(shards[0]!);
        const p = this.s.responses.push(K.ExecSimple, link, false);
        p.plans = [stmt];
        await new Promise<void>((resolve) => {
          p.onError = () => { failed = true; };
          p.onDone = resolve;
          link.conn.write(sub);
          this.s.flush();
        });
      } else if (stmt.plan.insertSplit && route.kind === 'multi') {
        const parts = this.splitInsert(stmt);
        await this.scatterSimple(stmt, sub, parts.map((p) => p.shard), true, parts.map((p) => query(p.sql, this.s.codec)), parts);
        await this.s.responses.waitIdle();
      } else {
        await this.scatterSimple(stmt, sub, shards, true);
        await this.s.responses.waitIdle();
      }
    } catch (e) {
      const err = e instanceof PgError ? e : new PgError(SQLSTATE.InternalError, (e as Error).message);
      this.s.simple.markFailed();
      this.s.responses.synth([err.toMessage()], false);
      return true;
    }
    return failed;
  }

  /** Per-shard SQL of a multi-row INSERT (rows grouped by the shard of their key, shards
   *  ascending); with Bind parameters (`params`), each part's parameters are renumbered. */
  splitInsert(stmt: RoutedStatement, params: (Buffer | null)[] | null = null, formats: number[] = []): InsertPart[] {
    const type = stmt.plan.keyType!;
    const map = this.s.ctx.shards;
    const shardOf = (k: KeyRef): number => {
      if (k.kind === 'param') {
        const v = params?.[k.index];
        if (v === undefined) throw new PgError(SQLSTATE.ProtocolViolation, `bind message supplies ${params?.length ?? 0} parameters, but the shard key uses $${k.index + 1}`);
        if (v !== null) {
          const fmt = formats.length ? (formats.length === 1 ? formats[0] : formats[k.index]) : 0;
          return fmt === 1 ? map.shardForBinaryKey(type, v) : map.shardForKey(type, this.s.text(v));
        }
      }
      const text = k.kind === 'literal' ? keyLiteral(stmt, k.slot, type) : k.kind === 'value' ? k.text : null;
      if (text === null) throw new PgError('23502', `null value in shard key column of relation "${stmt.plan.table}" cannot be routed`);
      return map.shardForKey(type, text);
    };
    const parts = splitInsertRows(stmt.plan.insertSplit!, shardOf);
    return params ? parts.map(renumberParams) : parts;
  }

  /** `rowOrder`: the statement rows each shard inserts (a split multi-row INSERT): RETURNING rows in statement order. */
  async scatterSimple(stmt: RoutedStatement, msg: Buffer, shards: number[], partOfMany = false, bodies?: Buffer[], rowOrder?: { rows: number[] }[],
    capture?: (msgs: Buffer[]) => Buffer[] | Promise<Buffer[]>, ext = false): Promise<void> {
    const links: Link[] = [];
    for (const s of shards) links.push(await this.s.servers.link(s));
    // Reference tables and DDL run the same change on every shard: answer as one server would.
    const mode: GroupMode = stmt.plan.target !== 'sharded' || stmt.plan.command === 'ddl' ? 'first'
      : stmt.plan.command === 'copy_to' ? 'copy-out'
      : stmt.plan.command === 'select' || stmt.plan.merge ? 'merge' : 'sum';
    const sql = stmt.plan.merge?.shardSql;
    const body = sql ? query(sql, this.s.codec) : msg;
    if (!bodies && stmt.plan.createsSequence && shards.length > 1) {
      // new bigint sequences get a range per shard, in the DDL's own transaction (sequences.ts)
      bodies = shards.map((sh) => { const extra = sequenceRangeSql(sh); return extra ? query(`${stmt.sql};\n${extra}`, this.s.codec) : body; });
    }
    if (!bodies && readsSharded(stmt)) {
      // During a resharding migration each shard reads only the rows it owns.
      const owned = links.map((l) => this.s.ctx.ownedSql?.(sql ?? stmt.sql, l.shard) ?? null);
      if (owned.some((o) => o !== null)) bodies = owned.map((o) => (o === null ? body : query(o, this.s.codec)));
    }
    const group = new Group(mode, links.length, stmt, this.s.ctx.topology.shards.map((s) => s.name), undefined, { text: textOrder(this.s.database) });
    if (rowOrder) group.inStatementOrder(rowOrder);
    const result = this.s.responses.push(K.GroupResult, null, ext);
    links.forEach((l, i) => {
      // inside an extended-protocol unit (a DECLARE bound there, cursors.ts): the Sync goes to these servers too
      if (ext) { this.s.unitLinks.add(l); l.unsynced = true; }
      const p = this.s.responses.push(partOfMany || ext ? K.ExecSimple : K.Query, l, ext);
      p.group = group; p.member = i; p.plans = [stmt];
    });
    if (!capture && (mode === 'copy-out' || group.streamable)) {
      // A merged COPY stream, or rows that need no sort or grouping, go out as they come: the result
      // entry stays ahead of its members (they send nothing themselves), so it streams once it is
      // the head of the queue, and backpressure (shared.ts) bounds what the proxy holds.
      group.onStream = (msgs) => { for (const m of msgs) this.s.responses.out(result, ownDescription(stmt, m)); };
      group.onHold = (m, hold) => { const c = links[m]!.conn; if (hold) c.holdReads(group); else c.releaseReads(group); };
    } else {
      // The result entry must come after the members in response order.
      this.s.responses.moveToEnd(result);
    }
    const finish = (msgs: Buffer[]): void => {
      if (stmt.rowDescription && !capture) msgs = msgs.map((m) => ownDescription(stmt, m));
      if (result.out) result.out.push(...msgs); else result.out = msgs;
      const first = msgs.find((m) => m[0] === B.CommandComplete);
      if (first) this.s.transaction.afterCommand(stmt, commandTag(first), null);
      const err = capture || ext ? msgs.find((m) => m[0] === B.ErrorResponse) : undefined;
      if (err && capture) this.s.responses.afterErrorOf(result, err);
      // inside the client's extended-protocol unit an error the client gets fails the unit
      if (err && ext) this.s.skipUntilSync = true;
      this.s.responses.complete(result);
      this.s.flush();
    };
    group.onFinish = (msgs) => {
      // a cursor over several shards keeps the rows (cursors.ts); an expression over aggregates is
      // evaluated over them by a server (finalize.ts)
      const out = capture ? capture(msgs) : msgs;
      if (Array.isArray(out)) finish(out);
      else out.then(finish, (e: unknown) => { this.s.simple.markFailed(); finish([internalError(e).toMessage()]); });
    };
    // a simple Query drops the server's unnamed statement: a client's unnamed one must be parsed there again
    for (const [i, l] of links.entries()) { l.conn.busy = true; l.unnamed = null; l.conn.write(bodies?.[i] ?? body); }
    if (!partOfMany && !ext) this.s.responses.rfq();
  }

  groupMessage(p: Pending, type: number, msg: Buffer): void {
    const g = p.group!;
    if (type === B.ErrorResponse) { this.s.responses.afterErrorOf(p, msg); p.onError?.(); }
    g.message(p.member!, type, msg);
    let terminal: boolean;
    switch (p.kind) {
      case K.Query: case K.ExecSimple: terminal = type === B.ReadyForQuery; break;
      case K.Bind: terminal = type === B.BindComplete; break;
      case K.Close: case K.InternalClose: terminal = type === B.CloseComplete; break;
      case K.Describe: terminal = type === B.RowDescription || type === B.NoData; break;
      case K.Execute: terminal = type === B.CommandComplete || type === B.EmptyQueryResponse || type === B.PortalSuspended; break;
      default: terminal = type === B.ReadyForQuery;
    }
    // An extended-protocol request failed: the server skips the rest of the unit. (A simple Query
    // pgring sends inside the client's unit is answered to its ReadyForQuery, and later requests
    // are answered too: the unit fails for the client only if the error reaches it, see finish.)
    if (type === B.ErrorResponse && p.ext && p.kind !== K.ExecSimple) {
      this.groupMemberDone(p);
      this.s.responses.extendedError(p);
      return;
    }
    if (terminal) { this.s.responses.complete(p); this.groupMemberDone(p); }
  }

  groupMemberDone(p: Pending): void {
    if (p.member === -1) return;
    const m = p.member!;
    p.member = -1;
    p.group!.memberDone(m);
  }
}

/** A rewritten read's RowDescription replaced by the client's statement's (frontend/subqueries.ts). */
function ownDescription(stmt: RoutedStatement, m: Buffer): Buffer {
  return stmt.rowDescription && m[0] === B.RowDescription ? sameColumns(stmt.rowDescription, m) : m;
}
