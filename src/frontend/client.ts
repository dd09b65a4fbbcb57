// One client connection: startup, authentication, then the query loop.
//
// Client messages are handled strictly in order (an inbox drained by `pump`,
// which only awaits when a server connection must be acquired). Every request
// sent to a server gets a Pending entry in two queues: the client's (response
// order) and the server link's (which response belongs to what). Responses of
// the entry at the head of the client queue stream straight to the client;
// later entries buffer until they reach the head. Entries pgring answers itself
// (synthetic ParseComplete, ReadyForQuery, errors) sit in the same queue, so the
// client always sees responses in exactly the order PostgreSQL would send them.
import * as net from 'node:net';
import * as tls from 'node:tls';
import { randomInt } from 'node:crypto';
import type { Config, KeyType, UserConfig } from '../config/types';
import { B, F } from '../protocol/codes';
import { Fifo } from './fifo';
import { PgError, SQLSTATE, parseErrorFields } from '../protocol/errors';
import {
  authOk, backendKeyData, bindComplete, buildError, buildNotice, closeComplete, commandComplete, commandTag,
  decodeBind, decodeDataRow, decodeExecute, decodeParse, decodeTargeted, emptyQueryResponse, noData, parameterStatus,
  parseComplete, query, queryText, readyForQuery, renameBind, syncMsg, targeted, TxStatus, Writer,
} from '../protocol/messages';
import { MessageReader, ProtocolViolation, StartupReader } from '../protocol/reader';
import { readAccepted } from '../protocol/socket-reader';
import { parseStartup } from '../protocol/startup';
import type { Pool } from '../backend/pool';
import { beginWriteBatch, endWriteBatch } from '../backend/server';
import type { ServerConnection, ServerOwner } from '../backend/server';
import { resetAndRelease } from '../backend/cleanup';
import type { Topology } from '../backend/topology';
import type { Logger } from '../log';
import type { Plan, RoutedStatement } from '../router/router';
import { Router } from '../router/router';
import { ClientAuth } from './auth';
import { ClientStatement, bumpGeneration, isStale, makeStatement, prepareSeq } from './prepared';
import { Route, routeShards, shardByName, ShardMap, shardsForKeys } from './routing';
import { PinReason, SessionState } from './session-state';
import { clientRowDescription, Group, GroupMode } from './group';
import { CopySplitter } from './copy';
import * as reads from './read-routing';

/** What a client session needs from the running proxy. */
export interface ProxyContext {
  config: Config;
  /** TLS for clients (from config.tls), or null: SSLRequest answered 'N'. */
  tlsContext?: () => tls.SecureContext | null;
  topology: Topology;
  router: Router;
  shards: ShardMap;
  log: Logger;
  sessions: Map<string, ClientSession>;
  /** Server ParameterStatus values per (user, database, startup params): answers logins without a server round trip. */
  paramCache: Map<string, [string, string][]>;
  admin?: (session: ClientSession, sql: string) => Promise<Buffer[]>;
  /** Transaction hooks (locks, two-phase commit) installed by the transaction layer. */
  tx?: TransactionHooks;
  metrics?: SessionMetrics;
  paused?: Promise<void> | null;
  draining?: boolean;
  /** Router of a database whose sharded tables' columns were read from its catalog. */
  routerFor?(database: string): Router | undefined;
  learnedColumns?(database: string, table: string, columns: string[]): void;
}

export interface TransactionHooks {
  /** Before a write statement is forwarded: may take locks (throws PgError 40P01 on timeout). */
  beforeWrite?(session: ClientSession, shards: number[], keys: { type: KeyType; values: (string | null)[] } | null, inBlock: boolean, table?: string): Promise<void> | void;
  /** Right before a COMMIT is forwarded (single shard) or prepared (several): an error means roll back instead. */
  beforeCommit?(session: ClientSession): PgError | null;
  /** COMMIT of a transaction that touched several shards. */
  commitMulti?(session: ClientSession, links: Link[]): Promise<void>;
  /** The transaction ended (commit, rollback, disconnect): release locks. */
  afterTransaction?(session: ClientSession, committed: boolean): void;
  /** A ReadyForQuery with status idle went to the client (autocommit statements end here). */
  afterIdle?(session: ClientSession): void;
}

export interface SessionMetrics {
  query(shard: number, us: number): void;
  transaction(shard: number, us: number): void;
  error(code: string): void;
}

const enum K {
  Query = 1, Internal, InternalRows, InternalDescribe, Parse, InternalParse, InternalClose, Bind, Describe, Execute, Close, Sync, ExecSimple, Synth, Rfq, GroupResult,
  /** BEGIN injected into an extended-protocol unit (Bind + Execute of pgring's own statement). */
  InternalBegin,
}

export interface Pending {
  kind: K;
  link: Link | null;
  out: Buffer[] | null;
  done: boolean;
  /** Extended-protocol entry: an ErrorResponse makes the server skip to Sync. */
  ext: boolean;
  plans?: RoutedStatement[];
  planIdx?: number;
  group?: Group;
  member?: number;
  onError?: (msg?: Buffer) => void;
  /** Bind of a shared server statement: a "result type changed" error marks it stale. */
  cs?: ClientStatement;
  onDone?: () => void;
  rows?: (string | null)[][];
  /** Receives a RowDescription (internal / rewritten Describe). */
  onRow?: (msg: Buffer) => void;
  /** Start time (ms) of a query / execute, for statistics. */
  t0?: number;
}

export interface Link {
  shard: number;
  conn: ServerConnection;
  pool: Pool;
  queue: Fifo<Pending>;
  /** Extended messages sent since the last Sync (the server is inside an implicit transaction). */
  unsynced: boolean;
  /** The server failed an extended-protocol request and skips everything up to the next Sync. */
  skipping: boolean;
  /** Prepared the client's unnamed statement (identity of the ClientStatement). */
  unnamed: ClientStatement | null;
  txStart: number;
  bytesIn0: number;
  bytesOut0: number;
}

type Portal = { shards: number[]; cs: ClientStatement; virtual: boolean; params?: (Buffer | null)[]; formats?: number[] };

let nextPid = 1_000_000 + randomInt(1_000_000);

function isTxControl(p: Plan): boolean {
  return p.command === 'begin' || p.command === 'commit' || p.command === 'rollback';
}

/** A plain SELECT (no locking clause, no write): what a replica may answer (and the hint's reads=). */
const isPlainRead = reads.planReadUse;

export class ClientSession implements ServerOwner {
  pid = nextPid++;
  readonly secret = randomInt(0x7fffffff);
  /** The statement being linked only reads (a plain SELECT): a shard without a live primary
   *  may serve it from a live replica. Set where a statement's plan is known, before linking. */
  private readOnlyUse: reads.ReadUse = false;
  readonly connectedAt = Date.now();
  phase: 'startup' | 'auth' | 'ready' | 'closed' = 'startup';
  user = '';
  database = '';
  applicationName = '';
  userConfig: UserConfig | undefined;
  admin = false;
  private startupParams: [string, string][] = [];
  private paramsKey = '';
  private serverUser = '';
  private serverPassword: string | undefined;

  private readonly reader = new MessageReader();
  private startupReader: StartupReader | null = new StartupReader();
  private auth: ClientAuth | null = null;
  private inbox: { type: number; msg: Buffer }[] = [];
  private pumping = false;
  private wq: Buffer[] = [];

  readonly links: (Link | undefined)[] = [];
  private readonly pendings = new Fifo<Pending>();
  private unitLinks = new Set<Link>();
  private extError = false;
  /** Links of the current extended-protocol unit that run an autocommit multi-shard write in a transaction of its own. */
  private unitTx: Set<Link> | null = null;
  /** Savepoints of the open transaction, oldest first (replayed on shards that join it). */
  private savepoints: string[] = [];
  private skipUntilSync = false;
  private copyLinks: Link[] | null = null;
  private copySplit: CopySplitter | null = null;

  state: SessionState = SessionState.empty;
  private txSnapshot: SessionState = SessionState.empty;
  /** BEGIN answered by pgring and not yet sent to any server ('E' after a failure pgring reported). */
  virtualTx: null | 'T' | 'E' = null;
  /** pgring itself failed a statement of a transaction running on servers (the servers do not know). */
  private txFailed = false;
  private beginSql = 'BEGIN';
  readonly pins = new Set<PinReason>();
  private stmts = new Map<string, ClientStatement>();
  private portals = new Map<string, Portal>();
  routeShardKey: string | null = null;
  routeShard: string | null = null;
  /** Set by the transaction layer: state to drop when the transaction ends. */
  txData: unknown = null;
  lastQuery = '';
  queryStart = 0;
  /** The router for this database (tables' column lists learned from its catalog). */
  private get router(): Router { return this.ctx.routerFor?.(this.database) ?? this.ctx.router; }
  waitingSince = 0;
  private closing = false;
  /** Work the inbox must wait for before the next client message (a multi-shard COMMIT). */
  private blockingWork: Promise<void> | null = null;

  private authTimer: NodeJS.Timeout;
  /** Waiting (afterInFlight, waitIdle) until a condition on the request queues holds; checked
   *  when a request completes, a link goes away or the client closes. */
  private waiters: { until: () => boolean; resolve: () => void }[] | null = null;
  /** The client's socket: the accepted one, or the TLS socket over it after SSLRequest. */
  socket: net.Socket;
  tls = false;

  constructor(socket: net.Socket, readonly ctx: ProxyContext) {
    this.socket = socket;
    socket.setNoDelay(true);
    // A socket that may be handed to TLS is read through 'data' events (TLS takes the handle over).
    readAccepted(socket, (chunk) => this.onData(chunk), ctx.config.tls !== undefined);
    // Authentication must complete in time, or the connection is closed (authentication_timeout).
    this.authTimer = setTimeout(() => {
      if (this.phase === 'startup' || this.phase === 'auth') this.fatal(PgError.fatal(SQLSTATE.QueryCanceled, 'canceling authentication due to timeout'));
    }, ctx.config.authTimeoutMs ?? 60000);
    this.authTimer.unref();
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  get key(): string { return `${this.pid}:${this.secret}`; }
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

  // ---- I/O -------------------------------------------------------------------

  private write(b: Buffer): void { this.wq.push(b); }

  private flush(): void {
    const q = this.wq; // reused: called after every socket read, usually with nothing queued
    if (q.length === 0) return;
    if (this.phase === 'closed') { q.length = 0; return; }
    if (q.length === 1) { this.socket.write(q[0]!); q.length = 0; return; }
    // Messages forwarded from one server read are usually adjacent slices of one chunk.
    let contiguous = true;
    const first = q[0]!;
    let end = first.byteOffset + first.length;
    for (let i = 1; i < q.length; i++) {
      const b = q[i]!;
      if (b.buffer !== first.buffer || b.byteOffset !== end) { contiguous = false; break; }
      end += b.length;
    }
    this.socket.write(contiguous ? Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset) : Buffer.concat(q));
    q.length = 0;
  }

  private readonly onMessageBound = (t: number, m: Buffer): void => this.onMessage(t, m);

  private onData(chunk: Buffer): void {
    if (this.phase === 'closed') return;
    // Everything the messages of this read send to servers leaves in one write per server.
    beginWriteBatch();
    try {
      this.onChunk(chunk);
    } finally {
      endWriteBatch();
    }
    if (!this.pumping) this.flush();
  }

  private onChunk(chunk: Buffer): void {
    try {
      if (this.startupReader) {
        const r = this.startupReader.feed(chunk);
        if (!r) return;
        this.startupReader = null;
        if (r.rest.length && !this.tls && this.ctx.config.tls && parseStartup(r.packet).kind === 'ssl') {
          // bytes sent in the clear after SSLRequest, before the handshake (CVE-2021-23214)
          this.fatal(PgError.fatal(SQLSTATE.ProtocolViolation, 'received unencrypted data after SSL request'));
          return;
        }
        this.onStartupPacket(r.packet);
        if (r.rest.length && (this.phase as string) !== 'closed') {
          if (this.startupReader) { this.onChunk(r.rest); return; }
          this.reader.feed(r.rest, this.onMessageBound);
        }
        return;
      }
      this.reader.feed(chunk, this.onMessageBound);
    } catch (e) {
      if (e instanceof ProtocolViolation && e.silent) { this.ctx.log?.debug?.({ err: e.message }, 'client closed'); this.close(); }
      else if (e instanceof ProtocolViolation) this.fatal(PgError.fatal(SQLSTATE.ProtocolViolation, e.message));
      else this.fatal(PgError.fatal(SQLSTATE.InternalError, `pgring internal error: ${(e as Error).message}`));
    }
  }

  /** Sends a FATAL error and closes this client only. */
  fatal(e: PgError): void {
    if (this.phase === 'closed') return;
    this.ctx.metrics?.error(e.code);
    this.flush();
    try { this.socket.end(e.toMessage()); } catch { /* gone */ }
    this.close();
  }

  // ---- startup and authentication ---------------------------------------------

