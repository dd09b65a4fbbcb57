// auth.query (PgBouncer's auth_user + auth_query): a role not listed in the config logs in with
// the secret PostgreSQL stores for it, looked up through a configured user on the first shard's
// primary and cached briefly. SCRAM-SHA-256 verifier: a SCRAM exchange against StoredKey /
// ServerKey; during it the client's proof gives its ClientKey (proof XOR HMAC(StoredKey,
// AuthMessage), checked against StoredKey), which pgring keeps to authenticate to the servers
// as that role with SCRAM (backend/scram-passthrough.ts), as PgBouncer does. md5 hash: an md5
// exchange against the hash, and md5 to the servers with the same hash.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import pg from 'pg';
import type { UserConfig } from '../config/types';
import { PgError, SQLSTATE } from '../protocol/errors';
import { readCString } from '../protocol/messages';
import { isMd5Hash } from '../protocol/auth/md5';
import { parseScramVerifier } from '../protocol/auth/scram';
import { AuthStep, ClientAuth } from './auth';
import type { ProxyContext } from './session-types';

export const DEFAULT_AUTH_QUERY = 'SELECT usename, passwd FROM pg_shadow WHERE usename=$1';

/** Keys for SCRAM to the servers without the password (see the header). */
export interface ScramPassKeys { clientKey: Buffer; serverKey: Buffer }

interface Cached { at: number; secret: Promise<string | null> }
const caches = new WeakMap<ProxyContext, Map<string, Cached>>();

/** The stored secret of `user` (null: no such role, or no password), cached for auth.cacheMs. */
export function lookupSecret(ctx: ProxyContext, user: string, database: string): Promise<string | null> {
  const cfg = ctx.config.auth!;
  let cache = caches.get(ctx);
  if (!cache) caches.set(ctx, cache = new Map());
  const db = cfg.database ?? database;
  const key = `${db}\u0000${user}`;
  const hit = cache.get(key);
  if (hit && Date.now() - hit.at < cfg.cacheMs) return hit.secret;
  const secret = query(ctx, user, db);
  cache.set(key, { at: Date.now(), secret });
  secret.catch(() => cache!.delete(key)); // a failed lookup is not cached
  if (cache.size > 10000) cache.delete(cache.keys().next().value as string);
  return secret;
}

async function query(ctx: ProxyContext, user: string, database: string): Promise<string | null> {
  const cfg = ctx.config.auth!;
  const b = ctx.topology.primary(0);
  const c = new pg.Client({ host: b.host, port: b.port, user: cfg.user, password: cfg.password, database, connectionTimeoutMillis: ctx.config.pool.connectTimeoutMs });
  c.on('error', () => undefined);
  try {
    await c.connect();
    const r = await c.query({ text: cfg.query, values: [user], rowMode: 'array' });
    const row = r.rows[0] as unknown[] | undefined;
    const secret = row?.[1];
    return typeof secret === 'string' && secret !== '' ? secret : null;
  } finally { await c.end().catch(() => undefined); }
}

/** The login of an unlisted role: its UserConfig built from the stored secret, or null (unknown role);
 *  a PgError when the lookup itself fails. */
export async function userFromServer(ctx: ProxyContext, user: string, database: string): Promise<UserConfig | null | PgError> {
  let secret: string | null;
  try { secret = await lookupSecret(ctx, user, database); } catch (e) {
    const err = e as { code?: string; message: string };
    return PgError.fatal(SQLSTATE.ConnectionFailure, `could not look up role "${user}" with auth.query as "${ctx.config.auth!.user}": ${err.message}`);
  }
  if (secret === null) return null;
  if (isMd5Hash(secret)) return { name: user, auth: 'md5', password: secret, admin: false };
  if (parseScramVerifier(secret)) return { name: user, auth: 'scram-sha-256', password: secret, admin: false };
  return null; // anything else (a plain text password is not stored by PostgreSQL 14+): refused
}

const hmac = (key: Buffer, data: Buffer | string) => createHmac('sha256', key).update(data).digest();

/** Client authentication against a stored secret that also recovers the ClientKey of a SCRAM login. */
export class PassthroughAuth extends ClientAuth {
  /** Set after a successful SCRAM exchange. */
  scramKeys: ScramPassKeys | null = null;
  private clientFirstBare = '';
  private serverFirst = '';
  private sawFirst = false;

  constructor(username: string, user: UserConfig) { super(username, user); }

  override handle(msg: Buffer): AuthStep {
    const final = this.sawFirst ? msg.subarray(5).toString('latin1') : null;
    if (!this.sawFirst && this.user!.auth === 'scram-sha-256') this.noteClientFirst(msg);
    const step = super.handle(msg);
    if (!this.sawFirst && this.user!.auth === 'scram-sha-256' && 'send' in step && step.send) {
      this.serverFirst = step.send.subarray(9).toString('latin1');
      this.sawFirst = true;
    } else if (final !== null && 'ok' in step) {
      this.scramKeys = this.keysFrom(final);
      if (!this.scramKeys) return { error: PgError.fatal(SQLSTATE.InvalidPassword, `password authentication failed for user "${this.username}"`) };
    }
    return step;
  }

  private noteClientFirst(msg: Buffer): void {
    try {
      const [, off] = readCString(msg, 5);
      const len = msg.readInt32BE(off);
      const data = msg.subarray(off + 4, off + 4 + Math.max(len, 0)).toString('latin1');
      const second = data.indexOf(',', data.indexOf(',') + 1);
      this.clientFirstBare = second >= 0 ? data.slice(second + 1) : '';
    } catch { /* the state machine reports the malformed message */ }
  }

  /** ClientKey = proof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) must be StoredKey. */
  private keysFrom(final: string): ScramPassKeys | null {
    const v = parseScramVerifier(this.user!.password!);
    const at = final.lastIndexOf(',p=');
    if (!v || at < 0) return null;
    const proof = Buffer.from(final.slice(at + 3), 'base64');
    const authMessage = Buffer.from(`${this.clientFirstBare},${this.serverFirst},${final.slice(0, at)}`, 'latin1');
    const sig = hmac(v.storedKey, authMessage);
    if (proof.length !== sig.length) return null;
    const clientKey = Buffer.alloc(sig.length);
    for (let i = 0; i < sig.length; i++) clientKey[i] = proof[i]! ^ sig[i]!;
    const stored = createHash('sha256').update(clientKey).digest();
    return timingSafeEqual(stored, v.storedKey) ? { clientKey, serverKey: v.serverKey } : null;
  }
}

