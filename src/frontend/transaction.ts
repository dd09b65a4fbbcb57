// Transaction control: BEGIN/COMMIT/ROLLBACK [AND CHAIN], PREPARE TRANSACTION, distributed
// commit (handed to src/txn through TransactionHooks), and session-state book-keeping after
// each command. The decisions themselves are pure: tx-decision.ts.
import { PgError, SQLSTATE } from '../protocol/errors';
import { buildNotice, commandComplete } from '../protocol/messages';
import type { RoutedStatement } from '../router/router';
import { SessionState } from './session-state';
import { ddlNames, noteDdl } from './prepared';
import type { ClientSession } from './client';
import type { AfterCommit, Link, Portal } from './session-types';
import { COMMIT_STMT, ROLLBACK_STMT, internalError } from './session-util';
import { decideTxControl, endTag, TxAction } from './tx-decision';
import type { TxFacts } from './tx-decision';

function beginTag(stmt: RoutedStatement): string { return /^\s*start/i.test(stmt.sql) ? 'START TRANSACTION' : 'BEGIN'; }

export class TransactionControl {
  /** Objects of DDL run in the open transaction: noted again when it ends (other connections
   *  that prepared a statement since the DDL ran did so against the old schema). */
  private ddlInTx: (Set<string> | null)[] = [];
  /** The open transaction ran a statement on temporary objects (PREPARE TRANSACTION is refused). */
  private tempInTx = false;
  /** The session's search_path starts with pg_temp. */
  private tempFirstPath = false;

  constructor(private readonly s: ClientSession) {}

