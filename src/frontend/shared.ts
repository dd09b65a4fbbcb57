// The state the modules of one client session share: one object (the ClientSession itself,
// which extends this class), each field owned by one module. The owner is the module that
// decides the field's value; the others read it, or change it only through the owner's
// methods unless noted. Fields only one module uses live in that module's class instead.
import type { ReadUse } from './read-routing';
import type * as net from 'node:net';
import { randomInt } from 'node:crypto';
import type { UserConfig } from '../config/types';
import type { TxStatus } from '../protocol/messages';
import { StartupReader } from '../protocol/reader';
import type { Router } from '../router/router';
import type { ClientAuth } from './auth';
import type { ClientStatement } from './prepared';
import { PinReason, SessionState } from './session-state';
import { codecFor, encodingOfSet, type Codec } from '../protocol/encoding';
import type { ProxyContext, Link, AfterCommit } from './session-types';
import type { ServerConnection } from '../backend/server';

/** Output queued for a client (beyond what the kernel took) above which its servers are not read. */
const CLIENT_HIGH_WATER = 1 << 20;
/** Bytes queued for a server (beyond what the kernel took) above which its client is not read. */
const SERVER_HIGH_WATER = 1 << 20;
/** Client messages waiting in the inbox (bytes) above which the client is not read. */
const INBOX_HIGH_WATER = 8 << 20;
import { valueInOptions, valueOfSetSql } from '../txn/wait-limit';

let nextPid = 1_000_000 + randomInt(1_000_000);

export abstract class SessionShared {
  /** The client's socket: the accepted one, or the TLS socket over it after SSLRequest. [connection.ts] */
  socket: net.Socket;

  constructor(socket: net.Socket, readonly ctx: ProxyContext) {
    this.socket = socket;
    this.secret = ctx.cancelSecret?.() ?? randomInt(0x7fffffff); // names the issuing proxy (cluster/cancel-peers.ts)
  }

  // ---- connection.ts: identity, start-up and authentication ----
  /** BackendKeyData pid (the server's own in single-shard session pooling). */
  pid = nextPid++;
  readonly secret: number;
  readonly connectedAt = Date.now();
  phase: 'startup' | 'auth' | 'ready' | 'closed' = 'startup';
  user = '';
  database = '';
  applicationName = '';
  userConfig: UserConfig | undefined;
  /** Connected to the admin console (database "pgring"). */
  admin = false;
  /** Startup parameters sent on to servers, and their canonical key for the pools. */
  startupParams: [string, string][] = [];
  paramsKey = '';
  /** Identifies the server credentials for Topology.poolFast (set once the startup packet is read). */
  credKey = '';
  tls = false;
  /** Accepted on listen.unixSocketDir: never TLS (SSLRequest answered N, tls.require does not apply). */
  unixSocket = false;
  /** A replication connection's relay: client bytes go here as they are (replication.ts). */
  relay: ((chunk: Buffer) => void) | null = null;
  /** A replication connection's dedicated walsender connection (replication.ts; closed with the client). */
  replicationConn: import('../backend/server').ServerConnection | null = null;
  /** Reads the startup packet(s) (dispatch.ts clears it once a startup packet is complete). */
  startupReader: StartupReader | null = new StartupReader();
  /** The authentication exchange in progress (dispatch.ts feeds it PasswordMessages). */
  auth: ClientAuth | null = null;
  authTimer: NodeJS.Timeout | undefined;

  // ---- dispatch.ts: the ordered inbox ----
  /** Client messages waiting for the one being handled (drained by Dispatch.pump). */
  inbox: { type: number; msg: Buffer }[] = [];
  /** What the open transaction's commit does after it, in order (transaction.ts afterCommitted):
   *  NOTIFYs held until it commits, renames and column changes the cluster definition follows. */
  afterCommit: AfterCommit[] = [];
  /** SET LOCAL statements of the open transaction, with the savepoints open when each ran: a shard
   *  that joins the transaction later runs them after its BEGIN, between the same savepoints. */
  localSets: { sql: string; depth: number }[] = [];
  /** Bytes of the messages in `inbox`. */
  inboxBytes = 0;
  /** Work the inbox must wait for before the next client message (a multi-shard COMMIT, a
   *  statement pipelined behind unanswered requests). Set by simple/extended/transaction, awaited
   *  and cleared by the pump. */
  blockingWork: Promise<void> | null = null;

  // ---- shared.ts: bytes out to the client ----
  /** Messages for the client, written in one socket write by flush(). */
  readonly wq: Buffer[] = [];

