// Extended query protocol: Parse, Bind, Describe, Execute, Close, Sync, Flush and client portals.
import { heldNotifyResult, heldNotifySql } from './held-notify';
import { withClientStatements } from './prepared-view';
import { withParamLiterals } from './cursors';
import { COLUMNS_SQL, computedEvaluation, computedValues, evaluationStatement, knownColumns, mayNeedDefaults, parsedStatement, referenceDefaults, rememberColumns, rowValues, statementWithComputed, statementWithValues } from './reference-defaults';
import { B, F } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import { bindComplete, bindMsg, closeComplete, commandComplete, commandTag, decodeBind, decodeExecute, decodeParse, decodeTargeted, executeMsg, noData, parseComplete, parseMsg, query, renameBind, syncMsg, targeted, Writer } from '../protocol/messages';
import { bindWithValues, checkedValues, defaultCatalogSql, defaultStatementName, defaultValuesSql, fillsKeyDefault, keyedStatement, knownDefault, noDefault, rememberDefault } from './key-default';
import { runFinalized, withFormats } from './finalize';
import { withSubqueryResults } from './subqueries';
import { fillPortalRows, insertStatement, newPortalRows, ownedStatement, shardBind, shardStatement, takeRows } from './extended-merge';
import { readsSharded } from './scatter';
import { sequenceRangeSql, sequenceRangeStatement } from './sequences';
import { textOrder } from '../router/collation';
import { InsertPart, partBind } from './insert-split';
import { ProtocolViolation } from '../protocol/reader';
import type { RoutedStatement } from '../router/router';
import { ClientStatement, isStale, makeStatement } from './prepared';
import { revalidated } from './revalidate';
import { findPreparedGid, needsGidShard } from './prepared-gid';
import { Route, routeShards } from './routing';
import { skippingUnit } from './responses';
import { Group, GroupMode } from './group';
import type { ClientSession } from './client';
import { K } from './session-types';
import type { Pending, Link, Portal } from './session-types';
import { readTime } from '../clock';
import { isTxControl, isPlainRead, msg_flush, InternalStatement, BEGIN_STMT, internalError, needsColumns } from './session-util';
import { VOLATILE_SQL, calledFunctions, checkKnown, namesParam, needsVolatileCheck, rememberVolatile, unknownNames } from './volatile-writes';

/** The result format codes of a Bind message (they start at `offset`). */
function resultFormats(msg: Buffer, offset: number): number[] {
  const formats: number[] = [];
  for (let i = 0, n = msg.readUInt16BE(offset); i < n; i++) formats.push(msg.readInt16BE(offset + 2 + 2 * i));
  return formats;
}

export class ExtendedProtocol {
  /** Links of the current extended-protocol unit that run an autocommit multi-shard write in a transaction of its own. */
  private unitTx: Set<Link> | null = null;
  /** The client's portals by name ('' = unnamed, dropped at Sync). */
  private portals = new Map<string, Portal>();

  constructor(private readonly s: ClientSession) {}

  /** The current unit runs an autocommit write to several shards in a transaction of its own. */
  inUnitTx(): boolean { return this.unitTx !== null; }

  /** PostgreSQL skips every message up to Sync once a request of the unit failed: a server of
   *  this unit failed it (its Sync not sent yet), or pgring did (skipUntilSync). */
  unitFailed(): boolean {
    if (this.s.skipUntilSync) return true;
    for (const l of this.s.unitLinks) if (skippingUnit(l)) return true;
    return false;
  }

  /** A statement whose Bind fails with 0A000: its Parse and Describe are answered by pgring. */
  private refusedAtBind(stmt: RoutedStatement): boolean {
    return this.s.simple.unsupportedReason(stmt) !== null && !(stmt.plan.keyDefault === true && fillsKeyDefault(this.s, stmt));
  }

