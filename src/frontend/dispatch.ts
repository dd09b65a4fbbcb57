// Client bytes in: reads the socket, frames messages, and hands each one to the module
// that handles its type, strictly in order (the inbox and the pump).
import { FRONTEND } from '../protocol/frontend-check';
import { F } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import { buildError, queryText, readyForQuery } from '../protocol/messages';
import { MessageReader, ProtocolViolation } from '../protocol/reader';
import { parseStartup } from '../protocol/startup';
import { beginWriteBatch, endWriteBatch } from '../backend/server';
import { tickReadTime } from '../clock';
import type { ClientSession } from './client';
import { K } from './session-types';

export class Dispatch {
  private readonly reader = new MessageReader(FRONTEND); // PostgreSQL's limits and layout checks (08P01)
  /** The pump is draining the inbox: new messages queue behind it. */
  private pumping = false;

  constructor(private readonly s: ClientSession) {}

  readonly onMessageBound = (t: number, m: Buffer): void => this.onMessage(t, m);

  onData(chunk: Buffer): void {
    if (this.s.phase === 'closed') return;
    if (this.s.relay) { this.s.relay(chunk); return; } // a replication connection (replication.ts)
    tickReadTime();
    // Everything the messages of this read send to servers leaves in one write per server.
    beginWriteBatch();
    try {
      this.onChunk(chunk);
    } finally {
      endWriteBatch();
    }
    if (!this.pumping) this.s.flush();
    this.s.checkInbound();
  }

  onChunk(chunk: Buffer): void {
    try {
      if (this.s.startupReader) {
        const r = this.s.startupReader.feed(chunk);
        if (!r) return;
        this.s.startupReader = null;
        if (r.rest.length && !this.s.tls && this.s.ctx.config.tls && parseStartup(r.packet).kind === 'ssl') {
          // bytes sent in the clear after SSLRequest, before the handshake (CVE-2021-23214)
          this.s.lifecycle.fatal(PgError.fatal(SQLSTATE.ProtocolViolation, 'received unencrypted data after SSL request'));
          return;
        }
        this.s.lifecycle.onStartupPacket(r.packet);
        if (r.rest.length && (this.s.phase as string) !== 'closed') {
          if (this.s.startupReader) { this.onChunk(r.rest); return; }
          this.reader.feed(r.rest, this.onMessageBound);
        }
        return;
      }
      this.reader.feed(chunk, this.onMessageBound);
    } catch (e) {
      if (e instanceof ProtocolViolation && e.silent) { this.s.ctx.log?.debug?.({ err: e.message }, 'client closed'); this.s.lifecycle.close(); }
      else if (e instanceof ProtocolViolation) this.s.lifecycle.fatal(PgError.fatal(SQLSTATE.ProtocolViolation, e.message));
      else this.s.lifecycle.fatal(PgError.fatal(SQLSTATE.InternalError, `pgring internal error: ${(e as Error).message}`));
    }
  }

  onMessage(type: number, msg: Buffer): void {
    if (this.s.phase === 'auth') {
      if (type !== F.Password || !this.s.auth) throw new ProtocolViolation(`expected password response, got message type 0x${type.toString(16)}`);
      this.s.lifecycle.authStep(this.s.auth.handle(msg));
      return;
    }
    if (type === F.Terminate) { this.s.lifecycle.close(); return; }
    if (!this.pumping && this.s.phase === 'ready' && this.s.inbox.length === 0 && !this.s.ctx.paused) {
      // Fast path: handle the message now; only work that waits (a pool, a lock, a commit) goes through the pump.
      let r: Promise<void> | void;
      try { r = this.handle(type, msg); } catch (e) { this.failSession(e); return; }
      if (r || this.s.blockingWork) void this.pump(r || undefined);
      return;
    }
    this.s.inbox.push({ type, msg });
    this.s.inboxBytes += msg.length;
    if (!this.pumping && this.s.phase === 'ready') void this.pump();
  }