  /** Book-keeping after a statement completed on a server: session state, pins, transactions. */
  afterCommand(stmt: RoutedStatement, tag: string, link: Link | null): void {
    const plan = stmt.plan;
    if (plan.command === 'ddl') this.s.ctx.forgetColumns?.(this.s.database);
    const follow = tag === 'ALTER TABLE' ? plan.renames ?? plan.columnChanges ?? plan.shardedLike : tag === 'CREATE TABLE' || tag === 'CREATE VIEW' ? plan.shardedLike ?? plan.columnChanges : undefined;
    if (tag === 'DROP VIEW' && plan.dropsViews && this.s.ctx.followInDefinition) {
      for (const table of plan.dropsViews) this.s.afterCommit.push({ depth: this.s.savepoints.length, follow: { table, forget: true } });
      if (this.s.txStatus === 'I' && this.s.virtualTx === null && !this.s.ext.inUnitTx()) void this.afterCommitted(this.takeAfterCommit(), false);
    }
    if (follow && this.s.ctx.followInDefinition) {
      this.s.afterCommit.push({ depth: this.s.savepoints.length, follow });
      // outside a transaction (one shard: the server committed it already)
      if (this.s.txStatus === 'I' && this.s.virtualTx === null && !this.s.ext.inUnitTx()) void this.afterCommitted(this.takeAfterCommit(), false);
    }
    switch (plan.command) {
      case 'set': case 'reset': {
        const v = plan.setVar;
        if (v && (v.local || v.name === 'transaction')) {
          // It lasts for the transaction: a shard that joins it later gets it after its BEGIN
          // (before, only the first shard had it: REPEATABLE READ there, READ COMMITTED elsewhere).
          // SET TRANSACTION joins the BEGIN (AND CHAIN keeps the characteristics); SET LOCAL does not.
          if (this.s.txStatus !== 'I') { if (v.local) this.s.localSets.push({ sql: stmt.sql, depth: this.s.savepoints.length }); else this.s.beginSql += `; ${stmt.sql}`; }
          break;
        }
        if (!v) break;
        if (v.name === 'all') this.s.state = this.s.state.afterResetAll();
        else if (v.value === null) this.s.state = this.s.state.withReset(v.name);
        else this.s.state = this.s.state.withSet(v.name, stmt.sql);
        if (link) link.conn.appliedState = this.s.state.isEmpty ? null : this.s.state;
        for (const l of this.s.links) if (l && l !== link) l.conn.appliedState = l.conn.appliedState; // other links replay on next attach
        break;
      }
      case 'discard':
        if (/^DISCARD ALL/i.test(tag)) {
          this.s.pins.clear();
          this.s.state = SessionState.empty;
          if (link) { link.conn.appliedState = null; link.conn.prepared.clear(); link.unnamed = null; }
        } else if (/TEMP/i.test(stmt.sql)) this.s.pins.delete('temp_table');
        break;
      case 'unlisten':
        if (/\*/.test(stmt.sql)) this.s.pins.delete('listen');
        break;
      case 'deallocate':
        if (/\ball\b/i.test(stmt.sql)) {
          this.s.pins.delete('prepare');
          // DEALLOCATE ALL also drops the protocol-level statements pgring prepared there, and
          // the client's named ones (PostgreSQL keeps only the unnamed statement).
          if (link) { link.conn.prepared.clear(); link.unnamed = null; }
          for (const name of [...this.s.stmts.keys()]) if (name !== '') this.s.stmts.delete(name);
        }
        break;
      case 'ddl': {
        // A result shape may have changed: older client statements naming these objects get 0A000 (prepared.ts).
        const names = ddlNames(plan.lockObjects, plan.shapeObjects);
        noteDdl(this.s.database, names);
        if (this.s.txStatus !== 'I' || (link !== null && link.conn.status !== 'I')) this.ddlInTx.push(names);
        break;
      }
      case 'begin':
        // A BEGIN the server ran (pinned sessions, session pooling, multi-statement strings):
        // a ROLLBACK returns the session state to what it is now.
        if (link && link.conn.status === 'I') this.s.txSnapshot = this.s.state;
        break;
      case 'commit': case 'rollback':
        this.endTransaction(tag === 'COMMIT');
        // AND CHAIN on the server: its next transaction is already open there.
        if (plan.chain) this.s.txSnapshot = this.s.state;
        break;
      case 'prepare_transaction':
        // The server has handed the transaction over to the prepared-transaction store (or rolled
        // it back, tag ROLLBACK): the session is outside a transaction either way.
        this.endTransaction(tag === 'PREPARE TRANSACTION');
        break;
      case 'savepoint':
        if (plan.savepoint !== undefined) this.s.savepoints.push(plan.savepoint);
        break;
      case 'release': case 'rollback_to': {
        const i = plan.savepoint === undefined ? -1 : this.s.savepoints.lastIndexOf(plan.savepoint);
        if (plan.command === 'release') {
          if (i < 0) break;
          // what ran inside the released savepoints now belongs to the one around them
          this.s.savepoints.length = i;
          for (const a of this.s.afterCommit) if (a.depth > i) a.depth = i;
          for (const a of this.s.localSets) if (a.depth > i) a.depth = i;
          break;
        }
        if (i >= 0) {
          this.s.savepoints.length = i + 1;
          // NOTIFYs, renames and SET LOCALs issued after the savepoint are rolled back with it
          if (this.s.afterCommit.length) this.s.afterCommit = this.s.afterCommit.filter((a) => a.depth <= i);
          if (this.s.localSets.length) this.s.localSets = this.s.localSets.filter((a) => a.depth <= i);
        }
        // Back to a savepoint: the transaction is healthy again, also where pgring had failed it.
        this.s.txFailed = false;
        if (this.s.virtualTx === 'E') this.s.virtualTx = 'T';
        break;
      }
      default:
        break;
    }
    if (plan.sessionState) this.s.pins.add(plan.sessionState);
    if (plan.setVar?.name === 'search_path' && !plan.setVar.local) this.tempFirstPath = plan.setVar.value !== null && /^\W*pg_temp\b/i.test(plan.setVar.value);
    if (this.s.txStatus !== 'I' && this.touchesTemp(stmt)) this.tempInTx = true;
  }