  onParse(msg: Buffer): Promise<void> | void {
    let info: ReturnType<typeof decodeParse>;
    try { info = decodeParse(msg, this.s.codec); } catch { throw new ProtocolViolation('invalid Parse message'); }
    this.s.lastQuery = info.sql;
    try {
      if (info.name !== '' && this.s.stmts.has(info.name)) {
        throw new PgError(SQLSTATE.DuplicatePreparedStatement, `prepared statement "${info.name}" already exists`);
      }
      const stmt = this.s.router.planPrepared(info.sql);
      if (needsColumns(stmt)) return this.parseAfterLearning(msg, info, stmt.plan.table!);
      return this.parseWith(msg, info, stmt);
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  /** Parse of an INSERT without a column list into a sharded table: learn its columns first. */
  async parseAfterLearning(msg: Buffer, info: ReturnType<typeof decodeParse>, table: string): Promise<void> {
    try {
      await this.s.simple.learnColumns(table);
      await this.parseWith(msg, info, this.s.router.planPrepared(info.sql));
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  parseWith(msg: Buffer, info: ReturnType<typeof decodeParse>, stmt: RoutedStatement): Promise<void> | void {
      if (stmt.plan.preparedView) {
        // pg_prepared_statements: the client's own statements, as of this Parse (prepared-view.ts)
        const sql = withClientStatements(this.s, info.sql);
        const next = sql === null ? null : this.s.router.planPrepared(sql);
        if (next && !next.plan.preparedView) { stmt = next; info = { ...info, sql: sql! }; msg = parseMsg(info.name, info.sql, info.types, this.s.codec); }
      }
      // EXECUTE of a protocol-level statement: the server knows it by its shared name (sql-prepared.ts).
      const target = this.s.sqlPrepared.executeTarget(stmt);
      const renamed = target ? this.s.sqlPrepared.rewriteParse(info.name, info.sql, info.types, target) : null;
      if (renamed) { msg = renamed.msg; info = { ...info, sql: renamed.sql }; }
      const cs = makeStatement(info.name, info.sql, info.types, stmt, msg, this.s.credKey, this.s.codec);
      if (renamed) cs.uses = target!;
      this.s.stmts.set(info.name, cs);
      if (isTxControl(stmt.plan) || stmt.plan.command === 'deallocate' || this.refusedAtBind(stmt) || (stmt.plan.setVar?.name.startsWith('pgring.') ?? false)) {
        this.s.responses.synth([parseComplete], true);
        return;
      }
      const shard = this.s.routing.preferredShardFor(stmt);
      this.s.readOnlyUse = isPlainRead(stmt.plan);
      if (!this.s.links[shard] && !stmt.plan.parseError && !this.s.ctx.topology.poolFast(shard, this.s.credKey, this.s.lifecycle.credFn, this.s.readOnlyUse !== false).hasCapacity(this.s.paramsKey)) {
        // Every server connection is busy: do not make the client wait (it may hold other
        // connections through other sessions, e.g. pgbench preparing while its peers sit in
        // transactions). The Parse goes to a server together with the first Bind.
        this.s.responses.synth([parseComplete], true);
        return;
      }
      return this.withLink(shard, this.parseOn, info, cs);
  }

  parseOn(link: Link, info: ReturnType<typeof decodeParse>, cs: ClientStatement): void {
    this.s.unitLinks.add(link);
    link.unsynced = true;
    // A copy here is older than this Parse: prepared again, as PostgreSQL analyses every Parse.
    if (cs.uses) this.s.prepared.ensurePrepared(link, cs.uses);
    if (cs.serverName !== '' && link.conn.prepared.has(cs.serverName)) this.s.prepared.closeServerStatement(link, cs.serverName);
    this.s.prepared.closeStale(link, cs);
    const p = this.s.responses.push(K.Parse, link, true);
    this.s.prepared.markPrepared(link, cs);
    p.onError = () => {
      if (this.s.stmts.get(info.name) === cs) this.s.stmts.delete(info.name);
      this.s.prepared.unmarkPrepared(link, cs);
    };
    link.conn.write(cs.parse);
  }

  onBind(msg: Buffer): Promise<void> | void {
    let info: ReturnType<typeof decodeBind>;
    try { info = decodeBind(msg); } catch { throw new ProtocolViolation('invalid Bind message'); }
    try {
      const cs = this.s.stmts.get(info.statement);
      if (!cs) throw new PgError(SQLSTATE.UndefinedPreparedStatement, info.statement === '' ? 'unnamed prepared statement does not exist' : `prepared statement "${info.statement}" does not exist`);
      // Prepared by this client before DDL on what it reads: PostgreSQL fails the Bind if its columns changed.
      if (isStale(cs, this.s.database)) return revalidated(this.s, this, cs, () => this.onBind(msg), () => this.portals.delete(info.portal));
      const plan = cs.stmt.plan;
      if (plan.keyDefault && fillsKeyDefault(this.s, cs.stmt)) return this.bindKeyDefault(msg, info, cs);
      this.s.simple.checkSupported(cs.stmt, null);
      if (plan.command === 'declare_cursor' && this.s.ctx.shards.shardCount > 1) {
        // A cursor over several shards: pgring keeps its rows (cursors.ts), with the values written in.
        const route = this.s.routing.route(cs.stmt, info.params, info.paramFormats);
        if (route.kind !== 'direct') {
          const sql = this.valuesWrittenIn(cs, info);
          this.portals.set(info.portal, { shards: [], cs, virtual: true, declare: { sql, route } });
          this.s.responses.synth([bindComplete], true);
          return;
        }
      }
      if (plan.finalize && this.s.ctx.shards.shardCount > 1) {
        // An expression over aggregates over several shards (finalize.ts), with the values written in.
        const route = this.s.routing.route(cs.stmt, info.params, info.paramFormats);
        if (route.kind !== 'direct') {
          const sql = this.valuesWrittenIn(cs, info);
          this.portals.set(info.portal, { shards: [], cs, virtual: true, finalize: { sql, route, formats: resultFormats(msg, info.resultOffset) } });
          this.s.responses.synth([bindComplete], true);
          return;
        }
      }
      if ((plan.subqueries || plan.materialize) && this.s.ctx.shards.shardCount > 1 && this.s.routeShard === null && !cs.stmt.hint?.shard && !plan.hint?.shard
        && (plan.subqueries || this.s.routing.route(cs.stmt, info.params, info.paramFormats).kind !== 'direct')) {
        // subqueries over sharded tables not joined on the key: run first, their rows written in
        // (subqueries.ts); a read no merge answers whose keys route to several shards: its tables read first (materialize.ts)
        return this.bindSubqueries(msg, info, cs);
      }
      if (this.s.cursors.size && this.s.cursors.keeps(cs.stmt)) {
        // FETCH / MOVE / CLOSE of a cursor over several shards: pgring has its rows (in text format)
        if (resultFormats(msg, info.resultOffset).some((f) => f !== 0)) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: binary results from a cursor over several shards are not supported (fetch in text format)');
        this.portals.set(info.portal, { shards: [], cs, virtual: true, cursorOp: true });
        this.s.responses.synth([bindComplete], true);
        return;
      }
      if (isTxControl(plan) || plan.setVar?.name.startsWith('pgring.') || plan.command === 'deallocate' || (plan.command === 'prepare_transaction' && this.s.transaction.answersPrepare())) {
        this.portals.set(info.portal, { shards: [], cs, virtual: true });
        this.s.responses.synth([bindComplete], true);
        return;
      }
      if (plan.notifyCalls && this.s.simple.holdsNotify(cs.stmt)) { this.bindHeldNotify(msg, info, cs); return; }
      // COMMIT / ROLLBACK PREPARED (pgjdbc's XA commit): to the shard holding the gid (prepared-gid.ts)
      if (plan.gid !== undefined && needsGidShard(this.s, cs.stmt)) return findPreparedGid(this.s, plan.gid).then(() => this.onBind(msg), (e) => this.s.simple.queryError(e, true));
      if (needsVolatileCheck(this.s, cs.stmt)) {
        // a volatile function in a write to a reference table (volatile-writes.ts): names not known yet are read in this unit
        if (unknownNames(this.s, calledFunctions(cs.stmt.sql)).length) return this.bindVolatileChecked(msg, info, cs);
        checkKnown(this.s, cs.stmt);
      }
      return this.bindChecked(msg, info, cs);
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  private bindChecked(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement): Promise<void> | void {
    if (mayNeedDefaults(this.s, cs.stmt) && (computedValues(cs) || parsedStatement(cs))) return this.bindReferenceDefaults(msg, info, cs);
    return this.bindRouted(msg, info, cs);
  }

  private async bindVolatileChecked(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement): Promise<void> {
    try {
      if (this.s.responses.inFlight()) await this.s.responses.afterInFlight();
      if (this.unitFailed()) { this.portals.delete(info.portal); return; }
      const ask = unknownNames(this.s, calledFunctions(cs.stmt.sql));
      const rows = await this.rowsInUnit(await this.s.servers.link(this.s.routing.preferredShard()), 'pgring_volatile', VOLATILE_SQL, [namesParam(ask)]);
      if (!rows) { this.portals.delete(info.portal); return; }
      rememberVolatile(this.s, ask, rows[0]?.[0] ?? null);
      checkKnown(this.s, cs.stmt);
      await this.bindChecked(msg, info, cs);
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  /**
   * Bind of an INSERT into a reference table (reference-defaults.ts): the defaults the shards would
   * not agree on are evaluated on the first shard inside this unit, and bound, after the client's
   * parameters, to pgring's statement that names them.
   */
  async bindReferenceDefaults(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement): Promise<void> {
    try {
      const computed = computedValues(cs);
      if (computed) {
        // function calls in the VALUES / time functions in the SET: evaluated once, bound as parameters
        if (this.s.responses.inFlight()) await this.s.responses.afterInFlight();
        if (this.unitFailed()) { this.portals.delete(info.portal); return; }
        const ev = computedEvaluation(computed);
        const rows = await this.rowsInUnit(await this.s.servers.link(0), ev.name, ev.sql, []);
        if (!rows) { this.portals.delete(info.portal); return; }
        const row = rows[0] ?? [];
        const values = computed.exprs.map((_, j) => row[2 * j] ?? null);
        const types = computed.exprs.map((_, j) => row[2 * j + 1] ?? 'pg_catalog.text');
        const st = statementWithComputed(this.s, cs, computed, types, info.params.length);
        msg = bindWithValues(msg, info, st.serverName, values);
        info = decodeBind(msg);
        cs = st;
        if (!parsedStatement(cs)) { await this.bindRouted(msg, info, cs); return; }
      }
      const parsed = parsedStatement(cs)!;
      // Columns known and nothing to evaluate: bound at once (a pipelined batch is not held up).
      const known = knownColumns(this.s, parsed.table);
      if (known && !referenceDefaults(parsed, known)) { await this.bindRouted(msg, info, cs); return; }
      // If an earlier message of the unit fails, PostgreSQL skips this one: no value is used up.
      if (this.s.responses.inFlight()) await this.s.responses.afterInFlight();
      if (this.unitFailed()) { this.portals.delete(info.portal); return; }
      const link = await this.s.servers.link(0);
      let cols = knownColumns(this.s, parsed.table);
      if (!cols) {
        const rows = await this.rowsInUnit(link, 'pgring_refcols', COLUMNS_SQL, [parsed.table]);
        if (!rows) { this.portals.delete(info.portal); return; }
        cols = rememberColumns(this.s, parsed.table, rows);
      }
      const d = referenceDefaults(parsed, cols);
      if (!d) { await this.bindRouted(msg, info, cs); return; }
      const st = statementWithValues(this.s, cs, d, info.params.length);
      const ev = evaluationStatement(d);
      const rows = await this.rowsInUnit(link, ev.name, ev.sql, [String(d.rows)]);
      if (!rows) { this.portals.delete(info.portal); return; }
      const out = bindWithValues(msg, info, st.serverName, rows.flatMap((r, i) => rowValues(d, i, r)));
      await this.bindRouted(out, decodeBind(out), st);
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  /** Execute of a DECLARE over several shards bound in this unit: its query runs on the shards now. */
  private async executeDeclare(sql: string, route: Route): Promise<void> {
    try {
      const planned = this.s.router.plan(sql);
      if (planned.length !== 1) throw new PgError(SQLSTATE.SyntaxError, 'pgring: the DECLARE could not be read back with its values');
      await this.s.cursors.declare(planned[0]!, route, true);
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  /** The statement's text with the Bind's values written in (pgring runs it in the simple form). */
  private valuesWrittenIn(cs: ClientStatement, info: ReturnType<typeof decodeBind>): string {
    return withParamLiterals(cs.sql, info.params, info.paramFormats, cs.types, (b) => this.s.text(b));
  }

  /** Bind of a statement whose subqueries over sharded tables run first (subqueries.ts): with the
   *  client's values written in, the subqueries are run and their rows written in too, and the
   *  portal is bound to pgring's statement of that text (no parameters, the client's result formats). */
  private async bindSubqueries(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement): Promise<void> {
    try {
      const planned = this.s.router.plan(this.valuesWrittenIn(cs, info));
      if (planned.length !== 1) throw new PgError(SQLSTATE.SyntaxError, 'pgring: the statement could not be read back with its values');
      const next = await withSubqueryResults(this.s, planned[0]!, true);
      const own = makeStatement('pgring-subqueries', next.sql, [], next, parseMsg('', next.sql, [], this.s.codec), cs.scope, this.s.codec);
      const bind = bindMsg(info.portal, own.serverName, 0, [], resultFormats(msg, info.resultOffset));
      await this.bindRouted(bind, decodeBind(bind), own);
      const portal = this.portals.get(info.portal);
      if (portal?.cs === own) portal.describeAs = { cs, formats: resultFormats(msg, info.resultOffset) };
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  /** Execute of an expression over aggregates over several shards (finalize.ts); with a row limit the
   *  rows wait in the portal, as for any merged portal. */
  private async executeFinalized(portal: Portal, maxRows: number): Promise<void> {
    try {
      if (portal.fetch) { this.executeFetched(portal, maxRows); return; }
      const f = portal.finalize!;
      const planned = this.s.router.plan(f.sql);
      if (planned.length !== 1) throw new PgError(SQLSTATE.SyntaxError, 'pgring: the statement could not be read back with its values');
      const fetch = maxRows > 0 ? (portal.fetch = newPortalRows()) : null;
      await runFinalized(this.s, planned[0]!, f.route, {
        ext: true,
        formats: f.formats,
        after: (msgs) => {
          if (!fetch) return msgs;
          const waiting = fillPortalRows(fetch, msgs);
          const out = takeRows(fetch, maxRows);
          queueMicrotask(() => { for (const w of waiting) w(); });
          return out;
        },
      });
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  /** Bind of SELECT pg_notify(...) in a transaction over several shards: a portal pgring answers,
   *  whose notification is sent after the commit (held-notify.ts). */
  private bindHeldNotify(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement): void {
    const calls = cs.stmt.plan.notifyCalls!;
    const params = info.params;
    const uses = calls.flatMap((c) => c.args).reduce((m, a) => ('param' in a ? Math.max(m, a.param + 1) : m), 0);
    const needs = Math.max(uses, cs.types.length);
    if (params.length !== needs) {
      throw new PgError(SQLSTATE.ProtocolViolation, `bind message supplies ${params.length} parameters, but prepared statement "${info.statement}" requires ${needs}`);
    }
    const formats = resultFormats(msg, info.resultOffset);
    let notify: NonNullable<Portal['notify']>;
    try {
      const sql = heldNotifySql(calls, (a) => ('param' in a ? (params[a.param] == null ? null : this.s.text(params[a.param]!)) : 'slot' in a ? cs.stmt.literals[a.slot] ?? null : a.text));
      notify = { sql, error: null, formats, ran: false };
    } catch (e) {
      if (!(e instanceof PgError)) throw e;
      notify = { sql: null, error: e, formats, ran: false };   // PostgreSQL fails the Execute
    }
    this.portals.set(info.portal, { shards: [], cs, virtual: true, notify });
    this.s.responses.synth([bindComplete], true);
  }

  /** Bind of a statement that runs on servers: routed by its keys (throws what the client gets). */
  bindRouted(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement): Promise<void> | void {
      const plan = cs.stmt.plan;
      this.s.readOnlyUse = isPlainRead(plan);
      const route = this.s.routing.route(cs.stmt, info.params, info.paramFormats);
      this.s.simple.checkSupported(cs.stmt, route);
      let shards = routeShards(route, this.s.ctx.shards.shardCount);
      if (this.s.simple.abortedFor(shards)) throw new PgError(SQLSTATE.InFailedTransaction, 'current transaction is aborted, commands ignored until end of transaction block');
      // A multi-row INSERT whose rows belong to different shards: each shard binds its own rows.
      const parts = plan.insertSplit && shards.length > 1 ? this.s.scatter.splitInsert(cs.stmt, info.params, info.paramFormats) : undefined;
      if (parts) shards = parts.map((p) => p.shard);
      const now = this.s.simple.writeHookFor(cs.stmt) ? null : this.s.servers.linksNow(shards);
      if (now) { this.bindOn(msg, info, cs, shards, now, parts); return; }
      return this.onBindWaiting(msg, info, cs, shards, parts);
  }

  /**
   * Bind of an INSERT that leaves out the shard key column (key-default.ts): the key default's
   * values come from the first shard, inside this unit, and the client's parameters with those
   * values appended bind pgring's statement with the key column added.
   */
  async bindKeyDefault(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement): Promise<void> {
    try {
      const plan = cs.stmt.plan;
      const table = plan.table!, column = plan.keyColumn!;
      // If an earlier message of the unit fails, PostgreSQL skips this one: no value is used up.
      if (this.s.responses.inFlight()) await this.s.responses.afterInFlight();
      if (this.unitFailed()) { this.portals.delete(info.portal); return; }
      const link = await this.s.servers.link(0);
      let def = knownDefault(this.s, table, column);
      if (def === undefined) {
        const rows = await this.rowsInUnit(link, 'pgring_keydef', defaultCatalogSql('$1', '$2'), [table, column]);
        if (!rows) { this.portals.delete(info.portal); return; }
        def = rememberDefault(this.s, table, column, rows);
      }
      if (!def) throw noDefault(table, column);
      const keyed = keyedStatement(this.s, cs, def, info.params.length);
      const rows = await this.rowsInUnit(link, defaultStatementName(def), defaultValuesSql(def, '$1::pg_catalog.int4'), [String(keyed.rows)]);
      if (!rows) { this.portals.delete(info.portal); return; }
      const out = bindWithValues(msg, info, keyed.cs.serverName, checkedValues(table, column, rows, keyed.rows));
      await this.bindRouted(out, decodeBind(out), keyed.cs);
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  /**
   * Rows of pgring's own named statement `name` run on `link` inside the client's current unit:
   * Bind + Execute + Flush, no Sync, so the unit's implicit transaction and the client's unnamed
   * statement stay. null: it failed, and its error went to the client as the unit's failure (the
   * server skips to the client's Sync, as PostgreSQL does after a failed statement).
   */
  rowsInUnit(link: Link, name: string, sql: string, params: string[]): Promise<(string | null)[][] | null> {
    this.s.unitLinks.add(link);
    link.unsynced = true;
    if (!link.conn.prepared.has(name)) {
      this.s.responses.push(K.InternalParse, link, true);
      link.conn.prepared.set(name, 0);
      link.conn.write(parseMsg(name, sql, []));
    }
    const w = new Writer(64).cstr('').cstr(name).int16(0).int16(params.length);
    for (const v of params) { const b = Buffer.from(v, 'utf8'); w.int32(b.length).bytes(b); }
    const p = this.s.responses.push(K.InternalExtRows, link, true);
    const rows: (string | null)[][] = (p.rows = []);
    let ok = false;
    p.onRow = () => { ok = true; };
    const done = new Promise<(string | null)[][] | null>((resolve) => { p.onDone = () => resolve(ok ? rows : null); });
    link.conn.write(w.int16(0).msg(F.Bind));
    link.conn.write(executeMsg('', 0));
    link.conn.write(msg_flush);
    this.s.flush();
    return done;
  }

  async onBindWaiting(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement, shards: number[], parts?: InsertPart[]): Promise<void> {
    try {
      if (this.s.simple.writeHookFor(cs.stmt) && this.s.responses.inFlight()) {
        // A lock is for a statement that runs: one an earlier failure of the unit skips takes none.
        await this.s.responses.afterInFlight();
        if (this.unitFailed()) { this.portals.delete(info.portal); return; }
      }
      await this.s.simple.beforeWrite(cs.stmt, shards, info.params, info.paramFormats);
      const links: Link[] = [];
      for (const s of shards) links.push(await this.s.servers.link(s));
      this.bindOn(msg, info, cs, shards, links, parts);
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  bindOn(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement, shards: number[], links: Link[], parts?: InsertPart[]): void {
      if (this.unitTx || (links.length > 1 && this.s.transaction.distributedAutocommit(cs.stmt))) {
        // An autocommit write to several shards: one transaction per shard, committed together at Sync.
        if (!this.unitTx) { this.unitTx = new Set(); this.s.txSnapshot = this.s.state; }
        for (const l of links) if (!this.unitTx.has(l)) { this.unitTx.add(l); this.beginInUnit(l); }
      }
      // A merge that rewrites the SQL runs the rewritten statement on the shards.
      const shardCs = links.length > 1 ? shardStatement(cs) : null;
      const target = shardCs ?? cs;
      const renamed = shardCs ? shardBind(msg, info.resultOffset, shardCs.serverName, cs.stmt.plan.merge!.hiddenColumns)
        : cs.serverName === info.statement ? msg : renameBind(msg, cs.serverName, info);
      const group = links.length > 1 ? new Group('first', links.length, cs.stmt, []) : null;
      let result: Pending | null = null;
      for (let i = 0; i < links.length; i++) {
        const link = links[i]!;
        this.s.unitLinks.add(link);
        link.unsynced = true;
        const part = parts?.[i];
        // During a resharding migration each shard reads only the rows it owns.
        const owned = !part && links.length > 1 && readsSharded(cs.stmt) ? this.s.ctx.ownedSql?.(target.sql, link.shard) ?? null : null;
        const t = part ? insertStatement(cs, part) : owned !== null ? ownedStatement(target, owned) : target;
        const bind = owned === null ? renamed : shardCs ? shardBind(msg, info.resultOffset, t.serverName, cs.stmt.plan.merge!.hiddenColumns) : renameBind(msg, t.serverName);
        if (cs.uses) this.s.prepared.ensurePrepared(link, cs.uses);   // SQL EXECUTE of a protocol-level statement
        this.s.prepared.ensurePrepared(link, t);
        const p = this.s.responses.push(K.Bind, link, true);
        if (group) { p.group = group; p.member = i; }
        if (t.serverName !== '') p.cs = t; // no closure per Bind: checked where errors arrive
        link.conn.write(part ? partBind(msg, info.portal, t.serverName, info.params, info.paramFormats, info.resultOffset, part) : bind);
      }
      if (group) {
        result = this.s.responses.push(K.GroupResult, null, true);
        const r = result;
        group.onFinish = (msgs) => { r.out = msgs; this.s.responses.complete(r); };
      }
      this.portals.set(info.portal, shards.length > 1 ? { shards, cs, virtual: false, params: info.params.map((b) => (b ? Buffer.from(b) : null)), formats: info.paramFormats, parts } : { shards, cs, virtual: false });
  }

  onDescribe(msg: Buffer): Promise<void> | void {
    const { kind, name } = decodeTargeted(msg);
    try {
      if (kind === 'S') {
        const cs = this.s.stmts.get(name);
        if (!cs) throw new PgError(SQLSTATE.UndefinedPreparedStatement, name === '' ? 'unnamed prepared statement does not exist' : `prepared statement "${name}" does not exist`);
        // PostgreSQL revalidates the statement for a Describe too (CachedPlanGetTargetList).
        if (isStale(cs, this.s.database)) return revalidated(this.s, this, cs, () => this.onDescribe(msg), () => undefined);
        if (isTxControl(cs.stmt.plan) || cs.stmt.plan.command === 'deallocate' || this.refusedAtBind(cs.stmt) || cs.stmt.plan.setVar?.name.startsWith('pgring.')) {
          this.s.responses.synth([new Writer(8).int16(0).msg(B.ParameterDescription), noData], true);
          return;
        }
        const out = cs.serverName === name ? msg : targeted(F.Describe, 'S', cs.serverName);
        return this.withLink(this.s.routing.preferredShardFor(cs.stmt), this.describeStatementOn, cs, out);
      }
      const portal = this.portals.get(name);
      if (!portal) {
        // A cursor over several shards that pgring keeps (cursors.ts): its RowDescription.
        const kept = name === '' ? undefined : this.s.cursors.describe(name);
        if (kept !== undefined) { this.s.responses.synth([kept ?? noData], true); return; }
        // Not a protocol portal of this client: an SQL cursor (DECLARE) lives on the server of
        // the open transaction, which answers for it.
        const link = name === '' ? undefined : this.s.attachedLinks[0];
        if (link) return this.withLink(link.shard, this.cursorRequestOn, msg, K.Describe);
        throw new PgError(SQLSTATE.InvalidCursorName, `portal "${name}" does not exist`);
      }
      if (portal.notify) { this.s.responses.synth([heldNotifyResult(portal.cs.stmt.plan.notifyCalls!, portal.notify.formats).rowDescription], true); return; }
      if (portal.cursorOp) { this.s.responses.synth([this.s.cursors.describeStatement(portal.cs.stmt) ?? noData], true); return; }
      if (portal.finalize || portal.describeAs) return this.withLink(this.s.routing.preferredShardFor((portal.describeAs?.cs ?? portal.cs).stmt), this.describeFinalizedOn, portal, null);
      if (portal.virtual) { this.s.responses.synth([noData], true); return; }
      return this.withLink(portal.shards[0]!, this.describePortalOn, portal, msg);
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  /** Describe of an expression-over-aggregates portal (finalize.ts), or of one bound to pgring's
   *  rewrite (subqueries.ts): the client's statement's RowDescription from a server, in the
   *  portal's result formats. */
  describeFinalizedOn(link: Link, portal: Portal, _: null): void {
    const cs = portal.describeAs?.cs ?? portal.cs;
    this.s.unitLinks.add(link);
    link.unsynced = true;
    if (cs.uses) this.s.prepared.ensurePrepared(link, cs.uses);
    this.s.prepared.ensurePrepared(link, cs);
    const d = this.s.responses.push(K.InternalDescribe, link, true);
    const r = this.s.responses.push(K.GroupResult, null, true);
    d.onRow = (m) => { r.out = [withFormats(m, (portal.describeAs ?? portal.finalize)!.formats)]; };
    d.onDone = () => { if (!r.out) r.out = [noData]; this.s.responses.complete(r); };
    link.conn.write(targeted(F.Describe, 'S', cs.serverName));
  }

  describeStatementOn(link: Link, cs: ClientStatement, out: Buffer): void {
    this.s.unitLinks.add(link);
    link.unsynced = true;
    if (cs.uses) this.s.prepared.ensurePrepared(link, cs.uses);
    this.s.prepared.ensurePrepared(link, cs);
    const p = this.s.responses.push(K.Describe, link, true);
    if (cs.shape === undefined) p.cs = cs;
    link.conn.write(out);
  }

  /** Describe or Execute of an SQL cursor (not a portal of this client): forwarded as is. */
  cursorRequestOn(link: Link, msg: Buffer, kind: K): void {
    this.s.unitLinks.add(link);
    link.unsynced = true;
    this.s.responses.push(kind, link, true);
    link.conn.write(msg);
  }

  describePortalOn(link: Link, portal: Portal, msg: Buffer): void {
    this.s.unitLinks.add(link);
    link.unsynced = true;
    const p = this.s.responses.push(K.Describe, link, true);
    if (portal.cs.shape === undefined) p.cs = portal.cs;
    if (portal.shards.length > 1 && portal.cs.stmt.plan.merge) {
      // Several shards answer through the merger: describe the columns the client will get.
      p.plans = [portal.cs.stmt];
      p.onRow = () => undefined;
    }
    link.conn.write(msg);
  }

  /**
   * Runs the extended-protocol step `fn` with the link to `shard`: now when one is free,
   * else after waiting for the pool. `fn` is a method taking its data as arguments, so the
   * common case allocates no closure.
   */
  withLink<A, B>(shard: number, fn: (this: ExtendedProtocol, link: Link, a: A, b: B) => void, a: A, b: B): Promise<void> | void {
    const now = this.s.servers.linkNow(shard);
    if (now) { fn.call(this, now, a, b); return; }
    return this.s.servers.link(shard).then((link) => {
      try { fn.call(this, link, a, b); } catch (e) { this.s.simple.queryError(e, true); }
    }, (e) => this.s.simple.queryError(e, true));
  }

  onExecute(msg: Buffer): Promise<void> | void {
    const { portal: name, maxRows } = decodeExecute(msg);
    try {
      const portal = this.portals.get(name);
      if (!portal) {
        // Not a protocol portal of this client: an SQL cursor (DECLARE) lives on the server of
        // the open transaction, which runs it.
        const link = name === '' ? undefined : this.s.attachedLinks[0];
        if (link) return this.withLink(link.shard, this.cursorRequestOn, msg, K.Execute);
        throw new PgError(SQLSTATE.InvalidCursorName, `portal "${name}" does not exist`);
      }
      const stmt = portal.cs.stmt;
      this.s.lastQuery = portal.cs.sql;
      if (portal.virtual && this.s.responses.inFlight()) {
        // An earlier message of this pipeline is still running on a server. If it fails,
        // PostgreSQL skips everything up to the Sync, this statement too: decide once it answered.
        this.s.blockingWork = this.executeVirtualLater(msg);
        return;
      }
      if (portal.declare) { const d = portal.declare; return this.executeDeclare(d.sql, d.route); }
      if (portal.finalize) return this.executeFinalized(portal, maxRows);
      if (portal.cursorOp) {
        const out = this.s.cursors.answer(stmt, false);
        if (out === null) throw new PgError(SQLSTATE.InvalidCursorName, `cursor "${stmt.plan.cursor ?? ''}" does not exist`);
        if (maxRows > 0 && out.length - 1 > maxRows) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: a row limit on a FETCH portal of a cursor over several shards is not supported (FETCH fewer rows)');
        this.s.responses.synth(out, true);
        return;
      }
      if (portal.notify) {
        const n = portal.notify;
        if (n.error) throw n.error;
        if (n.ran) { this.s.responses.synth([commandComplete('SELECT 0')], true); return; }
        n.ran = true;
        this.s.afterCommit.push({ depth: this.s.savepoints.length, notify: n.sql! });
        const row = heldNotifyResult(stmt.plan.notifyCalls!, n.formats).dataRow;
        this.s.responses.synth(maxRows > 0 ? [row, Buffer.from([B.PortalSuspended, 0, 0, 0, 4])] : [row, commandComplete('SELECT 1')], true);
        return;
      }
      if (portal.virtual) {
        if (stmt.plan.setVar?.name.startsWith('pgring.')) {
          this.s.routing.ownSetting(stmt);
          this.s.responses.synth([commandComplete(stmt.plan.command === 'set' ? 'SET' : 'RESET')], true);
          return;
        }
        if (stmt.plan.command === 'deallocate') { this.s.sqlPrepared.executeDeallocate(stmt); return; }
        if (stmt.plan.command === 'prepare_transaction') { if (this.s.transaction.prepareTransaction(true)) return; } else if (this.s.transaction.txControl(stmt, { portal })) return;
        // COMMIT/ROLLBACK of a transaction running on one server: run it there. A BEGIN that
        // txControl left to the server (a session holding its connections, e.g. session
        // pooling) runs on every attached one: they are all idle, and filtering them out
        // answered nothing at all (pgjdbc's extended-protocol BEGIN hung).
        const links = stmt.plan.command === 'begin' ? this.s.attachedLinks : this.s.attachedLinks.filter((l) => l.conn.status !== 'I');
        const group = links.length > 1 ? new Group('first', links.length, stmt, []) : null;
        for (const [i, l] of links.entries()) {
          this.s.unitLinks.add(l);
          l.unsynced = true;
          const p = this.s.responses.push(K.ExecSimple, l, true);
          p.plans = [stmt];
          if (group) { p.group = group; p.member = i; }
          l.conn.busy = true;
          l.conn.write(query(stmt.sql, this.s.codec));
        }
        if (group) {
          const r = this.s.responses.push(K.GroupResult, null, true);
          group.onFinish = (msgs) => { r.out = msgs.filter((m) => m[0] !== B.ReadyForQuery); this.s.responses.complete(r); };
        }
        return;
      }
      if (portal.fetch) { this.executeFetched(portal, maxRows); return; }
      const now = this.s.servers.linksNow(portal.shards);
      if (now) { this.executeOn(msg, name, portal, now); return; }
      return this.executeWaiting(msg, name, portal);
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  async executeVirtualLater(msg: Buffer): Promise<void> {
    await this.s.responses.afterInFlight();
    if (this.s.responses.extError || this.s.skipUntilSync) return; // skipped, as PostgreSQL skips it
    await this.onExecute(msg);
    this.s.flush();
  }

  async executeWaiting(msg: Buffer, name: string, portal: Portal): Promise<void> {
    try {
      const links: Link[] = [];
      for (const s of portal.shards) links.push(await this.s.servers.link(s));
      this.executeOn(msg, name, portal, links);
    } catch (e) { this.s.simple.queryError(e, true); }
  }

  executeOn(msg: Buffer, name: string, portal: Portal, links: Link[]): void {
      const stmt = portal.cs.stmt;
      // A portal bound before an earlier Sync (inside a transaction) is run in this unit:
      // its server must get this unit's Sync too.
      for (const l of links) { this.s.unitLinks.add(l); l.unsynced = true; }
      if (links.length === 1) {
        const l = links[0]!;
        const p = this.s.responses.push(K.Execute, l, true);
        p.plans = [stmt];
        p.t0 = readTime();
        l.conn.busy = true;
        l.conn.write(msg);
        return;
      }
      const mode: GroupMode = stmt.plan.target !== 'sharded' || stmt.plan.command === 'ddl' ? 'first'
        : stmt.plan.command === 'select' ? 'merge-ext' : stmt.plan.command === 'copy_to' ? 'copy-out' : 'sum';
      const group = new Group(mode, links.length, stmt, [], portal.params, { paramFormats: portal.formats, shardSql: shardStatement(portal.cs) !== null, text: textOrder(this.s.database) });
      if (portal.parts) group.inStatementOrder(portal.parts);
      // A row limit: the shards run the portal to completion, the merged rows wait in the portal.
      const maxRows = mode === 'merge-ext' ? decodeExecute(msg).maxRows : 0;
      const fetch = maxRows > 0 ? (portal.fetch = newPortalRows()) : null;
      if (fetch) msg = executeMsg(name, 0);
      if (mode === 'merge-ext') {
        // The merger needs the column types: in the extended protocol they come from a Describe.
        const d = this.s.responses.push(K.InternalDescribe, links[0]!, true);
        d.onRow = (m) => { group.describe(m); };
        links[0]!.conn.write(targeted(F.Describe, 'P', name));
      }
      // Rows that need no portal of pgring's (no row limit) go out as they come, merged if sorted:
      // the result entry stands ahead of the members (they send nothing themselves), behind the
      // Describe above, so backpressure bounds what the proxy holds (scatter.ts does the same).
      const stream = !fetch && group.streamable;
      const r = this.s.responses.push(K.GroupResult, null, true);
      if (stream) {
        group.onStream = (msgs) => { for (const m of msgs) this.s.responses.out(r, m); };
        group.onHold = (m, hold) => { const c = links[m]!.conn; if (hold) c.holdReads(group); else c.releaseReads(group); };
      }
      for (const [i, l] of links.entries()) {
        const p = this.s.responses.push(K.Execute, l, true);
        p.plans = [stmt]; p.group = group; p.member = i;
        l.conn.busy = true;
        l.conn.write(msg);
        // new bigint sequences get a range per shard, in the DDL's own transaction (sequences.ts)
        if (stmt.plan.createsSequence && sequenceRangeSql(l.shard)) this.internalInUnit(l, sequenceRangeStatement(l.shard));
      }
      if (!stream) this.s.responses.moveToEnd(r);   // the merged answer comes after the members'
      group.onFinish = (msgs) => {
        const cc = msgs.find((m) => m[0] === B.CommandComplete);
        if (cc) this.s.transaction.afterCommand(stmt, commandTag(cc), null);
        if (fetch) {
          const waiting = fillPortalRows(fetch, msgs);
          r.out = takeRows(fetch, maxRows);
          this.s.responses.complete(r);
          for (const w of waiting) w();
          return;
        }
        if (r.out) r.out.push(...msgs); else r.out = msgs;
        this.s.responses.complete(r);
      };
  }

  /** Execute of a multi-shard portal whose rows pgring holds (an earlier Execute had a row limit). */
  executeFetched(portal: Portal, maxRows: number): void {
    const pr = portal.fetch!;
    const r = this.s.responses.push(K.GroupResult, null, true);
    const give = (): void => { r.out = takeRows(pr, maxRows); this.s.responses.complete(r); };
    if (pr.rows) give(); else pr.waiters.push(give);
  }

  onClose(msg: Buffer): void {
    const { kind, name } = decodeTargeted(msg);
    if (kind === 'S') {
      this.s.stmts.delete(name); // the server keeps its copy, shared by name across clients
      this.s.responses.synth([closeComplete], true);
      return;
    }
    const portal = this.portals.get(name);
    this.portals.delete(name);
    if (!portal || portal.virtual) { this.s.responses.synth([closeComplete], true); return; }
    const link = this.s.links[portal.shards[0]!];
    if (!link) { this.s.responses.synth([closeComplete], true); return; }
    const others = portal.shards.slice(1).map((s) => this.s.links[s]).filter((l): l is Link => !!l);
    for (const l of [link, ...others]) { this.s.unitLinks.add(l); l.unsynced = true; }
    // the other shards' CloseComplete is not the client's (InternalParse expected a ParseComplete
    // and forwarded it, desynchronising the link's queue)
    for (const l of others) { this.s.responses.push(K.InternalClose, l, true); l.conn.write(msg); }
    this.s.responses.push(K.Close, link, true);
    link.conn.write(msg);
  }

  onSync(): void {
    this.s.skipUntilSync = false;
    for (const l of this.s.unitLinks) {
      l.unsynced = false;
      this.s.responses.push(K.Sync, l, true);
      l.conn.busy = true;
      l.conn.write(syncMsg);
    }
    this.s.unitLinks.clear();
    this.portals.delete('');
    if (this.unitTx) {
      // The pump waits: nothing else may run (or answer) before the unit's shards commit or roll back.
      // unitTx stays set until the commit: DDL answering meanwhile is not yet committed (inUnitTx).
      this.s.blockingWork = this.finishUnitTx([...this.unitTx]);
      return;
    }
    this.s.responses.rfq();
  }

  /**
   * Opens an explicit transaction on `link` inside the current extended-protocol unit,
   * before the client's Bind: Bind + Execute of pgring's own "BEGIN" statement (named,
   * so the client's unnamed statement stays), prepared on first use.
   */
  beginInUnit(link: Link): void {
    this.internalInUnit(link, BEGIN_STMT);
  }

  /** Bind + Execute of one of pgring's own named statements (BEGIN, COMMIT, ROLLBACK) in the
   *  current unit; its BindComplete and CommandComplete are not the client's. */
  internalInUnit(link: Link, st: InternalStatement): void {
    if (!link.conn.prepared.has(st.name)) {
      this.s.responses.push(K.InternalParse, link, true);
      link.conn.prepared.set(st.name, 0);
      link.conn.write(st.parse);
    }
    this.s.responses.push(K.InternalBegin, link, true);
    link.conn.write(st.bindExecute);
    this.s.unitLinks.add(link);
    link.unsynced = true;
  }

  /** After the Sync of a unit with a multi-shard autocommit write: commit every shard (two-phase with the transaction layer) or roll all back. */
  async finishUnitTx(links: Link[]): Promise<void> {
    let err: PgError | null = null;
    try {
      await this.s.responses.waitIdle();
      const open = links.filter((l) => this.s.links[l.shard] === l && l.conn.status !== 'I');
      const after = this.s.afterCommit;
      // extError: the client was told of an error in this unit (by a server or by pgring).
      const commit = !this.s.responses.extError && open.length > 0 && open.every((l) => l.conn.status === 'T');
      err = await this.s.transaction.endOnLinks(open, commit);
      if (commit && !err && after.length) await this.s.transaction.afterCommitted(after, true);
    } catch (e) {
      err = internalError(e);
    }
    this.unitTx = null;
    if (err) { this.s.ctx.metrics?.error(err.code); this.s.responses.synth([err.toMessage()], false); }
    this.s.responses.rfq();
    this.s.flush();
  }

  onFlush(): void {
    for (const l of this.s.unitLinks) l.conn.write(msg_flush);
  }
}
