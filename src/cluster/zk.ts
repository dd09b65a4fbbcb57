// A small typed facade over the `zookeeper` package (native C client, promise API).
//
// Rules it enforces:
// - the native handles run in a worker thread, off the proxy's event loop (zk-thread.ts: the
//   binding's stale socket watcher could otherwise deafen a client socket after a reconnect);
// - errors are ZkError with a typed `code` parsed from the package's message text
//   ("-101 no node" from completions, `result: "ZINVALIDSTATE -9"` from refused calls);
// - a handle that closed (by us, by session expiry, by auth failure) is dead: every later
//   call throws ZkError('SESSIONEXPIRED') without touching the native handle;
// - versions are always passed explicitly (-1 means "any version");
// - `response_counter_limit` is set high: the package otherwise closes the handle as
//   "expired" after 10 empty reads while the server is unreachable;
// - every call has a deadline: the native client was seen to leave a call unanswered
//   forever after a connection loss. A call without an answer after `opTimeoutMs` fails
//   with OPERATIONTIMEOUT and the handle is closed as dead, so the session supervisor
//   opens a new session instead of everything waiting on a wedged one;
// - `zkOpCounts` counts the requests per operation (PGRING_TXN_STATS=1 prints them at exit).
//   Each request costs more than its round trip: the C client resolves its server list
//   (getaddrinfo with AI_ADDRCONFIG) at every I/O event, since the binding does not expose
//   zoo_set_servers_resolution_delay, and the package's JavaScript wrapper formats every call's
//   arguments with util.inspect for a debug log it discards (~7 µs). Calling the binding's
//   handle directly was tried and reverted: with it the fail-closed test's ZooKeeper session
//   expired under load (cause not found); only fewer requests make them cheaper;
// - with `auth`, the handle authenticates (digest) and every node it creates carries an ACL
//   that gives that identity every permission and nobody else any (see create()).
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { ThreadedZooKeeper } from './zk-thread';
import { loadBinding } from './zk-binding';

// The package's own typings declare odd module names; we type the small part we use.
interface NativeStat {
  czxid: number; mzxid: number; pzxid: number; dataLength: number; numChildren: number;
  version: number; cversion: number; aversion: number; ctime: Date; mtime: Date;
  ephemeralOwner: string; createdInThisSession: boolean;
}
interface NativeAcl { perms?: number; perm?: number; scheme: string; auth: string }
type NativeWatchCb = (type: number, state: number, path: string) => void;
interface NativeZooKeeper extends EventEmitter {
  init(config: Record<string, unknown>): NativeZooKeeper;
  close(): unknown;
  create(path: string, data: string | Buffer, flags: number): Promise<string>;
  exists(path: string, watch: boolean): Promise<NativeStat>;
  w_exists(path: string, cb: NativeWatchCb): Promise<NativeStat>;
  get(path: string, watch: boolean): Promise<[NativeStat, Buffer | null]>;
  w_get(path: string, cb: NativeWatchCb): Promise<[NativeStat, Buffer | null]>;
  get_children(path: string, watch: boolean): Promise<string[]>;
  w_get_children(path: string, cb: NativeWatchCb): Promise<string[]>;
  set(path: string, data: string | Buffer, version: number): Promise<NativeStat>;
  delete_(path: string, version: number): Promise<unknown>;
  set_acl(path: string, version: number, acl: NativeAcl[]): Promise<unknown>;
  get_acl(path: string): Promise<[NativeAcl[], NativeStat] | NativeAcl[]>;
  add_auth(scheme: string, auth: string, cb: (rc: number, error: string) => void): unknown;
  promisify(fn: (...args: never[]) => unknown, args: unknown[]): Promise<unknown>;
  readonly client_id: string;
  readonly client_password: string;
  readonly timeout: number;
}
// The native handles live in a worker thread (zk-thread.ts says why); this is their stand-in.
// PGRING_ZK_THREAD=0 puts them on the main event loop instead (measured in bench/ANALYSIS.md).
const NativeCtor = (process.env.PGRING_ZK_THREAD === '0' ? loadBinding() : ThreadedZooKeeper) as unknown as { new (config: Record<string, unknown>): NativeZooKeeper };

