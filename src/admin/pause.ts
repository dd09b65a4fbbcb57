// PAUSE / RESUME: client sessions other than admin ones await `ctx.paused` before
// handling each message (ClientSession.pump); admin sessions are never held, so
// RESUME always gets through.
import type { ProxyContext } from '../frontend/client';

export class PauseGate {
  private promise: Promise<void> | null = null;
  private release: (() => void) | null = null;
  private external: Promise<void> | null = null;
  pausedAt = 0;

  install(ctx: ProxyContext): void {
    Object.defineProperty(ctx, 'paused', {
      configurable: true,
      enumerable: true,
      get: () => this.promise ?? this.external,
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
}