  /** SSLRequest with TLS configured: answer 'S' and go on with the TLS socket over this one. */
  private startTls(secureContext: tls.SecureContext): void {
    const raw = this.socket;
    raw.write(Buffer.from('S'));
    raw.removeAllListeners('data');
    const t = new tls.TLSSocket(raw, { isServer: true, secureContext });
    t.on('data', (chunk: Buffer) => this.onData(chunk));
    t.on('error', () => this.close());
    t.on('close', () => this.close());
    this.socket = t;
    this.tls = true;
    this.startupReader = new StartupReader();
  }

  private onStartupPacket(packet: Buffer): void {
    const p = parseStartup(packet);
    if (p.kind === 'ssl' && !this.tls) {
      const context = this.ctx.tlsContext?.() ?? null;
      if (context) { this.startTls(context); return; }
    }
    if (p.kind === 'ssl' || p.kind === 'gssenc') {
      this.socket.write(Buffer.from('N'));
      this.startupReader = new StartupReader();
      return;
    }
    if (p.kind === 'cancel') {
      const target = this.ctx.sessions.get(`${p.pid}:${p.secret}`);
      this.phase = 'closed';
      // Closed once the servers got the cancel, as PostgreSQL closes it after signalling the
      // backend: a client that waits for the close (asyncpg) knows its next statement is safe.
      if (target) void target.cancelRunning().finally(() => this.socket.end());
      else this.socket.end();
      return;
    }
    if (this.ctx.config.tls?.require && !this.tls && p.kind === 'startup') {
      this.fatal(PgError.fatal(SQLSTATE.InvalidAuthorization, `connection without TLS refused for user "${p.params.get('user') ?? ''}": pgring requires TLS (tls.require)`, { hint: 'connect with sslmode=require' }));
      return;
    }
    if (this.ctx.draining) throw Object.assign(new ProtocolViolation('the proxy is shutting down'), {});
    const params = p.params;
    this.user = params.get('user')!;
    this.database = params.get('database') || this.user;
    if (params.get('replication') && params.get('replication') !== 'false' && params.get('replication') !== '0') {
      this.fatal(PgError.fatal(SQLSTATE.FeatureNotSupported, 'pgring does not support replication connections'));
      return;
    }
    this.applicationName = params.get('application_name') ?? '';
    this.startupParams = [...params].filter(([k]) => k !== 'user' && k !== 'database' && k !== 'replication');
    this.paramsKey = this.startupParams.map(([k, v]) => `${k}=${v}`).sort().join('\u0000');
    try { reads.onStartup(this, this.startupParams); } catch (e) { this.fatal(PgError.fatal(SQLSTATE.InvalidParameterValue, (e as Error).message)); return; } // hook: read routing
    this.userConfig = this.ctx.config.users.find((u) => u.name === this.user);
    this.serverUser = this.userConfig?.serverUser ?? this.user;
    this.serverPassword = this.userConfig?.serverPassword ?? this.userConfig?.password;
    this.credKey = `${this.serverUser}\u0000${this.database}`;
    this.phase = 'auth';
    this.auth = new ClientAuth(this.user, this.userConfig, this.ctx.config.users.every((u) => u.auth === 'trust'));
    this.authStep(this.auth.start());
  }

  private authStep(step: ReturnType<ClientAuth['start']>): void {
    if ('error' in step) {
      this.ctx.log.info({ user: this.user, code: step.error.code }, step.error.message);
      this.fatal(step.error);
      return;
    }
    if (step.send) this.socket.write(step.send);
    if ('ok' in step) void this.afterAuth();
  }

  private async afterAuth(): Promise<void> {
    this.auth = null;
    if (!this.userConfig) {
      this.fatal(PgError.fatal(SQLSTATE.InvalidAuthorization, `role "${this.user}" is not configured in pgring`));
      return;
    }
    this.write(authOk);
    if (this.database === 'pgring') {
      if (!this.userConfig.admin) {
        this.fatal(PgError.fatal(SQLSTATE.InsufficientPrivilege, `permission denied for database "pgring": user "${this.user}" is not an admin in the pgring config`));
        return;
      }
      this.admin = true;
      for (const [k, v] of [['server_version', '15.0 (pgring)'], ['server_encoding', 'UTF8'], ['client_encoding', 'UTF8'], ['DateStyle', 'ISO, MDY'], ['integer_datetimes', 'on'], ['standard_conforming_strings', 'on'], ['application_name', this.applicationName]]) {
        this.write(parameterStatus(k!, v!));
      }
    } else {
      const cacheKey = `${this.serverUser}\u0000${this.database}\u0000${this.paramsKey}\u0000${this.serverPassword ?? ""}`;
      let params = this.ctx.paramCache.get(cacheKey);
      if (!params) {
        // Learn the server's own ParameterStatus values (and let it check the database
        // and the startup settings) with a pooled connection opened with the client's params.
        const shard = this.ctx.topology.anyLiveShard(0);
        let conn: ServerConnection;
        let pool: Pool;
        try {
          pool = this.ctx.topology.pool(shard, this.cred());
          conn = await pool.acquire(this.startupParams, this.paramsKey);
        } catch (e) {
          this.fatal(e instanceof PgError ? PgError.fatal(e.code, e.message, e.opts) : PgError.fatal(SQLSTATE.ConnectionFailure, (e as Error).message));
          return;
        }
        params = [...conn.params];
        this.ctx.paramCache.set(cacheKey, params);
        pool.release(conn);
      }
      for (const [k, v] of params) this.write(parameterStatus(k, v));
    }
    if (this.phase === 'closed') return;
    if (!this.admin && this.poolMode === 'session' && this.ctx.topology.shardCount === 1) {
      // Session pooling, one shard: the server session is the client's for its whole life, so it
      // is opened now and BackendKeyData carries its pid, as pg_backend_pid() and PostgreSQL say.
      // (The secret stays pgring's: CancelRequest comes to pgring.) If it cannot be had now, the
      // first statement reports why, as without this.
      try { this.pid = (await this.link(0)).conn.pid; } catch { /* pgring's own pid */ }
      if ((this.phase as string) === 'closed') return;
    }
    this.write(backendKeyData(this.pid, this.secret));
    this.write(readyForQuery('I'));
    this.flush();
    this.phase = 'ready';
    clearTimeout(this.authTimer);
    this.ctx.sessions.set(this.key, this);
    if (this.inbox.length) void this.pump();
  }

  private cred() { return { user: this.serverUser, password: this.serverPassword, database: this.database }; }
  /** Identifies cred() for Topology.poolFast (set once the startup packet is read). */
  private credKey = '';
  private readonly credFn = () => this.cred();

  // ---- client messages ---------------------------------------------------------

  private onMessage(type: number, msg: Buffer): void {
    if (this.phase === 'auth') {
      if (type !== F.Password || !this.auth) throw new ProtocolViolation(`expected password response, got message type 0x${type.toString(16)}`);
      this.authStep(this.auth.handle(msg));
      return;
    }
    if (type === F.Terminate) { this.close(); return; }
    if (!this.pumping && this.phase === 'ready' && this.inbox.length === 0 && !this.ctx.paused) {
      // Fast path: handle the message now; only work that waits (a pool, a lock, a commit) goes through the pump.
      let r: Promise<void> | void;
      try { r = this.handle(type, msg); } catch (e) { this.failSession(e); return; }
      if (r || this.blockingWork) void this.pump(r || undefined);
      return;
    }
    this.inbox.push({ type, msg });
    if (!this.pumping && this.phase === 'ready') void this.pump();
  }

  /** Handles queued client messages in order, waiting for each one that has to wait. */
  private async pump(first?: Promise<void>): Promise<void> {
    this.pumping = true;
    try {
      if (first) {
        this.flush();
        await first;
      }
      if (this.blockingWork) {
        const w = this.blockingWork;
        this.blockingWork = null;
        this.flush();
        await w;
      }
      while (this.inbox.length && this.phase === 'ready') {
        if (this.ctx.paused && !this.admin) await this.ctx.paused;
        const { type, msg } = this.inbox.shift()!;
        const r = this.handle(type, msg);
        if (r) {
          this.flush();
          await r;
        }
        if (this.blockingWork) {
          const w = this.blockingWork;
          this.blockingWork = null;
          this.flush();
          await w;
        }
      }
    } catch (e) {
      this.failSession(e);
    } finally {
      this.pumping = false;
      this.flush();
    }
  }

  /** An error no statement can answer: end the session with the right SQLSTATE. */
  private failSession(e: unknown): void {
    if (e instanceof ProtocolViolation) this.fatal(PgError.fatal(SQLSTATE.ProtocolViolation, e.message));
    else if (e instanceof PgError && e.severity === 'FATAL') this.fatal(e);
    else {
      this.ctx.log.error({ err: e }, 'client session error');
      this.fatal(PgError.fatal(SQLSTATE.InternalError, `pgring internal error: ${(e as Error).message}`));
    }
  }

  private handle(type: number, msg: Buffer): Promise<void> | void {
    if (this.skipUntilSync && type !== F.Sync) return;
    if (this.admin) return this.handleAdmin(type, msg);
    switch (type) {
      case F.Query: return this.onQuery(msg);
      case F.Parse: return this.onParse(msg);
      case F.Bind: return this.onBind(msg);
      case F.Describe: return this.onDescribe(msg);
      case F.Execute: return this.onExecute(msg);
      case F.Close: return this.onClose(msg);
      case F.Sync: return this.onSync();
      case F.Flush: return this.onFlush();
      case F.CopyData: case F.CopyDone: case F.CopyFail: return this.onCopyMessage(type, msg);
      case F.FunctionCall: return this.onFunctionCall(msg);
      default:
        throw new ProtocolViolation(`invalid frontend message type ${type}`);
    }
  }

  private async handleAdmin(type: number, msg: Buffer): Promise<void> {
    if (type === F.Sync) { this.write(readyForQuery('I')); return; }
    if (type !== F.Query) {
      this.write(buildError({ code: SQLSTATE.FeatureNotSupported, message: 'the pgring admin console accepts simple queries only' }));
      return;
    }
    const sql = queryText(msg);
    try {
      const out = this.ctx.admin ? await this.ctx.admin(this, sql) : [buildError({ code: SQLSTATE.FeatureNotSupported, message: 'admin console is not available' })];
      for (const b of out) this.write(b);
    } catch (e) {
      const err = e instanceof PgError ? e : new PgError(SQLSTATE.InternalError, (e as Error).message);
      this.write(err.toMessage());
    }
    this.write(readyForQuery('I'));
  }

  // ---- pending queue ---------------------------------------------------------------

  private push(kind: K, link: Link | null, ext: boolean): Pending {
    // Every field exists from the start: one object shape for all kinds keeps property access monomorphic.
    const p: Pending = {
      kind, link, out: null, done: false, ext, plans: undefined, planIdx: undefined, group: undefined, member: undefined,
      onError: undefined, cs: undefined, onDone: undefined, rows: undefined, onRow: undefined, t0: undefined,
    };
    this.pendings.push(p);
    if (link) link.queue.push(p);
    return p;
  }

  private synth(msgs: Buffer[], ext: boolean): void {
    const p = this.push(K.Synth, null, ext);
    p.out = msgs;
    p.done = true;
    if (this.pendings.length === 1) this.drain();
  }

  private rfq(): void {
    this.push(K.Rfq, null, false).done = true;
    if (this.pendings.length === 1) this.drain();
  }

  /** Sends `msg` to the client on behalf of `p` (streams if p is at the head). */
  private out(p: Pending, msg: Buffer): void {
    if (msg[0] === B.ErrorResponse && p.link && isFatal(msg)) p.link.conn.fatalRelayed = true;
    if (this.pendings.first() === p) this.emit(p, msg);
    else (p.out ??= []).push(msg);
  }

  private emit(p: Pending, msg: Buffer): void {
    if (this.extError && p.ext) return; // PostgreSQL would not have run it
    this.write(msg);
    if (p.ext && msg[0] === B.ErrorResponse) this.extError = true;
  }

  private complete(p: Pending): void {
    if (p.done) return;
    p.done = true;
    p.onDone?.();
    if (p.t0 !== undefined && p.link) {
      const us = (Date.now() - p.t0) * 1000;
      const st = p.link.pool.stats;
      st.totalQuery++;
      st.totalQueryTimeUs += us;
      this.ctx.metrics?.query(p.link.shard, us);
    }
    if (p.link) {
      const q = p.link.queue;
      if (q.first() === p) q.shift(); else { const i = q.indexOf(p); if (i >= 0) q.removeAt(i); }
    }
    if (this.pendings.first() === p) this.drain();
    if (this.waiters !== null) this.wake();
  }

  private drain(): void {
    const ps = this.pendings;
    while (ps.length) {
      const p = ps.first()!;
      if (p.out) { const o = p.out; p.out = null; for (const m of o) this.emit(p, m); }
      if (!p.done) return;
      ps.shift();
      if (p.kind === K.Rfq) {
        this.extError = false;
        const status = this.txStatus;
        this.write(readyForQuery(status));
        if (status === 'I') this.ctx.tx?.afterIdle?.(this);
        this.afterReady();
      }
    }
  }

