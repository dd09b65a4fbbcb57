// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL implements it
// (src/backend/libpq/auth-scram.c, src/interfaces/libpq/fe-auth-scram.c).
// Pure state machines: the caller moves the bytes (SASLInitialResponse /
// AuthenticationSASLContinue / SASLResponse / AuthenticationSASLFinal).
//
// Channel binding: on a TLS connection the server also offers SCRAM-SHA-256-PLUS with
// tls-server-end-point (GS2 header `p=tls-server-end-point,,` and, in client-final, `c=` the
// base64 of that header followed by the hash of the server certificate), as PostgreSQL does.
// Without it, the GS2 headers `n,,` and `y,,` are accepted and the client-final `c=` must be
// their base64 (`biws` / `eSws`) matching the header the client sent first.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { AuthError } from './errors';
import { isMd5Hash } from './md5';
import { saslprep } from './saslprep';

export { AuthError } from './errors';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';
const CBIND_HEADER = 'p=tls-server-end-point,,';
export const SCRAM_DEFAULT_ITERATIONS = 4096;
const SCRAM_DEFAULT_SALT_LEN = 16;
const SCRAM_RAW_NONCE_LEN = 18;
const KEY_LEN = 32;

// ---------------------------------------------------------------- primitives

function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}
function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}
function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}
function safeEqual(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) { timingSafeEqual(a, a); return false; }
  return timingSafeEqual(a, b);
}

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Strict base64 decode; null when the text is not canonical base64. */
function b64decode(s: string): Buffer | null {
  return B64_RE.test(s) ? Buffer.from(s, 'base64') : null;
}

/** Per-process secret: makes mock salts and plain-password salts unguessable yet stable. */
const PROCESS_KEY = randomBytes(32);

// ---------------------------------------------------------------- key cache

export interface ScramKeys {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}
interface DerivedKeys extends ScramKeys {
  saltedPassword: Buffer;
  clientKey: Buffer;
}

const CACHE_MAX = 512;
// Key is a hash of (password, salt, iterations): the map never holds plaintext passwords.
const keyCache = new Map<string, DerivedKeys>();

/** Number of cached PBKDF2 results (for tests / metrics). */
export function scramCacheSize(): number { return keyCache.size; }
export function clearScramCache(): void { keyCache.clear(); }

/** PBKDF2 (SaltedPassword) and the keys derived from it, cached in a bounded LRU. */
function deriveKeys(password: string, salt: Buffer, iterations: number): DerivedKeys {
  const prepared = saslprep(password);
  const id = createHmac('sha256', PROCESS_KEY)
    .update(`${iterations}:${salt.toString('base64')}:`).update(prepared).digest('base64');
  const hit = keyCache.get(id);
  if (hit) {
    keyCache.delete(id); // refresh LRU position
    keyCache.set(id, hit);
    return hit;
  }
  const saltedPassword = pbkdf2Sync(prepared, salt, iterations, KEY_LEN, 'sha256');
  const clientKey = hmac(saltedPassword, 'Client Key');
  const keys: DerivedKeys = {
    iterations,
    salt: Buffer.from(salt),
    saltedPassword,
    clientKey,
    storedKey: sha256(clientKey),
    serverKey: hmac(saltedPassword, 'Server Key'),
  };
  keyCache.set(id, keys);
  if (keyCache.size > CACHE_MAX) keyCache.delete(keyCache.keys().next().value as string);
  return keys;
}

// ---------------------------------------------------------------- verifiers

/** True when `s` looks like a PostgreSQL SCRAM-SHA-256 secret (parses correctly). */
export function isScramVerifier(s: string): boolean {
  return parseScramVerifier(s) !== null;
}

