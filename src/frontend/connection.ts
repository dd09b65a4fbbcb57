// Connection life-cycle of one client: SSLRequest/TLS, the startup packet, CancelRequest,
// authentication, the first ParameterStatus/BackendKeyData/ReadyForQuery, and close.
import * as reads from './read-routing';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import { readAccepted } from '../protocol/socket-reader';
import { PgError, SQLSTATE } from '../protocol/errors';
import { authOk, backendKeyData, parameterStatus, readyForQuery } from '../protocol/messages';
import { noteBackendOwner } from './session-util';
import { ProtocolViolation, StartupReader } from '../protocol/reader';
import { parseStartup } from '../protocol/startup';
import type { Pool } from '../backend/pool';
import type { ServerConnection } from '../backend/server';
import { resetAndRelease } from '../backend/cleanup';
import { ClientAuth } from './auth';
import { replicationValue, startReplication } from './replication';
import { PassthroughAuth, ScramPassKeys, userFromServer } from './auth-query';
import type { ClientSession } from './client';

export class ConnectionLifecycle {
  /** Credentials for the servers (the user's serverUser / serverPassword, else the client's). */
  private serverUser = '';
  private serverPassword: string | undefined;
  /** auth.query pass-through of a SCRAM login: the client's ClientKey for the servers. */
  private scramKeys: ScramPassKeys | null = null;
  private closing = false;
  /** The startup packet's replication value (null: a normal session; see replication.ts). */
  private replication: string | null = null;

  constructor(private readonly s: ClientSession) {}