  /** Whether a statement operates on temporary objects, as PostgreSQL's XACT_FLAGS_ACCESSEDTEMPNAMESPACE
   *  records it. With pg_temp first in search_path, current_schema() creates the session's temporary
   *  namespace on a fresh backend; pgring's reused backend may have it already, so pgring decides. */
  private touchesTemp(stmt: RoutedStatement): boolean {
    const plan = stmt.plan;
    if (plan.sessionState === 'temp_table') return true;
    if (plan.write && plan.lockObjects !== undefined && plan.lockObjects.every((o) => o.startsWith('temp:'))) return true;
    return this.tempFirstPath && /\bcurrent_schema\b/i.test(stmt.sql);
  }

  endTransaction(committed: boolean): void {
    this.tempInTx = false;
    if (this.s.afterCommit.length) this.s.afterCommit = [];
    if (this.s.localSets.length) this.s.localSets = [];
    if (this.ddlInTx.length) { for (const n of this.ddlInTx) noteDdl(this.s.database, n); this.ddlInTx = []; }
    if (!committed) {
      this.s.state = this.s.txSnapshot;
      for (const l of this.s.links) if (l) l.conn.appliedState = this.s.state.isEmpty ? null : this.s.state;
    }
    this.s.virtualTx = null;
    this.s.serverTx = null;
    this.s.txFailed = false;
    this.s.savepoints = [];
    this.s.ctx.tx?.afterTransaction?.(this.s, committed);
  }

  /**
   * A write to several shards outside a transaction block runs as one transaction on
   * every shard, so a failure on one shard changes nothing on the others: committed with
   * two-phase commit by the transaction layer (ZooKeeper), else by COMMIT on each shard.
   */
  distributedAutocommit(stmt: RoutedStatement): boolean {
    const cmd = stmt.plan.command as string;
    return stmt.plan.write && this.s.txStatus === 'I' && !this.s.virtualTx
      && (cmd === 'insert' || cmd === 'update' || cmd === 'delete' || cmd === 'merge'
        || (cmd === 'ddl' && stmt.plan.ddlTx === true && !stmt.plan.sessionState));
  }

  /** BEGIN on each shard (sent by link()), the statement, then the two-phase commit hook; the client sees one autocommit statement. */
  async autocommitMulti(stmt: RoutedStatement, msg: Buffer, shards: number[], bodies?: Buffer[], rowOrder?: { rows: number[] }[]): Promise<void> {
    this.beginImplicit();
    let err: PgError | null = null;
    try {
      await this.s.scatter.scatterSimple(stmt, msg, shards, true, bodies, rowOrder);
      await this.s.responses.waitIdle();
    } catch (e) { err = internalError(e); }
    err = (await this.endImplicit(err !== null)) ?? err;
    if (err) { this.s.ctx.metrics?.error(err.code); this.s.responses.synth([err.toMessage()], false); }
    this.s.responses.rfq();
  }

  /**
   * The implicit transaction of one client statement (COPY, DDL, a write) or query string that
   * runs on several shards outside a transaction block: each shard gets BEGIN as it joins
   * (Links.link), and endImplicit commits them together or rolls all back.
   */
  beginImplicit(): void {
    this.s.virtualTx = 'T'; this.s.beginSql = 'BEGIN'; this.s.txSnapshot = this.s.state;
    // Links attached already (session pooling keeps them; a read pgring made for this statement,
    // such as INSERT ... SELECT's rows, attached one) join it when the statement uses them
    // (Links.linkNow): before, their part committed on its own, and a failure on another shard
    // left it behind.
    this.s.implicitSeq++;
  }

  /** Ends beginImplicit's transaction: committed (two-phase with the transaction layer) when
   *  nothing `failed` and every shard it reached is still in it, else rolled back everywhere;
   *  then the commit's after-commit work. Returns the commit's error, if any. */
  async endImplicit(failed: boolean): Promise<PgError | null> {
    this.s.virtualTx = null;
    const active = this.s.attachedLinks.filter((l) => l.conn.status !== 'I');
    const after = this.s.afterCommit;
    const commit = !failed && active.every((l) => l.conn.status === 'T');
    let err: PgError | null = null;
    if (active.length === 0) this.endTransaction(commit);
    else err = await this.endOnLinks(active, commit);
    if (commit && !err && after.length) await this.afterCommitted(after, false);
    return err;
  }

