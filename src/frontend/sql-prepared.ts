// SQL DEALLOCATE and EXECUTE of the client's protocol-level statements (issue 20, item 2).
// The server knows a protocol-level statement by pgring's shared name (prepared.ts), so:
// - DEALLOCATE name / DEALLOCATE PREPARE name of one is answered by pgring in every form (simple
//   Query, a multi-statement string, Parse/Bind/Execute): the client's name is dropped, as Close
//   does; the server keeps the shared copy. DEALLOCATE ALL also drops the client's named ones.
// - EXECUTE name(...) of one is rewritten to EXECUTE <shared name>(...), after making sure the
//   server connection has it prepared (a Parse injected as before a Bind).
import { PgError, SQLSTATE } from '../protocol/errors';
import { commandComplete, parseMsg, query, syncMsg } from '../protocol/messages';
import type { RoutedStatement } from '../router/router';
import type { ClientStatement } from './prepared';
import type { ClientSession } from './client';
import { K } from './session-types';
import type { Link } from './session-types';

/** The text of `EXECUTE name...` with the name replaced (null when the text has another form). */
export function renameExecute(sql: string, serverName: string): string | null {
  const re = /^(\s*execute\s+)("(?:[^"]|"")*"|[^\s(;]+)/i;
  return re.test(sql) ? sql.replace(re, `$1${serverName}`) : null;
}

export class SqlPrepared {
  constructor(private readonly s: ClientSession) {}

  /** The client's protocol-level statement an EXECUTE names, if it names one. */
  executeTarget(stmt: RoutedStatement): ClientStatement | null {
    const name = stmt.plan.execute;
    if (name === undefined) return null;
    const cs = this.s.stmts.get(name);
    return cs && cs.serverName !== '' ? cs : null;
  }

  /** DEALLOCATE of protocol-level statements that pgring answers itself: the tag, or null when
   *  the server must run it (an SQL-level statement, or ALL in a session holding SQL-level ones). */
  deallocate(stmt: RoutedStatement): string | null {
    const name = stmt.plan.deallocate;
    if (name !== undefined) {
      if (!this.s.stmts.has(name)) return null;
      this.s.stmts.delete(name);
      return 'DEALLOCATE';
    }
    for (const n of [...this.s.stmts.keys()]) if (n !== '') this.s.stmts.delete(n);
    return this.s.pins.has('prepare') ? null : 'DEALLOCATE ALL';
  }

  /** Parse/Bind/Execute of a DEALLOCATE (virtual portal): answered here or run on the session's server. */
  executeDeallocate(stmt: RoutedStatement): void {
    const tag = this.deallocate(stmt);
    if (tag !== null) { this.s.responses.synth([commandComplete(tag)], true); return; }
    const link = this.s.attachedLinks[0];
    if (!link) {
      const name = stmt.plan.deallocate ?? '';
      throw new PgError(SQLSTATE.UndefinedPreparedStatement, `prepared statement "${name}" does not exist`);
    }
    this.s.unitLinks.add(link);
    link.unsynced = true;
    const p = this.s.responses.push(K.ExecSimple, link, true);
    p.plans = [stmt];
    link.conn.busy = true;
    link.conn.write(query(stmt.sql, this.s.codec));
  }

  /** Simple Query `EXECUTE name(...)` of a protocol-level statement: run under the shared name. */
  async runExecute(stmt: RoutedStatement, cs: ClientStatement, plans: RoutedStatement[]): Promise<void> {
    const sql = renameExecute(stmt.sql, cs.serverName);
    if (sql === null || plans.length !== 1) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: this form of EXECUTE of a protocol-level prepared statement is not supported');
    this.checkTarget(cs);
    const rewritten: RoutedStatement = { ...stmt, sql };
    const shard = this.s.routing.preferredShardFor(cs.stmt);
    // A write takes the locks of the statement it runs (its keys are in the EXECUTE's arguments: key-less).
    await this.s.simple.beforeWrite(cs.stmt, [shard], null, null);
    const link = await this.s.servers.link(shard);
    this.prepareWithSync(link, cs);
    this.s.simple.sendQuery(link, query(sql), [rewritten]);
  }

  /** The EXECUTE's arguments are not bind parameters pgring routes by: one shard only. */
  checkTarget(cs: ClientStatement): void {
    if (cs.stmt.plan.target === 'sharded' && this.s.ctx.shards.shardCount > 1) {
      throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: SQL EXECUTE of a protocol-level statement on a sharded table is not supported; bind it with the extended protocol');
    }
  }

  /** Makes sure `link` has `cs` prepared before a simple Query: Parse + Sync (a failed Parse
   *  would otherwise make the server skip the Query, waiting for a Sync that never comes). */
  prepareWithSync(link: Link, cs: ClientStatement): void {
    const before = link.queue.length;
    this.s.prepared.ensurePrepared(link, cs);
    if (link.queue.length === before) return; // already there
    this.s.responses.push(K.Sync, link, true);
    link.conn.write(syncMsg);
  }

  /** Parse of `EXECUTE name(...)` naming a protocol-level statement: the text under the shared name. */
  rewriteParse(name: string, sql: string, types: number[], cs: ClientStatement): { sql: string; msg: Buffer } | null {
    this.checkTarget(cs);
    const out = renameExecute(sql, cs.serverName);
    return out === null ? null : { sql: out, msg: parseMsg(name, out, types, this.s.codec) };
  }
}
