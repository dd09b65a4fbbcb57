// A pool of server connections for one (backend, user, database). Connections
// carry the client startup parameters they were opened with (paramsKey); a client
// gets a connection opened with exactly its own startup parameters, so PostgreSQL
// applies them natively and RESET returns to them.
import { PgError, SQLSTATE } from '../protocol/errors';
import { PoolUser, ServerConnection, ServerCredentials, ServerTarget } from './server';
import { settleCancel } from './cleanup';

export interface PoolOptions { maxSize: number; minSize: number; queueTimeoutMs: number; connectTimeoutMs: number; idleTimeoutMs: number }

interface Waiter {
  startup: [string, string][];
  paramsKey: string;
  resolve: (c: ServerConnection) => void;
  reject: (e: PgError) => void;
  timer: NodeJS.Timeout;
  since: number;
}

export interface PoolStats {
  active: number; idle: number; connecting: number; waiting: number; maxWaitMs: number;
  totalXact: number; totalQuery: number; totalWaitMs: number; totalXactTimeUs: number; totalQueryTimeUs: number;
  bytesIn: number; bytesOut: number;
}

export class Pool {
  private readonly idle: ServerConnection[] = [];
  private readonly waiters: Waiter[] = [];
  readonly all = new Set<ServerConnection>();
  private connecting = 0;
  private closed = false;
  /** Set when the last connect attempt failed; cleared on success (health for routing). */
  lastError: PgError | null = null;
  readonly stats = { totalXact: 0, totalQuery: 0, totalWaitMs: 0, totalXactTimeUs: 0, totalQueryTimeUs: 0, bytesIn: 0, bytesOut: 0 };
  private idleTimer: NodeJS.Timeout;
  /** Startup parameters of the pool's first client: what minSize connections are opened with. */
  private fillWith: { startup: [string, string][]; paramsKey: string } | null = null;

  constructor(readonly target: ServerTarget, readonly cred: ServerCredentials, public opts: PoolOptions) {
    this.idleTimer = setInterval(() => { this.reapIdle(); this.fill(); }, Math.max(1000, Math.min(opts.idleTimeoutMs || 10000, 10000)));
    this.idleTimer.unref();
  }

  get size(): number { return this.all.size + this.connecting; }

  /** True when a connection with these parameters can be had without queueing behind others. */
  hasCapacity(paramsKey: string): boolean {
    if (this.waiters.length) return false;
    return this.size < this.opts.maxSize || this.idle.some((c) => c.paramsKey === paramsKey);
  }

  /**
   * An idle connection opened with these parameters, now, or null (no waiting, no connecting).
   * `prefer`: the connection this client last used; taken when it is idle, so that what lives in
   * a server session beyond a transaction (currval/lastval, a temporary schema, statements
   * already prepared there) stays with the client whenever the pool allows.
   */
  tryAcquire(paramsKey: string, prefer?: ServerConnection, user?: PoolUser): ServerConnection | null {
    if (this.closed) return null;
    const idle = this.idle;
    if (prefer !== undefined && !prefer.closed && prefer.paramsKey === paramsKey) {
      const i = idle.lastIndexOf(prefer);
      if (i >= 0) {
        if (i === idle.length - 1) idle.pop(); else idle.splice(i, 1);
        return prefer;
      }
    }
    // Not its own: one no other live client will come back for, if there is one (taking another
    // client's previous connection lost that client its currval() — PostgreSQL's `constraints`
    // regression test run in its parallel group); else the most recently released.
    if (user !== undefined && idle.length > 1) {
      for (let i = idle.length - 1; i >= 0; i--) {
        const c = idle[i]!;
        const u = c.lastUser;
        if (c.paramsKey !== paramsKey || c.closed || (u !== null && u !== user && u.phase !== 'closed')) continue;
        if (i === idle.length - 1) idle.pop(); else idle.splice(i, 1);
        return c;
      }
    }
    for (let i = idle.length - 1; i >= 0; i--) {
      const c = idle[i]!;
      if (c.paramsKey !== paramsKey) continue;
      if (i === idle.length - 1) idle.pop(); else idle.splice(i, 1);
      if (c.closed) continue;
      return c;
    }
    return null;
  }

