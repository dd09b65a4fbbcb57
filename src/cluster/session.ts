// ZooKeeper session supervisor: keeps one live Zk handle, replaces it after the session is
// lost, and tells the watchers/ephemeral owners when to re-read and re-register.
//
// States: connecting -> connected <-> suspended (connection lost; session may still live)
//         -> lost (session expired, or suspended longer than the session timeout: our
//            ephemerals are gone or about to go) -> connecting (a *new* handle) -> ...
//         closed (after close()).
// Events: 'state' (state, prev); 'connected' (zk, {newSession}) on every (re)connection;
//         'session' (zk) for every new session including the first; 'reconnected' (zk) for a
//         new session after a lost one; 'suspended'; 'lost' (reason).
import { EventEmitter } from 'node:events';
import { monitorEventLoopDelay, IntervalHistogram } from 'node:perf_hooks';
import { Zk, ZkError, ZkOptions } from './zk';

export interface ClusterLogger {
  warn(obj: object, msg: string): void;
  info?(obj: object, msg: string): void;
}
export const consoleLogger: ClusterLogger = {
  warn: (obj, msg) => console.warn(`[pgring:cluster] ${msg}`, obj),
};

export type SessionState = 'connecting' | 'connected' | 'suspended' | 'lost' | 'closed';

export interface ZkSessionOptions extends Omit<ZkOptions, 'sessionId' | 'sessionPassword'> {
  logger?: ClusterLogger;
  /** delay before a new handle is created after a lost session; default 100 ms */
  retryDelayMs?: number;
  /** treat a suspension longer than this as a lost session (default: the negotiated session
   *  timeout, as Curator does); null: wait for the server to say so */
  suspendedLossMs?: number | null;
  /** warn when the event loop lags more than this (default 500 ms); 0 disables the monitor */
  lagWarnMs?: number;
  lagCheckIntervalMs?: number;
  /** tests: how handles are made */
  zkFactory?: (opts: ZkOptions) => Zk;
}

export class ZkSession extends EventEmitter {
  private zk: Zk | null = null;
  private _state: SessionState = 'connecting';
  private handleConnectedOnce = false;
  private sessions = 0;
  private suspendTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private lag: EventLoopLagMonitor | null = null;
  private started = false;
  readonly logger: ClusterLogger;
  /** hex ids of every session this supervisor has had (newest last) */
  readonly sessionIds: string[] = [];

  constructor(readonly opts: ZkSessionOptions) {
    super();
    this.logger = opts.logger ?? consoleLogger;
    this.setMaxListeners(0);
  }

  get state(): SessionState { return this._state; }
  /** number of sessions established so far (1 after the first connect) */
  get sessionCount(): number { return this.sessions; }

  /** Starts the supervisor; resolves at the first connection (rejects after timeoutMs, but keeps trying). */
  async start(timeoutMs = 30000): Promise<void> {
    if (!this.started) {
      this.started = true;
      if ((this.opts.lagWarnMs ?? 500) > 0) {
        this.lag = new EventLoopLagMonitor({
          thresholdMs: this.opts.lagWarnMs ?? 500, intervalMs: this.opts.lagCheckIntervalMs ?? 1000,
          logger: this.logger, context: () => ({ zk: this.opts.connect, sessionTimeoutMs: this.zk?.sessionTimeoutMs }),
        });
        this.lag.start();
      }
      this.newHandle();
    }
    await this.waitConnected(timeoutMs);
  }

  /** The connected handle; throws ZkError('CONNECTIONLOSS') when not connected. */
  current(): Zk {
    if (this._state !== 'connected' || !this.zk || !this.zk.connected) {
      throw new ZkError(this._state === 'closed' ? 'SESSIONEXPIRED' : 'CONNECTIONLOSS', `ZooKeeper session is ${this._state}`);
    }
    return this.zk;
  }

  /** The handle of the current session (connected or not), if any. */
  handle(): Zk | null { return this.zk; }

  waitConnected(timeoutMs = 30000): Promise<Zk> {
    if (this._state === 'connected' && this.zk?.connected) return Promise.resolve(this.zk);
    if (this._state === 'closed') return Promise.reject(new ZkError('SESSIONEXPIRED', 'ZooKeeper session supervisor is closed'));
    return new Promise((resolve, reject) => {
      const onState = (s: SessionState) => {
        if (s === 'connected' && this.zk) { cleanup(); resolve(this.zk); } else if (s === 'closed') { cleanup(); reject(new ZkError('SESSIONEXPIRED', 'ZooKeeper session supervisor is closed')); }
      };
      const timer = setTimeout(() => { cleanup(); reject(new ZkError('CONNECTIONLOSS', `no ZooKeeper connection to ${this.opts.connect} within ${timeoutMs} ms (state ${this._state})`)); }, timeoutMs);
      const cleanup = () => { clearTimeout(timer); this.off('state', onState); };
      this.on('state', onState);
    });
  }

  private setState(s: SessionState): void {
    if (s === this._state) return;
    const prev = this._state;
    this._state = s;
    this.emit('state', s, prev);
  }