  // ---- links.ts: server connections ----
  /** The link to each shard's server connection, by shard index (connection.ts empties it at close). */
  readonly links: (Link | undefined)[] = [];
  /** per shard, the server connection this session last gave back (preferred when idle again) */
  readonly lastConns: (ServerConnection | undefined)[] = [];
  /** Since when the client waits for a pool (0: not waiting); shown by the admin console. */
  waitingSince = 0;
  /** The statement being linked only reads (a plain SELECT): a shard without a live primary
   *  may serve it from a live replica. Set by simple/extended where a statement's plan is known, before linking. */
  readOnlyUse: ReadUse = false;

  // ---- extended.ts: the current extended-protocol unit and client statements ----
  /** Links that got extended-protocol messages since the last Sync. */
  readonly unitLinks = new Set<Link>();
  /** pgring answered an extended-protocol message with an error: skip to Sync (set by simple.ts queryError). */
  skipUntilSync = false;
  /** The client's prepared statements by name ('' = unnamed); a simple Query and DEALLOCATE drop them (simple.ts, transaction.ts). */
  readonly stmts = new Map<string, ClientStatement>();
  /** server_version_num of the servers the client was told about at login (pg_prepared_statements' columns depend on it) */
  serverVersionNum = 150000;

  // ---- transaction.ts: transaction and session state ----
  /** SET state the client built (replayed on every server connection it gets). */
  state: SessionState = SessionState.empty;
  /** `state` at BEGIN: what a ROLLBACK returns to (extended.ts takes it when a unit opens its own transaction). */
  txSnapshot: SessionState = SessionState.empty;
  /** BEGIN answered by pgring and not yet sent to any server ('E' after a failure pgring reported: simple.ts markFailed). */
  virtualTx: null | 'T' | 'E' = null;
  /** Counts implicit transactions (Transaction.beginImplicit); a link that joined one notes its number. */
  implicitSeq = 0;
  /** pgring itself failed a statement of a transaction running on servers (the servers do not know). Set by simple.ts (markFailed). */
  txFailed = false;
  /** The client's BEGIN text (replayed on shards that join the transaction). */
  beginSql = 'BEGIN';
  /** While a BEGIN that a server ran (session pooling, pinned sessions) is open: the links in the
   *  transaction (transaction.ts opens and ends it, links.ts adds to it). Every other link a
   *  statement of it reaches gets the BEGIN first, or the statement would run in autocommit
   *  there, outside the client's transaction. */
  serverTx: Set<Link> | null = null;
  /** Savepoints of the open transaction, oldest first (replayed on shards that join it). */
  savepoints: string[] = [];
  /** Why the session keeps its server connections (transaction pooling). */
  readonly pins = new Set<PinReason>();
  /** Set by the transaction layer (src/txn): state to drop when the transaction ends. */
  txData: unknown = null;

  // ---- session-route.ts: SET pgring.shard_key / pgring.shard (simple.ts clears them at RESET ALL) ----
  routeShardKey: string | null = null;
  /** cursor name -> the shard its DECLARE went to (FETCH, MOVE and CLOSE follow it); entries of
   *  cursors that ended are harmless: that shard answers "cursor does not exist" */
  cursorShards: Map<string, number> | null = null;
  routeShard: string | null = null;
  /** The shard found holding the gid of the COMMIT / ROLLBACK PREPARED about to be routed (prepared-gid.ts). */
  gidShard: { gid: string; shard: number } | null = null;

  // ---- simple.ts / extended.ts: what the admin console shows ----
  lastQuery = '';
  queryStart = 0;

  // ---- copy-in.ts ----
  /** Links a COPY FROM STDIN is running on (its CopyData goes there). Set by responses.ts at CopyInResponse. */
  copyLinks: Link[] | null = null;
  /** COPY FROM STDIN split across shards by key. */
  /** COPY FROM STDIN that pgring cuts itself (CopySplitter, or copy-in.ts's reference-table chunks) */
  copySplit: { clientMessage(type: number, msg: Buffer): void } | null = null;

  // ---- derived state ----
  /** The router for this database (tables' column lists learned from its catalog). */
  get router(): Router { return this.ctx.routerFor?.(this.database) ?? this.ctx.router; }
  get key(): string { return `${this.pid}:${this.secret}`; }
  /** A setting's session-level value as pgring knows it (SET in this session, else the startup packet), or null. */
  setting(name: string): string | null {
    const sql = this.state.sets.get(name);
    if (sql !== undefined) return valueOfSetSql(sql);
    const direct = this.startupParams.find(([k]) => k === name)?.[1];
    if (direct !== undefined) return direct;
    const opts = this.startupParams.find(([k]) => k === 'options')?.[1];
    return opts ? valueInOptions(opts, name) : null;
  }
  private codecOf: SessionState | null = null;
  private codecNow: Codec | null = null;
  /** The client's encoding when it is not UTF8 (protocol/encoding.ts), else null; follows SET. */
  get codec(): Codec | null {
    if (this.codecOf === this.state) return this.codecNow;
    this.codecOf = this.state;
    const set = this.state.sets.get('client_encoding');
    const value = set !== undefined ? encodingOfSet(set) : this.setting('client_encoding');
    this.codecNow = value ? codecFor(value) : null;
    return this.codecNow;
  }
  /** Client text (a statement, a parameter, a COPY field) as a string, in the client's encoding. */
  text(b: Buffer, start = 0, end = b.length): string { const c = this.codec; return c ? c.decode(b, start, end) : b.toString('utf8', start, end); }
  /** A statement pgring writes to a server for this client, in the client's encoding. */
  sqlBytes(sql: string): Buffer | null { const c = this.codec; return c ? c.encode(sql) : null; }
  get poolMode() { return this.userConfig?.poolMode ?? this.ctx.config.pool.mode; }
  get attachedLinks(): Link[] { return this.links.filter((l): l is Link => l !== undefined); }

