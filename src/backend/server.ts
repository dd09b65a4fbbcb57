// One TCP connection from pgring to a PostgreSQL server. It performs the startup
// and authentication (md5, SCRAM-SHA-256, cleartext, trust), records the server's
// ParameterStatus values and BackendKeyData, then frames messages for its owner.
import * as net from 'node:net';
import * as tls from 'node:tls';
import { AUTH, B } from '../protocol/codes';
import { MessageReader } from '../protocol/reader';
import { parseErrorFields, PgError, SQLSTATE } from '../protocol/errors';
import { readCString, readyStatus, TxStatus, Writer, terminateMsg } from '../protocol/messages';
import { md5Response } from '../protocol/auth/md5';
import { ScramClient } from '../protocol/auth/scram';
import { ChunkHandler, onreadOption, readAccepted } from '../protocol/socket-reader';
import { ServerTls, sslAnswer, sslRequest } from './server-tls';
import { readTime, tickReadTime } from '../clock';
import { ScramPassthroughClient } from './scram-passthrough';

export interface ServerTarget {
  host: string; port: number; shard: number; shardName: string;
  /** TLS as libpq's sslmode (absent: plain TCP). */
  tls?: ServerTls;
}
export interface ServerCredentials {
  user: string; password?: string; database: string;
  /** auth.query pass-through: SCRAM to the server with the client's ClientKey (scram-passthrough.ts). */
  scramKeys?: { clientKey: Buffer; serverKey: Buffer } | null;
}
type ScramExchange = Pick<ScramClient, 'clientFirst' | 'handleServerFirst' | 'verifyServerFinal'>;

/** Receives the messages of a server connection while a client session owns it. */
export interface ServerOwner {
  onServerMessage(conn: ServerConnection, type: number, msg: Buffer): void;
  /** Called after all messages of one socket read were delivered (lets the owner write once). */
  onServerBatchEnd(conn: ServerConnection): void;
  onServerClose(conn: ServerConnection, err: PgError): void;
}

let nextId = 1;

// Writes to servers are batched: while a client's read is being handled (a batch),
// each server connection collects its messages and they leave in one system call when
// the batch ends. Writes outside a batch (after an await) are flushed by setImmediate.
let batchDepth = 0;
const dirty: ServerConnection[] = [];

export function beginWriteBatch(): void { batchDepth++; }

export function endWriteBatch(): void {
  if (--batchDepth > 0) return;
  for (let i = 0; i < dirty.length; i++) dirty[i]!.flushQueued();
  dirty.length = 0;
}

/** Below this many queued bytes, messages are copied into one buffer rather than written as a vector. */
const CONCAT_LIMIT = 16384;

/** A client session as the pool sees it: whether it may still come back for its connection. */
export interface PoolUser { readonly phase: string }

export class ServerConnection {
  readonly id = nextId++;
  readonly params = new Map<string, string>();
  pid = 0;
  secret = 0;
  status: TxStatus = 'I';
  closed = false;
  /** A FATAL error from this server was passed on to the client (it must not get a second one). */
  fatalRelayed = false;
  /** Global prepared-statement names this connection has (LRU order: oldest first), each
   *  with the prepareSeq() of its Parse here. */
  readonly prepared = new Map<string, number>();
  /** The name `prepared` last moved to its recent end, and its size then (server-statements.ts
   *  touchPrepared: a repeat with the same size needs no move). */
  recentPrepared = '';
  recentPreparedSize = -1;
  /** Names this connection still has prepared with a plan whose result type no longer fits
   *  (0A000 at Bind after DDL): closed before they are parsed again. */
  readonly stalePrepared = new Set<string>();
  /** Version of the client session state (SETs) applied on top of the startup params; null = baseline. */
  appliedState: object | null = null;
  owner: ServerOwner | null = null;
  /** The client session that gave it back last (transaction pooling): it prefers it again (Pool.tryAcquire). */
  lastUser: PoolUser | null = null;
  /** Per-owner bookkeeping (the client session's link to this connection). */
  tag: unknown = null;
  createdAt = Date.now();
  lastUsed = Date.now();
  /** Number of queries currently outstanding (for SHOW SERVERS / cancel routing). */
  busy = false;
  /** The last CancelRequest pgring sent for this connection, until the pool has settled it
   *  (cleanup.ts settleCancel): resolves once the postmaster has signalled the backend. */
  cancelSent: Promise<void> | null = null;
  bytesIn = 0;
  bytesOut = 0;
  private readonly reader = new MessageReader();
  /** Receives each read of the socket (a copy: see socket-reader). */
  onChunk: ChunkHandler = () => undefined;
  private closeError: PgError | null = null;