  acquire(startup: [string, string][], paramsKey: string, prefer?: ServerConnection, user?: PoolUser): Promise<ServerConnection> {
    if (this.closed) return Promise.reject(new PgError(SQLSTATE.AdminShutdown, 'pool is closed'));
    if (this.fillWith === null) {
      this.fillWith = { startup, paramsKey };
      if (this.opts.minSize > 0) setImmediate(() => this.fill());
    }
    const now = this.tryAcquire(paramsKey, prefer, user);
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        startup, paramsKey, resolve, reject, since: Date.now(),
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new PgError(SQLSTATE.TooManyConnections, `no server connection available for shard "${this.target.shardName}" within ${this.opts.queueTimeoutMs} ms (pool size ${this.opts.maxSize}, ${this.waiters.length + 1} waiting)`, { hint: 'raise pool.maxSize or pool.queueTimeoutMs, or reduce concurrent clients' }));
        }, this.opts.queueTimeoutMs),
      };
      this.waiters.push(w);
      this.grow();
    });
  }

  /** Opens connections while there are waiters and room; evicts idle ones with other params when full. */
  private grow(): void {
    while (this.waiters.length > this.connecting) {
      if (this.size >= this.opts.maxSize) {
        const other = this.idle.findIndex((c) => !this.waiters.some((w) => w.paramsKey === c.paramsKey));
        if (other < 0) return;
        const [victim] = this.idle.splice(other, 1);
        victim!.terminate();
        continue;
      }
      const w = this.waiters[this.connecting]!;
      this.open(w.startup, w.paramsKey);
    }
  }

  private open(startup: [string, string][], paramsKey: string): void {
    this.connecting++;
    ServerConnection.connect(this.target, this.cred, startup, paramsKey, this.opts.connectTimeoutMs).then((conn) => {
      this.connecting--;
      this.lastError = null;
      // Opened for a waiter of a pool that closed meanwhile (proxy stop, fencing): nobody will
      // use or close it, and its socket would keep the process alive.
      if (this.closed) { conn.terminate(); return; }
      this.all.add(conn);
      conn.onClosed = (c) => this.forget(c);
      this.handOut(conn);
    }, (err: PgError) => {
      this.connecting--;
      this.lastError = err;
      // A failure fails the waiter with matching params (its startup params may be the cause).
      const i = this.waiters.findIndex((w) => w.paramsKey === paramsKey);
      const w = i >= 0 ? this.waiters.splice(i, 1)[0]! : this.waiters.shift();
      if (w) { clearTimeout(w.timer); w.reject(err); }
      this.grow();
    });
  }

  /**
   * pool.minSize, as PgBouncer's min_pool_size: once a pool has had a client it keeps at least
   * that many server connections open (idle ones wait for the next client), re-opening them
   * after they are closed. Runs on the pool's timer, so a backend that is down is retried once
   * per tick, not in a loop. Connections use the first client's startup parameters.
   */
  private fill(): void {
    const f = this.fillWith;
    if (this.closed || f === null || this.waiters.length > 0) return;
    const want = Math.min(this.opts.minSize, this.opts.maxSize);
    for (let n = this.size; n < want; n++) {
      this.connecting++;
      ServerConnection.connect(this.target, this.cred, f.startup, f.paramsKey, this.opts.connectTimeoutMs).then((conn) => {
        this.connecting--;
        this.lastError = null;
        if (this.closed) { conn.terminate(); return; }
        this.all.add(conn);
        conn.onClosed = (c) => this.forget(c);
        this.handOut(conn);
      }, (err: PgError) => {
        this.connecting--;
        this.lastError = err;
        this.grow();
      });
    }
  }

  private handOut(conn: ServerConnection): void {
    const i = this.waiters.findIndex((w) => w.paramsKey === conn.paramsKey);
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      clearTimeout(w!.timer);
      this.stats.totalWaitMs += Date.now() - w!.since;
      w!.resolve(conn);
      return;
    }
    if (this.waiters.length > 0 && this.size >= this.opts.maxSize) {
      // Nobody wants these params: make room for a waiter with other params.
      conn.terminate();
      this.grow();
      return;
    }
    conn.lastUsed = Date.now();
    this.idle.push(conn);
    // Waiters for other parameters may have no connection on its way (the one opened for them
    // went to an earlier waiter, or theirs was served by a release): open or make room now.
    if (this.waiters.length > 0) this.grow();
  }

  /** Returns a clean connection (ReadyForQuery 'I', no owner). */
  release(conn: ServerConnection): void {
    conn.releaseReads(null);
    conn.owner = null;
    conn.busy = false;
    if (conn.closed) { this.grow(); return; }
    if (this.closed || conn.status !== 'I') { conn.terminate(); return; }
    if (conn.cancelSent !== null) { settleCancel(this, conn); return; }
    this.handOut(conn);
  }

  private forget(conn: ServerConnection): void {
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    this.grow();
  }

  private reapIdle(): void {
    if (!this.opts.idleTimeoutMs) return;
    const now = Date.now();
    for (const c of [...this.idle]) {
      if (this.all.size <= this.opts.minSize) break;
      if (now - c.lastUsed > this.opts.idleTimeoutMs) { this.idle.splice(this.idle.indexOf(c), 1); c.terminate(); }
    }
  }

  /** Drops idle connections (e.g. after the backend restarted). */
  dropIdle(): void { for (const c of this.idle.splice(0)) c.terminate(); }

  snapshot(): PoolStats {
    const now = Date.now();
    return {
      active: this.all.size - this.idle.length, idle: this.idle.length, connecting: this.connecting,
      waiting: this.waiters.length, maxWaitMs: this.waiters.length ? now - this.waiters[0]!.since : 0,
      ...this.stats,
    };
  }

  /** Fencing (a failover moved the shard's primary away from this server): ends the pool and
   *  every connection in it, idle or in use. */
  terminateAll(): void {
    this.close();
    for (const c of [...this.all]) c.terminate();
  }

  /** Requests this pool serves now: connections in use plus waiters (least-outstanding balancing). */
  get outstanding(): number { return this.all.size - this.idle.length + this.waiters.length; }

  close(): void {
    this.closed = true;
    clearInterval(this.idleTimer);
    for (const w of this.waiters.splice(0)) { clearTimeout(w.timer); w.reject(new PgError(SQLSTATE.AdminShutdown, 'pool is closing')); }
    for (const c of this.idle.splice(0)) c.terminate();
  }
}