/** Parses `SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>`; null if malformed. */
export function parseScramVerifier(s: string): ScramKeys | null {
  const m = /^SCRAM-SHA-256\$(\d+):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(s);
  if (!m) return null;
  const iterations = Number(m[1]);
  const salt = b64decode(m[2]!);
  const storedKey = b64decode(m[3]!);
  const serverKey = b64decode(m[4]!);
  if (!Number.isSafeInteger(iterations) || iterations < 1 || !salt || salt.length === 0 ||
      storedKey?.length !== KEY_LEN || serverKey?.length !== KEY_LEN) return null;
  return { iterations, salt, storedKey, serverKey };
}

/** Builds a PostgreSQL-compatible SCRAM-SHA-256 secret (random 16-byte salt by default). */
export function scramVerifier(password: string, salt: Buffer = randomBytes(SCRAM_DEFAULT_SALT_LEN), iterations = SCRAM_DEFAULT_ITERATIONS): string {
  if (!Number.isSafeInteger(iterations) || iterations < 1) throw new RangeError(`invalid SCRAM iteration count ${iterations}`);
  if (salt.length === 0) throw new RangeError('SCRAM salt must not be empty');
  const k = deriveKeys(password, salt, iterations);
  return `${SCRAM_SHA_256}$${iterations}:${salt.toString('base64')}$${k.storedKey.toString('base64')}:${k.serverKey.toString('base64')}`;
}

// ---------------------------------------------------------------- message parsing

function malformed(detail: string): AuthError {
  return new AuthError('malformed SCRAM message', '08P01', detail);
}

function sanitize(c: string | undefined): string {
  if (c === undefined || c === '') return 'end of input';
  const code = c.charCodeAt(0);
  return code >= 0x21 && code <= 0x7e ? c : `0x${code.toString(16).padStart(2, '0')}`;
}

/** Cursor over a SCRAM message (latin1 string = the exact bytes). */
class Reader {
  pos = 0;
  constructor(readonly s: string) {}
  get rest(): string { return this.s.slice(this.pos); }
  peek(): string | undefined { return this.s[this.pos]; }
  atEnd(): boolean { return this.pos >= this.s.length; }
  private value(): string {
    const end = this.s.indexOf(',', this.pos);
    const v = end < 0 ? this.s.slice(this.pos) : this.s.slice(this.pos, end);
    this.pos = end < 0 ? this.s.length : end + 1;
    return v;
  }
  /** `<attr>=<value>` followed by ',' or end. */
  attr(attr: string): string {
    if (this.peek() !== attr) throw malformed(`Expected attribute "${attr}" but found "${sanitize(this.peek())}".`);
    this.pos++;
    if (this.peek() !== '=') throw malformed(`Expected character "=" for attribute "${attr}".`);
    this.pos++;
    return this.value();
  }
  /** Any `<letter>=<value>`; returns [attr, value]. */
  anyAttr(): [string, string] {
    const a = this.peek();
    if (a === undefined || !/^[A-Za-z]$/.test(a)) throw malformed(`Attribute expected, but found invalid character "${sanitize(a)}".`);
    this.pos++;
    if (this.peek() !== '=') throw malformed(`Expected character "=" for attribute "${a}".`);
    this.pos++;
    return [a, this.value()];
  }
}

function toMessage(data: Buffer): string {
  if (data.length === 0) throw malformed('The message is empty.');
  if (data.includes(0)) throw malformed('Message length does not match input length.');
  return data.toString('latin1');
}

/** Printable ASCII except ',' (RFC 5802 `printable`). */
function validNonce(n: string): boolean {
  return n.length > 0 && /^[\x21-\x2b\x2d-\x7e]+$/.test(n);
}

function escapeSaslname(user: string): string {
  return Buffer.from(user, 'utf8').toString('latin1').replace(/=/g, '=3D').replace(/,/g, '=2C');
}

// ---------------------------------------------------------------- server