  /** True when the connection to the server is encrypted. */
  encrypted = false;
  /** Who stopped this connection's reads (a client that cannot take more output), or null. */
  private readsHeldBy: object | null = null;

  /** Backpressure: stop reading from the server until `releaseReads(by)`; the server's own
   *  send buffer then fills and it waits, as it would for a slow client of its own. */
  holdReads(by: object): void {
    if (this.readsHeldBy !== null || this.closed) return;
    this.readsHeldBy = by;
    this.socket.pause();
  }

  /** Reads go on (`by` null: whoever held them; the pool does this when a connection comes back). */
  releaseReads(by: object | null): void {
    if (this.readsHeldBy === null || (by !== null && by !== this.readsHeldBy)) return;
    this.readsHeldBy = null;
    if (!this.closed) this.socket.resume();
  }

  /** The plain socket, or the TLS socket over it once SSLRequest was accepted. */
  private constructor(public socket: net.Socket, readonly target: ServerTarget, readonly paramsKey: string) {}

  static connect(target: ServerTarget, cred: ServerCredentials, startup: [string, string][], paramsKey: string, timeoutMs: number): Promise<ServerConnection> {
    return new Promise((resolve, reject) => {
      let conn: ServerConnection | null = null;
      const t = target.tls && target.tls.mode !== 'disable' ? target.tls : null;
      // Reads go straight to the connection's current handler (startup, then runtime), without a
      // stream; a socket that may be handed to TLS is read through 'data' events (TLS takes it over).
      const socket = t
        ? net.connect({ host: target.host, port: target.port, noDelay: true })
        : net.connect({ host: target.host, port: target.port, noDelay: true, onread: onreadOption(() => conn!.onChunk) });
      conn = new ServerConnection(socket, target, paramsKey);
      if (t) socket.on('data', (chunk: Buffer) => conn!.onChunk(chunk));
      let done = false;
      const fail = (e: PgError) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        conn.closed = true;
        conn.socket.destroy();
        socket.destroy();
        reject(e);
      };
      const where = `shard "${target.shardName}" at ${target.host}:${target.port}`;
      const timer = setTimeout(() => fail(new PgError(SQLSTATE.ConnectionFailure, `could not connect to shard "${target.shardName}" at ${target.host}:${target.port}: timeout after ${timeoutMs} ms`)), timeoutMs);
      socket.once('error', (err) => fail(new PgError(SQLSTATE.ConnectionFailure, `could not connect to shard "${target.shardName}" at ${target.host}:${target.port}: ${err.message}`)));
      socket.once('close', () => fail(new PgError(SQLSTATE.ConnectionFailure, `connection to shard "${target.shardName}" at ${target.host}:${target.port} closed during startup`)));
      const sendStartup = () => {
        const w = new Writer(128).int32(196608).cstr('user').cstr(cred.user).cstr('database').cstr(cred.database);
        for (const [k, v] of startup) w.cstr(k).cstr(v);
        conn.socket.write(w.int8(0).packet());
      };
      socket.once('connect', () => {
        if (!t) { sendStartup(); return; }
        socket.write(sslRequest());
        conn.onChunk = sslNegotiation(conn, socket, t, where, fail, (c) => onStartupData(c), sendStartup);
      });
      const auth: { scram: ScramExchange | null } = { scram: null };
      const onStartupData = (chunk: Buffer) => {
        try {
          conn.reader.feed(chunk, (type, msg) => {
            if (done) return;
            switch (type) {
              case B.Authentication: {
                const reply = authReply(msg, cred, target.shardName, auth);
                if (reply) conn.socket.write(reply);
                return;
              }
              case B.ParameterStatus: {
                const [k, off] = readCString(msg, 5);
                conn.params.set(k, readCString(msg, off)[0]);
                return;
              }
              case B.BackendKeyData:
                conn.pid = msg.readInt32BE(5); conn.secret = msg.readInt32BE(9);
                return;
              case B.ErrorResponse: {
                const f = parseErrorFields(msg);
                throw new PgError(f.C ?? SQLSTATE.ConnectionFailure, f.M ?? 'server error at startup', { detail: f.D, hint: f.H, severity: 'FATAL' });
              }
              case B.NoticeResponse: case B.NegotiateProtocolVersion:
                return;
              case B.ReadyForQuery:
                conn.status = readyStatus(msg);
                done = true;
                clearTimeout(timer);
                socket.removeAllListeners('error');
                socket.removeAllListeners('close');
                if (conn.socket !== socket) { conn.socket.removeAllListeners('error'); socket.on('error', () => undefined); }
                conn.attachRuntimeHandlers();
                resolve(conn);
                return;
              default:
                throw new PgError(SQLSTATE.ProtocolViolation, `unexpected message 0x${type.toString(16)} from shard "${target.shardName}" during startup`);
            }
          });
        } catch (e) {
          fail(e instanceof PgError ? e : new PgError(SQLSTATE.ConnectionFailure, `authentication to shard "${target.shardName}" failed: ${(e as Error).message}`));
        }
      };
      conn.onChunk = onStartupData;
    });
  }

  private attachRuntimeHandlers(): void {
    const onMsg = (type: number, msg: Buffer) => {
      if (type === B.ReadyForQuery) { this.status = readyStatus(msg); this.busy = false; }
      else if (type === B.ParameterStatus) {
        const [k, off] = readCString(msg, 5);
        this.params.set(k, readCString(msg, off)[0]);
      }
      const owner = this.owner;
      if (owner) owner.onServerMessage(this, type, msg);
      else if (type === B.ErrorResponse) {
        // An idle pooled connection got an error: the server is terminating it.
        const f = parseErrorFields(msg);
        this.closeError = new PgError(f.C ?? SQLSTATE.AdminShutdown, f.M ?? 'server closed the connection');
      }
    };
    this.onChunk = (chunk: Buffer) => {
      tickReadTime();
      this.bytesIn += chunk.length;
      try {
        const owner = this.owner; // the owner may release us during the batch: flush it anyway
        this.reader.feed(chunk, onMsg);
        owner?.onServerBatchEnd(this);
        if (this.owner && this.owner !== owner) this.owner.onServerBatchEnd(this);
      } catch (e) {
        this.destroy(new PgError(SQLSTATE.ProtocolViolation, `protocol error from shard "${this.target.shardName}": ${(e as Error).message}`));
      }
    };
    this.socket.on('error', (err) => this.handleClose(new PgError(SQLSTATE.ConnectionFailure, `connection to shard "${this.target.shardName}" lost: ${err.message}`)));
    this.socket.on('close', () => this.handleClose(this.closeError ?? new PgError(SQLSTATE.ConnectionFailure, `server closed the connection unexpectedly (shard "${this.target.shardName}" at ${this.target.host}:${this.target.port})`)));
  }

  /** Records the FATAL error a terminating server sends, so the owner sees the real reason. */
  noteError(e: PgError): void { this.closeError = e; }

  private handleClose(err: PgError): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    const owner = this.owner;
    this.owner = null;
    this.onClosed?.(this);
    if (owner) owner.onServerClose(this, this.closeError ?? err);
  }

  /** Called by the pool when the connection dies (idle or owned). */
  onClosed?: (conn: ServerConnection) => void;

  /**
   * Queues bytes for the server. Everything written while handling one client read
   * (e.g. Bind + Execute + Sync, or an injected Parse) leaves in one system call.
   */
  write(buf: Buffer): void {
    if (this.closed) return;
    this.bytesOut += buf.length;
    if (this.outFirst === null) {
      this.outFirst = buf;
      this.outBytes = buf.length;
      if (batchDepth > 0) dirty.push(this);
      else setImmediate(this.flushQueued);
      return;
    }
    (this.outMore ??= []).push(buf);
    this.outBytes += buf.length;
  }

  private outFirst: Buffer | null = null;
  private outMore: Buffer[] | null = null;
  private outBytes = 0;

  /** Writes what write() queued (a no-op when a batch end and a setImmediate both call it). */
  readonly flushQueued = (): void => {
    const first = this.outFirst;
    if (first === null) return;
    const more = this.outMore;
    this.outFirst = null;
    this.outMore = null;
    if (this.closed) return;
    this.lastUsed = readTime();
    if (more === null) { this.socket.write(first); return; }
    if (this.outBytes <= CONCAT_LIMIT) {
      more.unshift(first);
      this.socket.write(Buffer.concat(more, this.outBytes));
      return;
    }
    this.socket.cork();
    this.socket.write(first);
    for (const b of more) this.socket.write(b);
    this.socket.uncork();
  };

  /** Closes politely (Terminate) and forgets the connection. */
  terminate(): void {
    if (this.closed) return;
    try { this.socket.end(terminateMsg); } catch { /* ignore */ }
    this.handleClose(new PgError(SQLSTATE.AdminShutdown, 'connection terminated by pgring'));
  }

  destroy(err?: PgError): void {
    this.handleClose(err ?? new PgError(SQLSTATE.AdminShutdown, 'connection closed by pgring'));
  }

  /** Asks the server to cancel what this connection is running (a separate connection, as libpq does). */
  cancel(): Promise<void> {
    const sent = new Promise<void>((resolve) => {
      const s = net.connect({ host: this.target.host, port: this.target.port });
      const pkt = Buffer.alloc(16);
      pkt.writeInt32BE(16, 0); pkt.writeInt32BE(80877102, 4); pkt.writeInt32BE(this.pid, 8); pkt.writeInt32BE(this.secret, 12);
      s.once('connect', () => s.end(pkt));
      s.once('close', () => resolve());
      s.once('error', () => resolve());
      s.setTimeout(2000, () => s.destroy());
    });
    this.cancelSent = sent;
    return sent;
  }
}

