// Simple-query protocol (Query): plan, route, and forward one statement; errors answered by pgring.
import { findPreparedGid, needsGidShard } from './prepared-gid';
import { heldNotifyResult, heldNotifySql } from './held-notify';
import { withClientStatements } from './prepared-view';
import { insertSelectValues, insertsViaProxy } from './insert-select';
import { forgetReferenceColumns, mayNeedDefaults, withReferenceDefaults } from './reference-defaults';
import { copyMergedMessages } from './copy-merged';
import { runFinalized } from './finalize';
import { withReadsFirst, withSubqueryResults } from './subqueries';
import type { KeyType } from '../config/types';
import { PgError, SQLSTATE } from '../protocol/errors';
import { commandComplete, emptyQueryResponse, query, queryText } from '../protocol/messages';
import type { RoutedStatement } from '../router/router';
import { Route, routeShards } from './routing';
import { fillsKeyDefault, forgetKeyDefaults, insertWithKeyDefault } from './key-default';
import type { ClientSession } from './client';
import { K } from './session-types';
import { readTime } from '../clock';
import type { Link, WriteKeys } from './session-types';
import { isTxControl, isPlainRead, internalError, keyLiteral, quoteLiteral, needsColumns } from './session-util';
import { checkVolatile, needsVolatileCheck } from './volatile-writes';

export class SimpleQuery {
  constructor(private readonly s: ClientSession) {}

  onQuery(msg: Buffer): Promise<void> | void {
    this.s.readOnlyUse = false; // set per statement where its plan is known
    const sql = this.s.codec ? this.s.text(msg, 5, msg.length - 1) : queryText(msg);
    this.s.lastQuery = sql;
    this.s.queryStart = Date.now();
    this.s.stmts.delete(''); // a simple Query drops the unnamed statement, as in PostgreSQL
    let stmts: RoutedStatement[];
    try { stmts = this.s.router.plan(sql); } catch (e) { return this.queryError(e); }
    if (stmts.some(needsColumns)) return this.learnColumnsThen(stmts, () => this.onQuery(msg));
    if (stmts.length === 0) {
      this.s.responses.synth([emptyQueryResponse], false);
      this.s.responses.rfq();
      return;
    }
    if (stmts.length === 1) return this.runSimple(stmts[0]!, msg, stmts);
    return this.s.scatter.runMulti(stmts, msg);
  }

  queryError(e: unknown, ext = false): void {
    const err = internalError(e);
    if (err.severity === 'FATAL') throw err;
    this.s.ctx.metrics?.error(err.code);
    this.markFailed();
    this.s.responses.synth([err.toMessage()], ext);
    if (!ext) this.s.responses.rfq();
    else this.s.skipUntilSync = true;
  }

  /** pgring failed a statement of the open transaction: the client's transaction is now failed. */
  markFailed(): void {
    if (this.s.txStatus === 'I') return;
    // A server whose transaction failed knows, and answers for it (pgring may have answered
    // 25P02 for it): its state, not pgring's, decides.
    if (this.serverFailed()) return;
    if (this.s.virtualTx) this.s.virtualTx = 'E';
    else this.s.txFailed = true;
  }

  /** Whether pgring must answer 25P02 for a statement bound for `shards`: the transaction failed
   *  where the servers do not know it (pgring's own error, or another shard's). A statement for
   *  a server whose transaction failed goes there: pipelined after a ROLLBACK it may be fine. */
  abortedFor(shards: number[]): boolean {
    if (this.s.txFailed || this.s.virtualTx === 'E') return true;
    return this.serverFailed() && shards.some((sh) => this.s.links[sh]?.conn.status !== 'E');
  }

  /** A server's transaction of this client failed (it answers 25P02 itself). */
  serverFailed(): boolean {
    for (const l of this.s.links) if (l?.conn.status === 'E') return true;
    return false;
  }