  /** Transaction status as the client must see it. */
  get txStatus(): TxStatus {
    if (this.txFailed) return 'E';
    let t = false;
    for (const l of this.links) {
      if (!l) continue;
      if (l.conn.status === 'E') return 'E';
      if (l.conn.status === 'T') t = true;
    }
    if (this.virtualTx) return this.virtualTx;
    return t ? 'T' : 'I';
  }

  // ---- output ----
  write(b: Buffer): void { this.wq.push(b); }

  /** server connections whose reads wait for this client's socket to drain */
  private readsHeld: ServerConnection[] | null = null;

  flush(): void {
    const q = this.wq; // reused: called after every socket read, usually with nothing queued
    if (q.length === 0) return;
    if (this.phase === 'closed') { q.length = 0; return; }
    if (q.length === 1) { this.socket.write(q[0]!); q.length = 0; return; }
    // Messages forwarded from one server read are usually adjacent slices of one chunk.
    let contiguous = true;
    const first = q[0]!;
    const ab = first.buffer; // a C++ call per access: once
    let end = first.byteOffset + first.length;
    for (let i = 1; i < q.length; i++) {
      const b = q[i]!;
      if (b.byteOffset !== end || b.buffer !== ab) { contiguous = false; break; }
      end += b.length;
    }
    this.socket.write(contiguous ? Buffer.from(ab, first.byteOffset, end - first.byteOffset) : Buffer.concat(q));
    q.length = 0;
    if (this.socket.writableLength > CLIENT_HIGH_WATER) this.holdServerReads();
  }

  /** The client is not read (see checkInbound). */
  private clientReadsHeld = false;

  /** The client sends faster than its servers take it in (a large COPY FROM STDIN, a long
   *  pipeline, messages queued behind a lock wait): stop reading the client until they catch up,
   *  instead of holding it all in this process. A PostgreSQL backend does the same by reading its
   *  socket only when it is ready for more. Called after each client read. */
  checkInbound(): void {
    if (this.clientReadsHeld || this.phase === 'closed') return;
    const full = this.fullServer();
    if (full === null && this.inboxBytes <= INBOX_HIGH_WATER) return;
    this.clientReadsHeld = true;
    this.socket.pause();
    if (full) this.whenDrained(full);
  }

  /** Reads the client again once nothing is over its limit (called on a server's drain and as the inbox empties). */
  resumeInbound(): void {
    if (!this.clientReadsHeld) return;
    if (this.phase === 'closed') { this.clientReadsHeld = false; return; }
    if (this.inboxBytes > INBOX_HIGH_WATER) return;
    const full = this.fullServer();
    if (full) { this.whenDrained(full); return; }
    this.clientReadsHeld = false;
    this.socket.resume();
  }

  private fullServer(): net.Socket | null {
    for (const l of this.links) if (l && l.conn.socket.writableLength > SERVER_HIGH_WATER) return l.conn.socket;
    return null;
  }

  /** The server socket checkInbound waits to drain (one wait at a time). */
  private drainWait: net.Socket | null = null;

  private whenDrained(socket: net.Socket): void {
    if (this.drainWait !== null) return;
    this.drainWait = socket;
    const go = (): void => { socket.off('drain', go); socket.off('close', go); this.drainWait = null; this.resumeInbound(); };
    socket.once('drain', go);
    socket.once('close', go);
  }

  /** The client reads slower than its servers answer (a large result, a dump to a slow disk):
   *  stop reading from its servers until its socket drains, instead of holding everything in
   *  this process (PgBouncer does the same by not reading while its send buffer is full). */
  private holdServerReads(): void {
    if (this.readsHeld !== null || this.phase === 'closed') return;
    const held: ServerConnection[] = [];
    for (const l of this.links) if (l) { l.conn.holdReads(this); held.push(l.conn); }
    this.readsHeld = held;
    this.socket.once('drain', () => {
      this.readsHeld = null;
      for (const c of held) c.releaseReads(this);
    });
  }
}