/** The answer to a server's Authentication request during startup (null: nothing to send);
 *  throws a PgError when it cannot be answered. `auth.scram` carries a SCRAM exchange. */
function authReply(msg: Buffer, cred: ServerCredentials, shardName: string, auth: { scram: ScramExchange | null }): Buffer | null {
  const code = msg.readInt32BE(5);
  if (code === AUTH.Ok) return null;
  if (code === AUTH.Cleartext || code === AUTH.MD5) {
    if (cred.password === undefined) throw new PgError(SQLSTATE.InvalidPassword, `shard "${shardName}" asks a password for user "${cred.user}" and none is configured`);
    const pw = code === AUTH.MD5 ? md5Response(cred.user, cred.password, msg.subarray(9, 13)) : cred.password;
    return new Writer().cstr(pw).msg(0x70);
  } else if (code === AUTH.SASL) {
    const mechs: string[] = [];
    let off = 9;
    while (off < msg.length && msg[off] !== 0) { const [m, n] = readCString(msg, off); mechs.push(m); off = n; }
    if (!mechs.includes('SCRAM-SHA-256')) throw new PgError(SQLSTATE.FeatureNotSupported, `shard "${shardName}" offers no supported SASL mechanism (${mechs.join(', ')})`);
    if (cred.scramKeys) auth.scram = new ScramPassthroughClient(cred.scramKeys);
    else if (cred.password === undefined) throw new PgError(SQLSTATE.InvalidPassword, `shard "${shardName}" asks a password for user "${cred.user}" and none is configured`);
    else auth.scram = new ScramClient(cred.password);
    const first = auth.scram.clientFirst();
    return new Writer().cstr('SCRAM-SHA-256').int32(first.length).bytes(first).msg(0x70);
  } else if (code === AUTH.SASLContinue) {
    if (!auth.scram) throw new PgError(SQLSTATE.ProtocolViolation, 'unexpected SASLContinue');
    return new Writer().bytes(auth.scram.handleServerFirst(msg.subarray(9))).msg(0x70);
  } else if (code === AUTH.SASLFinal) {
    if (!auth.scram) throw new PgError(SQLSTATE.ProtocolViolation, 'unexpected SASLFinal');
    auth.scram.verifyServerFinal(msg.subarray(9));
    return null;
  } else {
    throw new PgError(SQLSTATE.FeatureNotSupported, `shard "${shardName}" requested unsupported authentication method ${code}`);
  }
}

