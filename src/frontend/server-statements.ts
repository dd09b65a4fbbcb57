// Statements pgring prepared on server connections (shared by text across clients): which
// connection has which, eviction, staleness after DDL, and injecting a Parse before a Bind.
import { F } from '../protocol/codes';
import { targeted } from '../protocol/messages';
import { ClientStatement, bumpGeneration, prepareSeq } from './prepared';
import type { ClientSession } from './client';
import { K } from './session-types';
import type { Link } from './session-types';

export class ServerStatements {
  constructor(private readonly s: ClientSession) {}

  markPrepared(link: Link, cs: ClientStatement): void {
    if (cs.serverName === '') { link.unnamed = cs; return; }
    const prepared = link.conn.prepared;
    prepared.delete(cs.serverName);
    prepared.set(cs.serverName, prepareSeq());
    link.conn.recentPrepared = cs.serverName;
    link.conn.recentPreparedSize = prepared.size;
    const max = this.s.ctx.config.pool.preparedStatementCacheSize;
    if (max > 0 && prepared.size > max) {
      // Evict the least recently used statement from this server connection.
      this.closeServerStatement(link, prepared.keys().next().value as string);
    }
  }

  /** Closes a statement pgring prepared on the server of `link`. */
  closeServerStatement(link: Link, name: string): void {
    link.conn.prepared.delete(name);
    this.s.responses.push(K.InternalClose, link, true);
    link.conn.write(targeted(F.Close, 'S', name));
  }

  unmarkPrepared(link: Link, cs: ClientStatement): void {
    if (cs.serverName === '') { if (link.unnamed === cs) link.unnamed = null; return; }
    link.conn.prepared.delete(cs.serverName);
  }

  /**
   * "cached plan must not change result type" (0A000) at Bind: a table changed under a server
   * statement that pgring shares by text. PostgreSQL clients (pgjdbc) heal by parsing the
   * statement again, which pgring answered from the stale copy, so the retry failed the same
   * way: forget the copy, and close it on the server before the next Parse of that text.
   */
  stalePrepared(link: Link, cs: ClientStatement): void {
    link.conn.prepared.delete(cs.serverName);
    link.conn.stalePrepared.add(cs.serverName);
    // First report of this change: every connection of the pool (same database) has the stale
    // plan; re-prepare it everywhere, and fail the older client statements ourselves (isStale).
    if (bumpGeneration(cs)) for (const c of link.pool.all) if (c.prepared.delete(cs.serverName)) c.stalePrepared.add(cs.serverName);
  }

  closeStale(link: Link, cs: ClientStatement): void {
    if (!link.conn.stalePrepared.delete(cs.serverName)) return;
    this.s.responses.push(K.InternalClose, link, true);
    link.conn.write(targeted(F.Close, 'S', cs.serverName));
  }

  touchPrepared(link: Link, name: string, at: number): void {
    const conn = link.conn;
    const prepared = conn.prepared;
    // Already the most recent (the same statement Bound again, nothing added or removed since):
    // no Map delete + set per Bind.
    if (conn.recentPrepared === name && conn.recentPreparedSize === prepared.size) return;
    prepared.delete(name);
    prepared.set(name, at);
    conn.recentPrepared = name;
    conn.recentPreparedSize = prepared.size;
  }

  /** Makes sure the server connection of `link` has prepared `cs` (injecting a Parse if not,
   *  or if its copy there is older than the client's Parse). */
  ensurePrepared(link: Link, cs: ClientStatement): void {
    if (cs.serverName === '') { if (link.unnamed === cs) return; } else {
      const at = link.conn.prepared.get(cs.serverName);
      if (at !== undefined && at > cs.parsedAt) { this.touchPrepared(link, cs.serverName, at); return; }
      if (at !== undefined) this.closeServerStatement(link, cs.serverName);
    }
    this.closeStale(link, cs);
    const p = this.s.responses.push(K.InternalParse, link, true);
    this.markPrepared(link, cs);
    p.onError = () => this.unmarkPrepared(link, cs);
    link.conn.write(cs.parse);
  }
}