export type ZkErrorCode =
  | 'SYSTEMERROR' | 'RUNTIMEINCONSISTENCY' | 'DATAINCONSISTENCY' | 'CONNECTIONLOSS'
  | 'MARSHALLINGERROR' | 'UNIMPLEMENTED' | 'OPERATIONTIMEOUT' | 'BADARGUMENTS' | 'INVALIDSTATE'
  | 'NEWCONFIGNOQUORUM' | 'RECONFIGINPROGRESS' | 'SSLCONNECTIONERROR' | 'APIERROR' | 'NONODE'
  | 'NOAUTH' | 'BADVERSION' | 'NOCHILDRENFOREPHEMERALS' | 'NODEEXISTS' | 'NOTEMPTY'
  | 'SESSIONEXPIRED' | 'INVALIDCALLBACK' | 'INVALIDACL' | 'AUTHFAILED' | 'CLOSING' | 'NOTHING'
  | 'SESSIONMOVED' | 'NOTREADONLY' | 'EPHEMERALONLOCALSESSION' | 'NOWATCHER' | 'RECONFIGDISABLED'
  | 'SESSIONCLOSEDREQUIRESASLAUTH' | 'THROTTLEDOP' | 'UNKNOWN';

const CODES: Record<number, ZkErrorCode> = {
  [-1]: 'SYSTEMERROR', [-2]: 'RUNTIMEINCONSISTENCY', [-3]: 'DATAINCONSISTENCY', [-4]: 'CONNECTIONLOSS',
  [-5]: 'MARSHALLINGERROR', [-6]: 'UNIMPLEMENTED', [-7]: 'OPERATIONTIMEOUT', [-8]: 'BADARGUMENTS',
  [-9]: 'INVALIDSTATE', [-13]: 'NEWCONFIGNOQUORUM', [-14]: 'RECONFIGINPROGRESS', [-15]: 'SSLCONNECTIONERROR',
  [-100]: 'APIERROR', [-101]: 'NONODE', [-102]: 'NOAUTH', [-103]: 'BADVERSION',
  [-108]: 'NOCHILDRENFOREPHEMERALS', [-110]: 'NODEEXISTS', [-111]: 'NOTEMPTY', [-112]: 'SESSIONEXPIRED',
  [-113]: 'INVALIDCALLBACK', [-114]: 'INVALIDACL', [-115]: 'AUTHFAILED', [-116]: 'CLOSING',
  [-117]: 'NOTHING', [-118]: 'SESSIONMOVED', [-119]: 'NOTREADONLY', [-120]: 'EPHEMERALONLOCALSESSION',
  [-121]: 'NOWATCHER', [-122]: 'RECONFIGDISABLED', [-123]: 'SESSIONCLOSEDREQUIRESASLAUTH', [-124]: 'THROTTLEDOP',
};

/** Codes after which the operation may be retried on the same session once it reconnects. */
export const RETRYABLE_CODES: ReadonlySet<ZkErrorCode> = new Set(['CONNECTIONLOSS', 'OPERATIONTIMEOUT']);

export class ZkError extends Error {
  constructor(readonly code: ZkErrorCode, message: string, readonly rc?: number, readonly path?: string) {
    super(message);
    this.name = 'ZkError';
  }
}

export function isZkError(e: unknown, ...codes: ZkErrorCode[]): e is ZkError {
  return e instanceof ZkError && (codes.length === 0 || codes.includes(e.code));
}