  /** Commits `links` together: two-phase with the transaction layer (ZooKeeper), else COMMIT on each. */
  commitLinks(links: Link[]): Promise<void> {
    const hook = this.s.ctx.tx?.commitMulti;
    return hook ? hook.call(this.s.ctx.tx, this.s, links) : this.s.servers.runOnLinks(links, 'COMMIT');
  }

  /** Ends the transaction on `links`: commits when `commit` (returns the commit's error, if any), else rolls back. */
  async endOnLinks(links: Link[], commit: boolean): Promise<PgError | null> {
    if (!commit) {
      if (links.length) await this.s.servers.runOnLinks(links, 'ROLLBACK').catch(() => undefined);
      this.endTransaction(false);
      return null;
    }
    try {
      await this.commitLinks(links);
      this.endTransaction(true);
      return null;
    } catch (e) {
      this.endTransaction(false);
      return internalError(e);
    }
  }

  /** Reused by txControl: the decision allocates nothing per statement. */
  private readonly facts: TxFacts = { cmd: 'begin', chain: false, status: 'I', attached: 0, active: 0, txFailed: false, virtualFailed: false, implicit: 0 };

  /** The transaction state decideTxControl needs, read from the session. */
  private readFacts(stmt: RoutedStatement, ext: boolean): TxFacts {
    const s = this.s;
    const f = this.facts;
    f.cmd = stmt.plan.command as TxFacts['cmd'];
    f.chain = stmt.plan.chain === true;
    f.status = s.txStatus;
    f.attached = 0; f.active = 0; f.implicit = 0;
    for (const l of s.links) if (l) { f.attached++; if (l.conn.status !== 'I') f.active++; }
    f.txFailed = s.txFailed;
    f.virtualFailed = s.virtualTx === 'E';
    if (ext) for (const l of s.unitLinks) if (l.unsynced && s.links[l.shard] === l) f.implicit++;
    return f;
  }

  /**
   * BEGIN / COMMIT / ROLLBACK. Returns true when answered here (the simple-query case);
   * false to forward the statement to its link(s) as usual. What to do is decided by
   * decideTxControl (tx-decision.ts); this carries it out.
   */
  txControl(stmt: RoutedStatement, ext: { portal?: Portal } | null): boolean {
    const s = this.s;
    const isExt = ext !== null;
    const f = this.readFacts(stmt, isExt);
    const cmd = f.cmd;
    const action = decideTxControl(f);
    switch (action) {
      case TxAction.RefuseInFailed:
        s.simple.queryError(new PgError(SQLSTATE.InFailedTransaction, 'current transaction is aborted, commands ignored until end of transaction block'), isExt);
        return true;
      case TxAction.AlreadyInProgress:
        this.reply([buildNotice({ severity: 'WARNING', code: '25001', message: 'there is already a transaction in progress' }), commandComplete(beginTag(stmt))], isExt);
        return true;
      case TxAction.BeginOnServer:
        s.beginSql = stmt.sql; // pinned session: let the server run it
        s.serverTx = new Set();
        return false;
      case TxAction.BeginVirtual:
        s.virtualTx = 'T';
        s.beginSql = stmt.sql;
        s.txSnapshot = s.state;
        this.reply([commandComplete(beginTag(stmt))], isExt);
        return true;
      case TxAction.ChainOutsideBlock:
        s.simple.queryError(new PgError(SQLSTATE.NoActiveSqlTransaction, `${cmd === 'commit' ? 'COMMIT' : 'ROLLBACK'} AND CHAIN can only be used in transaction blocks`), isExt);
        return true;
      case TxAction.EndImplicit:
        // The servers end their implicit transactions and send the warning.
        for (const l of [...s.unitLinks]) if (l.unsynced && s.links[l.shard] === l) s.ext.internalInUnit(l, cmd === 'commit' ? COMMIT_STMT : ROLLBACK_STMT);
        this.reply([commandComplete(endTag(cmd, true))], isExt);
        return true;
      case TxAction.NoTransaction:
        this.reply([buildNotice({ severity: 'WARNING', code: '25P01', message: 'there is no transaction in progress' }), commandComplete(endTag(cmd, true))], isExt);
        return true;
      case TxAction.EndCommitted: case TxAction.EndRolledBack: {
        // The transaction ends before the answer: its ReadyForQuery shows the new status.
        const committed = action === TxAction.EndCommitted;
        if (committed && s.afterCommit.length) { s.blockingWork = this.commitMulti(stmt, isExt); return true; }
        this.endTransaction(committed);
        if (f.chain) this.chainTransaction();
        this.reply([commandComplete(endTag(cmd, committed))], isExt);
        return true;
      }
      case TxAction.RollbackAll:
        this.rollbackActive();
        s.txFailed = false;
        this.endTransaction(false);
        if (f.chain) this.chainTransaction();
        this.reply([commandComplete('ROLLBACK')], isExt);
        return true;
      case TxAction.Commit: case TxAction.CommitMulti:
        return this.commit(stmt, f.active > 1, isExt);
      default:
        return false;
    }
  }

