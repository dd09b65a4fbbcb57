// The lock API the transaction manager uses: buckets this proxy owns (or takes itself) go to the
// local ZkLockService; buckets another proxy owns are requested from it over its lock peer link
// (src/cluster/lock-peers.ts has the why and the safety argument). Same contract as
// ZkLockService: acquire is re-entrant and resolves in FIFO order, abortWait ends a wait,
// releaseAll ends everything of an owner, check says whether its locks are still safe to commit
// under.
import { randomBytes } from 'node:crypto';
import { LockCancelledError, LockDeadlockError, LockOwner, LockRow, LockTimeoutError, ZkLockService } from './locks';
import type { DenyKind, LockPeers, PeerClient } from './lock-peers';

interface RemoteWait {
  owner: string;
  b: number;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
  since: number;
}

/** One transaction's state with other proxies. */
interface RemoteState {
  readonly x: string;
  readonly lockOwner: LockOwner;
  /** owners it has talked to (each gets an 'r' when it ends) */
  readonly peers: Set<string>;
  /** bucket -> owner proxy, with when granted */
  readonly grants: Map<number, { owner: string; since: number }>;
  wait: RemoteWait | null;
  lost: string | null;
}

export class ForwardingLocks implements PeerClient {
  private readonly states = new Map<LockOwner, RemoteState>();
  private readonly byX = new Map<string, RemoteState>();
  private readonly incarnation = randomBytes(4).toString('hex');
  private seq = 0;
  private readonly own = { forwarded: 0, remoteGrants: 0, fallbacks: 0, remoteLost: 0 };
  /** owners that may keep grants or waits of ours that we could not tell them about (a broken
   *  link lost our messages): the next link's hello settles them */
  private readonly unsettled = new Set<string>();

  constructor(readonly local: ZkLockService, readonly peers: LockPeers | null) {
    peers?.attach(local, this);
  }

  get stats(): Record<string, number> { return { ...this.local.stats, ...this.own, ...(this.peers?.stats ?? {}) }; }
  bucketDir(n: number): string { return this.local.bucketDir(n); }

  acquire(owner: LockOwner, n: number, timeoutMs: number): Promise<void> | null {
    const st0 = this.states.get(owner);
    if (st0?.grants.has(n)) return null;
    if (this.peers === null) return this.local.acquire(owner, n, timeoutMs);
    this.peers.noteOwnUse(Date.now());
    const peer = this.peers.linkFor(n);
    if (peer === null) return this.local.acquire(owner, n, timeoutMs);
    if (this.local.held(owner).includes(n)) return null;   // taken here before the owners changed
    let st = st0;
    if (!st) {
      st = { x: `${this.incarnation}.${(this.seq++).toString(36)}`, lockOwner: owner, peers: new Set(), grants: new Map(), wait: null, lost: null };
      this.states.set(owner, st);
      this.byX.set(st.x, st);
    }
    st.peers.add(peer);
    this.own.forwarded++;
    const s = st;
    return new Promise<void>((resolve, reject) => {
      const w: RemoteWait = { owner: peer, b: n, resolve, reject, timer: null, since: Date.now() };
      if (timeoutMs > 0) w.timer = setTimeout(() => { this.abortWait(owner, new LockTimeoutError(n, timeoutMs)); }, timeoutMs);
      s.wait = w;
      this.peers!.send(peer, { t: 'a', x: s.x, b: n, l: owner.label });
    });
  }

  abortWait(owner: LockOwner, err: Error): boolean {
    if (this.local.abortWait(owner, err)) return true;
    const st = this.states.get(owner);
    const w = st?.wait;
    if (!st || !w) return false;
    st.wait = null;
    if (w.timer) clearTimeout(w.timer);
    this.peers?.send(w.owner, { t: 'c', x: st.x, b: w.b });
    w.reject(err);
    return true;
  }

  releaseAll(owner: LockOwner): void {
    this.local.releaseAll(owner);
    const st = this.states.get(owner);
    if (!st) return;
    this.states.delete(owner);
    this.byX.delete(st.x);
    if (st.wait) {
      const w = st.wait;
      st.wait = null;
      if (w.timer) clearTimeout(w.timer);
      w.reject(new LockCancelledError(w.b));
    }
    for (const p of st.peers) if (!this.peers?.send(p, { t: 'r', x: st.x })) this.unsettled.add(p);
  }

  held(owner: LockOwner): number[] {
    const mine = this.local.held(owner);
    const st = this.states.get(owner);
    return st && st.grants.size ? [...mine, ...st.grants.keys()] : mine;
  }