  // ---- server messages ---------------------------------------------------------------

  onServerBatchEnd(): void { this.flush(); }

  onServerMessage(conn: ServerConnection, type: number, msg: Buffer): void {
    const link = conn.tag as Link;
    if (type === B.NotificationResponse) msg = notifierAsClient(link.shard, msg);
    if (type === B.ReadyForQuery && link.skipping) this.skippedUntilSync(link);
    const p = link.queue.first();
    if (p === undefined) {
      // Asynchronous messages between requests: notifications, notices, parameter changes.
      if (type === B.NotificationResponse || type === B.NoticeResponse || type === B.ParameterStatus) {
        this.write(msg); // asynchronous messages may arrive at any time (libpq and drivers accept them)
      } else if (type === B.ErrorResponse) {
        const f = parseErrorFields(msg);
        conn.noteError(new PgError(f.C ?? SQLSTATE.AdminShutdown, f.M ?? 'server error', { severity: (f.S as 'FATAL') ?? 'FATAL' }));
      }
      return;
    }
    if (p.group) { this.groupMessage(p, type, msg); return; }
    switch (p.kind) {
      case K.Query:
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.CommandComplete) this.afterCommandOf(p, msg);
        else if (type === B.ErrorResponse) this.afterErrorOf(p, msg);
        else if (type === B.CopyInResponse) this.copyLinks = [link];
        this.out(p, msg);
        return;
      case K.ExecSimple:
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.CommandComplete) this.afterCommandOf(p, msg);
        else if (type === B.ErrorResponse) this.afterErrorOf(p, msg);
        this.out(p, msg);
        return;
      case K.InternalRows:
        if (type === B.DataRow) { p.rows!.push(decodeDataRow(msg)); return; }
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.ErrorResponse) p.onError?.(msg);
        return;
      case K.Internal:
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        if (type === B.ErrorResponse) { p.onError?.(); this.out(p, msg); }
        return;
      case K.Sync:
        if (type === B.ReadyForQuery) { this.complete(p); return; }
        this.out(p, msg); // e.g. an error raised at commit of the implicit transaction
        return;
      case K.InternalParse:
        if (type === B.ParseComplete) { this.complete(p); return; }
        break;
      case K.InternalClose:
        if (type === B.CloseComplete) { this.complete(p); return; }
        break;
      case K.InternalBegin:
        if (type === B.BindComplete) return;
        if (type === B.CommandComplete) { this.complete(p); return; }
        break;
      case K.Parse:
        if (type === B.ParseComplete) { this.out(p, msg); this.complete(p); return; }
        break;
      case K.Bind:
        if (type === B.BindComplete) { this.out(p, msg); this.complete(p); return; }
        break;
      case K.Close:
        if (type === B.CloseComplete) { this.out(p, msg); this.complete(p); return; }
        break;
      case K.InternalDescribe:
        if (type === B.RowDescription) { p.onRow?.(msg); this.complete(p); return; }
        if (type === B.NoData) { this.complete(p); return; }
        if (type === B.ErrorResponse) { this.out(p, msg); this.extendedError(p, msg); }
        return;
      case K.Describe:
        if (type === B.RowDescription && p.onRow) { this.out(p, clientRowDescription(p.plans![0]!, msg)); this.complete(p); return; }
        this.out(p, msg);
        if (type === B.RowDescription || type === B.NoData) { this.complete(p); return; }
        if (type === B.ErrorResponse) { this.extendedError(p, msg); }
        return;
      case K.Execute:
        if (type === B.CommandComplete) { this.afterCommandOf(p, msg); this.out(p, msg); this.complete(p); return; }
        if (type === B.EmptyQueryResponse || type === B.PortalSuspended) { this.out(p, msg); this.complete(p); return; }
        if (type === B.CopyInResponse) this.copyLinks = [link];
        this.out(p, msg);
        if (type === B.ErrorResponse) this.extendedError(p, msg);
        return;
      default:
        break;
    }
    // Parse / Bind / Close / InternalParse: anything else (ErrorResponse, notices)
    if (type === B.ErrorResponse) {
      p.onError?.(msg);
      if (p.cs !== undefined && isResultTypeChange(msg)) this.stalePrepared(p.link!, p.cs);
      this.out(p, msg);
      this.extendedError(p, msg);
      return;
    }
    this.out(p, msg);
  }

  /** The Sync after a failed request answered: requests sent after the failure was handled got
   *  no answer from the server (it skipped them) and none is coming. */
  private skippedUntilSync(link: Link): void {
    link.skipping = false;
    for (let q = link.queue.first(); q !== undefined && q.kind !== K.Sync; q = link.queue.first()) {
      if (q.group) this.groupMemberDone(q);
      this.complete(q);
    }
  }

  /** An extended-protocol request failed: the server skips everything up to Sync on that link. */
  private extendedError(p: Pending, msg?: Buffer): void {
    const link = p.link!;
    link.skipping = true;
    if (msg) this.ctx.metrics?.error(parseErrorFields(msg).C ?? 'XX000');
    this.complete(p);
    while (link.queue.length && link.queue.first()!.kind !== K.Sync) {
      const q = link.queue.first()!;
      if (q.group) this.groupMemberDone(q);
      this.complete(q);
    }
  }

  private afterCommandOf(p: Pending, msg: Buffer): void {
    const plans = p.plans;
    if (!plans) return;
    const i = p.planIdx ?? 0;
    p.planIdx = i + 1;
    const stmt = plans[i];
    if (stmt) this.afterCommand(stmt, commandTag(msg), p.link);
  }

  private afterErrorOf(p: Pending, msg: Buffer): void {
    const f = parseErrorFields(msg);
    this.ctx.metrics?.error(f.C ?? 'XX000');
    if (f.S === 'FATAL' || f.S === 'PANIC') p.link?.conn.noteError(new PgError(f.C ?? SQLSTATE.AdminShutdown, f.M ?? '', { severity: 'FATAL' }));
    // A COMMIT that fails (a deferred constraint) or a PREPARE TRANSACTION that fails (gid in use,
    // temporary objects, ...) still ends the block: the server has rolled the transaction back.
    const cmd = p.plans?.[p.planIdx ?? 0]?.plan.command;
    if (cmd === 'prepare_transaction' || cmd === 'commit') this.endTransaction(false);
  }

  /** Book-keeping after a statement completed on a server: session state, pins, transactions. */
  private afterCommand(stmt: RoutedStatement, tag: string, link: Link | null): void {
    const plan = stmt.plan;
    switch (plan.command) {
      case 'set': case 'reset': {
        const v = plan.setVar;
        if (!v || v.local) break;
        if (v.name === 'all') this.state = this.state.afterResetAll();
        else if (v.value === null) this.state = this.state.withReset(v.name);
        else this.state = this.state.withSet(v.name, stmt.sql);
        if (link) link.conn.appliedState = this.state.isEmpty ? null : this.state;
        for (const l of this.links) if (l && l !== link) l.conn.appliedState = l.conn.appliedState; // other links replay on next attach
        break;
      }
      case 'discard':
        if (/^DISCARD ALL/i.test(tag)) {
          this.pins.clear();
          this.state = SessionState.empty;
          if (link) { link.conn.appliedState = null; link.conn.prepared.clear(); link.unnamed = null; }
        } else if (/TEMP/i.test(stmt.sql)) this.pins.delete('temp_table');
        break;
      case 'unlisten':
        if (/\*/.test(stmt.sql)) this.pins.delete('listen');
        break;
      case 'deallocate':
        if (/\ball\b/i.test(stmt.sql)) {
          this.pins.delete('prepare');
          // DEALLOCATE ALL also drops the protocol-level statements pgring prepared there, and
          // the client's named ones (PostgreSQL keeps only the unnamed statement).
          if (link) { link.conn.prepared.clear(); link.unnamed = null; }
          for (const name of [...this.stmts.keys()]) if (name !== '') this.stmts.delete(name);
        }
        break;
      case 'begin':
        // A BEGIN the server ran (pinned sessions, session pooling, multi-statement strings):
        // a ROLLBACK returns the session state to what it is now.
        if (link && link.conn.status === 'I') this.txSnapshot = this.state;
        break;
      case 'commit': case 'rollback':
        this.endTransaction(tag === 'COMMIT');
        // AND CHAIN on the server: its next transaction is already open there.
        if (plan.chain) this.txSnapshot = this.state;
        break;
      case 'prepare_transaction':
        // The server has handed the transaction over to the prepared-transaction store (or rolled
        // it back, tag ROLLBACK): the session is outside a transaction either way.
        this.endTransaction(tag === 'PREPARE TRANSACTION');
        break;
      case 'savepoint':
        if (plan.savepoint !== undefined) this.savepoints.push(plan.savepoint);
        break;
      case 'release': case 'rollback_to': {
        const i = plan.savepoint === undefined ? -1 : this.savepoints.lastIndexOf(plan.savepoint);
        if (plan.command === 'release') { if (i >= 0) this.savepoints.length = i; break; }
        if (i >= 0) this.savepoints.length = i + 1;
        // Back to a savepoint: the transaction is healthy again, also where pgring had failed it.
        this.txFailed = false;
        if (this.virtualTx === 'E') this.virtualTx = 'T';
        break;
      }
      default:
        break;
    }
    if (plan.sessionState) this.pins.add(plan.sessionState);
  }

  private endTransaction(committed: boolean): void {
    if (!committed) {
      this.state = this.txSnapshot;
      for (const l of this.links) if (l) l.conn.appliedState = this.state.isEmpty ? null : this.state;
    }
    this.virtualTx = null;
    this.txFailed = false;
    this.savepoints = [];
    this.ctx.tx?.afterTransaction?.(this, committed);
  }

  onServerClose(conn: ServerConnection, err: PgError): void {
    const link = conn.tag as Link | null;
    if (!link || this.links[link.shard] !== link) return;
    this.links[link.shard] = undefined;
    this.unitLinks.delete(link);
    if (this.waiters !== null) this.wake();
    // In session pooling the server connection is the client's session, as in PostgreSQL: its
    // end ends the client too (even idle), instead of a silent new session on the next query.
    const busy = link.queue.length > 0 || conn.status !== 'I' || this.pins.size > 0 || this.virtualTx !== null
      || this.poolMode === 'session';
    if (!busy || this.phase !== 'ready') return;
    // The transaction (or session state) on that server is gone: tell the client why and end it,
    // as PostgreSQL itself would when its backend is terminated.
    if (conn.fatalRelayed) {
      // The client already has the server's FATAL (e.g. pg_terminate_backend): just end, as
      // PostgreSQL closes after it.
      this.flush();
      try { this.socket.end(); } catch { /* gone */ }
      this.close();
      return;
    }
    const fatal = err.severity === 'FATAL' ? err : PgError.fatal(err.code, err.message, err.opts);
    this.fatal(fatal);
  }

  // ---- links to servers -------------------------------------------------------------

  /** The link to `shard`, acquiring a pooled server connection and bringing it to this session's state. */
  private async link(shard: number): Promise<Link> {
    const now = this.linkNow(shard);
    if (now) return now;
    if (this.ctx.topology.holding(shard)) await this.ctx.topology.holdWrites(shard); // hook: failover.holdWritesMs
    const pool = this.ctx.topology.pool(shard, this.cred(), reads.readIntent(this, shard, this.readOnlyUse)); // hook: read routing
    this.waitingSince = Date.now();
    const conn = await pool.acquire(this.startupParams, this.paramsKey);
    this.waitingSince = 0;
    if (this.phase === 'closed') { pool.release(conn); throw new PgError(SQLSTATE.AdminShutdown, 'client gone'); }
    const raced = this.links[shard];
    if (raced) { pool.release(conn); return raced; }
    return this.attach(shard, pool, conn);
  }

  /** The link to `shard` if it exists or an idle pooled connection can be had without waiting; else null. */
  private linkNow(shard: number): Link | null {
    const existing = this.links[shard];
    if (existing) return existing;
    const pool = this.ctx.topology.poolFast(shard, this.credKey, this.credFn, reads.readIntent(this, shard, this.readOnlyUse)); // hook: read routing
    const conn = pool.tryAcquire(this.paramsKey);
    return conn ? this.attach(shard, pool, conn) : null;
  }

  /** Links for all of `shards` without waiting, or null when one would have to wait (then use link()). */
  private linksNow(shards: number[]): Link[] | null {
    const out: Link[] = [];
    for (const s of shards) {
      const l = this.linkNow(s);
      if (!l) return null;
      out.push(l);
    }
    return out;
  }

  private attach(shard: number, pool: Pool, conn: ServerConnection): Link {
    const link: Link = { shard, conn, pool, queue: new Fifo<Pending>(), unsynced: false, skipping: false, unnamed: null, txStart: Date.now(), bytesIn0: conn.bytesIn, bytesOut0: conn.bytesOut };
    conn.owner = this;
    conn.tag = link;
    this.links[shard] = link;
    noteBackendOwner(shard, conn.pid, this.pid);
    if (conn.appliedState !== (this.state.isEmpty ? null : this.state)) {
      const sql = this.state.replaySql(conn.appliedState as SessionState | null);
      conn.appliedState = this.state.isEmpty ? null : this.state;
      if (sql) this.sendInternal(link, sql);
    }
    if (this.virtualTx) {
      this.sendInternal(link, this.beginSql);
      for (const name of this.savepoints) this.sendInternal(link, `SAVEPOINT ${quoteIdent(name)}`);
    }
    return link;
  }

  private sendInternal(link: Link, sql: string): void {
    this.push(K.Internal, link, false);
    link.conn.write(query(sql));
  }

  /** Releases links back to their pools when the transaction is over (transaction pooling). */
  private afterReady(): void {
    if (this.poolMode === 'session' || this.pins.size || this.virtualTx || this.copyLinks) return;
    for (const l of this.links) {
      if (!l || l.queue.length || l.unsynced || l.conn.status !== 'I') continue;
      this.releaseLink(l);
    }
  }

  private releaseLink(l: Link): void {
    reads.onReleased(this, l.shard); // hook: read routing (read-your-writes)
    this.links[l.shard] = undefined;
    this.unitLinks.delete(l);
    l.conn.owner = null;
    l.conn.tag = null;
    // The unnamed statement of this client stays on the server connection, harmlessly.
    const st = l.pool.stats;
    st.totalXact++;
    const us = (Date.now() - l.txStart) * 1000;
    st.totalXactTimeUs += us;
    st.bytesIn += l.conn.bytesIn - l.bytesIn0;
    st.bytesOut += l.conn.bytesOut - l.bytesOut0;
    this.ctx.metrics?.transaction(l.shard, us);
    l.pool.release(l.conn);
  }

  // ---- simple query -------------------------------------------------------------------

  private onQuery(msg: Buffer): Promise<void> | void {
    this.readOnlyUse = false; // set per statement where its plan is known
    const sql = queryText(msg);
    this.lastQuery = sql;
    this.queryStart = Date.now();
    this.stmts.delete(''); // a simple Query drops the unnamed statement, as in PostgreSQL
    let stmts: RoutedStatement[];
    try { stmts = this.router.plan(sql); } catch (e) { return this.queryError(e); }
    if (stmts.some(needsColumns)) return this.learnColumnsThen(stmts, () => this.onQuery(msg));
    if (stmts.length === 0) {
      this.synth([emptyQueryResponse], false);
      this.rfq();
      return;
    }
    if (stmts.length === 1) return this.runSimple(stmts[0]!, msg, stmts);
    return this.runMulti(stmts, msg);
  }

  private queryError(e: unknown, ext = false): void {
    const err = internalError(e);
    if (err.severity === 'FATAL') throw err;
    this.ctx.metrics?.error(err.code);
    this.markFailed();
    this.synth([err.toMessage()], ext);
    if (!ext) this.rfq();
    else this.skipUntilSync = true;
  }

  /** pgring failed a statement of the open transaction: the client's transaction is now failed. */
  private markFailed(): void {
    if (this.txStatus === 'I') return;
    // A server whose transaction failed knows, and answers for it (pgring may have answered
    // 25P02 for it): its state, not pgring's, decides.
    if (this.serverFailed()) return;
    if (this.virtualTx) this.virtualTx = 'E';
    else this.txFailed = true;
  }

  /** Whether pgring must answer 25P02 for a statement bound for `shards`: the transaction failed
   *  where the servers do not know it (pgring's own error, or another shard's). A statement for
   *  a server whose transaction failed goes there: pipelined after a ROLLBACK it may be fine. */
  private abortedFor(shards: number[]): boolean {
    if (this.txFailed || this.virtualTx === 'E') return true;
    return this.serverFailed() && shards.some((sh) => this.links[sh]?.conn.status !== 'E');
  }

  /** A server's transaction of this client failed (it answers 25P02 itself). */
  private serverFailed(): boolean {
    for (const l of this.links) if (l?.conn.status === 'E') return true;
    return false;
  }

  /** Which shards a statement runs on. */
  private route(stmt: RoutedStatement, params: (Buffer | null)[] | null, formats: number[] | null): Route {
    const plan = stmt.plan;
    const hint = stmt.hint ?? plan.hint;
    if (hint?.shard !== undefined) return { kind: 'direct', shard: shardByName(this.ctx.shards, hint.shard) };
    if (hint?.shardKey !== undefined) return { kind: 'direct', shard: this.ctx.shards.shardForKey(plan.keyType ?? this.defaultKeyType(), hint.shardKey) };
    if (this.routeShard !== null) return { kind: 'direct', shard: shardByName(this.ctx.shards, this.routeShard) };
    if (this.routeShardKey !== null) return { kind: 'direct', shard: this.ctx.shards.shardForKey(plan.keyType ?? this.defaultKeyType(), this.routeShardKey) };
    const n = this.ctx.shards.shardCount;
    if (n === 1) return { kind: 'direct', shard: 0 };
    if (plan.savepoint !== undefined) {
      // SAVEPOINT / RELEASE / ROLLBACK TO act on every shard in the transaction (shards that join
      // later get the savepoints replayed after their BEGIN); with none yet, one shard starts it.
      const shards = this.attachedLinks.map((l) => l.shard).sort((a, b) => a - b);
      if (shards.length > 1) return { kind: 'multi', shards };
      if (shards.length === 1) return { kind: 'direct', shard: shards[0]! };
    }
    if (plan.command === 'ddl') return { kind: 'all' };
    if (plan.target === 'sharded') {
      if (plan.keys && plan.keyType) {
        const values: (string | null)[] = [];
        for (const k of plan.keys) {
          if (k.kind === 'literal') pushKey(values, stmt.literals[k.slot] ?? null, k.array);
          else if (k.kind === 'value') pushKey(values, k.text, k.array);
          else {
            const v = params?.[k.index];
            if (v === undefined) throw new PgError(SQLSTATE.ProtocolViolation, `bind message supplies ${params?.length ?? 0} parameters, but the shard key uses $${k.index + 1}`);
            if (v === null) { values.push(null); continue; }
            const fmt = formats && formats.length ? (formats.length === 1 ? formats[0] : formats[k.index]) : 0;
            if (fmt === 1) {
              if (k.array) return { kind: 'all' }; // binary arrays: not decoded, ask every shard
              return this.binaryRoute(plan.keyType, plan.keys, params!, formats!, stmt);
            }
            pushKey(values, v.toString('utf8'), k.array);
          }
        }
        return shardsForKeys(this.ctx.shards, plan.keyType, values);
      }
      return { kind: 'all' };
    }
    if (plan.target === 'reference' && plan.write) return { kind: 'all' };
    return { kind: 'direct', shard: this.preferredShard() };
  }

  private binaryRoute(type: KeyType, keys: Plan['keys'], params: (Buffer | null)[], formats: number[], stmt: RoutedStatement): Route {
    const seen = new Set<number>();
    for (const k of keys!) {
      if (k.kind === 'literal') { const t = stmt.literals[k.slot]; if (t != null) seen.add(this.ctx.shards.shardForKey(type, t)); continue; }
      if (k.kind === 'value') { if (k.text !== null) seen.add(this.ctx.shards.shardForKey(type, k.text)); continue; }
      const v = params[k.index];
      if (v == null) continue;
      const fmt = formats.length === 1 ? formats[0] : formats[k.index];
      seen.add(fmt === 1 ? this.ctx.shards.shardForBinaryKey(type, v) : this.ctx.shards.shardForKey(type, v.toString('utf8')));
    }
    if (seen.size <= 1) return { kind: 'direct', shard: seen.size ? seen.values().next().value as number : 0 };
    return { kind: 'multi', shards: [...seen].sort((a, b) => a - b) };
  }

  private defaultKeyType(): KeyType { return this.ctx.config.sharding.tables[0]?.type ?? 'text'; }

  /** Shard for statements that touch no sharded table: one already in use, else a live one. */
  private preferredShard(): number {
    for (const l of this.links) if (l) return l.shard;
    return this.ctx.topology.anyLiveShard(0);
  }

  /** pgring's own settings (SET pgring.shard_key / pgring.shard): consumed here. */
  private ownSetting(stmt: RoutedStatement): boolean {
    const v = stmt.plan.setVar;
    if (!v || !v.name.startsWith('pgring.')) return false;
    if (v.name === 'pgring.shard_key') this.routeShardKey = v.value;
    else if (v.name === 'pgring.reads') reads.setReads(this, v.value); // hook: read routing
    else if (v.name === 'pgring.shard') {
      if (v.value !== null) shardByName(this.ctx.shards, v.value);
      this.routeShard = v.value;
    } else if (v.name === 'all') return false;
    else throw new PgError(SQLSTATE.InvalidParameterValue, `unrecognized configuration parameter "${v.name}"`, { hint: 'pgring knows pgring.shard_key, pgring.shard and pgring.reads' });
    return true;
  }

  /** One statement: forwarded at once when it goes to one shard with a free connection; else runSimpleWaiting. */
  private runSimple(stmt: RoutedStatement, msg: Buffer, plans: RoutedStatement[]): Promise<void> | void {
    const plan = stmt.plan;
    if ((isTxControl(plan) || plan.command === 'prepare_transaction' || plan.deallocate !== undefined || this.txStatus === 'E') && this.inFlight()) {
      // Pipelined behind requests a server has not answered yet: the transaction state pgring
      // decides on (and may answer for) is only known once they are answered.
      this.blockingWork = this.afterInFlight().then(() => this.runSimple(stmt, msg, plans)).then(() => this.flush());
      return;
    }
    try {
      if (plan.command === 'set' || plan.command === 'reset') {
        if (plan.setVar?.name === 'all' && plan.command === 'reset') { this.routeShard = null; this.routeShardKey = null; }
        if (this.ownSetting(stmt)) { this.synth([commandComplete(plan.command === 'set' ? 'SET' : 'RESET')], false); this.rfq(); return; }
      }
      this.checkSupported(stmt, null);
      if (isTxControl(plan) && this.txControl(stmt, null)) return;
      if (plan.command === 'prepare_transaction' && this.prepareTransaction()) return;
      if (plan.freeDatabase !== undefined) {
        // PostgreSQL refuses (after waiting 5 s) while other sessions use the database; pgring's
        // own idle connections to it must not be those sessions.
        for (const pool of this.ctx.topology.allPools()) if (pool.cred.database === plan.freeDatabase) pool.dropIdle();
      }
      // PostgreSQL parses a query string before it looks at the transaction state: in a failed
      // transaction a string it cannot parse still gets its syntax error (from the server), not 25P02.
      if (this.txStatus === 'E' && plan.parseError === undefined && !isTxControl(plan) && plan.command !== 'rollback_to' && plan.command !== 'prepare_transaction' && plan.command !== 'empty') {
        throw new PgError(SQLSTATE.InFailedTransaction, 'current transaction is aborted, commands ignored until end of transaction block');
      }
      if (plan.deallocate !== undefined && this.stmts.has(plan.deallocate)) {
        // A protocol-level statement (drivers' Close by SQL, e.g. pgx): the server knows it by
        // pgring's shared name, so the client's name is dropped here, as Close does.
        this.stmts.delete(plan.deallocate);
        this.synth([commandComplete('DEALLOCATE')], false);
        this.rfq();
        return;
      }
      this.readOnlyUse = isPlainRead(plan);
      const route = this.route(stmt, null, null);
      this.checkSupported(stmt, route);
      if (route.kind === 'direct' && !this.writeHookFor(stmt)) {
        const link = this.linkNow(route.shard);
        if (link) { this.sendQuery(link, msg, plans); return; }
      }
      return this.runSimpleWaiting(stmt, msg, plans, route);
    } catch (e) {
      this.queryError(e);
    }
  }

  private sendQuery(link: Link, msg: Buffer, plans: RoutedStatement[]): void {
    const p = this.push(K.Query, link, false);
    p.plans = plans;
    p.t0 = Date.now();
    link.conn.busy = true;
    link.conn.write(msg);
    this.rfq();
  }

  /** True when the transaction layer wants to see this statement before it runs (locks). */
  private writeHookFor(stmt: RoutedStatement): boolean {
    return stmt.plan.write && this.ctx.tx?.beforeWrite !== undefined;
  }

  private async runSimpleWaiting(stmt: RoutedStatement, msg: Buffer, plans: RoutedStatement[], route: Route): Promise<void> {
    const plan = stmt.plan;
    try {
      if (plan.command === 'copy_from' && route.kind !== 'direct' && plan.copy) return await this.startCopySplit(stmt, msg);
      if (plan.insertSplit && route.kind === 'multi') {
        // A multi-row INSERT whose rows belong to different shards: each shard gets its own rows.
        const bodies = this.splitInsert(stmt);
        const shards = [...bodies.keys()].sort((a, b) => a - b);
        await this.beforeWrite(stmt, shards, null, null);
        if (this.distributedAutocommit(stmt)) return await this.autocommitMulti(stmt, msg, shards, shards.map((sh) => query(bodies.get(sh)!)));
        await this.scatterSimple(stmt, msg, shards, false, shards.map((sh) => query(bodies.get(sh)!)));
        return;
      }
      const shards = routeShards(route, this.ctx.shards.shardCount);
      await this.beforeWrite(stmt, shards, null, null);
      if (shards.length === 1) {
        this.sendQuery(await this.link(shards[0]!), msg, plans);
        return;
      }
      if (this.distributedAutocommit(stmt)) return await this.autocommitMulti(stmt, msg, shards);
      await this.scatterSimple(stmt, msg, shards);
    } catch (e) {
      this.queryError(e);
    }
  }

  /**
   * A write to several shards outside a transaction block runs as one transaction on
   * every shard, so a failure on one shard changes nothing on the others: committed with
   * two-phase commit by the transaction layer (ZooKeeper), else by COMMIT on each shard.
   */
  private distributedAutocommit(stmt: RoutedStatement): boolean {
    const cmd = stmt.plan.command as string;
    return stmt.plan.write && this.txStatus === 'I' && !this.virtualTx
      && (cmd === 'insert' || cmd === 'update' || cmd === 'delete' || cmd === 'merge');
  }

  /** BEGIN on each shard (sent by link()), the statement, then the two-phase commit hook; the client sees one autocommit statement. */
  private async autocommitMulti(stmt: RoutedStatement, msg: Buffer, shards: number[], bodies?: Buffer[]): Promise<void> {
    this.virtualTx = 'T'; this.beginSql = 'BEGIN'; this.txSnapshot = this.state;
    let err: PgError | null = null;
    try {
      await this.scatterSimple(stmt, msg, shards, true, bodies);
      await this.waitIdle();
    } catch (e) { err = internalError(e); }
    this.virtualTx = null;
    const links = this.attachedLinks.filter((l) => l.conn.status !== 'I');
    err = (await this.endOnLinks(links, !err && links.length > 0 && links.every((l) => l.conn.status === 'T'))) ?? err;
    if (err) { this.ctx.metrics?.error(err.code); this.synth([err.toMessage()], false); }
    this.rfq();
  }

  /** Commits `links` together: two-phase with the transaction layer (ZooKeeper), else COMMIT on each. */
  private commitLinks(links: Link[]): Promise<void> {
    const hook = this.ctx.tx?.commitMulti;
    return hook ? hook.call(this.ctx.tx, this, links) : this.runOnLinks(links, 'COMMIT');
  }

  /** Ends the transaction on `links`: commits when `commit` (returns the commit's error, if any), else rolls back. */
  private async endOnLinks(links: Link[], commit: boolean): Promise<PgError | null> {
    if (!commit) {
      if (links.length) await this.runOnLinks(links, 'ROLLBACK').catch(() => undefined);
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

  /** Why pgring refuses a statement (0A000), or null. SET pgring.shard(_key) lifts scatter-only reasons. */
  private unsupportedReason(stmt: RoutedStatement): string | null {
    const p = stmt.plan;
    if (!p.unsupported) return null;
    if (p.unsupported === p.scatterUnsupported && (this.routeShard !== null || this.routeShardKey !== null)) return null;
    return p.unsupported;
  }

  /** Throws 0A000 for forms pgring cannot run correctly (on more than one shard, for scatter-only ones). */
  private checkSupported(stmt: RoutedStatement, route: Route | null): void {
    const why = this.unsupportedReason(stmt) ?? (route && route.kind !== 'direct' && this.ctx.shards.shardCount > 1 ? stmt.plan.scatterUnsupported ?? null : null);
    if (why) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${why} is not supported`);
  }


  /** Runs the locks hook for writes. */
  private async beforeWrite(stmt: RoutedStatement, shards: number[], params: (Buffer | null)[] | null, formats: number[] | null): Promise<void> {
    const hook = this.ctx.tx?.beforeWrite;
    if (!hook || !stmt.plan.write) return;
    let keys: { type: KeyType; values: (string | null)[] } | null = null;
    const plan = stmt.plan;
    if (plan.keys && plan.keyType) {
      keys = { type: plan.keyType, values: plan.keys.map((k) => k.kind === 'literal' ? stmt.literals[k.slot] ?? null : k.kind === 'value' ? k.text : (params?.[k.index] == null ? null : (formats && (formats.length === 1 ? formats[0] : formats[k.index]) === 1 ? `\\x${params[k.index]!.toString('hex')}` : params[k.index]!.toString('utf8')))) };
    }
    await hook.call(this.ctx.tx, this, shards, keys, this.txStatus !== 'I', plan.table);
  }

  /**
   * BEGIN / COMMIT / ROLLBACK. Returns true when answered here (the simple-query case);
   * false to forward the statement to its link(s) as usual.
   */
  private txControl(stmt: RoutedStatement, ext: { portal?: Portal } | null): boolean {
    const cmd = stmt.plan.command;
    const links = this.attachedLinks;
    const reply = (msgs: Buffer[]) => {
      this.synth(msgs, ext !== null);
      if (!ext) this.rfq();
    };
    if (cmd === 'begin') {
      if (this.txStatus === 'E') {
        // PostgreSQL refuses every command but the ones ending the block in a failed transaction.
        this.queryError(new PgError(SQLSTATE.InFailedTransaction, 'current transaction is aborted, commands ignored until end of transaction block'), ext !== null);
        return true;
      }
      const tag = /^\s*start/i.test(stmt.sql) ? 'START TRANSACTION' : 'BEGIN';
      if (this.txStatus !== 'I') {
        reply([buildNotice({ severity: 'WARNING', code: '25001', message: 'there is already a transaction in progress' }), commandComplete(tag)]);
        return true;
      }
      if (links.length) { this.beginSql = stmt.sql; return false; } // pinned session: let the server run it
      this.virtualTx = 'T';
      this.beginSql = stmt.sql;
      this.txSnapshot = this.state;
      reply([commandComplete(tag)]);
      return true;
    }
    // COMMIT / ROLLBACK [AND CHAIN]
    const chain = stmt.plan.chain === true;
    const inTx = this.txStatus !== 'I';
    if (links.length === 0 || !links.some((l) => l.conn.status !== 'I')) {
      if (!inTx) {
        if (chain) {
          this.queryError(new PgError(SQLSTATE.NoActiveSqlTransaction, `${cmd === 'commit' ? 'COMMIT' : 'ROLLBACK'} AND CHAIN can only be used in transaction blocks`), ext !== null);
          return true;
        }
        const implicit = ext ? [...this.unitLinks].filter((l) => l.unsynced && this.links[l.shard] === l) : [];
        if (implicit.length) {
          // Extended messages since the last Sync run in an implicit transaction, which PostgreSQL
          // ends here (asyncpg's executemany rolls back that way): the servers end theirs and
          // send the warning.
          for (const l of implicit) this.internalInUnit(l, cmd === 'commit' ? COMMIT_STMT : ROLLBACK_STMT);
          reply([commandComplete(cmd === 'commit' ? 'COMMIT' : 'ROLLBACK')]);
          return true;
        }
        reply([buildNotice({ severity: 'WARNING', code: '25P01', message: 'there is no transaction in progress' }), commandComplete(cmd === 'commit' ? 'COMMIT' : 'ROLLBACK')]);
        return true;
      }
      // The transaction ends before the answer: its ReadyForQuery shows the new status.
      const failed = this.virtualTx === 'E';
      this.endTransaction(cmd === 'commit' && !failed);
      if (chain) this.chainTransaction();
      reply([commandComplete(cmd === 'commit' && !failed ? 'COMMIT' : 'ROLLBACK')]);
      return true;
    }
    if (this.txFailed) {
      // The servers' transactions are healthy but the client's failed: roll them back.
      const active = links.filter((l) => l.conn.status !== 'I');
      for (const l of active) this.sendInternal(l, 'ROLLBACK');
      this.txFailed = false;
      this.endTransaction(false);
      if (chain) this.chainTransaction();
      reply([commandComplete('ROLLBACK')]);
      return true;
    }
    const activeLinks = links.filter((l) => l.conn.status !== 'I');
    if (activeLinks.length > 1 && (cmd === 'rollback' || this.txStatus === 'E')) {
      // ROLLBACK (or COMMIT of a failed transaction) over several shards: every shard rolls back
      // (forwarded, the statement would reach one of them; a COMMIT would commit the healthy ones).
      for (const l of activeLinks) this.sendInternal(l, 'ROLLBACK');
      this.endTransaction(false);
      if (chain) this.chainTransaction();
      reply([commandComplete('ROLLBACK')]);
      return true;
    }
    if (cmd === 'commit' && this.txStatus === 'T') {
      const veto = this.ctx.tx?.beforeCommit?.(this);
      if (veto) {
        // The transaction layer refuses the commit (e.g. its ZooKeeper locks were lost): roll back.
        for (const l of links.filter((x) => x.conn.status !== 'I')) this.sendInternal(l, 'ROLLBACK');
        this.endTransaction(false);
        reply([veto.toMessage()]);
        return true;
      }
    }
    if (cmd === 'commit' && links.filter((l) => l.conn.status !== 'I').length > 1 && this.txStatus === 'T') {
      // The pump waits for it: nothing else may run (or answer) before the commit is decided.
      this.blockingWork = this.commitMulti(stmt, ext !== null);
      return true;
    }
    return false;
  }

  /** PREPARE TRANSACTION by the client: true when answered here. A failed transaction is rolled
   *  back (tag ROLLBACK, as PostgreSQL does); one on a single server is prepared there (an empty
   *  one on the shard pgring would use); one over several shards cannot be handed to one
   *  prepared-transaction id. */
  private prepareTransaction(): boolean {
    const active = this.attachedLinks.filter((l) => l.conn.status !== 'I');
    if (this.txFailed || (this.virtualTx === 'E' && active.length === 0)) {
      for (const l of active) this.sendInternal(l, 'ROLLBACK');
      this.synth([commandComplete('ROLLBACK')], false);
      this.endTransaction(false);
      this.rfq();
      return true;
    }
    if (active.length > 1) {
      throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: PREPARE TRANSACTION in a transaction that spans ${active.length} shards is not supported`, { hint: 'pgring commits such transactions with its own two-phase commit' });
    }
    return false;
  }

  /** AND CHAIN answered by pgring: the next transaction starts at once, with the same BEGIN
   *  (so the same isolation level, read-only and deferrable modes), on the shards it reaches. */
  private chainTransaction(): void {
    this.virtualTx = 'T';
    this.txSnapshot = this.state;
    // Links that stay attached (pinned sessions, or queued behind pgring's own ROLLBACK) start it now.
    for (const l of this.links) if (l) this.sendInternal(l, this.beginSql);
  }

  private async commitMulti(stmt: RoutedStatement, ext: boolean): Promise<void> {
    const links = this.attachedLinks.filter((l) => l.conn.status !== 'I');
    try {
      await this.commitLinks(links);
      this.synth([commandComplete('COMMIT')], ext);
      this.endTransaction(true);
      if (stmt.plan.chain) this.chainTransaction();
    } catch (e) {
      this.endTransaction(false);
      const err = e instanceof PgError ? e : new PgError(SQLSTATE.InternalError, (e as Error).message);
      this.synth([err.toMessage()], ext);
    }
    if (!ext) this.rfq();
    this.flush();
  }

  /** Runs one SQL string on each link (internal, swallowed); rejects with the first server error. */
  runOnLinks(links: Link[], sql: string): Promise<void> {
    return Promise.all(links.map((l) => new Promise<void>((resolve, reject) => {
      if (l.conn.closed) { reject(new PgError(SQLSTATE.ConnectionFailure, `${sql} not sent: the connection to shard "${this.ctx.topology.shards[l.shard]?.name}" is closed`)); return; } // a dead (or fenced) server never answers
      let err: PgError | null = null;
      const p = this.push(K.InternalRows, l, false);
      p.rows = [];
      // Internal errors are not shown to the client here: the caller decides.
      p.onError = (m) => {
        const f = m ? parseErrorFields(m) : {};
        err = err ?? new PgError(f.C ?? SQLSTATE.InternalError, `${f.M ?? `${sql} failed`} (shard "${this.ctx.topology.shards[l.shard]?.name}")`, { detail: f.D, hint: f.H });
      };
      const origOut = p;
      origOut.onDone = () => (err ? reject(err) : resolve());
      l.conn.write(query(sql));
    }))).then(() => undefined);
  }

  private async runMulti(stmts: RoutedStatement[], msg: Buffer): Promise<void> {
    // One server can run the whole string when every statement goes to the same shard.
    let shard = -1;
    let single = true;
    try {
      for (const s of stmts) {
        this.checkSupported(s, null);
        if (s.plan.setVar?.name.startsWith('pgring.')) { single = false; break; }
        if (s.plan.target === 'none' && !s.plan.write && s.plan.command !== 'copy_from') continue;
        if (isTxControl(s.plan) || s.plan.command === 'set' || s.plan.command === 'reset') continue;
        const r = this.route(s, null, null);
        this.checkSupported(s, r);
        if (r.kind !== 'direct' || (shard >= 0 && r.shard !== shard)) { single = false; break; }
        shard = r.shard;
      }
      if (single) {
        if (shard < 0) shard = this.preferredShard();
        for (const s of stmts) await this.beforeWrite(s, [shard], null, null);
        const link = await this.link(shard);
        const p = this.push(K.Query, link, false);
        p.plans = stmts;
        link.conn.busy = true;
        link.conn.write(msg);
        this.rfq();
        return;
      }
    } catch (e) {
      this.queryError(e);
      return;
    }
    // Statements for different shards: run one by one, stop at the first error,
    // and answer with a single ReadyForQuery as PostgreSQL does.
    for (const s of stmts) {
      const failed = await this.runOneOfMany(s);
      if (failed) break;
    }
    this.rfq();
  }

  /** Runs one statement of a multi-statement string; resolves true when it failed. */
  private async runOneOfMany(stmt: RoutedStatement): Promise<boolean> {
    let failed = false;
    try {
      const plan = stmt.plan;
      if ((plan.command === 'set' || plan.command === 'reset') && this.ownSetting(stmt)) {
        this.synth([commandComplete(plan.command === 'set' ? 'SET' : 'RESET')], false);
        return false;
      }
      if (isTxControl(plan) && this.txControlInMulti(stmt)) return false;
      const route = this.route(stmt, null, null);
      this.checkSupported(stmt, route);
      const shards = routeShards(route, this.ctx.shards.shardCount);
      await this.beforeWrite(stmt, shards, null, null);
      const sub = query(stmt.sql);
      if (shards.length === 1) {
        const link = await this.link(shards[0]!);
        const p = this.push(K.ExecSimple, link, false);
        p.plans = [stmt];
        await new Promise<void>((resolve) => {
          p.onError = () => { failed = true; };
          p.onDone = resolve;
          link.conn.write(sub);
          this.flush();
        });
      } else if (stmt.plan.insertSplit && route.kind === 'multi') {
        const bodies = this.splitInsert(stmt);
        const ss = [...bodies.keys()].sort((a, b) => a - b);
        await this.scatterSimple(stmt, sub, ss, true, ss.map((sh) => query(bodies.get(sh)!)));
        await this.waitIdle();
      } else {
        await this.scatterSimple(stmt, sub, shards, true);
        await this.waitIdle();
      }
    } catch (e) {
      const err = e instanceof PgError ? e : new PgError(SQLSTATE.InternalError, (e as Error).message);
      this.markFailed();
      this.synth([err.toMessage()], false);
      return true;
    }
    return failed;
  }

  private txControlInMulti(stmt: RoutedStatement): boolean {
    // Inside a split multi-statement string, BEGIN/COMMIT behave like separate statements.
    const cmd = stmt.plan.command;
    if (cmd === 'begin' && this.txStatus === 'I' && this.attachedLinks.length === 0) {
      this.virtualTx = 'T'; this.beginSql = stmt.sql; this.txSnapshot = this.state;
      this.synth([commandComplete('BEGIN')], false);
      return true;
    }
    return false;
  }

  /** Resolves once every request of this client has been answered. */
  private waitIdle(): Promise<void> {
    return this.waitUntil(() => this.pendings.every((p: Pending) => p.done || p.kind === K.Rfq));
  }

  /** Resolves when `until()` holds (or the client is gone); re-checked by wake(). */
  private waitUntil(until: () => boolean): Promise<void> {
    if (this.phase === 'closed' || until()) return Promise.resolve();
    return new Promise((resolve) => { (this.waiters ??= []).push({ until, resolve }); });
  }

  private wake(): void {
    const ws = this.waiters;
    if (ws === null) return;
    const closed = this.phase === 'closed';
    const still: typeof ws = [];
    for (const w of ws) {
      if (closed || w.until()) w.resolve();
      else still.push(w);
    }
    this.waiters = still.length ? still : null;
  }

  // ---- scatter / gather ------------------------------------------------------------------

  /** Per-shard SQL of a multi-row INSERT (rows grouped by the shard of their key). */
  private splitInsert(stmt: RoutedStatement): Map<number, string> {
    const split = stmt.plan.insertSplit!;
    const type = stmt.plan.keyType!;
    const rows = new Map<number, string[]>();
    for (const row of split.rows) {
      const k = row.key;
      const text = k.kind === 'literal' ? stmt.literals[k.slot] ?? null : k.kind === 'value' ? k.text : null;
      if (k.kind === 'param') throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: a multi-row INSERT with parameters whose rows belong to different shards is not supported');
      if (text === null) throw new PgError('23502', `null value in shard key column of relation "${stmt.plan.table}" cannot be routed`);
      const shard = this.ctx.shards.shardForKey(type, text);
      let list = rows.get(shard);
      if (!list) rows.set(shard, list = []);
      list.push(row.sql);
    }
    const out = new Map<number, string>();
    for (const [shard, list] of rows) out.set(shard, split.head + list.join(', ') + split.tail);
    return out;
  }

  private async scatterSimple(stmt: RoutedStatement, msg: Buffer, shards: number[], partOfMany = false, bodies?: Buffer[]): Promise<void> {
    const links: Link[] = [];
    for (const s of shards) links.push(await this.link(s));
    // Reference tables and DDL run the same change on every shard: answer as one server would.
    const mode: GroupMode = stmt.plan.target !== 'sharded' || stmt.plan.command === 'ddl' ? 'first'
      : stmt.plan.command === 'select' || stmt.plan.merge ? 'merge' : 'sum';
    const sql = stmt.plan.merge?.shardSql;
    const body = sql ? query(sql) : msg;
    const group = new Group(mode, links.length, stmt, this.ctx.topology.shards.map((s) => s.name));
    const result = this.push(K.GroupResult, null, false);
    links.forEach((l, i) => {
      const p = this.push(partOfMany ? K.ExecSimple : K.Query, l, false);
      p.group = group; p.member = i; p.plans = [stmt];
    });
    // The result entry must come after the members in response order.
    this.pendings.removeAt(this.pendings.indexOf(result));
    this.pendings.push(result);
    group.onFinish = (msgs) => {
      result.out = msgs;
      const first = msgs.find((m) => m[0] === B.CommandComplete);
      if (first) this.afterCommand(stmt, commandTag(first), null);
      this.complete(result);
    };
    for (const [i, l] of links.entries()) { l.conn.busy = true; l.conn.write(bodies?.[i] ?? body); }
    if (!partOfMany) this.rfq();
  }

  private groupMessage(p: Pending, type: number, msg: Buffer): void {
    const g = p.group!;
    if (type === B.ErrorResponse) { this.afterErrorOf(p, msg); p.onError?.(); }
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
    if (type === B.ErrorResponse && p.ext) {
      this.groupMemberDone(p);
      this.extendedError(p);
      return;
    }
    if (terminal) { this.complete(p); this.groupMemberDone(p); }
  }

  private groupMemberDone(p: Pending): void {
    if (p.member === -1) return;
    const m = p.member!;
    p.member = -1;
    p.group!.memberDone(m);
  }

  // ---- extended protocol ------------------------------------------------------------------


  private onParse(msg: Buffer): Promise<void> | void {
    let info: ReturnType<typeof decodeParse>;
    try { info = decodeParse(msg); } catch { throw new ProtocolViolation('invalid Parse message'); }
    this.lastQuery = info.sql;
    try {
      if (info.name !== '' && this.stmts.has(info.name)) {
        throw new PgError(SQLSTATE.DuplicatePreparedStatement, `prepared statement "${info.name}" already exists`);
      }
      const stmt = this.router.planPrepared(info.sql);
      if (needsColumns(stmt)) return this.parseAfterLearning(msg, info, stmt.plan.table!);
      return this.parseWith(msg, info, stmt);
    } catch (e) { this.queryError(e, true); }
  }

  /** Parse of an INSERT without a column list into a sharded table: learn its columns first. */
  private async parseAfterLearning(msg: Buffer, info: ReturnType<typeof decodeParse>, table: string): Promise<void> {
    try {
      await this.learnColumns(table);
      await this.parseWith(msg, info, this.router.planPrepared(info.sql));
    } catch (e) { this.queryError(e, true); }
  }

  private parseWith(msg: Buffer, info: ReturnType<typeof decodeParse>, stmt: RoutedStatement): Promise<void> | void {
      const cs = makeStatement(info.name, info.sql, info.types, stmt, msg, this.credKey);
      this.stmts.set(info.name, cs);
      if (isTxControl(stmt.plan) || this.unsupportedReason(stmt) || (stmt.plan.setVar?.name.startsWith('pgring.') ?? false)) {
        this.synth([parseComplete], true);
        return;
      }
      const shard = this.preferredShardFor(stmt);
      this.readOnlyUse = isPlainRead(stmt.plan);
      if (!this.links[shard] && !stmt.plan.parseError && !this.ctx.topology.poolFast(shard, this.credKey, this.credFn, this.readOnlyUse !== false).hasCapacity(this.paramsKey)) {
        // Every server connection is busy: do not make the client wait (it may hold other
        // connections through other sessions, e.g. pgbench preparing while its peers sit in
        // transactions). The Parse goes to a server together with the first Bind.
        this.synth([parseComplete], true);
        return;
      }
      return this.withLink(shard, this.parseOn, info, cs);
  }

  private parseOn(link: Link, info: ReturnType<typeof decodeParse>, cs: ClientStatement): void {
    this.unitLinks.add(link);
    link.unsynced = true;
    // A copy here is older than this Parse: prepared again, as PostgreSQL analyses every Parse.
    if (cs.serverName !== '' && link.conn.prepared.has(cs.serverName)) this.closeServerStatement(link, cs.serverName);
    this.closeStale(link, cs);
    const p = this.push(K.Parse, link, true);
    this.markPrepared(link, cs);
    p.onError = () => {
      if (this.stmts.get(info.name) === cs) this.stmts.delete(info.name);
      this.unmarkPrepared(link, cs);
    };
    link.conn.write(cs.parse);
  }

  /** For Parse/Describe of a statement before any Bind: a shard already in use, else where its key would go. */
  private preferredShardFor(_stmt: RoutedStatement): number {
    for (const l of this.unitLinks) return l.shard;
    return this.preferredShard();
  }

  private markPrepared(link: Link, cs: ClientStatement): void {
    if (cs.serverName === '') { link.unnamed = cs; return; }
    const prepared = link.conn.prepared;
    prepared.delete(cs.serverName);
    prepared.set(cs.serverName, prepareSeq());
    const max = this.ctx.config.pool.preparedStatementCacheSize;
    if (max > 0 && prepared.size > max) {
      // Evict the least recently used statement from this server connection.
      this.closeServerStatement(link, prepared.keys().next().value as string);
    }
  }

  /** Closes a statement pgring prepared on the server of `link`. */
  private closeServerStatement(link: Link, name: string): void {
    link.conn.prepared.delete(name);
    this.push(K.InternalClose, link, true);
    link.conn.write(targeted(F.Close, 'S', name));
  }

  private unmarkPrepared(link: Link, cs: ClientStatement): void {
    if (cs.serverName === '') { if (link.unnamed === cs) link.unnamed = null; return; }
    link.conn.prepared.delete(cs.serverName);
  }

  /**
   * "cached plan must not change result type" (0A000) at Bind: a table changed under a server
   * statement that pgring shares by text. PostgreSQL clients (pgjdbc) heal by parsing the
   * statement again, which pgring answered from the stale copy, so the retry failed the same
   * way: forget the copy, and close it on the server before the next Parse of that text.
   */
  private stalePrepared(link: Link, cs: ClientStatement): void {
    link.conn.prepared.delete(cs.serverName);
    link.conn.stalePrepared.add(cs.serverName);
    // First report of this change: every connection of the pool (same database) has the stale
    // plan; re-prepare it everywhere, and fail the older client statements ourselves (isStale).
    if (bumpGeneration(cs)) for (const c of link.pool.all) if (c.prepared.delete(cs.serverName)) c.stalePrepared.add(cs.serverName);
  }

  private closeStale(link: Link, cs: ClientStatement): void {
    if (!link.conn.stalePrepared.delete(cs.serverName)) return;
    this.push(K.InternalClose, link, true);
    link.conn.write(targeted(F.Close, 'S', cs.serverName));
  }

  private touchPrepared(link: Link, name: string, at: number): void {
    const prepared = link.conn.prepared;
    prepared.delete(name);
    prepared.set(name, at);
  }

  /** Makes sure the server connection of `link` has prepared `cs` (injecting a Parse if not,
   *  or if its copy there is older than the client's Parse). */
  private ensurePrepared(link: Link, cs: ClientStatement): void {
    if (cs.serverName === '') { if (link.unnamed === cs) return; } else {
      const at = link.conn.prepared.get(cs.serverName);
      if (at !== undefined && at > cs.parsedAt) { this.touchPrepared(link, cs.serverName, at); return; }
      if (at !== undefined) this.closeServerStatement(link, cs.serverName);
    }
    this.closeStale(link, cs);
    const p = this.push(K.InternalParse, link, true);
    this.markPrepared(link, cs);
    p.onError = () => this.unmarkPrepared(link, cs);
    link.conn.write(cs.parse);
  }

  private onBind(msg: Buffer): Promise<void> | void {
    let info: ReturnType<typeof decodeBind>;
    try { info = decodeBind(msg); } catch { throw new ProtocolViolation('invalid Bind message'); }
    try {
      const cs = this.stmts.get(info.statement);
      if (!cs) throw new PgError(SQLSTATE.UndefinedPreparedStatement, info.statement === '' ? 'unnamed prepared statement does not exist' : `prepared statement "${info.statement}" does not exist`);
      // Prepared by this client before its result type changed: PostgreSQL fails the Bind.
      // The routine field is what pgjdbc reads to decide that re-preparing heals it.
      if (isStale(cs)) throw new PgError(SQLSTATE.FeatureNotSupported, 'cached plan must not change result type', { file: 'plancache.c', routine: 'RevalidateCachedQuery' });
      const plan = cs.stmt.plan;
      this.checkSupported(cs.stmt, null);
      if (isTxControl(plan) || plan.setVar?.name.startsWith('pgring.')) {
        this.portals.set(info.portal, { shards: [], cs, virtual: true });
        this.synth([bindComplete], true);
        return;
      }
      this.readOnlyUse = isPlainRead(plan);
      const route = this.route(cs.stmt, info.params, info.paramFormats);
      this.checkSupported(cs.stmt, route);
      const shards = routeShards(route, this.ctx.shards.shardCount);
      if (this.abortedFor(shards)) throw new PgError(SQLSTATE.InFailedTransaction, 'current transaction is aborted, commands ignored until end of transaction block');
      if (plan.insertSplit && shards.length > 1) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: a multi-row INSERT whose rows belong to different shards is not supported in the extended protocol; send one row per statement or use the simple protocol');
      const now = this.writeHookFor(cs.stmt) ? null : this.linksNow(shards);
      if (now) { this.bindOn(msg, info, cs, shards, now); return; }
      return this.onBindWaiting(msg, info, cs, shards);
    } catch (e) { this.queryError(e, true); }
  }

  private async onBindWaiting(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement, shards: number[]): Promise<void> {
    try {
      await this.beforeWrite(cs.stmt, shards, info.params, info.paramFormats);
      const links: Link[] = [];
      for (const s of shards) links.push(await this.link(s));
      this.bindOn(msg, info, cs, shards, links);
    } catch (e) { this.queryError(e, true); }
  }

  private bindOn(msg: Buffer, info: ReturnType<typeof decodeBind>, cs: ClientStatement, shards: number[], links: Link[]): void {
      if (this.unitTx || (links.length > 1 && this.distributedAutocommit(cs.stmt))) {
        // An autocommit write to several shards: one transaction per shard, committed together at Sync.
        if (!this.unitTx) { this.unitTx = new Set(); this.txSnapshot = this.state; }
        for (const l of links) if (!this.unitTx.has(l)) { this.unitTx.add(l); this.beginInUnit(l); }
      }
      const renamed = cs.serverName === info.statement ? msg : renameBind(msg, cs.serverName);
      const group = links.length > 1 ? new Group('first', links.length, cs.stmt, []) : null;
      let result: Pending | null = null;
      for (const [i, link] of links.entries()) {
        this.unitLinks.add(link);
        link.unsynced = true;
        this.ensurePrepared(link, cs);
        const p = this.push(K.Bind, link, true);
        if (group) { p.group = group; p.member = i; }
        if (cs.serverName !== '') p.cs = cs; // no closure per Bind: checked where errors arrive
        link.conn.write(renamed);
      }
      if (group) {
        result = this.push(K.GroupResult, null, true);
        const r = result;
        group.onFinish = (msgs) => { r.out = msgs; this.complete(r); };
      }
      this.portals.set(info.portal, shards.length > 1 ? { shards, cs, virtual: false, params: info.params.map((b) => (b ? Buffer.from(b) : null)), formats: info.paramFormats } : { shards, cs, virtual: false });
  }

  private onDescribe(msg: Buffer): Promise<void> | void {
    const { kind, name } = decodeTargeted(msg);
    try {
      if (kind === 'S') {
        const cs = this.stmts.get(name);
        if (!cs) throw new PgError(SQLSTATE.UndefinedPreparedStatement, name === '' ? 'unnamed prepared statement does not exist' : `prepared statement "${name}" does not exist`);
        if (isTxControl(cs.stmt.plan) || this.unsupportedReason(cs.stmt) || cs.stmt.plan.setVar?.name.startsWith('pgring.')) {
          this.synth([new Writer(8).int16(0).msg(B.ParameterDescription), noData], true);
          return;
        }
        const out = cs.serverName === name ? msg : targeted(F.Describe, 'S', cs.serverName);
        return this.withLink(this.preferredShardFor(cs.stmt), this.describeStatementOn, cs, out);
      }
      const portal = this.portals.get(name);
      if (!portal) {
        // Not a protocol portal of this client: an SQL cursor (DECLARE) lives on the server of
        // the open transaction, which answers for it.
        const link = name === '' ? undefined : this.attachedLinks[0];
        if (link) return this.withLink(link.shard, this.cursorRequestOn, msg, K.Describe);
        throw new PgError(SQLSTATE.InvalidCursorName, `portal "${name}" does not exist`);
      }
      if (portal.virtual) { this.synth([noData], true); return; }
      return this.withLink(portal.shards[0]!, this.describePortalOn, portal, msg);
    } catch (e) { this.queryError(e, true); }
  }

  private describeStatementOn(link: Link, cs: ClientStatement, out: Buffer): void {
    this.unitLinks.add(link);
    link.unsynced = true;
    this.ensurePrepared(link, cs);
    this.push(K.Describe, link, true);
    link.conn.write(out);
  }

  /** Describe or Execute of an SQL cursor (not a portal of this client): forwarded as is. */
  private cursorRequestOn(link: Link, msg: Buffer, kind: K): void {
    this.unitLinks.add(link);
    link.unsynced = true;
    this.push(kind, link, true);
    link.conn.write(msg);
  }

  private describePortalOn(link: Link, portal: Portal, msg: Buffer): void {
    this.unitLinks.add(link);
    link.unsynced = true;
    const p = this.push(K.Describe, link, true);
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
  private withLink<A, B>(shard: number, fn: (this: ClientSession, link: Link, a: A, b: B) => void, a: A, b: B): Promise<void> | void {
    const now = this.linkNow(shard);
    if (now) { fn.call(this, now, a, b); return; }
    return this.link(shard).then((link) => {
      try { fn.call(this, link, a, b); } catch (e) { this.queryError(e, true); }
    }, (e) => this.queryError(e, true));
  }

  private onExecute(msg: Buffer): Promise<void> | void {
    const { portal: name } = decodeExecute(msg);
    try {
      const portal = this.portals.get(name);
      if (!portal) {
        // Not a protocol portal of this client: an SQL cursor (DECLARE) lives on the server of
        // the open transaction, which runs it.
        const link = name === '' ? undefined : this.attachedLinks[0];
        if (link) return this.withLink(link.shard, this.cursorRequestOn, msg, K.Execute);
        throw new PgError(SQLSTATE.InvalidCursorName, `portal "${name}" does not exist`);
      }
      const stmt = portal.cs.stmt;
      this.lastQuery = portal.cs.sql;
      if (portal.virtual && this.inFlight()) {
        // An earlier message of this pipeline is still running on a server. If it fails,
        // PostgreSQL skips everything up to the Sync, this statement too: decide once it answered.
        this.blockingWork = this.executeVirtualLater(msg);
        return;
      }
      if (portal.virtual) {
        if (stmt.plan.setVar?.name.startsWith('pgring.')) {
          this.ownSetting(stmt);
          this.synth([commandComplete(stmt.plan.command === 'set' ? 'SET' : 'RESET')], true);
          return;
        }
        if (this.txControl(stmt, { portal })) return;
        // COMMIT/ROLLBACK of a transaction running on one server: run it there. A BEGIN that
        // txControl left to the server (a session holding its connections, e.g. session
        // pooling) runs on every attached one: they are all idle, and filtering them out
        // answered nothing at all (pgjdbc's extended-protocol BEGIN hung).
        const links = stmt.plan.command === 'begin' ? this.attachedLinks : this.attachedLinks.filter((l) => l.conn.status !== 'I');
        const group = links.length > 1 ? new Group('first', links.length, stmt, []) : null;
        for (const [i, l] of links.entries()) {
          this.unitLinks.add(l);
          l.unsynced = true;
          const p = this.push(K.ExecSimple, l, true);
          p.plans = [stmt];
          if (group) { p.group = group; p.member = i; }
          l.conn.busy = true;
          l.conn.write(query(stmt.sql));
        }
        if (group) {
          const r = this.push(K.GroupResult, null, true);
          group.onFinish = (msgs) => { r.out = msgs.filter((m) => m[0] !== B.ReadyForQuery); this.complete(r); };
        }
        return;
      }
      const now = this.linksNow(portal.shards);
      if (now) { this.executeOn(msg, name, portal, now); return; }
      return this.executeWaiting(msg, name, portal);
    } catch (e) { this.queryError(e, true); }
  }

  /** Requests sent to a server and not answered yet. */
  private inFlight(): boolean {
    for (const l of this.links) if (l && l.queue.length > 0) return true;
    return false;
  }

  /** Resolves once every server has answered what was sent to it. */
  private afterInFlight(): Promise<void> {
    // PostgreSQL holds extended-protocol output until Sync or Flush (errors go out at once).
    for (const l of this.attachedLinks) if (l.queue.length > 0) l.conn.write(msg_flush);
    return this.waitUntil(() => !this.inFlight());
  }

  private async executeVirtualLater(msg: Buffer): Promise<void> {
    await this.afterInFlight();
    if (this.extError || this.skipUntilSync) return; // skipped, as PostgreSQL skips it
    await this.onExecute(msg);
    this.flush();
  }


  private async executeWaiting(msg: Buffer, name: string, portal: Portal): Promise<void> {
    try {
      const links: Link[] = [];
      for (const s of portal.shards) links.push(await this.link(s));
      this.executeOn(msg, name, portal, links);
    } catch (e) { this.queryError(e, true); }
  }

  private executeOn(msg: Buffer, name: string, portal: Portal, links: Link[]): void {
      const stmt = portal.cs.stmt;
      // A portal bound before an earlier Sync (inside a transaction) is run in this unit:
      // its server must get this unit's Sync too.
      for (const l of links) { this.unitLinks.add(l); l.unsynced = true; }
      if (links.length === 1) {
        const l = links[0]!;
        const p = this.push(K.Execute, l, true);
        p.plans = [stmt];
        p.t0 = Date.now();
        l.conn.busy = true;
        l.conn.write(msg);
        return;
      }
      const mode: GroupMode = stmt.plan.target !== 'sharded' || stmt.plan.command === 'ddl' ? 'first'
        : stmt.plan.command === 'select' ? 'merge-ext' : 'sum';
      const group = new Group(mode, links.length, stmt, [], portal.params, { paramFormats: portal.formats });
      if (mode === 'merge-ext') {
        // The merger needs the column types: in the extended protocol they come from a Describe.
        const d = this.push(K.InternalDescribe, links[0]!, true);
        d.onRow = (m) => { group.describe(m); };
        links[0]!.conn.write(targeted(F.Describe, 'P', name));
      }
      for (const [i, l] of links.entries()) {
        const p = this.push(K.Execute, l, true);
        p.plans = [stmt]; p.group = group; p.member = i;
        l.conn.busy = true;
        l.conn.write(msg);
      }
      const r = this.push(K.GroupResult, null, true);
      group.onFinish = (msgs) => {
        r.out = msgs;
        const cc = msgs.find((m) => m[0] === B.CommandComplete);
        if (cc) this.afterCommand(stmt, commandTag(cc), null);
        this.complete(r);
      };
  }

  private onClose(msg: Buffer): void {
    const { kind, name } = decodeTargeted(msg);
    if (kind === 'S') {
      this.stmts.delete(name); // the server keeps its copy, shared by name across clients
      this.synth([closeComplete], true);
      return;
    }
    const portal = this.portals.get(name);
    this.portals.delete(name);
    if (!portal || portal.virtual) { this.synth([closeComplete], true); return; }
    const link = this.links[portal.shards[0]!];
    if (!link) { this.synth([closeComplete], true); return; }
    const others = portal.shards.slice(1).map((s) => this.links[s]).filter((l): l is Link => !!l);
    for (const l of [link, ...others]) { this.unitLinks.add(l); l.unsynced = true; }
    for (const l of others) { const p = this.push(K.InternalParse, l, true); void p; l.conn.write(msg); }
    this.push(K.Close, link, true);
    link.conn.write(msg);
  }

  private onSync(): void {
    this.skipUntilSync = false;
    for (const l of this.unitLinks) {
      l.unsynced = false;
      this.push(K.Sync, l, true);
      l.conn.busy = true;
      l.conn.write(syncMsg);
    }
    this.unitLinks.clear();
    this.portals.delete('');
    if (this.unitTx) {
      // The pump waits: nothing else may run (or answer) before the unit's shards commit or roll back.
      const links = [...this.unitTx];
      this.unitTx = null;
      this.blockingWork = this.finishUnitTx(links);
      return;
    }
    this.rfq();
  }

  /**
   * Opens an explicit transaction on `link` inside the current extended-protocol unit,
   * before the client's Bind: Bind + Execute of pgring's own "BEGIN" statement (named,
   * so the client's unnamed statement stays), prepared on first use.
   */
  private beginInUnit(link: Link): void {
    this.internalInUnit(link, BEGIN_STMT);
  }

  /** Bind + Execute of one of pgring's own named statements (BEGIN, COMMIT, ROLLBACK) in the
   *  current unit; its BindComplete and CommandComplete are not the client's. */
  private internalInUnit(link: Link, st: InternalStatement): void {
    if (!link.conn.prepared.has(st.name)) {
      this.push(K.InternalParse, link, true);
      link.conn.prepared.set(st.name, 0);
      link.conn.write(st.parse);
    }
    this.push(K.InternalBegin, link, true);
    link.conn.write(st.bindExecute);
    this.unitLinks.add(link);
    link.unsynced = true;
  }

  /** After the Sync of a unit with a multi-shard autocommit write: commit every shard (two-phase with the transaction layer) or roll all back. */
  private async finishUnitTx(links: Link[]): Promise<void> {
    let err: PgError | null = null;
    try {
      await this.waitIdle();
      const open = links.filter((l) => this.links[l.shard] === l && l.conn.status !== 'I');
      // extError: the client was told of an error in this unit (by a server or by pgring).
      err = await this.endOnLinks(open, !this.extError && open.length > 0 && open.every((l) => l.conn.status === 'T'));
    } catch (e) {
      err = internalError(e);
    }
    if (err) { this.ctx.metrics?.error(err.code); this.synth([err.toMessage()], false); }
    this.rfq();
    this.flush();
  }

  private onFlush(): void {
    for (const l of this.unitLinks) l.conn.write(msg_flush);
  }

  private onCopyMessage(type: number, msg: Buffer): void {
    if (this.copySplit) {
      this.copySplit.clientMessage(type, msg);
      if (type !== F.CopyData) this.copySplit = null;
      return;
    }
    const links = this.copyLinks ?? this.attachedLinks.slice(-1);
    for (const l of links) l.conn.write(msg);
    if (type !== F.CopyData) this.copyLinks = null;
  }

  private async onFunctionCall(msg: Buffer): Promise<void> {
    try {
      const link = await this.link(this.preferredShard());
      const p = this.push(K.Query, link, false);
      p.plans = [];
      link.conn.write(msg);
      // FunctionCallResponse is followed by ReadyForQuery, like a simple query.
      this.rfq();
    } catch (e) { this.queryError(e); }
  }

  // ---- column lists of sharded tables (INSERT without a column list) -------------------------

  private async learnColumnsThen(stmts: RoutedStatement[], again: () => Promise<void> | void): Promise<void> {
    try {
      for (const st of stmts) if (needsColumns(st)) await this.learnColumns(st.plan.table!);
    } catch (e) { this.queryError(e); return; }
    if (stmts.some((st) => needsColumns(st) && !this.knowsColumns(st.plan.table!))) {
      this.queryError(new PgError(SQLSTATE.FeatureNotSupported, `pgring: ${stmts.find(needsColumns)!.plan.unsupported}`));
      return;
    }
    await again();
  }

  private knowsColumns(table: string): boolean {
    return !needsColumns(this.router.plan(`INSERT INTO ${table} VALUES (NULL)`)[0]!);
  }

  /** Reads a sharded table's columns from the catalog of this database (one shard). */
  private async learnColumns(table: string): Promise<void> {
    if (!this.ctx.learnedColumns) return;
    const shard = this.preferredShard();
    const link = await this.link(shard);
    const rows = await this.queryRows(link, `SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = ${quoteLiteral(table)}::pg_catalog.regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
      .catch(() => [] as (string | null)[][]);
    await this.afterInFlight();
    this.afterReady();
    if (rows.length) this.ctx.learnedColumns(this.database, table, rows.map((r) => r[0]!));
  }

  // ---- COPY FROM STDIN split across shards ---------------------------------------------------

  private async startCopySplit(stmt: RoutedStatement, msg: Buffer): Promise<void> {
    const spec = stmt.plan.copy!;
    const keyType = stmt.plan.keyType!;
    const shards = routeShards({ kind: 'all' }, this.ctx.shards.shardCount);
    const links: Link[] = [];
    for (const s of shards) links.push(await this.link(s));
    const keyIndex = await this.copyKeyIndex(stmt, links[0]!);
    const splitter = new CopySplitter(spec, keyIndex, keyType, this.ctx.shards, links.map((l) => l.conn));
    await this.beforeWrite(stmt, shards, null, null);
    const group = new Group('copy', links.length, stmt, []);
    links.forEach((l, i) => {
      const p = this.push(K.Query, l, false);
      p.group = group; p.member = i; p.plans = [stmt];
    });
    const result = this.push(K.GroupResult, null, false);
    this.copySplit = splitter;
    group.onCopyIn = (first) => { if (first) { this.write(first); this.flush(); } };
    group.onFinish = (msgs) => {
      result.out = splitter.error ? [splitter.error.toMessage()] : msgs;
      this.copySplit = null;
      this.complete(result);
    };
    for (const l of links) { l.conn.busy = true; l.conn.write(msg); }
    this.rfq();
  }

  /** Position of the shard key in the COPY rows: from the column list, the config, or the catalog. */
  private async copyKeyIndex(stmt: RoutedStatement, link: Link): Promise<number> {
    const spec = stmt.plan.copy!;
    if (spec.keyColumnIndex !== null) return spec.keyColumnIndex;
    const table = this.ctx.config.sharding.tables.find((t) => t.name === stmt.plan.table);
    if (spec.columns) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: COPY into sharded table "${spec.table}" must include its shard key column "${table?.column}"`);
    if (table?.columns) {
      const i = table.columns.indexOf(table.column);
      if (i >= 0) return i;
    }
    const rows = await this.queryRows(link, `SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = ${quoteLiteral(spec.table)}::pg_catalog.regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`);
    const i = rows.findIndex((r) => r[0] === table?.column);
    if (i < 0) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: cannot find shard key column "${table?.column}" of table "${spec.table}"`);
    return i;
  }

  /** Runs a catalog query on a link for pgring itself; resolves with text rows. */
  private queryRows(link: Link, sql: string): Promise<(string | null)[][]> {
    return new Promise((resolve, reject) => {
      const rows: (string | null)[][] = [];
      let err: PgError | null = null;
      const p = this.push(K.InternalRows, link, false);
      p.rows = rows;
      p.onError = () => { err = new PgError(SQLSTATE.InternalError, `pgring catalog query failed on shard "${this.ctx.topology.shards[link.shard]?.name}"`); };
      p.onDone = () => (err ? reject(err) : resolve(rows));
      link.conn.write(query(sql));
      this.flush();
    });
  }

  // ---- cancel and close ---------------------------------------------------------------------

  async cancelRunning(): Promise<void> {
    const busy = this.attachedLinks.filter((l) => l.queue.length > 0 || l.conn.busy);
    await Promise.all(busy.map((l) => l.conn.cancel()));
  }

  close(): void {
    if (this.phase === 'closed' || this.closing) return;
    this.closing = true;
    this.phase = 'closed';
    clearTimeout(this.authTimer);
    this.wake();
    this.ctx.sessions.delete(this.key);
    this.socket.destroy();
    const inTx = this.txStatus !== 'I';
    for (const l of this.links) {
      if (!l) continue;
      this.links[l.shard] = undefined;
      const conn = l.conn;
      conn.owner = null;
      if (conn.closed) continue;
      if (l.queue.length > 0 || this.copyLinks || this.copySplit) {
        // Mid-request: the server is still working for a client that is gone.
        void conn.cancel().finally(() => conn.destroy());
        continue;
      }
      const stmts: string[] = [];
      if (conn.status !== 'I' || l.unsynced) stmts.push('ROLLBACK');
      if (this.pins.size) { stmts.push('DISCARD ALL'); conn.prepared.clear(); conn.appliedState = null; }
      if (l.unsynced) { conn.destroy(); continue; }
      resetAndRelease(l.pool, conn, stmts);
    }
    if (inTx || this.txData !== null) this.ctx.tx?.afterTransaction?.(this, false);
  }
}

const msg_flush = Buffer.from([F.Flush, 0, 0, 0, 4]);
// The client session that last used each server backend (shard:pid): a NotificationResponse
// names the notifying backend's pid, which clients compare with the BackendKeyData pid pgring
// gave the notifier (asyncpg's listeners do).
const backendOwners = new Map<string, number>();
function noteBackendOwner(shard: number, backendPid: number, clientPid: number): void {
  const key = `${shard}:${backendPid}`;
  backendOwners.delete(key);
  backendOwners.set(key, clientPid);
  if (backendOwners.size > 100000) backendOwners.delete(backendOwners.keys().next().value as string);
}
function notifierAsClient(shard: number, msg: Buffer): Buffer {
  const owner = backendOwners.get(`${shard}:${msg.readInt32BE(5)}`);
  if (owner === undefined) return msg;
  const out = Buffer.from(msg);
  out.writeInt32BE(owner, 5);
  return out;
}

interface InternalStatement { name: string; parse: Buffer; bindExecute: Buffer }
function internalStatement(name: string, sql: string): InternalStatement {
  return {
    name,
    parse: new Writer().cstr(name).cstr(sql).int16(0).msg(F.Parse),
    bindExecute: Buffer.concat([
      new Writer().cstr('').cstr(name).int16(0).int16(0).int16(0).msg(F.Bind),
      new Writer().cstr('').int32(0).msg(F.Execute),
    ]),
  };
}
const BEGIN_STMT = internalStatement('pgring_begin', 'BEGIN');
const COMMIT_STMT = internalStatement('pgring_commit', 'COMMIT');
const ROLLBACK_STMT = internalStatement('pgring_rollback', 'ROLLBACK');

/** A PgError as it is, anything else as pgring's own internal error (XX000). */
function internalError(e: unknown): PgError {
  return e instanceof PgError ? e : new PgError(SQLSTATE.InternalError, `pgring: ${(e as Error).message}`);
}

function quoteLiteral(s: string): string { return `'${s.replace(/'/g, "''")}'`; }
function quoteIdent(s: string): string { return `"${s.replace(/"/g, '""')}"`; }

