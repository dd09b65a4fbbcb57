// Authentication of a client, as a state machine that does no I/O: it yields the
// bytes to send and consumes PasswordMessage / SASL messages.
import { randomBytes } from 'node:crypto';
import type * as tls from 'node:tls';
import type { UserConfig } from '../config/types';
import { AUTH } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import { authRequest, authSasl, readCString } from '../protocol/messages';
import { ScramServer, SCRAM_SHA_256, SCRAM_SHA_256_PLUS } from '../protocol/auth/scram';
import { tlsServerEndPoint } from '../protocol/auth/channel-binding';
import { verifyMd5 } from '../protocol/auth/md5';
import { MsgCursor } from '../protocol/frontend-check';

export type AuthStep = { send: Buffer } | { ok: true; send?: Buffer } | { error: PgError };

export class ClientAuth {
  private salt: Buffer | null = null;
  private scram: ScramServer | null = null;
  private stage: 'start' | 'password' | 'sasl-initial' | 'sasl-final' | 'done' = 'start';

  /** `user` is undefined when the name is not configured: the exchange then always fails.
   *  `trustOnly`: every configured user logs in with trust, so an unknown name is answered as
   *  PostgreSQL answers it under trust (role does not exist); otherwise it gets a mock SCRAM
   *  exchange that fails, as PostgreSQL's for an unknown role under scram-sha-256, so that
   *  user names cannot be probed.
   *  `tlsSocket`: the client's TLS socket, whose certificate SCRAM-SHA-256-PLUS binds to. */
  constructor(readonly username: string, readonly user: UserConfig | undefined, private readonly trustOnly = false, private readonly tlsSocket: tls.TLSSocket | null = null) {}

  /** tls-server-end-point data of this connection, or null (plain, or a certificate it cannot bind). */
  private channelBinding(): Buffer | null {
    const raw = (this.tlsSocket?.getCertificate() as { raw?: Buffer } | null | undefined)?.raw;
    return raw ? tlsServerEndPoint(raw) : null;
  }

  private failed(): PgError {
    return PgError.fatal(SQLSTATE.InvalidPassword, `password authentication failed for user "${this.username}"`);
  }

  start(): AuthStep {
    if (!this.user && this.trustOnly) return { error: PgError.fatal(SQLSTATE.InvalidAuthorization, `role "${this.username}" does not exist`) };
    const method = this.user?.auth ?? 'scram-sha-256';
    if (this.user && method === 'trust') { this.stage = 'done'; return { ok: true }; }
    if (method === 'cleartext') { this.stage = 'password'; return { send: authRequest(AUTH.Cleartext) }; }
    if (method === 'md5') {
      this.salt = randomBytes(4);
      this.stage = 'password';
      return { send: authRequest(AUTH.MD5, this.salt) };
    }
    this.scram = new ScramServer({ user: this.username, secret: this.user?.password ?? null, channelBinding: this.channelBinding() });
    this.stage = 'sasl-initial';
    return { send: authSasl(this.scram.mechanisms) };
  }

  /** Consumes one 'p' message (the whole message, header included). */
  handle(msg: Buffer): AuthStep {
    try {
      switch (this.stage) {
        case 'password': {
          // PostgreSQL: the password is one string filling the message
          if (msg.indexOf(0, 5) !== msg.length - 1) return { error: PgError.fatal(SQLSTATE.ProtocolViolation, 'invalid password packet size') };
          const [given] = readCString(msg, 5);
          this.stage = 'done';
          const pw = this.user?.password;
          if (!this.user || pw === undefined) return { error: this.failed() };
          const ok = this.salt ? verifyMd5(this.username, pw, this.salt, given) : given === pw;
          return ok ? { ok: true } : { error: this.failed() };
        }
        case 'sasl-initial': {
          const c = new MsgCursor(msg);
          const mech = c.cstring();
          const len = c.int32();
          const start = c.off;
          if (len !== -1) c.skip(len);
          c.end();
          if (!this.scram!.mechanisms.includes(mech)) {
            return { error: PgError.fatal(SQLSTATE.ProtocolViolation, `client selected an invalid SASL authentication mechanism`) };
          }
          const data = len < 0 ? Buffer.alloc(0) : msg.subarray(start, start + len);
          const reply = this.scram!.handleClientFirst(data, mech === SCRAM_SHA_256_PLUS);
          this.stage = 'sasl-final';
          return { send: authRequest(AUTH.SASLContinue, reply) };
        }
        case 'sasl-final': {
          const r = this.scram!.handleClientFinal(msg.subarray(5));
          this.stage = 'done';
          if (!r.ok || !this.user) return { error: this.failed() };
          return { ok: true, send: authRequest(AUTH.SASLFinal, r.serverFinal) };
        }
        default:
          return { error: PgError.fatal(SQLSTATE.ProtocolViolation, 'unexpected authentication message') };
      }
    } catch (e) {
      const code = (e as { code?: string }).code;
      const detail = (e as { detail?: string }).detail;
      return { error: PgError.fatal(code && /^[0-9A-Z]{5}$/.test(code) ? code : SQLSTATE.ProtocolViolation, (e as Error).message, detail ? { detail } : undefined) };
    }
  }
}