  /** Starts reading the accepted socket; authentication must complete in time. */
  accept(socket: net.Socket): void {
    const s = this.s;
    socket.setNoDelay(true);
    // A socket that may be handed to TLS is read through 'data' events (TLS takes the handle over).
    readAccepted(socket, (chunk) => s.dispatch.onData(chunk), s.ctx.config.tls !== undefined && !s.unixSocket);
    // Authentication must complete in time, or the connection is closed (authentication_timeout).
    s.authTimer = setTimeout(() => {
      if (s.phase === 'startup' || s.phase === 'auth') this.fatal(PgError.fatal(SQLSTATE.QueryCanceled, 'canceling authentication due to timeout'));
    }, s.ctx.config.authTimeoutMs ?? 60000);
    s.authTimer.unref();
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  /** Sends a FATAL error and closes this client only. */
  fatal(e: PgError): void {
    if (this.s.phase === 'closed') return;
    this.s.ctx.metrics?.error(e.code);
    this.s.flush();
    try { this.s.socket.end(e.toMessage()); } catch { /* gone */ }
    this.close();
  }

  /** SSLRequest with TLS configured: answer 'S' and go on with the TLS socket over this one. */
  startTls(secureContext: tls.SecureContext): void {
    const raw = this.s.socket;
    raw.write(Buffer.from('S'));
    raw.removeAllListeners('data');
    const t = new tls.TLSSocket(raw, { isServer: true, secureContext });
    t.on('data', (chunk: Buffer) => this.s.dispatch.onData(chunk));
    t.on('error', () => this.close());
    t.on('close', () => this.close());
    this.s.socket = t;
    this.s.tls = true;
    this.s.startupReader = new StartupReader();
  }

  onStartupPacket(packet: Buffer): void {
    const p = parseStartup(packet);
    if (p.kind === 'ssl' && !this.s.tls && !this.s.unixSocket) {
      const context = this.s.ctx.tlsContext?.() ?? null;
      if (context) { this.startTls(context); return; }
    }
    if (p.kind === 'ssl' || p.kind === 'gssenc') {
      this.s.socket.write(Buffer.from('N'));
      this.s.startupReader = new StartupReader();
      return;
    }
    if (p.kind === 'cancel') {
      const target = this.s.ctx.sessions.get(`${p.pid}:${p.secret}`);
      this.s.phase = 'closed';
      // Closed once the servers got the cancel, as PostgreSQL closes it after signalling the
      // backend: a client that waits for the close (asyncpg) knows its next statement is safe.
      if (target) void target.cancelRunning().finally(() => this.s.socket.end());
      else void (this.s.ctx.forwardCancel?.(p.pid, p.secret) ?? Promise.resolve()).finally(() => this.s.socket.end());
      return;
    }
    if (this.s.ctx.config.tls?.require && !this.s.tls && !this.s.unixSocket && p.kind === 'startup') {
      this.fatal(PgError.fatal(SQLSTATE.InvalidAuthorization, `connection without TLS refused for user "${p.params.get('user') ?? ''}": pgring requires TLS (tls.require)`, { hint: 'connect with sslmode=require' }));
      return;
    }
    if (this.s.ctx.draining) throw Object.assign(new ProtocolViolation('the proxy is shutting down'), {});
    const params = p.params;
    this.s.user = params.get('user')!;
    this.s.database = params.get('database') || this.s.user;
    if (this.s.ctx.admit?.(this.s) === false) return; // maxClientConnections (proxy.ts)
    this.replication = replicationValue(params);
    this.s.applicationName = params.get('application_name') ?? '';
    this.s.startupParams = [...params].filter(([k]) => k !== 'user' && k !== 'database' && k !== 'replication');
    this.s.paramsKey = this.s.startupParams.map(([k, v]) => `${k}=${v}`).sort().join('\u0000');
    try { reads.onStartup(this.s, this.s.startupParams); } catch (e) { this.s.fatal(PgError.fatal(SQLSTATE.InvalidParameterValue, (e as Error).message)); return; } // read routing: pgring.reads in the startup packet
    this.s.userConfig = this.s.ctx.config.users.find((u) => u.name === this.s.user);
    this.s.phase = 'auth';
    if (!this.s.userConfig && this.s.ctx.config.auth) { void this.authViaQuery(); return; }
    this.beginAuth(new ClientAuth(this.s.user, this.s.userConfig, this.s.ctx.config.users.every((u) => u.auth === 'trust'), this.s.tls ? this.s.socket as tls.TLSSocket : null)); // TLS: SCRAM-SHA-256-PLUS
  }

  private beginAuth(auth: ClientAuth): void {
    this.serverUser = this.s.userConfig?.serverUser ?? this.s.user;
    this.serverPassword = this.s.userConfig?.serverPassword ?? this.s.userConfig?.password;
    this.s.credKey = `${this.serverUser}\u0000${this.s.database}`;
    this.s.auth = auth;
    this.authStep(auth.start());
  }

  /** A role not in the config, with auth.query: its secret comes from the server (auth-query.ts);
   *  a role the lookup does not find gets the failing mock exchange (28P01, as PostgreSQL). */
  private async authViaQuery(): Promise<void> {
    const found = await userFromServer(this.s.ctx, this.s.user, this.s.database);
    if (this.s.phase === 'closed') return;
    if (found instanceof PgError) { this.s.ctx.log.warn({ user: this.s.user }, found.message); this.fatal(found); return; }
    this.s.userConfig = found ?? undefined;
    this.beginAuth(found ? new PassthroughAuth(this.s.user, found) : new ClientAuth(this.s.user, undefined));
  }

  authStep(step: ReturnType<ClientAuth['start']>): void {
    if ('error' in step) {
      this.s.ctx.log.info({ user: this.s.user, code: step.error.code }, step.error.message);
      this.fatal(step.error);
      return;
    }
    if (step.send) this.s.socket.write(step.send);
    if ('ok' in step && this.s.auth instanceof PassthroughAuth) this.scramKeys = this.s.auth.scramKeys;
    if ('ok' in step) void this.afterAuth();
  }

  async afterAuth(): Promise<void> {
    this.s.auth = null;
    if (!this.s.userConfig) {
      this.fatal(PgError.fatal(SQLSTATE.InvalidAuthorization, `role "${this.s.user}" is not configured in pgring`));
      return;
    }
    if (this.replication !== null) { await startReplication(this.s, this.replication, this.cred()); return; }
    this.s.write(authOk);
    if (this.s.database === 'pgring') {
      if (!this.s.userConfig.admin) {
        this.fatal(PgError.fatal(SQLSTATE.InsufficientPrivilege, `permission denied for database "pgring": user "${this.s.user}" is not an admin in the pgring config`));
        return;
      }
      this.s.admin = true;
      for (const [k, v] of [['server_version', '15.0 (pgring)'], ['server_encoding', 'UTF8'], ['client_encoding', 'UTF8'], ['DateStyle', 'ISO, MDY'], ['integer_datetimes', 'on'], ['standard_conforming_strings', 'on'], ['application_name', this.s.applicationName]]) {
        this.s.write(parameterStatus(k!, v!));
      }
    } else {
      const cacheKey = `${this.serverUser}\u0000${this.s.database}\u0000${this.s.paramsKey}\u0000${this.serverPassword ?? ""}`;
      let params = this.s.ctx.paramCache.get(cacheKey);
      if (!params) {
        // Learn the server's own ParameterStatus values (and let it check the database
        // and the startup settings) with a pooled connection opened with the client's params.
        const shard = this.s.ctx.topology.anyLiveShard(0);
        let conn: ServerConnection;
        let pool: Pool;
        try {
          pool = this.s.ctx.topology.pool(shard, this.cred());
          conn = await pool.acquire(this.s.startupParams, this.s.paramsKey);
        } catch (e) {
          this.fatal(e instanceof PgError ? PgError.fatal(e.code, e.message, e.opts) : PgError.fatal(SQLSTATE.ConnectionFailure, (e as Error).message));
          return;
        }
        params = [...conn.params];
        this.s.ctx.paramCache.set(cacheKey, params);
        pool.release(conn);
      }
      for (const [k, v] of params) {
        this.s.write(parameterStatus(k, v));
        if (k === 'server_version') { const m = /^(\d+)(?:\.(\d+))?/.exec(v); if (m) this.s.serverVersionNum = Number(m[1]) >= 10 ? Number(m[1]) * 10000 + Number(m[2] ?? 0) : 90000; }
      }
    }
    if (this.s.phase === 'closed') return;
    if (!this.s.admin && this.s.poolMode === 'session' && this.s.ctx.topology.shardCount === 1) {
      // Session pooling, one shard: the server session is the client's for its whole life, so it
      // is opened now and BackendKeyData carries its pid, as pg_backend_pid() and PostgreSQL say.
      // (The secret stays pgring's: CancelRequest comes to pgring.) If it cannot be had now, the
      // first statement reports why, as without this.
      try {
        this.s.pid = (await this.s.servers.link(0)).conn.pid;
        // Its notifications too carry that pid (the owner was noted under pgring's pid when linked).
        noteBackendOwner(0, this.s.pid, this.s.pid);
      } catch { /* pgring's own pid */ }
      if ((this.s.phase as string) === 'closed') return;
    }
    this.s.write(backendKeyData(this.s.pid, this.s.secret));
    this.s.write(readyForQuery('I'));
    this.s.flush();
    this.s.phase = 'ready';
    clearTimeout(this.s.authTimer);
    this.s.ctx.sessions.set(this.s.key, this.s);
    if (this.s.inbox.length) void this.s.dispatch.pump();
  }

  cred() { return { user: this.serverUser, password: this.serverPassword, database: this.s.database, scramKeys: this.scramKeys }; }

  readonly credFn = () => this.cred();

  async cancelRunning(): Promise<void> {
    if (this.s.replicationConn) return this.s.replicationConn.cancel();
    this.s.ctx.tx?.cancelWait?.(this.s);   // a ZooKeeper lock wait ends like a PostgreSQL one
    const busy = this.s.attachedLinks.filter((l) => l.queue.length > 0 || l.conn.busy);
    await Promise.all(busy.map((l) => l.conn.cancel()));
  }

  close(): void {
    if (this.s.phase === 'closed' || this.closing) return;
    this.closing = true;
    this.s.phase = 'closed';
    for (const c of this.s.lastConns) if (c !== undefined && c.lastUser === this.s) c.lastUser = null;   // free for anyone, and not kept alive by it
    clearTimeout(this.s.authTimer);
    this.s.responses.wake();
    this.s.ctx.sessions.delete(this.s.key);
    this.s.replicationConn?.destroy();
    if (this.s.tls) {
      // A TLS socket encrypts and writes asynchronously: destroying it now would drop a FATAL
      // that end() just queued (pg_terminate_backend's 57P01). Let the close finish, bounded.
      const sock = this.s.socket;
      try { sock.end(); } catch { /* gone */ }
      setTimeout(() => sock.destroy(), 2000).unref();
    } else this.s.socket.destroy();
    const inTx = this.s.txStatus !== 'I';
    for (const l of this.s.links) {
      if (!l) continue;
      this.s.links[l.shard] = undefined;
      const conn = l.conn;
      conn.owner = null;
      if (conn.closed) continue;
      if (l.queue.length > 0 || this.s.copyLinks || this.s.copySplit) {
        // Mid-request: the server is still working for a client that is gone.
        void conn.cancel().finally(() => conn.destroy());
        continue;
      }
      const stmts: string[] = [];
      if (conn.status !== 'I' || l.unsynced) stmts.push('ROLLBACK');
      if (this.s.pins.size) { stmts.push('DISCARD ALL'); conn.prepared.clear(); conn.appliedState = null; }
      if (l.unsynced) { conn.destroy(); continue; }
      resetAndRelease(l.pool, conn, stmts);
    }
    if (inTx || this.s.txData !== null) this.s.ctx.tx?.afterTransaction?.(this.s, false);
  }
}