/** Turns the package's error text into a ZkError (exported for unit tests). */
export function parseZkError(err: unknown, op: string, path?: string): ZkError {
  if (err instanceof ZkError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  let rc: number | undefined;
  const m1 = /^\s*(-?\d+)\s/.exec(msg);                         // completion: "-101 no node"
  const m2 = /result: "Z([A-Z_]+) (-?\d+)"/.exec(msg);          // refused call: result: "ZINVALIDSTATE -9"
  if (m1) rc = Number(m1[1]);
  else if (m2) rc = Number(m2[2]);
  const code: ZkErrorCode = (rc !== undefined && CODES[rc]) || (m2 ? (m2[1] as ZkErrorCode) : 'UNKNOWN');
  return new ZkError(code, `ZooKeeper ${op}${path ? ` ${path}` : ''}: ${code}${msg ? ` (${msg})` : ''}`, rc, path);
}

export interface Stat {
  czxid: number; mzxid: number; pzxid: number;
  version: number; cversion: number; aversion: number;
  dataLength: number; numChildren: number;
  ctime: Date; mtime: Date;
  /** hex session id of the owning session for ephemerals, '0' for persistent nodes */
  ephemeralOwner: string;
}

export type CreateMode = 'persistent' | 'ephemeral' | 'persistent_sequential' | 'ephemeral_sequential';
const FLAGS: Record<CreateMode, number> = { persistent: 0, ephemeral: 1, persistent_sequential: 2, ephemeral_sequential: 3 };

export type WatchEventType = 'created' | 'deleted' | 'changed' | 'child' | 'session' | 'notwatching' | 'unknown';
export interface WatchEvent { type: WatchEventType; state: number; path: string }
export type Watcher = (ev: WatchEvent) => void;
const EVENT_TYPES: Record<number, WatchEventType> = { 1: 'created', 2: 'deleted', 3: 'changed', 4: 'child', [-1]: 'session', [-2]: 'notwatching' };

export type ZkLogLevel = 'none' | 'error' | 'warn' | 'info' | 'debug';
const LOG_LEVELS: Record<ZkLogLevel, number> = { none: 0, error: 1, warn: 2, info: 3, debug: 4 };

/** ZooKeeper credentials (config `zookeeper.auth`): the digest scheme, user and password. */
export interface ZkAuth { scheme: 'digest'; user: string; password: string }

const PERM = { READ: 1, WRITE: 2, CREATE: 4, DELETE: 8, ADMIN: 16, ALL: 31 } as const;

/** The digest ACL id of user:password, as ZooKeeper's DigestAuthenticationProvider computes it. */
export function digestId(user: string, password: string): string {
  return `${user}:${createHash('sha1').update(`${user}:${password}`).digest('base64')}`;
}

export interface ZkOptions {
  /** "host:port[,host:port...][/chroot]" */
  connect: string;
  /** requested session timeout (the server negotiates within its min/max); default 10000 */
  sessionTimeoutMs?: number;
  /** native client log level (printed to stderr); default 'error' */
  logLevel?: ZkLogLevel;
  /** resume an existing session (both or neither); used by tests to force expiry */
  sessionId?: string;
  sessionPassword?: string;
  /** deadline of one call; default twice the session timeout, at least 20 s */
  opTimeoutMs?: number;
  /** authenticate with these credentials and give every created node their ACL */
  auth?: ZkAuth;
  /** with `auth`: nodes above this path (shared parents such as /pgring, where several clusters
   *  with other credentials create their roots) also let anyone READ and CREATE children */
  protectedRoot?: string;
}

export type ZkDeathReason = 'closed' | 'expired' | 'authfailed';

let handleCounter = 0;

/** ZooKeeper requests sent by this process, per operation (for the benchmarks' ops-per-transaction figures). */
export const zkOpCounts: Record<string, number> = { create: 0, get: 0, set: 0, delete: 0, exists: 0, children: 0, set_acl: 0, get_acl: 0 };

/**
 * One native ZooKeeper handle = at most one session. Events:
 * 'connected' (every (re)connection of this session), 'disconnected' (connection lost, session
 * may live), 'dead' (reason: ZkDeathReason, rc: number) once, after which it is unusable.
 */

export class Zk extends EventEmitter {
  readonly handleId = ++handleCounter;
  private native: NativeZooKeeper | null;
  private _connected = false;
  private _dead: ZkDeathReason | null = null;
  private lastSessionId = '0';
  private lastPassword = '';
  private lastTimeout = 0;

  constructor(readonly opts: ZkOptions) {
    super();
    const cfg: Record<string, unknown> = {
      connect: opts.connect,
      timeout: opts.sessionTimeoutMs ?? 10000,
      debug_level: LOG_LEVELS[opts.logLevel ?? 'error'],
      host_order_deterministic: false,
      response_counter_limit: 1_000_000_000,
    };
    if (opts.sessionId !== undefined || opts.sessionPassword !== undefined) {
      cfg.client_id = opts.sessionId;
      cfg.client_password = opts.sessionPassword;
    }
    const native = new NativeCtor(cfg);
    this.native = native;
    native.on('connect', () => {
      if (this._dead) return;
      this._connected = true;
      this.remember();
      this.emit('connected');
    });
    native.on('connecting', () => {
      if (this._dead) return;
      const was = this._connected;
      this._connected = false;
      if (was) this.emit('disconnected');
    });
    native.on('close', (_self: unknown, code: unknown) => {
      const rc = typeof code === 'number' ? code : 0;
      this.markDead(rc === -112 ? 'expired' : rc === -113 ? 'authfailed' : 'closed', rc, false);
    });
    native.init({});
    // Queued before the connection is up; the native client sends it again after every reconnect.
    if (opts.auth) native.add_auth(opts.auth.scheme, `${opts.auth.user}:${opts.auth.password}`, () => undefined);
  }

  /** The ACL a node at `path` gets, or null (no auth configured: ZooKeeper's open ACL). */
  private aclFor(path: string): NativeAcl[] | null {
    const a = this.opts.auth;
    if (!a) return null;
    const own = { perm: PERM.ALL, scheme: 'digest', auth: digestId(a.user, a.password) };
    const root = this.opts.protectedRoot;
    if (root && root !== path && root.startsWith(path + '/')) return [own, { perm: PERM.READ | PERM.CREATE, scheme: 'world', auth: 'anyone' }];
    return [own];
  }

  /** Creates a handle and waits for its first connection (closes it and throws CONNECTIONLOSS on timeout). */
  static async connect(opts: ZkOptions & { connectTimeoutMs?: number }): Promise<Zk> {
    const zk = new Zk(opts);
    try {
      await zk.waitConnected(opts.connectTimeoutMs ?? 30000);
      return zk;
    } catch (e) {
      await zk.close();
      throw e;
    }
  }

  get connected(): boolean { return this._connected && !this._dead; }
  get dead(): boolean { return this._dead !== null; }
  get deathReason(): ZkDeathReason | null { return this._dead; }
  /** hex session id ('0' before the first connection) */
  get sessionId(): string { return this.lastSessionId; }
  get sessionPassword(): string { return this.lastPassword; }
  /** negotiated session timeout in ms (0 before the first connection) */
  get sessionTimeoutMs(): number { return this.lastTimeout; }

  private remember(): void {
    try {
      const n = this.native!;
      this.lastSessionId = String(n.client_id);
      this.lastPassword = String(n.client_password);
      this.lastTimeout = Number(n.timeout) > 0 ? Number(n.timeout) : (this.opts.sessionTimeoutMs ?? 10000);
    } catch { /* native handle gone */ }
  }

  waitConnected(timeoutMs: number): Promise<void> {
    if (this.connected) return Promise.resolve();
    if (this._dead) return Promise.reject(this.deadError('waitConnected'));
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.off('connected', onConn);
        this.off('dead', onDead);
        if (err) reject(err); else resolve();
      };
      const onConn = () => done();
      const onDead = () => done(this.deadError('waitConnected'));
      const timer = setTimeout(() => done(new ZkError('CONNECTIONLOSS',
        `ZooKeeper at ${this.opts.connect} not reachable within ${timeoutMs} ms`)), timeoutMs);
      this.on('connected', onConn);
      this.on('dead', onDead);
    });
  }

  private deadError(op: string, path?: string): ZkError {
    return new ZkError('SESSIONEXPIRED', `ZooKeeper ${op}${path ? ` ${path}` : ''}: SESSIONEXPIRED (handle ${this.handleId} is ${this._dead})`, -112, path);
  }

  private markDead(reason: ZkDeathReason, rc: number, closeNative: boolean): void {
    if (this._dead) return;
    this._dead = reason;
    this._connected = false;
    const native = this.native;
    this.native = null;
    if (closeNative && native) { try { native.close(); } catch { /* already closed */ } }
    this.emit('dead', reason, rc);
  }

  private get opTimeoutMs(): number {
    return this.opts.opTimeoutMs ?? Math.max(20000, 2 * (this.lastTimeout || this.opts.sessionTimeoutMs || 10000));
  }

  private async call<T>(op: string, path: string | undefined, fn: (n: NativeZooKeeper) => Promise<T>): Promise<T> {
    const native = this.native;
    if (this._dead || !native) throw this.deadError(op, path);
    zkOpCounts[op] = (zkOpCounts[op] ?? 0) + 1;
    let timer: NodeJS.Timeout | undefined;
    const ms = this.opTimeoutMs;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new ZkError('OPERATIONTIMEOUT', `ZooKeeper ${op}${path ? ` ${path}` : ''}: OPERATIONTIMEOUT (no answer within ${ms} ms; handle ${this.handleId} closed, the session will be replaced)`, -7, path);
        this.markDead('expired', -7, true);
        reject(err);
      }, ms);
    });
    try {
      return await Promise.race([fn(native), deadline]);
    } catch (e) {
      if (isZkError(e, 'OPERATIONTIMEOUT') && this._dead) throw e;
      const err = parseZkError(e, op, path);
      if (err.code === 'SESSIONEXPIRED' || err.code === 'INVALIDSTATE' || err.code === 'AUTHFAILED') {
        this.markDead(err.code === 'AUTHFAILED' ? 'authfailed' : 'expired', err.rc ?? -112, true);
        if (err.code === 'INVALIDSTATE') throw this.deadError(op, path);
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private wrapWatch(w: Watcher): NativeWatchCb {
    return (type, state, path) => {
      try { w({ type: EVENT_TYPES[type] ?? 'unknown', state, path }); } catch (e) {
        process.nextTick(() => { throw e; });
      }
    };
  }

  /**
   * Creates a node; returns its actual path (with the sequence suffix for sequential modes).
   * With `auth`: the native client creates every node with the open ACL (its create takes no
   * ACL), so the node's ACL is set right after, conditional on ACL version 0 (fails if anyone
   * changed it first). For a known path both requests are sent at once (one round trip; the
   * server applies a session's requests in order); a sequential node's name is known only
   * from the create's answer (two round trips).
   */
  async create(path: string, data: Buffer | string, mode: CreateMode): Promise<string> {
    const acl = this.aclFor(path);
    const created = this.call('create', path, (n) => n.create(path, data, FLAGS[mode]));
    if (!acl) return created;
    if (mode === 'persistent' || mode === 'ephemeral') {
      const secured = this.call('set_acl', path, (n) => n.set_acl(path, 0, acl));
      let actual: string;
      try { actual = await created; } catch (e) { secured.catch(() => undefined); throw e; }
      await this.secure(secured, path);
      return actual;
    }
    const actual = await created;
    await this.secure(this.call('set_acl', actual, (n) => n.set_acl(actual, 0, acl)), actual);
    return actual;
  }

  private async secure(p: Promise<unknown>, path: string): Promise<void> {
    try { await p; } catch (e) {
      if (isZkError(e, 'BADVERSION', 'NOAUTH')) throw new ZkError('NOAUTH', `ZooKeeper create ${path}: another client changed the ACL of the new node before pgring set it (${(e as Error).message})`, -102, path);
      throw e;
    }
  }

  /** The ACL of a node: [{perms, scheme, id}]. */
  async getAcl(path: string): Promise<{ perms: number; scheme: string; id: string }[]> {
    const r = await this.call('get_acl', path, (n) => n.get_acl(path));
    const list = (Array.isArray(r) && Array.isArray(r[0]) ? r[0] : r) as NativeAcl[];
    return list.map((a) => ({ perms: a.perms ?? a.perm ?? 0, scheme: a.scheme, id: a.auth }));
  }

  async get(path: string, watch?: Watcher): Promise<{ data: Buffer; stat: Stat }> {
    const [stat, data] = await this.call('get', path, (n) => watch ? n.w_get(path, this.wrapWatch(watch)) : n.get(path, false));
    return { data: data ?? Buffer.alloc(0), stat: toStat(stat) };
  }

  /** Sets data if the node's version is `version` (pass -1 for any version). */
  async set(path: string, data: Buffer | string, version: number): Promise<Stat> {
    checkVersion(version);
    return toStat(await this.call('set', path, (n) => n.set(path, data, version)));
  }

  /** Deletes the node if its version is `version` (pass -1 for any version). */
  async delete(path: string, version: number): Promise<void> {
    checkVersion(version);
    await this.call('delete', path, (n) => n.delete_(path, version));
  }

  /** Stat of the node or null; the watch (if any) fires on create/delete/change even when absent. */
  async exists(path: string, watch?: Watcher): Promise<Stat | null> {
    try {
      const stat = await this.call('exists', path, (n) => watch ? n.w_exists(path, this.wrapWatch(watch)) : n.exists(path, false));
      return stat ? toStat(stat) : null;
    } catch (e) {
      if (isZkError(e, 'NONODE')) return null;
      throw e;
    }
  }

  async children(path: string, watch?: Watcher): Promise<string[]> {
    const list = await this.call('children', path, (n) => watch ? n.w_get_children(path, this.wrapWatch(watch)) : n.get_children(path, false));
    return Array.isArray(list) ? [...list] : [];
  }

  /** Creates every missing persistent node along `path` (empty data). Every component is
   *  created (NODEEXISTS ignored) rather than only the missing ones: with `auth`, a create's
   *  pipelined ACL update also secures a parent another client created with the open ACL
   *  (the shared /pgring parent; test/integration/zk-acl.test.ts). */
  async mkdirp(path: string): Promise<void> {
    const parts = path.split('/').filter((p) => p.length > 0);
    let cur = '';
    for (const p of parts) {
      cur += '/' + p;
      try { await this.create(cur, Buffer.alloc(0), 'persistent'); } catch (e) {
        if (!isZkError(e, 'NODEEXISTS')) throw e;
      }
    }
  }

  /** Closes the session (its ephemerals go at once). Safe to call more than once. */
  async close(): Promise<void> {
    if (this._dead) return;
    const native = this.native;
    this.markDead('closed', 0, false);
    if (native) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 2000);
        native.once('close', () => { clearTimeout(t); resolve(); });
        try { native.close(); } catch { clearTimeout(t); resolve(); }
      });
    }
  }
}

function checkVersion(version: number): void {
  if (!Number.isInteger(version) || version < -1) throw new ZkError('BADARGUMENTS', `bad znode version ${version} (use -1 for any)`);
}

function toStat(s: NativeStat): Stat {
  return {
    czxid: s.czxid, mzxid: s.mzxid, pzxid: s.pzxid, version: s.version, cversion: s.cversion, aversion: s.aversion,
    dataLength: s.dataLength, numChildren: s.numChildren, ctime: s.ctime, mtime: s.mtime,
    ephemeralOwner: String(s.ephemeralOwner),
  };
}

/** JSON helpers shared by the stores. */
export function encodeJson(v: unknown): Buffer { return Buffer.from(JSON.stringify(v)); }
export function decodeJson<T>(b: Buffer, what: string): T {
  try { return JSON.parse(b.toString('utf8')) as T; } catch (e) {
    throw new Error(`bad JSON in ZooKeeper node ${what}: ${(e as Error).message}`);
  }
}