/**
 * The server's one-byte answer to SSLRequest: back to the plain onread path (prefer, 'N'), or
 * TLS over the socket; then the startup packet. Failures name the backend.
 */
function sslNegotiation(conn: ServerConnection, socket: net.Socket, t: ServerTls, where: string, fail: (e: PgError) => void,
  onStartupData: ChunkHandler, sendStartup: () => void): ChunkHandler {
  return (chunk: Buffer) => {
    const answer = sslAnswer(t, chunk[0]!);
    if (answer === 'plain') {
      // prefer, server without SSL: back to the onread path (nothing is buffered after 'N')
      socket.removeAllListeners('data');
      readAccepted(socket, (c) => conn.onChunk(c));
      conn.onChunk = onStartupData;
      sendStartup();
      return;
    }
    if (answer !== 'tls') { fail(new PgError(SQLSTATE.ConnectionFailure, `could not connect to ${where}: ${answer}`)); return; }
    // nothing may follow 'S' before the handshake (libpq's CVE-2021-23222 check)
    if (chunk.length > 1) { fail(new PgError(SQLSTATE.ProtocolViolation, `could not connect to ${where}: received unencrypted data after SSL response`)); return; }
    socket.removeAllListeners('data');
    const ts = tls.connect({ ...t.connect, socket });
    conn.socket = ts;
    socket.on('error', () => undefined); // reported through the TLS socket
    ts.on('data', (c: Buffer) => conn.onChunk(c));
    ts.once('error', (err) => fail(new PgError(SQLSTATE.ConnectionFailure, `could not connect to ${where}: SSL error: ${err.message}`)));
    ts.once('secureConnect', () => { conn.encrypted = true; conn.onChunk = onStartupData; sendStartup(); });
  };
}
