// Building blocks for things that mirror ZooKeeper state: a coalescing re-sync loop driven by
// watch events and (re)connections, and a set of armed one-shot watches that never registers
// the same watch twice (node-zookeeper does not de-duplicate watchers).
import { ClusterLogger, ZkSession } from './session';
import { isZkError, Watcher, WatchEvent, Zk } from './zk';

/**
 * Runs `run(zk, full)` whenever triggered, one run at a time; triggers during a run coalesce
 * into one more run. Every (re)connection of the session triggers a full run. Failures are
 * retried after retryMs while connected; otherwise the next connection retries.
 */
export class SyncLoop {
  private running = false;
  private pending = false;
  private pendingFull = false;
  private stopped = true;
  private retryTimer: NodeJS.Timeout | null = null;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly onConnected = () => this.trigger(true);

  constructor(
    private readonly session: ZkSession,
    private readonly run: (zk: Zk, full: boolean) => Promise<void>,
    private readonly opts: { name: string; logger?: ClusterLogger; retryMs?: number },
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.session.on('connected', this.onConnected);
    this.trigger(true);
  }

  stop(): void {
    this.stopped = true;
    this.session.off('connected', this.onConnected);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const w = this.waiters; this.waiters = [];
    for (const x of w) x.reject(new Error(`${this.opts.name} stopped`));
  }

  get isStopped(): boolean { return this.stopped; }

  trigger(full = false): void {
    if (this.stopped) return;
    this.pending = true;
    if (full) this.pendingFull = true;
    if (!this.running) void this.loop();
  }

  /** Resolves after the next run that starts after this call completes without error. */
  synced(): Promise<void> {
    return new Promise((resolve, reject) => { this.waiters.push({ resolve, reject }); this.trigger(false); });
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      while (this.pending && !this.stopped) {
        if (this.session.state !== 'connected') { return; } // the next 'connected' restarts us
        let zk: Zk;
        try { zk = this.session.current(); } catch { return; }
        const full = this.pendingFull;
        this.pending = false;
        this.pendingFull = false;
        const waiters = this.waiters; this.waiters = [];
        try {
          await this.run(zk, full);
          for (const w of waiters) w.resolve();
        } catch (e) {
          this.waiters.unshift(...waiters);
          this.pending = true;
          if (full) this.pendingFull = true;
          if (!isZkError(e, 'CONNECTIONLOSS', 'SESSIONEXPIRED')) {
            (this.opts.logger ?? this.session.logger).warn({ err: (e as Error).message, what: this.opts.name }, 'ZooKeeper sync failed; retrying');
          }
          if (!this.retryTimer && !this.stopped) {
            this.retryTimer = setTimeout(() => { this.retryTimer = null; if (!this.running) void this.loop(); }, this.opts.retryMs ?? 250);
            this.retryTimer.unref();
          }
          return;
        }
      }
    } finally {
      this.running = false;
    }
  }
}

/**
 * One-shot watches keyed by a string; a key already armed on the current handle is not armed
 * again. Keys are forgotten when the handle changes (a new session has no watches).
 */
export class WatchSet {
  private armed = new Set<string>();
  private handleId = -1;

  /** A watcher to pass to the read, or undefined if one is already armed for this key. */
  arm(zk: Zk, key: string, onFire: (ev: WatchEvent) => void): Watcher | undefined {
    if (zk.handleId !== this.handleId) { this.armed.clear(); this.handleId = zk.handleId; }
    if (this.armed.has(key)) return undefined;
    this.armed.add(key);
    const myHandle = zk.handleId;
    return (ev) => {
      if (this.handleId === myHandle) this.armed.delete(key);
      onFire(ev);
    };
  }

  /** The read failed: the watch was not registered. */
  disarm(zk: Zk, key: string): void {
    if (zk.handleId === this.handleId) this.armed.delete(key);
  }

  /** A watch for key is armed in this handle (not fired, its read did not fail). */
  isArmed(zk: Zk, key: string): boolean { return zk.handleId === this.handleId && this.armed.has(key); }

  clear(): void { this.armed.clear(); }
}

/** Reads with an armed watch; disarms the key when the read fails (no watch was left). */
export async function watchedRead<T>(ws: WatchSet, zk: Zk, key: string, onFire: (ev: WatchEvent) => void,
  read: (w: Watcher | undefined) => Promise<T>): Promise<T> {
  const w = ws.arm(zk, key, onFire);
  try {
    return await read(w);
  } catch (e) {
    if (w) ws.disarm(zk, key);
    throw e;
  }
}