  /** Answers a transaction-control statement (with ReadyForQuery in the simple protocol). */
  private reply(msgs: Buffer[], ext: boolean): void {
    this.s.responses.synth(msgs, ext);
    if (!ext) this.s.responses.rfq();
  }

  /** pgring's own ROLLBACK on every server inside the transaction. */
  private rollbackActive(): void {
    for (const l of this.s.attachedLinks) if (l.conn.status !== 'I') this.s.servers.sendInternal(l, 'ROLLBACK');
  }

  /** COMMIT of a healthy transaction: the transaction layer may veto it (then roll back);
   *  over several servers it is the distributed commit, else it is forwarded (false). */
  private commit(stmt: RoutedStatement, multi: boolean, ext: boolean): boolean {
    const veto = this.s.ctx.tx?.beforeCommit?.(this.s);
    if (veto) {
      // The transaction layer refuses the commit (e.g. its ZooKeeper locks were lost): roll back.
      this.rollbackActive();
      this.endTransaction(false);
      this.reply([veto.toMessage()], ext);
      return true;
    }
    if (!multi && this.s.afterCommit.length === 0) return false;
    // The pump waits for it: nothing else may run (or answer) before the commit is decided.
    this.s.blockingWork = this.commitMulti(stmt, ext);
    return true;
  }

  /** PREPARE TRANSACTION by the client: true when answered here. A failed transaction is rolled
   *  back (tag ROLLBACK, as PostgreSQL does); one on a single server is prepared there (an empty
   *  one on the shard pgring would use); one over several shards cannot be handed to one
   *  prepared-transaction id. */
  prepareTransaction(ext = false): boolean {
    if (!this.answersPrepare()) return false;
    const active = this.s.attachedLinks.filter((l) => l.conn.status !== 'I');
    if (this.s.txFailed || this.s.virtualTx === 'E') {
      for (const l of active) this.s.servers.sendInternal(l, 'ROLLBACK');
      this.s.responses.synth([commandComplete('ROLLBACK')], ext);
      this.endTransaction(false);
      if (!ext) this.s.responses.rfq();
      return true;
    }
    // A PREPARE TRANSACTION PostgreSQL would refuse (temporary objects: they may live on a
    // server session other than the one preparing), or pgring cannot run (several shards):
    // refused, and as in PostgreSQL the refused transaction is rolled back.
    const err = this.tempInTx
      ? new PgError(SQLSTATE.FeatureNotSupported, 'cannot PREPARE a transaction that has operated on temporary objects')
      : new PgError(SQLSTATE.FeatureNotSupported, `pgring: PREPARE TRANSACTION in a transaction that spans ${active.length} shards is not supported`, { hint: 'pgring commits such transactions with its own two-phase commit' });
    for (const l of active) this.s.servers.sendInternal(l, 'ROLLBACK');
    this.s.ctx.metrics?.error(err.code);
    this.s.responses.synth([err.toMessage()], ext);
    this.endTransaction(false);
    // extended protocol: the rest of the unit is skipped up to the client's Sync, as after any error
    if (ext) this.s.skipUntilSync = true; else this.s.responses.rfq();
    return true;
  }