  /** One statement: forwarded at once when it goes to one shard with a free connection; else runSimpleWaiting. */
  runSimple(stmt: RoutedStatement, msg: Buffer, plans: RoutedStatement[]): Promise<void> | void {
    const plan = stmt.plan;
    if ((isTxControl(plan) || plan.command === 'prepare_transaction' || plan.deallocate !== undefined || this.s.txStatus === 'E') && this.s.responses.inFlight()) {
      // Pipelined behind requests a server has not answered yet: the transaction state pgring
      // decides on (and may answer for) is only known once they are answered.
      this.s.blockingWork = this.s.responses.afterInFlight().then(() => this.runSimple(stmt, msg, plans)).then(() => this.s.flush());
      return;
    }
    try {
      if (plan.subqueries && this.s.ctx.shards.shardCount > 1 && this.s.routeShard === null && !stmt.hint?.shard && !plan.hint?.shard) {
        // subqueries over sharded tables not joined on the key: run first, their rows written in (subqueries.ts)
        return withSubqueryResults(this.s, stmt).then((next) => this.runSimple(next, query(next.sql, this.s.codec), [next])).catch((e) => this.queryError(e));
      }
      if (plan.preparedView) {
        const next = this.preparedView(stmt);
        if (next) return this.runSimple(next, query(next.sql, this.s.codec), [next]);
      }
      if (plan.command === 'set' || plan.command === 'reset') {
        if (plan.setVar?.name === 'all' && plan.command === 'reset') { this.s.routeShard = null; this.s.routeShardKey = null; }
        if (this.s.routing.ownSetting(stmt)) { this.s.responses.synth([commandComplete(plan.command === 'set' ? 'SET' : 'RESET')], false); this.s.responses.rfq(); return; }
      }
      if (plan.keyDefault && fillsKeyDefault(this.s, stmt)) {
        // INSERT without the shard key column: its default gives the keys (key-default.ts)
        return insertWithKeyDefault(this.s, stmt).catch((e) => this.queryError(e));
      }
      if (!stmt.volatileChecked && needsVolatileCheck(this.s, stmt)) {
        // a volatile function in a write to a reference table: every shard would compute its own (volatile-writes.ts)
        return checkVolatile(this.s, stmt).then(() => { stmt.volatileChecked = true; return this.runSimple(stmt, msg, plans); }).catch((e) => this.queryError(e));
      }
      if (!stmt.defaultsChecked && mayNeedDefaults(this.s, stmt)) {
        // INSERT into a reference table: defaults the shards would not agree on are evaluated once (reference-defaults.ts)
        return withReferenceDefaults(this.s, stmt).then((next) => {
          const run = next ?? stmt;
          run.defaultsChecked = true;
          return this.runSimple(run, next ? query(next.sql, this.s.codec) : msg, next ? [next] : plans);
        }).catch((e) => this.queryError(e));
      }
      if (plan.insertVia && insertsViaProxy(this.s, stmt)) {
        // INSERT ... SELECT whose rows only their values place: pgring reads and inserts them (insert-select.ts)
        return insertSelectValues(this.s, stmt).then((next) => this.runSimple(next, query(next.sql, this.s.codec), [next])).catch((e) => this.queryError(e));
      }
      if (plan.command === 'ddl') { forgetKeyDefaults(); forgetReferenceColumns(); }
      // COMMIT / ROLLBACK PREPARED of the client's own prepared transaction: to the shard that has it
      if (plan.gid !== undefined && needsGidShard(this.s, stmt)) return findPreparedGid(this.s, plan.gid).then(() => this.runSimple(stmt, msg, plans)).catch((e) => this.queryError(e));
      this.checkSupported(stmt, null);
      if (isTxControl(plan) && this.s.transaction.txControl(stmt, null)) return;
      if (plan.command === 'prepare_transaction' && this.s.transaction.prepareTransaction()) return;
      if (plan.freeDatabase !== undefined) {
        // PostgreSQL refuses (after waiting 5 s) while other sessions use the database; pgring's
        // own idle connections to it must not be those sessions.
        for (const pool of this.s.ctx.topology.allPools()) if (pool.cred.database === plan.freeDatabase) pool.dropIdle();
      }
      // PostgreSQL parses a query string before it looks at the transaction state: in a failed
      // transaction a string it cannot parse still gets its syntax error (from the server), not 25P02.
      if (this.s.txStatus === 'E' && plan.parseError === undefined && !isTxControl(plan) && plan.command !== 'rollback_to' && plan.command !== 'prepare_transaction' && plan.command !== 'empty') {
        throw new PgError(SQLSTATE.InFailedTransaction, 'current transaction is aborted, commands ignored until end of transaction block');
      }
      if (this.heldNotify(stmt)) { this.s.responses.rfq(); return; }
      if (plan.deallocate !== undefined && this.s.stmts.has(plan.deallocate)) {
        // A protocol-level statement (drivers' Close by SQL, e.g. pgx): the server knows it by
        // pgring's shared name, so the client's name is dropped here, as Close does.
        this.s.stmts.delete(plan.deallocate);
        this.s.responses.synth([commandComplete('DEALLOCATE')], false);
        this.s.responses.rfq();
        return;
      }
      if (plan.cursor !== undefined && this.s.cursors.answers(stmt)) return;
      const target = this.s.sqlPrepared.executeTarget(stmt);
      if (target) return this.s.sqlPrepared.runExecute(stmt, target, plans).catch((e) => this.queryError(e));
      this.s.readOnlyUse = isPlainRead(plan);
      const route = this.s.routing.route(stmt, null, null);
      if (plan.command === 'declare_cursor' && route.kind !== 'direct' && this.s.ctx.shards.shardCount > 1) {
        return this.s.cursors.declare(stmt, route).catch((e) => this.queryError(e));
      }
      if (plan.copyMerged && route.kind !== 'direct' && this.s.ctx.shards.shardCount > 1) return this.copyMerged(stmt, route).catch((e) => this.queryError(e));
      // expressions over aggregates: an inner query merged, the rest evaluated by a server (finalize.ts)
      if (plan.finalize && route.kind !== 'direct' && this.s.ctx.shards.shardCount > 1) return runFinalized(this.s, stmt, route).catch((e) => this.queryError(e));
      // a read whose keys route to several shards that no merge answers: its tables read first (materialize.ts)
      if (plan.materialize && !plan.subqueries && route.kind !== 'direct' && this.s.ctx.shards.shardCount > 1 && this.s.routeShard === null && !stmt.hint?.shard && !plan.hint?.shard) {
        return withSubqueryResults(this.s, stmt).then((next) => this.runSimple(next, query(next.sql, this.s.codec), [next])).catch((e) => this.queryError(e));
      }
      this.checkSupported(stmt, route);
      if (route.kind === 'direct' && !this.writeHookFor(stmt)) {
        const link = this.s.servers.linkNow(route.shard);
        if (link) { this.sendQuery(link, msg, plans); return; }
      }
      return this.runSimpleWaiting(stmt, msg, plans, route);
    } catch (e) {
      this.queryError(e);
    }
  }