  check(owner: LockOwner): string | null {
    const r = this.local.check(owner);
    if (r) return r;
    const st = this.states.get(owner);
    if (!st || st.grants.size === 0) return null;
    if (st.lost) return st.lost;
    for (const [b, g] of st.grants) {
      if (!this.peers?.fresh(g.owner)) return `proxy ${g.owner}, which serves lock bucket ${b}, did not answer within ${this.peers?.staleMs ?? 0} ms`;
    }
    return null;
  }

  /** Rows for SHOW LOCKS: this proxy's buckets, then the buckets its transactions hold or wait for at other proxies. */
  snapshot(): LockRow[] {
    const rows = this.local.snapshot();
    const now = Date.now();
    for (const st of this.states.values()) {
      for (const [b, g] of st.grants) {
        rows.push({ bucket: b, proxy: g.owner, state: 'held', holder: st.lockOwner.label, waiting: 0, remoteWaiting: 0, heldMs: now - g.since, ownerMs: now - g.since });
      }
      if (st.wait) rows.push({ bucket: st.wait.b, proxy: st.wait.owner, state: 'acquiring', holder: null, waiting: 1, remoteWaiting: 0, heldMs: 0, ownerMs: 0 });
    }
    return rows;
  }

  /** This proxy's own buckets only (the fence checks their nodes). */
  localSnapshot(): LockRow[] { return this.local.snapshot(); }

  async close(): Promise<void> {
    for (const st of [...this.states.values()]) this.releaseAll(st.lockOwner);
    await this.peers?.stop();
    await this.local.close();
  }

  // ------------------------------------------------------------ PeerClient

  onGrant(owner: string, x: string, b: number): void {
    const st = this.byX.get(x);
    if (!st) { this.peers?.send(owner, { t: 'r', x }); return; }   // ended meanwhile
    st.grants.set(b, { owner, since: Date.now() });
    this.own.remoteGrants++;
    const w = st.wait;
    if (w && w.b === b && w.owner === owner) {
      st.wait = null;
      if (w.timer) clearTimeout(w.timer);
      w.resolve();
    }
  }

  onDeny(owner: string, x: string, b: number, e: DenyKind): void {
    const st = this.byX.get(x);
    const w = st?.wait;
    if (!st || !w || w.b !== b || w.owner !== owner) return;
    st.wait = null;
    if (w.timer) clearTimeout(w.timer);
    if (e === 'deadlock') w.reject(new LockDeadlockError(b));
    else if (e === 'cancelled') w.reject(new LockCancelledError(b));
    else this.fallBack(st, w);
  }

  onLost(owner: string, x: string, b: number, reason: string): void {
    const st = this.byX.get(x);
    if (!st || st.grants.get(b)?.owner !== owner) return;
    this.own.remoteLost++;
    st.lost ??= `${reason} at proxy ${owner}, which serves lock bucket ${b}`;
    try { st.lockOwner.lost?.(b, `${reason} (at proxy ${owner}, which serves the bucket)`); } catch { /* owner's problem */ }
  }

  onLinkDown(owner: string, reason: string): void {
    this.unsettled.add(owner);   // messages in flight may be lost
    for (const st of this.states.values()) {
      const w = st.wait;
      if (w && w.owner === owner) { st.wait = null; if (w.timer) clearTimeout(w.timer); this.fallBack(st, w); }
      for (const [b, g] of st.grants) {
        if (g.owner !== owner) continue;
        this.own.remoteLost++;
        st.lost ??= reason;
        try { st.lockOwner.lost?.(b, reason); } catch { /* owner's problem */ }
      }
    }
  }

  keepFor(owner: string): string[] {
    const out: string[] = [];
    for (const st of this.states.values()) for (const g of st.grants.values()) if (g.owner === owner) { out.push(st.x); break; }
    return out;
  }

  onLinkOpen(owner: string): void { this.unsettled.delete(owner); }

  onOwnerGone(owner: string): void { this.unsettled.delete(owner); }

  hasStateWith(owner: string): boolean {
    if (this.unsettled.has(owner)) return true;
    for (const st of this.states.values()) if (st.peers.has(owner)) return true;
    return false;
  }

  /** The owner cannot serve: queue in ZooKeeper here (ZooKeeper orders us with the owner). */
  private fallBack(st: RemoteState, w: RemoteWait): void {
    this.own.fallbacks++;
    let p: Promise<void> | null;
    try { p = this.local.acquire(st.lockOwner, w.b, 0); } catch (e) { w.reject(e as Error); return; }
    if (!p) w.resolve(); else p.then(w.resolve, w.reject);
  }
}