export interface ScramServerOptions {
  user: string;
  /**
   * Plain password, PostgreSQL SCRAM verifier, or null/undefined/'md5…' hash for
   * "mock" authentication (the exchange runs with a fake salt and always fails, so
   * clients cannot tell unknown users from wrong passwords, like PostgreSQL).
   */
  secret: string | null | undefined;
  /** Tests: fixed server nonce part (default: 18 random bytes, base64). */
  serverNonce?: string;
  /** Salt/iterations used when `secret` is a plain password (default: per-process salt, 4096). */
  salt?: Buffer;
  iterations?: number;
  /** tls-server-end-point data of the connection (channel-binding.ts); absent: not TLS, no -PLUS. */
  channelBinding?: Buffer | null;
}

export type ScramFinalResult = { ok: true; serverFinal: Buffer } | { ok: false };

/** Server side of SCRAM-SHA-256 for authenticating pgring's clients. */
export class ScramServer {
  readonly user: string;
  /** True when the exchange can only fail (no usable SCRAM secret for the user). */
  readonly doomed: boolean;
  /** Username sent in the client-first message (PostgreSQL ignores it; so do we). */
  clientUsername: string | null = null;
  private readonly keys: ScramKeys;
  private readonly serverNoncePart: string;
  private state: 'init' | 'first' | 'done' = 'init';
  private cbindFlag = '';
  private readonly binding: Buffer | null;
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';

  constructor(opts: ScramServerOptions) {
    this.user = opts.user;
    this.binding = opts.channelBinding ?? null;
    this.serverNoncePart = opts.serverNonce ?? randomBytes(SCRAM_RAW_NONCE_LEN).toString('base64');
    if (!validNonce(this.serverNoncePart)) throw new RangeError('invalid SCRAM server nonce');
    const secret = opts.secret;
    let keys: ScramKeys | null = null;
    if (typeof secret === 'string' && !isMd5Hash(secret)) {
      if (secret.startsWith(`${SCRAM_SHA_256}$`)) {
        keys = parseScramVerifier(secret);
      } else {
        const salt = opts.salt ?? createHmac('sha256', PROCESS_KEY).update('salt\0').update(opts.user).update('\0').update(secret).digest().subarray(0, SCRAM_DEFAULT_SALT_LEN);
        keys = deriveKeys(secret, salt, opts.iterations ?? SCRAM_DEFAULT_ITERATIONS);
      }
    }
    if (keys) {
      this.keys = keys;
      this.doomed = false;
    } else {
      // Mock: deterministic per user so repeated attempts show the same salt.
      const salt = createHmac('sha256', PROCESS_KEY).update('mock\0').update(opts.user).digest().subarray(0, SCRAM_DEFAULT_SALT_LEN);
      this.keys = { iterations: SCRAM_DEFAULT_ITERATIONS, salt, storedKey: randomBytes(KEY_LEN), serverKey: randomBytes(KEY_LEN) };
      this.doomed = true;
    }
  }

  /** SASL mechanisms to offer, in PostgreSQL's order. */
  get mechanisms(): string[] { return this.binding ? [SCRAM_SHA_256_PLUS, SCRAM_SHA_256] : [SCRAM_SHA_256]; }

