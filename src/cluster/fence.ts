// Self-fencing: a proxy that cannot see ZooKeeper stops writing (fail closed).
//
// Other proxies and the controller treat "its ephemeral znode is gone" as "it no longer
// writes" (lock recovery, failover, resharding cut-over). That only holds if the proxy stops
// by itself before its session can expire: so the fence closes
// - when the session is lost (expired, or suspended past the session timeout), at once;
// - when the connection has been down longer than selfFenceMs (default: half the session
//   timeout), well before the server can expire the session.
// While closed, the transaction layer refuses new writes and the COMMIT of transactions that
// wrote (57P03); reads go on. It opens again only after the session is connected and every
// resync step (ring, shard records, this proxy's locks) re-read ZooKeeper in that connection.
//
// `epoch` counts closings: a transaction that wrote in an earlier epoch than its COMMIT's was
// open across a fence and is refused too, even when the fence has opened again meanwhile.
import { EventEmitter } from 'node:events';
import type { ClusterLogger, SessionState, ZkSession } from './session';
import type { Zk } from './zk';

export type ResyncStep = (zk: Zk) => Promise<void>;

export interface WriteFenceOptions {
  /** connection down longer than this closes the fence (ms) */
  selfFenceMs: number;
  logger?: ClusterLogger;
  /** delay between failed resync attempts while connected; default 500 ms */
  retryMs?: number;
}

/** Default self-fence time: half the session timeout. */
export function defaultSelfFenceMs(sessionTimeoutMs: number): number {
  return Math.max(1, Math.floor(sessionTimeoutMs / 2));
}

export class WriteFence extends EventEmitter {
  private reason: string | null = null;
  private closedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private retry: NodeJS.Timeout | null = null;
  /** bumped at each resync start: a stale resync never opens the fence */
  private attempt = 0;
  private readonly steps: ResyncStep[] = [];
  private stopped = false;
  /** number of times the fence closed */
  epoch = 0;
  /** what the last closing and opening took (for logs, SHOW and docs) */
  readonly history: { closedAt: number; reason: string; openedAt: number | null }[] = [];
  private readonly onState = (s: SessionState) => this.sessionState(s);

  constructor(readonly session: ZkSession, readonly opts: WriteFenceOptions) {
    super();
    this.setMaxListeners(0);
    session.on('state', this.onState);
    if (session.state !== 'connected') this.sessionState(session.state);
  }

  /** A step that must succeed in the new connection before writes resume. */
  addResync(step: ResyncStep): void { this.steps.push(step); }

  get closed(): boolean { return this.reason !== null; }
  /** Why writes are refused now, or null. */
  get why(): string | null { return this.reason; }
  get closedForMs(): number { return this.reason ? Date.now() - this.closedAt : 0; }

  private log(msg: string, obj: object): void { this.opts.logger?.warn({ zk: this.session.opts.connect, ...obj }, msg); }

  private sessionState(s: SessionState): void {
    if (this.stopped) return;
    if (s === 'suspended') {
      if (!this.reason && !this.timer) {
        this.timer = setTimeout(() => {
          this.timer = null;
          if (this.session.state !== 'connected') this.close(`disconnected from ZooKeeper for more than zookeeper.selfFenceMs (${this.opts.selfFenceMs} ms)`);
        }, this.opts.selfFenceMs);
        this.timer.unref();
      }
      return;
    }
    if (s === 'lost') { this.close('ZooKeeper session lost'); return; }
    if (s === 'closed') { this.close('ZooKeeper session closed'); return; }
    if (s === 'connected') {
      this.clearTimer();
      if (this.reason) this.resync();
      return;
    }
    // 'connecting' (a new handle after a lost session): stays as it is.
  }

  private clearTimer(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
  }

  /** Closes the fence (idempotent while closed). */
  close(reason: string): void {
    this.clearTimer();
    this.attempt++;   // a resync running now belongs to the previous connection
    if (this.reason) return;
    this.reason = reason;
    this.closedAt = Date.now();
    this.epoch++;
    this.history.push({ closedAt: this.closedAt, reason, openedAt: null });
    if (this.history.length > 20) this.history.shift();
    this.log('self-fenced: writes refused until ZooKeeper is back and the cluster state is re-read', { reason });
    this.emit('closed', reason);
  }

  /** Re-reads what the steps need in the current connection, then opens the fence. */
  private resync(): void {
    if (this.retry) { clearTimeout(this.retry); this.retry = null; }
    const my = ++this.attempt;
    const zk = this.session.handle();
    if (!zk) return;
    const run = async () => { for (const step of this.steps) await step(zk); };
    run().then(() => {
      if (my !== this.attempt || this.stopped) return;
      if (this.session.state !== 'connected' || this.session.handle() !== zk) return;
      this.open();
    }, (e: Error) => {
      if (my !== this.attempt || this.stopped) return;
      this.log('self-fence: re-reading the cluster state failed; retrying', { err: e.message });
      this.retry = setTimeout(() => { this.retry = null; if (this.session.state === 'connected' && my === this.attempt) this.resync(); }, this.opts.retryMs ?? 500);
      this.retry.unref();
    });
  }

  private open(): void {
    if (!this.reason) return;
    const now = Date.now();
    const h = this.history[this.history.length - 1];
    if (h && h.openedAt === null) h.openedAt = now;
    this.opts.logger?.info?.({ zk: this.session.opts.connect, fencedMs: now - this.closedAt, reason: this.reason }, 'self-fence lifted: ring, shard records and locks re-read; writes resume');
    this.reason = null;
    this.emit('opened');
  }

  stop(): void {
    this.stopped = true;
    this.clearTimer();
    if (this.retry) clearTimeout(this.retry);
    this.session.off('state', this.onState);
  }
}