  /** COPY (SELECT … ORDER BY / GROUP BY / LIMIT …) TO STDOUT over several shards: the SELECT runs
   *  merged and pgring writes its rows as the COPY would (copy-merged.ts). */
  private async copyMerged(stmt: RoutedStatement, route: Route): Promise<void> {
    const spec = stmt.plan.copyMerged!;
    const inner = this.s.router.plan(spec.query);
    let q = inner.length === 1 ? inner[0]! : null;
    if (!q || q.plan.command !== 'select' || q.plan.write) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: COPY (query) TO over several shards is supported for a plain SELECT');
    // its subqueries (or its tables: materialize.ts) read first, then the SELECT runs where it now routes
    ({ q, route } = await withReadsFirst(this.s, q, route));
    const why = q.plan.unsupported ?? (route.kind !== 'direct' ? q.plan.scatterUnsupported : undefined) ?? q.plan.subqueries;
    if (why) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${why} is not supported`);
    if (q.plan.finalize && route.kind !== 'direct') return runFinalized(this.s, q, route, { after: (msgs) => copyMergedMessages(msgs, spec) });
    await this.s.scatter.scatterSimple(q, query(q.sql, this.s.codec), routeShards(route, this.s.ctx.shards.shardCount), false, undefined, undefined, (msgs) => copyMergedMessages(msgs, spec));
  }

  /** A statement that reads pg_prepared_statements, reading the client's own statements instead (prepared-view.ts); null when it cannot. */
  preparedView(stmt: RoutedStatement): RoutedStatement | null {
    const sql = withClientStatements(this.s, stmt.sql);
    if (sql === null) return null;
    const next = this.s.router.plan(sql);
    return next.length === 1 && !next[0]!.plan.preparedView ? next[0]! : null;
  }

  sendQuery(link: Link, msg: Buffer, plans: RoutedStatement[]): void {
    const p = this.s.responses.push(K.Query, link, false);
    p.plans = plans;
    p.t0 = readTime();
    link.conn.busy = true;
    link.conn.write(msg);
    this.s.responses.rfq();
  }

  /** True when the transaction layer wants to see this statement before it runs (locks). */
  writeHookFor(stmt: RoutedStatement): boolean {
    return stmt.plan.write && this.s.ctx.tx?.beforeWrite !== undefined;
  }

  async runSimpleWaiting(stmt: RoutedStatement, msg: Buffer, plans: RoutedStatement[], route: Route): Promise<void> {
    const plan = stmt.plan;
    try {
      if (plan.command === 'copy_from' && route.kind !== 'direct' && plan.copy) return await this.s.copy.startCopySplit(stmt, msg);
      if (plan.insertSplit && route.kind === 'multi') {
        // A multi-row INSERT whose rows belong to different shards: each shard gets its own rows.
        const parts = this.s.scatter.splitInsert(stmt);
        const shards = parts.map((p) => p.shard);
        await this.beforeWrite(stmt, shards, null, null);
        const bodies = parts.map((p) => query(p.sql, this.s.codec));
        if (this.s.transaction.distributedAutocommit(stmt)) return await this.s.transaction.autocommitMulti(stmt, msg, shards, bodies, parts);
        await this.s.scatter.scatterSimple(stmt, msg, shards, false, bodies, parts);
        return;
      }
      const shards = routeShards(route, this.s.ctx.shards.shardCount);
      await this.beforeWrite(stmt, shards, null, null);
      if (shards.length === 1) {
        this.sendQuery(await this.s.servers.link(shards[0]!), msg, plans);
        return;
      }
      if (this.s.transaction.distributedAutocommit(stmt)) return await this.s.transaction.autocommitMulti(stmt, msg, shards);
      await this.s.scatter.scatterSimple(stmt, msg, shards);
    } catch (e) {
      this.queryError(e);
    }
  }

  /** Why pgring refuses a statement (0A000), or null. SET pgring.shard(_key) lifts scatter-only reasons. */
  /**
   * NOTIFY in a transaction over several shards: held until it commits, then sent on the shard
   * where every LISTEN is (transaction.ts afterCommitted). Sent with the transaction it would make
   * a write transaction over several shards refuse PREPARE TRANSACTION, and listeners could hear
   * it before the commit. True when held (its CommandComplete queued).
   */
  heldNotify(stmt: RoutedStatement): boolean {
    const plan = stmt.plan;
    if ((plan.command !== 'notify' && !plan.notifyCalls) || !this.holdsNotify(stmt)) return false;
    if (plan.notifyCalls) {
      // SELECT pg_notify(...): checked and answered now, run after the commit (held-notify.ts)
      const sql = heldNotifySql(plan.notifyCalls, (a) => ('slot' in a ? stmt.literals[a.slot] ?? null : 'text' in a ? a.text : null));
      const r = heldNotifyResult(plan.notifyCalls);
      this.s.afterCommit.push({ depth: this.s.savepoints.length, notify: sql });
      this.s.responses.synth([r.rowDescription, r.dataRow, commandComplete('SELECT 1')], false);
      return true;
    }
    this.s.afterCommit.push({ depth: this.s.savepoints.length, notify: stmt.sql });
    this.s.responses.synth([commandComplete('NOTIFY')], false);
    return true;
  }

  /** In a transaction over several shards (not one a server runs as is), not pinned to a shard. */
  holdsNotify(stmt: RoutedStatement): boolean {
    return this.s.txStatus === 'T' && this.s.serverTx === null && this.s.ctx.shards.shardCount > 1 && this.s.routeShard === null && !stmt.hint?.shard && !stmt.plan.hint?.shard;
  }

  unsupportedReason(stmt: RoutedStatement): string | null {
    const p = stmt.plan;
    if (!p.unsupported) return null;
    if (p.unsupported === p.scatterUnsupported && (this.s.routeShard !== null || this.s.routeShardKey !== null)) return null;
    return p.unsupported;
  }

  /** Throws 0A000 for forms pgring cannot run correctly (on more than one shard, for scatter-only ones). */
  checkSupported(stmt: RoutedStatement, route: Route | null): void {
    const scatters = route !== null && route.kind !== 'direct' && this.s.ctx.shards.shardCount > 1;
    // A view over sharded tables works once the cluster definition shards it: that needs ZooKeeper.
    const view = scatters && stmt.plan.shardedLike?.view && !this.s.ctx.followInDefinition
      ? `CREATE VIEW over sharded tables without ZooKeeper (the cluster definition, a file here, cannot register view "${stmt.plan.shardedLike.table}" as sharded)` : null;
    // a merged COPY (SELECT …) TO is written by the simple Query path only (copyMerged above)
    const merged = scatters && stmt.plan.copyMerged ? 'COPY (SELECT ... ORDER BY / GROUP BY / LIMIT) TO across shards in the extended protocol or a multi-statement string' : null;
    const finalize = scatters && stmt.plan.finalize ? `${stmt.plan.finalize} in the extended protocol or a multi-statement string`
      : scatters && stmt.plan.subqueries ? `${stmt.plan.subqueries} in a multi-statement string` : null;
    const why = this.unsupportedReason(stmt) ?? view ?? merged ?? finalize ?? (scatters ? stmt.plan.scatterUnsupported ?? null : null);
    if (why) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${why} is not supported`);
  }

  /** Runs the locks hook for writes. */
  async beforeWrite(stmt: RoutedStatement, shards: number[], params: (Buffer | null)[] | null, formats: number[] | null): Promise<void> {
    const hook = this.s.ctx.tx?.beforeWrite;
    if (!hook || !stmt.plan.write) return;
    let keys: WriteKeys | null = null;
    const plan = stmt.plan;
    if (plan.keys && plan.keyType) {
      keys = { type: plan.keyType, group: plan.keyColumn, values: plan.keys.map((k) => k.kind === 'literal' ? keyLiteral(stmt, k.slot, plan.keyType) : k.kind === 'value' ? k.text : (params?.[k.index] == null ? null : (formats && (formats.length === 1 ? formats[0] : formats[k.index]) === 1 ? `\\x${params[k.index]!.toString('hex')}` : this.s.text(params[k.index]!)))) };
    }
    await hook.call(this.s.ctx.tx, this.s, shards, keys, this.s.txStatus !== 'I', plan.table, plan.lockObjects);
  }

  async learnColumnsThen(stmts: RoutedStatement[], again: () => Promise<void> | void): Promise<void> {
    try {
      for (const st of stmts) if (needsColumns(st)) await this.learnColumns(st.plan.table!);
    } catch (e) { this.queryError(e); return; }
    if (stmts.some((st) => needsColumns(st) && !this.knowsColumns(st.plan.table!))) {
      this.queryError(new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${stmts.find(needsColumns)!.plan.unsupported}`));
      return;
    }
    await again();
  }

  knowsColumns(table: string): boolean {
    return !needsColumns(this.s.router.plan(`INSERT INTO ${table} VALUES (NULL)`)[0]!);
  }

  /** Reads a sharded table's columns from the catalog of this database (one shard). */
  async learnColumns(table: string): Promise<void> {
    if (!this.s.ctx.learnedColumns) return;
    const shard = this.s.routing.preferredShard();
    const link = await this.s.servers.link(shard);
    const rows = await this.s.servers.queryRows(link, `SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = ${quoteLiteral(table)}::pg_catalog.regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
      .catch(() => [] as (string | null)[][]);
    await this.s.responses.afterInFlight();
    this.s.servers.afterReady();
    if (rows.length) this.s.ctx.learnedColumns(this.s.database, table, rows.map((r) => r[0]!));
  }
}