  /** Handles queued client messages in order, waiting for each one that has to wait. */
  async pump(first?: Promise<void>): Promise<void> {
    this.pumping = true;
    try {
      if (first) {
        this.s.flush();
        await first;
      }
      // work that waited may leave more (a COMMIT deferred behind requests in flight starts the
      // distributed commit when it runs): the next message waits for all of it
      for (let bw = this.takeBlockingWork(); bw; bw = this.takeBlockingWork()) await bw;
      while (this.s.inbox.length && this.s.phase === 'ready') {
        if (this.s.ctx.paused && !this.s.admin) await this.s.ctx.paused;
        const { type, msg } = this.s.inbox.shift()!;
        this.s.inboxBytes -= msg.length;
        if (this.s.inboxBytes <= 0) { this.s.inboxBytes = 0; this.s.resumeInbound(); }
        const r = this.handle(type, msg);
        if (r) {
          this.s.flush();
          await r;
        }
        for (let w = this.takeBlockingWork(); w; w = this.takeBlockingWork()) await w;
      }
    } catch (e) {
      this.failSession(e);
    } finally {
      this.pumping = false;
      this.s.flush();
    }
  }

  /** Work the last message left that nothing may overtake (e.g. a distributed commit), taken
   *  with the client's pending output flushed; null when there is none (no await, no tick). */
  private takeBlockingWork(): Promise<void> | null {
    const w = this.s.blockingWork;
    if (!w) return null;
    this.s.blockingWork = null;
    this.s.flush();
    return w;
  }

  /** An error no statement can answer: end the session with the right SQLSTATE. */
  failSession(e: unknown): void {
    if (e instanceof ProtocolViolation) this.s.lifecycle.fatal(PgError.fatal(SQLSTATE.ProtocolViolation, e.message));
    else if (e instanceof PgError && e.severity === 'FATAL') this.s.lifecycle.fatal(e);
    else {
      this.s.ctx.log.error({ err: e }, 'client session error');
      this.s.lifecycle.fatal(PgError.fatal(SQLSTATE.InternalError, `pgring internal error: ${(e as Error).message}`));
    }
  }

  handle(type: number, msg: Buffer): Promise<void> | void {
    if (this.s.skipUntilSync && type !== F.Sync) return;
    // After a failure in this extended-protocol unit PostgreSQL ignores everything up to Sync.
    if ((type === F.Parse || type === F.Bind || type === F.Describe || type === F.Execute || type === F.Close || type === F.Query) && this.s.unitLinks.size !== 0 && this.s.ext.unitFailed()) return;
    if (this.s.admin) return this.handleAdmin(type, msg);
    switch (type) {
      case F.Query: return this.s.simple.onQuery(msg);
      case F.Parse: return this.s.ext.onParse(msg);
      case F.Bind: return this.s.ext.onBind(msg);
      case F.Describe: return this.s.ext.onDescribe(msg);
      case F.Execute: return this.s.ext.onExecute(msg);
      case F.Close: return this.s.ext.onClose(msg);
      case F.Sync: return this.s.ext.onSync();
      case F.Flush: return this.s.ext.onFlush();
      case F.CopyData: case F.CopyDone: case F.CopyFail: return this.s.copy.onCopyMessage(type, msg);
      case F.FunctionCall: return this.onFunctionCall(msg);
      default:
        throw new ProtocolViolation(`invalid frontend message type ${type}`);
    }
  }

  async handleAdmin(type: number, msg: Buffer): Promise<void> {
    if (type === F.Sync) { this.s.write(readyForQuery('I')); return; }
    if (type !== F.Query) {
      this.s.write(buildError({ code: SQLSTATE.FeatureNotSupported, message: 'the pgring admin console accepts simple queries only' }));
      return;
    }
    const sql = queryText(msg);
    try {
      const out = this.s.ctx.admin ? await this.s.ctx.admin(this.s, sql) : [buildError({ code: SQLSTATE.FeatureNotSupported, message: 'admin console is not available' })];
      for (const b of out) this.s.write(b);
    } catch (e) {
      const err = e instanceof PgError ? e : new PgError(SQLSTATE.InternalError, (e as Error).message);
      this.s.write(err.toMessage());
    }
    this.s.write(readyForQuery('I'));
  }

  async onFunctionCall(msg: Buffer): Promise<void> {
    try {
      const link = await this.s.servers.link(this.s.routing.preferredShard());
      const p = this.s.responses.push(K.Query, link, false);
      p.plans = [];
      link.conn.write(msg);
      // FunctionCallResponse is followed by ReadyForQuery, like a simple query.
      this.s.responses.rfq();
    } catch (e) { this.s.simple.queryError(e); }
  }
}