/** Adds a key value, or the elements of an array literal such as {1,2,"x y",NULL}. */
function pushKey(out: (string | null)[], text: string | null, array?: boolean): void {
  if (!array || text === null) { out.push(text); return; }
  for (const e of parseArrayLiteral(text)) out.push(e);
}

export function parseArrayLiteral(text: string): (string | null)[] {
  const s = text.trim();
  if (!s.startsWith('{') || !s.endsWith('}')) throw new PgError(SQLSTATE.InvalidTextRepresentation, `malformed array literal: "${text}"`);
  const out: (string | null)[] = [];
  let i = 1;
  const end = s.length - 1;
  while (i < end) {
    while (i < end && /\s/.test(s[i]!)) i++;
    if (i >= end) break;
    let v = '';
    let quoted = false;
    if (s[i] === '"') {
      quoted = true; i++;
      while (i < end && s[i] !== '"') { if (s[i] === '\\') i++; v += s[i++]; }
      i++;
    } else {
      while (i < end && s[i] !== ',') { if (s[i] === '\\') i++; v += s[i++]; }
      v = v.trim();
    }
    if (s[i] === '{' ) throw new PgError(SQLSTATE.FeatureNotSupported, 'pgring: multi-dimensional key arrays are not supported');
    out.push(!quoted && v.toUpperCase() === 'NULL' ? null : v);
    while (i < end && s[i] !== ',') i++;
    i++;
  }
  return out;
}

function needsColumns(st: RoutedStatement): boolean {
  return st.plan.unsupported !== undefined && st.plan.table !== undefined && /without a column list/.test(st.plan.unsupported);
}

/** Whether an ErrorResponse has severity FATAL or PANIC (the 'S' field comes first). */
function isFatal(msg: Buffer): boolean {
  const f = parseErrorFields(msg);
  return f.S === 'FATAL' || f.S === 'PANIC';
}

/** "cached plan must not change result type" (the routine is the same in every server locale). */
function isResultTypeChange(msg: Buffer): boolean {
  const f = parseErrorFields(msg);
  return f.C === SQLSTATE.FeatureNotSupported && (f.R === 'RevalidateCachedQuery' || f.M === 'cached plan must not change result type');
}
