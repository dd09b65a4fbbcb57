// PAUSE / RESUME: client sessions await `ctx.paused` before handling each message.
//
// Admin sessions must not be paused (RESUME has to get through). The session loop
// reads ctx.paused without saying which session asks, so `paused` is an accessor on
// the context that answers null while an admin session's socket data is being
// dispatched: a listener added before the session's own 'data' listener marks the
// dispatch, one added after it clears the mark. Non-admin sessions drop both
// listeners once logged in, so the hot path is untouched.
// (A simpler fix belongs in ClientSession.pump: `if (this.ctx.paused && !this.admin)`.)
import type * as net from 'node:net';
import type { ClientSession, ProxyContext } from '../frontend/client';

export class PauseGate {
  private promise: Promise<void> | null = null;
  private release: (() => void) | null = null;
  private external: Promise<void> | null = null;
  private adminDispatch = false;
  pausedAt = 0;

  install(ctx: ProxyContext): void {
    Object.defineProperty(ctx, 'paused', {
      configurable: true,
      enumerable: true,
      get: () => (this.adminDispatch ? null : (this.promise ?? this.external)),
      set: (v: Promise<void> | null | undefined) => { this.external = v ?? null; },
    });
  }

  get isPaused(): boolean { return this.promise !== null; }

  pause(): boolean {
    if (this.promise) return false;
    this.promise = new Promise<void>((r) => { this.release = r; });
    this.pausedAt = Date.now();
    return true;
  }

  resume(): boolean {
    if (!this.promise) return false;
    const r = this.release!;
    this.promise = null;
    this.release = null;
    this.pausedAt = 0;
    r();
    return true;
  }

  /** Call before the ClientSession is constructed on `socket`; pass it the session right after. */
  track(socket: net.Socket): (session: ClientSession) => void {
    let session: ClientSession | null = null;
    const post = (): void => { this.adminDispatch = false; };
    const pre = (): void => {
      if (!session) return;
      if (session.admin) { this.adminDispatch = true; return; }
      if (session.phase === 'ready' || session.phase === 'closed') { socket.off('data', pre); socket.off('data', post); }
    };
    socket.on('data', pre);
    return (s) => { session = s; socket.on('data', post); };
  }
}