  /** Whether pgring answers the client's PREPARE TRANSACTION itself (prepareTransaction): the
   *  transaction failed, spans several shards, or touched temporary objects. */
  answersPrepare(): boolean {
    if (this.s.txFailed || this.s.virtualTx === 'E' || this.tempInTx) return true;
    let active = 0;
    for (const l of this.s.attachedLinks) if (l.conn.status !== 'I') active++;
    return active > 1;
  }

  /** AND CHAIN answered by pgring: the next transaction starts at once, with the same BEGIN
   *  (so the same isolation level, read-only and deferrable modes), on the shards it reaches. */
  chainTransaction(): void {
    this.s.virtualTx = 'T';
    this.s.txSnapshot = this.s.state;
    // Links that stay attached (pinned sessions, or queued behind pgring's own ROLLBACK) start it now.
    for (const l of this.s.links) if (l) this.s.servers.sendInternal(l, this.s.beginSql);
  }

  async commitMulti(stmt: RoutedStatement, ext: boolean): Promise<void> {
    const links = this.s.attachedLinks.filter((l) => l.conn.status !== 'I');
    const after = this.s.afterCommit;
    try {
      if (links.length) await this.commitLinks(links);
      this.endTransaction(true);
      if (after.length) await this.afterCommitted(after, ext);
      this.s.responses.synth([commandComplete('COMMIT')], ext);
      if (stmt.plan.chain) this.chainTransaction();
    } catch (e) {
      this.endTransaction(false);
      const err = e instanceof PgError ? e : new PgError(SQLSTATE.InternalError, (e as Error).message);
      this.s.responses.synth([err.toMessage()], ext);
    }
    // Extended protocol: the client's Sync follows, and the pump writes its ReadyForQuery in the
    // same socket write as this answer (one wake-up of the client instead of two).
    if (!ext) { this.s.responses.rfq(); this.s.flush(); }
  }

  /** The after-commit work recorded so far, taken (a statement outside a transaction: already committed). */
  takeAfterCommit(): AfterCommit[] {
    const a = this.s.afterCommit;
    this.s.afterCommit = [];
    return a;
  }

  /** After a commit: renames and column changes into the cluster definition (before the client's
   *  answer, so its next statement finds the new names), then the held NOTIFYs. */
  async afterCommitted(after: AfterCommit[], ext: boolean): Promise<void> {
    for (const a of after) if (a.follow) await this.s.ctx.followInDefinition?.(a.follow);
    const notifies = after.filter((a) => a.notify !== undefined);
    if (notifies.length) await this.sendNotifies(notifies.map((a) => a.notify!), ext);
  }

  /** The committed transaction's NOTIFYs, in order, on the shard of every LISTEN (as one string: one
   *  implicit transaction, so PostgreSQL folds duplicates as it would have in the client's). */
  private async sendNotifies(notifies: string[], ext: boolean): Promise<void> {
    try {
      const link = await this.s.servers.link(this.s.routing.notifyShard());
      await this.s.servers.runOnLinks([link], notifies.join('; '));
    } catch (e) {
      this.s.ctx.log.warn({ err: (e as Error).message }, 'could not deliver the notifications of a committed transaction');
      this.s.responses.synth([buildNotice({ severity: 'WARNING', code: (e as PgError).code ?? SQLSTATE.InternalError, message: `pgring: the transaction committed, but its notifications could not be sent: ${(e as Error).message}` })], ext);
    }
  }

  txControlInMulti(stmt: RoutedStatement): boolean {
    // Inside a split multi-statement string, BEGIN/COMMIT behave like separate statements.
    const cmd = stmt.plan.command;
    if (cmd === 'begin' && this.s.txStatus === 'I' && this.s.attachedLinks.length === 0) {
      this.s.virtualTx = 'T'; this.s.beginSql = stmt.sql; this.s.txSnapshot = this.s.state;
      this.s.responses.synth([commandComplete('BEGIN')], false);
      return true;
    }
    return false;
  }
}