  /** Consumes the SASLInitialResponse data; returns the server-first-message.
   *  `plus`: the client selected SCRAM-SHA-256-PLUS (only offered with a binding). */
  handleClientFirst(data: Buffer, plus = false): Buffer {
    if (this.state !== 'init') throw new AuthError('invalid SCRAM exchange state', '08P01');
    if (plus && !this.binding) throw new AuthError('client selected an invalid SASL authentication mechanism', '08P01');
    const r = new Reader(toMessage(data));
    const flag = r.peek();
    const noCbindData = 'The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.';
    switch (flag) {
      case 'p': {
        if (!plus) throw malformed('The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.');
        const type = r.attr('p');
        if (type !== 'tls-server-end-point') throw new AuthError(`unsupported SCRAM channel-binding type "${sanitize(type)}"`, '08P01');
        break;
      }
      case 'y':
        if (plus) throw malformed(noCbindData);
        // the client can bind but thinks we cannot: a downgrade, refused where we can
        if (this.binding) throw new AuthError('SCRAM channel binding negotiation error', '28000', 'The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding.');
        r.pos++;
        if (r.peek() !== ',') throw malformed(`Comma expected, but found character "${sanitize(r.peek())}".`);
        r.pos++;
        break;
      case 'n':
        if (plus) throw malformed(noCbindData);
        r.pos++;
        if (r.peek() !== ',') throw malformed(`Comma expected, but found character "${sanitize(r.peek())}".`);
        r.pos++;
        break;
      default:
        throw malformed(`Unexpected channel-binding flag "${sanitize(flag)}".`);
    }
    if (r.peek() === 'a') throw new AuthError('client uses authorization identity, but it is not supported', '0A000');
    if (r.peek() !== ',') throw malformed(`Unexpected attribute "${sanitize(r.peek())}" in client-first-message.`);
    r.pos++;
    const bare = r.rest;
    if (r.peek() === 'm') throw new AuthError('client requires an unsupported SCRAM extension', '0A000');
    const username = r.attr('n');
    const clientNonce = r.attr('r');
    if (!validNonce(clientNonce)) throw malformed('client nonce contains invalid characters');
    while (!r.atEnd()) r.anyAttr(); // optional extensions are ignored

    this.cbindFlag = flag;
    this.clientFirstBare = bare;
    this.clientUsername = Buffer.from(username.replace(/=2C/g, ',').replace(/=3D/g, '='), 'latin1').toString('utf8');
    this.nonce = clientNonce + this.serverNoncePart;
    this.serverFirst = `r=${this.nonce},s=${this.keys.salt.toString('base64')},i=${this.keys.iterations}`;
    this.state = 'first';
    return Buffer.from(this.serverFirst, 'latin1');
  }

  /**
   * Consumes the SASLResponse data. Wrong proof or nonce (or a doomed exchange) gives
   * { ok: false } (send 28P01 "password authentication failed for user ..."); malformed
   * input or a wrong channel-binding attribute throws AuthError (08P01), as PostgreSQL does.
   */
  handleClientFinal(data: Buffer): ScramFinalResult {
    if (this.state !== 'first') throw new AuthError('invalid SCRAM exchange state', '08P01');
    this.state = 'done';
    const msg = toMessage(data);
    const r = new Reader(msg);
    const cbind = r.attr('c');
    if (this.cbindFlag === 'p') {
      const expected = Buffer.concat([Buffer.from(CBIND_HEADER, 'latin1'), this.binding!]).toString('base64');
      if (cbind !== expected) throw new AuthError('SCRAM channel binding check failed', '28000');
    } else if (!((cbind === 'biws' && this.cbindFlag === 'n') || (cbind === 'eSws' && this.cbindFlag === 'y'))) {
      throw new AuthError('unexpected SCRAM channel-binding attribute in client-final-message', '08P01');
    }
    const finalNonce = r.attr('r');
    let proofStart: number;
    let attr: string;
    let value: string;
    do {
      proofStart = r.pos;
      [attr, value] = r.anyAttr();
    } while (attr !== 'p');
    const proof = b64decode(value);
    if (!proof || proof.length !== KEY_LEN) throw malformed('Malformed proof in client-final-message.');
    if (!r.atEnd() || msg.endsWith(',')) throw malformed('Garbage found at the end of client-final-message.');
    const withoutProof = msg.slice(0, proofStart - 1); // drop the ',' before "p="

    const authMessage = Buffer.from(`${this.clientFirstBare},${this.serverFirst},${withoutProof}`, 'latin1');
    const clientSignature = hmac(this.keys.storedKey, authMessage);
    const clientKey = xor(proof, clientSignature);
    const proofOk = safeEqual(sha256(clientKey), this.keys.storedKey);
    const nonceOk = safeEqual(Buffer.from(finalNonce, 'latin1'), Buffer.from(this.nonce, 'latin1'));
    if (!nonceOk || !proofOk || this.doomed) return { ok: false };
    const serverSignature = hmac(this.keys.serverKey, authMessage);
    return { ok: true, serverFinal: Buffer.from(`v=${serverSignature.toString('base64')}`, 'latin1') };
  }
}