  private newHandle(): void {
    if (this._state === 'closed') return;
    const { logger: _l, retryDelayMs: _r, suspendedLossMs: _s, lagWarnMs: _w, lagCheckIntervalMs: _i, zkFactory, ...zkOpts } = this.opts;
    const zk = zkFactory ? zkFactory(zkOpts) : new Zk(zkOpts);
    this.zk = zk;
    this.handleConnectedOnce = false;
    this.setState('connecting');
    zk.on('connected', () => {
      if (this.zk !== zk) return;
      this.clearSuspend();
      const newSession = !this.handleConnectedOnce;
      this.handleConnectedOnce = true;
      if (newSession) { this.sessions++; this.sessionIds.push(zk.sessionId); }
      this.setState('connected');
      this.emit('connected', zk, { newSession });
      if (newSession) {
        this.emit('session', zk);
        if (this.sessions > 1) this.emit('reconnected', zk);
      }
    });
    zk.on('disconnected', () => {
      if (this.zk !== zk) return;
      this.setState('suspended');
      this.emit('suspended');
      const lossMs = this.opts.suspendedLossMs === undefined ? (zk.sessionTimeoutMs || this.opts.sessionTimeoutMs || 10000) : this.opts.suspendedLossMs;
      if (lossMs !== null) {
        this.clearSuspend();
        this.suspendTimer = setTimeout(() => { if (this.zk === zk && this._state === 'suspended') this.declareLost(`suspended longer than ${lossMs} ms`); }, lossMs);
        this.suspendTimer.unref();
      }
    });
    zk.on('dead', (reason: string) => {
      if (this.zk !== zk || this._state === 'closed') return;
      this.declareLost(reason === 'expired' ? 'session expired' : `handle ${reason}`);
    });
  }

  private clearSuspend(): void {
    if (this.suspendTimer) { clearTimeout(this.suspendTimer); this.suspendTimer = null; }
  }

  private declareLost(reason: string): void {
    const old = this.zk;
    this.zk = null;
    this.clearSuspend();
    this.logger.warn({ zk: this.opts.connect, sessionId: old?.sessionId, reason }, 'ZooKeeper session lost; opening a new session');
    if (old && !old.dead) void old.close();
    this.setState('lost');
    this.emit('lost', reason);
    this.retryTimer = setTimeout(() => { this.retryTimer = null; this.newHandle(); }, this.opts.retryDelayMs ?? 100);
  }

  /** Closes the session (ephemerals go at once) and stops supervising. */
  async close(): Promise<void> {
    if (this._state === 'closed') return;
    this.clearSuspend();
    if (this.retryTimer) { clearTimeout(this.retryTimer); this.retryTimer = null; }
    this.lag?.stop();
    const zk = this.zk;
    this.zk = null;
    this.setState('closed');
    if (zk) await zk.close();
  }
}

/** Either a supervisor or a bare handle: the stores accept both. */
export type ZkLike = ZkSession | Zk;

/** A connected handle now: a bare Zk as is, a session's current handle (waits up to timeoutMs). */
export async function zkOf(s: ZkLike, timeoutMs = 30000): Promise<Zk> {
  return s instanceof Zk ? s : s.waitConnected(timeoutMs);
}

export interface LagMonitorOptions {
  thresholdMs: number;
  intervalMs?: number;
  logger?: ClusterLogger;
  context?: () => object;
}

/**
 * Warns when the event loop was blocked longer than thresholdMs: the native ZooKeeper client
 * pings from this loop, so a blocked loop delays pings and can cost the session.
 */
export class EventLoopLagMonitor extends EventEmitter {
  private h: IntervalHistogram | null = null;
  private timer: NodeJS.Timeout | null = null;
  private last = 0;
  /** largest lag (ms) seen in the last interval */
  lastMaxMs = 0;

  constructor(readonly opts: LagMonitorOptions) { super(); }

  start(): void {
    if (this.h) return;
    const interval = this.opts.intervalMs ?? 1000;
    // 50 ms: a stall is measured to within 50 ms (the warning is at 500 ms by default) with a
    // fifth of the wake-ups of 10 ms, which an idle proxy paid 100 times a second
    this.h = monitorEventLoopDelay({ resolution: 50 });
    this.h.enable();
    this.last = Date.now();
    this.timer = setInterval(() => this.check(interval), interval);
    this.timer.unref();
  }

  private check(interval: number): void {
    const h = this.h;
    if (!h) return;
    const now = Date.now();
    // Two measures: the histogram's worst delay and the drift of this very timer.
    const drift = Math.max(0, now - this.last - interval);
    this.last = now;
    const lagMs = Math.max(Math.round(h.max / 1e6), drift);
    h.reset();
    this.lastMaxMs = lagMs;
    if (lagMs > this.opts.thresholdMs) {
      (this.opts.logger ?? consoleLogger).warn({ lagMs, thresholdMs: this.opts.thresholdMs, ...(this.opts.context?.() ?? {}) },
        'event loop lag delays ZooKeeper pings');
      this.emit('lag', lagMs);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.h?.disable();
    this.h = null;
  }
}
