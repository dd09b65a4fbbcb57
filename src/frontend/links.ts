// Links to server connections: acquiring (now or after waiting for the pool), bringing a
// connection to the session's state, releasing it when the transaction is over, its loss.
import * as reads from './read-routing';
import { Fifo } from './fifo';
import { readTime } from '../clock';
import { PgError, SQLSTATE, parseErrorFields } from '../protocol/errors';
import { query } from '../protocol/messages';
import type { Pool } from '../backend/pool';
import type { ServerConnection } from '../backend/server';
import { SessionState } from './session-state';
import { COLLATION_SQL, collationKnown, collationPending, noteCollation } from '../router/collation';
import type { ClientSession } from './client';
import { K } from './session-types';
import type { Pending, Link } from './session-types';
import { noteBackendOwner, quoteIdent } from './session-util';

export class ServerLinks {
  constructor(private readonly s: ClientSession) {}

  onServerClose(conn: ServerConnection, err: PgError): void {
    const link = conn.tag as Link | null;
    if (!link || this.s.links[link.shard] !== link) return;
    this.s.links[link.shard] = undefined;
    this.s.unitLinks.delete(link);
    if (this.s.responses.waiters !== null) this.s.responses.wake();
    // In session pooling the server connection is the client's session, as in PostgreSQL: its
    // end ends the client too (even idle), instead of a silent new session on the next query.
    const busy = link.queue.length > 0 || conn.status !== 'I' || this.s.pins.size > 0 || this.s.virtualTx !== null
      || this.s.poolMode === 'session';
    if (!busy || this.s.phase !== 'ready') return;
    // The transaction (or session state) on that server is gone: tell the client why and end it,
    // as PostgreSQL itself would when its backend is terminated.
    if (conn.fatalRelayed) {
      // The client already has the server's FATAL (e.g. pg_terminate_backend): just end, as
      // PostgreSQL closes after it.
      this.s.flush();
      try { this.s.socket.end(); } catch { /* gone */ }
      this.s.lifecycle.close();
      return;
    }
    const fatal = err.severity === 'FATAL' ? err : PgError.fatal(err.code, err.message, err.opts);
    this.s.lifecycle.fatal(fatal);
  }

  /** The link to `shard`, acquiring a pooled server connection and bringing it to this session's state. */
  async link(shard: number): Promise<Link> {
    const now = this.linkNow(shard);
    if (now) return now;
    if (this.s.ctx.topology.holding(shard)) await this.s.ctx.topology.holdWrites(shard); // failover.holdWritesMs
    const pool = this.s.ctx.topology.pool(shard, this.s.lifecycle.cred(), reads.readIntent(this.s, shard, this.s.readOnlyUse));
    this.s.waitingSince = Date.now();
    const conn = await pool.acquire(this.s.startupParams, this.s.paramsKey, this.s.lastConns[shard], this.s);
    this.s.waitingSince = 0;
    if (this.s.phase === 'closed') { pool.release(conn); throw new PgError(SQLSTATE.AdminShutdown, 'client gone'); }
    const raced = this.s.links[shard];
    if (raced) { pool.release(conn); if (this.s.serverTx !== null) this.joinServerTx(raced); return raced; }
    return this.attach(shard, pool, conn);
  }

  /** The link to `shard` if it exists or an idle pooled connection can be had without waiting; else null. */
  linkNow(shard: number): Link | null {
    const existing = this.s.links[shard];
    if (existing) {
      if (this.s.serverTx !== null) this.joinServerTx(existing);
      // attached before an implicit transaction began (session pooling; a read for this
      // statement): it joins when the statement first uses it, as a newly attached link does
      // (not a session holding temporary objects: a transaction that touched them cannot be
      // prepared for two-phase commit, so such a session's links keep running on their own)
      else if (this.s.virtualTx && existing.joinedImplicit !== this.s.implicitSeq && existing.conn.status === 'I' && !this.s.pins.has('temp_table')) {
        existing.joinedImplicit = this.s.implicitSeq;
        this.sendInternal(existing, this.s.beginSql);
        this.replayInTx(existing);
      }
      return existing;
    }
    const pool = this.s.ctx.topology.poolFast(shard, this.s.credKey, this.s.lifecycle.credFn, reads.readIntent(this.s, shard, this.s.readOnlyUse));
    const conn = pool.tryAcquire(this.s.paramsKey, this.s.lastConns[shard], this.s);
    return conn ? this.attach(shard, pool, conn) : null;
  }

  /** Links for all of `shards` without waiting, or null when one would have to wait (then use link()). */
  linksNow(shards: number[]): Link[] | null {
    const out: Link[] = [];
    for (const s of shards) {
      const l = this.linkNow(s);
      if (!l) return null;
      out.push(l);
    }
    return out;
  }