// ---------------------------------------------------------------- client

export interface ScramClientOptions {
  /** Username in client-first (libpq sends an empty one; the server uses the startup user). */
  user?: string;
  /** Tests: fixed client nonce (default: 18 random bytes, base64). */
  nonce?: string;
}

/** Client side of SCRAM-SHA-256, for pgring authenticating to a PostgreSQL server. */
export class ScramClient {
  private readonly nonce: string;
  private readonly clientFirstBare: string;
  private state: 'init' | 'first' | 'final' | 'done' = 'init';
  private expectedServerSignature: Buffer | null = null;

  constructor(private readonly password: string, opts: ScramClientOptions = {}) {
    this.nonce = opts.nonce ?? randomBytes(SCRAM_RAW_NONCE_LEN).toString('base64');
    if (!validNonce(this.nonce)) throw new RangeError('invalid SCRAM client nonce');
    this.clientFirstBare = `n=${escapeSaslname(opts.user ?? '')},r=${this.nonce}`;
  }

  /** The mechanism name to put in SASLInitialResponse. */
  get mechanism(): string { return SCRAM_SHA_256; }

  /** client-first-message (GS2 header `n,,`): the SASLInitialResponse data. */
  clientFirst(): Buffer {
    if (this.state !== 'init') throw new AuthError('invalid SCRAM exchange state', '08P01');
    this.state = 'first';
    return Buffer.from(`n,,${this.clientFirstBare}`, 'latin1');
  }

  /** Consumes AuthenticationSASLContinue data; returns client-final-message (SASLResponse data). */
  handleServerFirst(data: Buffer): Buffer {
    if (this.state !== 'first') throw new AuthError('invalid SCRAM exchange state', '08P01');
    this.state = 'final';
    const serverFirst = toMessage(data);
    const r = new Reader(serverFirst);
    const nonce = r.attr('r');
    if (nonce.length <= this.nonce.length || !nonce.startsWith(this.nonce) || !validNonce(nonce)) {
      throw new AuthError('invalid SCRAM response (nonce mismatch)', '08P01');
    }
    const salt = b64decode(r.attr('s'));
    if (!salt || salt.length === 0) throw new AuthError('malformed SCRAM message (invalid salt)', '08P01');
    const iterText = r.attr('i');
    const iterations = /^\d{1,10}$/.test(iterText) ? Number(iterText) : NaN;
    if (!(iterations >= 1)) throw new AuthError('malformed SCRAM message (invalid iteration count)', '08P01');
    if (!r.atEnd() || serverFirst.endsWith(',')) throw new AuthError('malformed SCRAM message (garbage at end of server-first-message)', '08P01');

    const keys = deriveKeys(this.password, salt, iterations);
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = Buffer.from(`${this.clientFirstBare},${serverFirst},${withoutProof}`, 'latin1');
    const proof = xor(keys.clientKey, hmac(keys.storedKey, authMessage));
    this.expectedServerSignature = hmac(keys.serverKey, authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'latin1');
  }

  /** Checks AuthenticationSASLFinal data; throws AuthError unless the server proved it knows the secret. */
  verifyServerFinal(data: Buffer): void {
    if (this.state !== 'final' || !this.expectedServerSignature) throw new AuthError('invalid SCRAM exchange state', '08P01');
    this.state = 'done';
    const msg = toMessage(data);
    if (msg.startsWith('e=')) {
      throw new AuthError(`error received from server in SCRAM exchange: ${msg.slice(2)}`, '28000');
    }
    const r = new Reader(msg);
    const sig = b64decode(r.attr('v'));
    if (!sig) throw new AuthError('malformed SCRAM message (invalid server signature)', '08P01');
    if (!r.atEnd()) throw new AuthError('malformed SCRAM message (garbage at end of server-final-message)', '08P01');
    if (!safeEqual(sig, this.expectedServerSignature)) throw new AuthError('incorrect server signature', '28000');
  }
}