  attach(shard: number, pool: Pool, conn: ServerConnection): Link {
    const link: Link = { shard, conn, pool, queue: new Fifo<Pending>(), unsynced: false, skipping: false, unnamed: null, txStart: readTime(), bytesIn0: conn.bytesIn, bytesOut0: conn.bytesOut };
    conn.owner = this.s;
    conn.tag = link;
    this.s.links[shard] = link;
    noteBackendOwner(shard, conn.pid, this.s.pid);
    if (this.s.ctx.shards.shardCount > 1 && !collationKnown(this.s.database)) {
      // read once per database: the order merged text is sorted in (router/collation.ts)
      const db = this.s.database;
      collationPending(db);
      this.queryRows(link, COLLATION_SQL).then((rows) => noteCollation(db, rows[0]), () => noteCollation(db, undefined));
    }
    if (conn.appliedState !== (this.s.state.isEmpty ? null : this.s.state)) {
      const sql = this.s.state.replaySql(conn.appliedState as SessionState | null);
      conn.appliedState = this.s.state.isEmpty ? null : this.s.state;
      if (sql) this.sendInternal(link, sql);
    }
    if (this.s.virtualTx) {
      link.joinedImplicit = this.s.implicitSeq;
      this.sendInternal(link, this.s.beginSql);
      this.replayInTx(link);
    } else if (this.s.serverTx !== null) this.joinServerTx(link);
    return link;
  }

  /** Brings `link` into the open server-run transaction (the first link carries the BEGIN itself). */
  private joinServerTx(link: Link): void {
    const tx = this.s.serverTx!;
    if (tx.has(link)) return;
    const first = tx.size === 0;
    tx.add(link);
    if (first || link.conn.status !== 'I') return;
    this.sendInternal(link, this.s.beginSql);
    this.replayInTx(link);
  }

  /** The open transaction's SET LOCALs and SAVEPOINTs in their order, on a shard joining it after its BEGIN. */
  private replayInTx(link: Link): void {
    const sets = this.s.localSets, sps = this.s.savepoints;
    if (sets.length === 0 && sps.length === 0) return;
    let j = 0;
    for (let d = 0; d <= sps.length; d++) {
      let sql = '';
      while (j < sets.length && sets[j]!.depth <= d) sql += (sql ? '; ' : '') + sets[j++]!.sql;
      if (sql) this.sendInternal(link, sql);
      if (d < sps.length) this.sendInternal(link, `SAVEPOINT ${quoteIdent(sps[d]!)}`);
    }
  }


  sendInternal(link: Link, sql: string): void {
    link.unnamed = null;   // a simple Query drops the server's unnamed statement
    this.s.responses.push(K.Internal, link, false);
    link.conn.write(query(sql));
  }

  /** Releases links back to their pools when the transaction is over (transaction pooling). */
  afterReady(): void {
    if (this.s.poolMode === 'session' || this.s.pins.size || this.s.virtualTx || this.s.copyLinks) return;
    for (const l of this.s.links) {
      if (!l || l.queue.length || l.unsynced || l.conn.status !== 'I') continue;
      this.releaseLink(l);
    }
  }

  releaseLink(l: Link): void {
    reads.onReleased(this.s, l.shard); // read-your-writes
    this.s.links[l.shard] = undefined;
    this.s.unitLinks.delete(l);
    l.conn.owner = null;
    l.conn.tag = null;
    // The unnamed statement of this client stays on the server connection, harmlessly.
    const st = l.pool.stats;
    st.totalXact++;
    const us = (readTime() - l.txStart) * 1000;
    st.totalXactTimeUs += us;
    st.bytesIn += l.conn.bytesIn - l.bytesIn0;
    st.bytesOut += l.conn.bytesOut - l.bytesOut0;
    this.s.ctx.metrics?.transaction(l.shard, us);
    this.s.lastConns[l.shard] = l.conn;
    l.conn.lastUser = this.s.phase === 'closed' ? null : this.s;
    l.pool.release(l.conn);
  }

  /** Runs one SQL string on each link (internal, swallowed); rejects with the first server error. */
  runOnLinks(links: Link[], sql: string): Promise<void> {
    return Promise.all(links.map((l) => new Promise<void>((resolve, reject) => {
      if (l.conn.closed) { reject(new PgError(SQLSTATE.ConnectionFailure, `${sql} not sent: the connection to shard "${this.s.ctx.topology.shards[l.shard]?.name}" is closed`)); return; } // a dead (or fenced) server never answers
      let err: PgError | null = null;
      const p = this.s.responses.push(K.InternalRows, l, false);
      p.rows = [];
      // Internal errors are not shown to the client here: the caller decides.
      p.onError = (m) => {
        const f = m ? parseErrorFields(m) : {};
        err = err ?? new PgError(f.C ?? SQLSTATE.InternalError, `${f.M ?? `${sql} failed`} (shard "${this.s.ctx.topology.shards[l.shard]?.name}")`, { detail: f.D, hint: f.H });
      };
      const origOut = p;
      origOut.onDone = () => (err ? reject(err) : resolve());
      l.unnamed = null;   // a simple Query drops the server's unnamed statement
      l.conn.write(query(sql));
    }))).then(() => undefined);
  }

  /** Runs a catalog query on a link for pgring itself; resolves with text rows. */
  queryRows(link: Link, sql: string): Promise<(string | null)[][]> {
    return new Promise((resolve, reject) => {
      const rows: (string | null)[][] = [];
      let err: PgError | null = null;
      const p = this.s.responses.push(K.InternalRows, link, false);
      p.rows = rows;
      p.onError = (m) => {
        const f = m ? parseErrorFields(m) : null;
        err = f?.C && f.M ? new PgError(f.C, f.M, { detail: f.D, hint: f.H }) : new PgError(SQLSTATE.InternalError, `pgring catalog query failed on shard "${this.s.ctx.topology.shards[link.shard]?.name}"`);
      };
      p.onDone = () => (err ? reject(err) : resolve(rows));
      link.unnamed = null;   // a simple Query drops the server's unnamed statement
      link.conn.write(query(sql));
      this.s.flush();
    });
  }
}
