// Write locks in ZooKeeper: one exclusive lock per bucket (hash of the shard key into
// `buckets` buckets), taken by a proxy on behalf of its client transactions.
//
// ZooKeeper recipe (per bucket dir locks/b<NNNN>, a persistent parent created once):
// - the proxy creates an ephemeral-sequential node "<proxy>-<uuid>-lock-<seq>"; the lowest
//   sequence number holds the lock. The children read goes out right behind the create (one
//   round trip) and arms the bucket's child watch;
// - a waiter watches only its predecessor (exists watch); when it goes, the waiter reads again
//   (which also arms the child watch it will need as holder);
// - the holder takes any child change as "another proxy queued" (no read): the other changes
//   (a waiter giving up, a stale node going) are rare and cost one needless hand-over;
// - a create cut off by CONNECTIONLOSS is found again by its unique prefix (same session);
// - deletes are retried until they succeed (or the session that owned the node is gone).
// A hand-over between proxies costs 5 requests (the waiter's create, its read, the exists watch,
// the read that arms its child watch, later its delete); a free bucket 3; a bucket held here 0.
//
// In-process hand-off: a held bucket belongs to the proxy, and the proxy grants it to one local
// transaction at a time (FIFO queue) without a ZooKeeper round trip, as long as no other proxy
// waits. When another proxy's node appears, the proxy releases the ZooKeeper node as soon as
// the current local owner finishes (local waiters queue again behind the other proxy); a node
// that has just become first serves the local transaction that waited for it even if other
// proxies queued meanwhile (else proxies that all wait pass the bucket round unused). A held
// bucket nobody uses is kept until another proxy queues for it (leaseMs 0, the default) or
// released after `leaseMs`.
//
// Sequence wrap: a parent's sequence counter is its cversion (+2 per create/delete pair) and
// wraps at 2^31. After releasing a node whose sequence number is above 2^30 the proxy deletes
// the bucket parent (this only succeeds while it is empty; NOTEMPTY is ignored) and the next
// create re-creates it (NONODE -> mkdirp -> create), which resets the counter. A parent is
// recreated at most once per 2^29 acquisitions of its bucket.
//
// Session: when the ZooKeeper session is suspended or lost, every local owner of a held bucket
// is told (`lost`), and no new grant happens until the session is connected again. After a lost
// session all buckets start over (the old nodes went with the session).
//
// Deadlocks: a local waiter whose wait would close a cycle of local waits (its bucket's owner,
// or a waiter ahead of it, waits on a bucket it owns) fails at once with LockDeadlockError.
// Cycles through other proxies are found by src/txn/deadlock-detector.ts.
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Layout } from './layout';
import { ClusterLogger, ZkSession } from './session';
import { encodeJson, isZkError, WatchEvent, Zk } from './zk';
import { WatchSet, watchedRead } from './sync';

export const SEQ_RECYCLE_THRESHOLD = 2 ** 30;
/** How often buckets released recently are checked for nodes of ours that no state knows. */
export const AUDIT_MS = 5000;

/** Whoever takes locks (a client transaction). */
export interface LockOwner {
  /** for SHOW LOCKS: e.g. "pid 1000123 postgres@db" */
  readonly label: string;
  /** a lock this owner holds became unsafe (session suspended or lost) */
  lost?(bucket: number, reason: string): void;
}

export class LockTimeoutError extends Error {
  constructor(readonly bucket: number, readonly timeoutMs: number) {
    super(`pgring: lock timeout on lock bucket ${bucket} after ${timeoutMs} ms`);
  }
}
export class LockDeadlockError extends Error {
  constructor(readonly bucket: number) {
    super(`pgring: deadlock detected on lock bucket ${bucket}`);
  }
}
export class LockCancelledError extends Error {
  constructor(readonly bucket: number) { super(`pgring: lock wait on bucket ${bucket} cancelled`); }
}

export interface LockRow {
  bucket: number;
  /** proxy holding the bucket's ZooKeeper node (this proxy) */
  proxy: string;
  /** 'held' (our node is first), 'acquiring' (our node waits), 'releasing' */
  state: 'held' | 'acquiring' | 'releasing';
  /** the local transaction owning the bucket now, or null (held idle under the lease) */
  holder: string | null;
  /** local transactions waiting for it */
  waiting: number;
  /** nodes of other proxies queued behind ours */
  remoteWaiting: number;
  /** since our node became the holder (0 when not held) */
  heldMs: number;
  /** since the current local owner got it */
  ownerMs: number;
}

interface Waiter {
  owner: LockOwner;
  since: number;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
}

type ZkState = 'none' | 'acquiring' | 'held' | 'releasing';

class Bucket {
  zk: ZkState = 'none';
  node: string | null = null;
  nodeSession = '';
  seq = 0;
  owner: LockOwner | null = null;
  ownerSince = 0;
  heldSince = 0;
  queue: Waiter[] = [];
  remoteWaiting = 0;
  leaseTimer: NodeJS.Timeout | null = null;
  /** wakes the acquisition loop (its predecessor went, session change, cancel) */
  wake: (() => void) | null = null;
  /** the bucket's child watch fired since the acquisition loop last read it */
  changed = false;
  /** our node just became first: the local transaction that waited for it gets it even though
   *  other proxies queued meanwhile (otherwise proxies that all wait would pass the bucket round
   *  without anyone using it) */
  fresh = false;
  constructor(readonly n: number, readonly dir: string) {}
}

export interface LockServiceOptions {
  proxyId: string;
  buckets: number;
  leaseMs: number;
  logger?: ClusterLogger & { debug?(obj: object, msg: string): void };
}

/** Bucket of a key: PostgreSQL's hash of the key (seed 0) mod buckets, done by the caller. */
export function bucketDirName(n: number): string {
  return 'b' + String(n).padStart(4, '0');
}

function seqOf(name: string): number {
  const m = /(\d{10})$/.exec(name);
  return m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}

/** A znode-safe form of a proxy id (no '/', no '-lock-' confusion). */
export function encodeProxyForNode(id: string): string {
  return id.replace(/[^A-Za-z0-9._:]/g, (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}

/**
 * Events: 'debug' (obj, msg) for lock traffic (the manager logs them at debug).
 */
export class ZkLockService extends EventEmitter {
  private buckets = new Map<number, Bucket>();
  private heldBy = new Map<LockOwner, Set<number>>();
  private waitingOn = new Map<LockOwner, Bucket>();
  private ws = new WatchSet();
  /** buckets released or forgotten since the last audit */
  private readonly recent = new Set<number>();
  private auditing = false;
  private readonly auditTimer: NodeJS.Timeout;
  /** buckets that had nodes in a session now lost (dropOrphans) */
  private readonly orphans = new Set<number>();
  private closed = false;
  private readonly proxyPart: string;
  private readonly logger: LockServiceOptions['logger'];
  private readonly onState = (s: string, prev: string) => this.sessionState(s, prev);
  /** statistics */
  readonly stats = { zkAcquires: 0, zkReleases: 0, localGrants: 0, timeouts: 0, deadlocks: 0 };

  constructor(readonly session: ZkSession, readonly layout: Layout, readonly opts: LockServiceOptions) {
    super();
    this.proxyPart = encodeProxyForNode(opts.proxyId);
    this.logger = opts.logger ?? session.logger;
    session.on('state', this.onState);
    this.auditTimer = setInterval(() => void this.audit(), AUDIT_MS);
    this.auditTimer.unref();
  }

  bucketDir(n: number): string { return `${this.layout.locks}/${bucketDirName(n)}`; }

  private bucket(n: number): Bucket {
    let b = this.buckets.get(n);
    if (!b) { b = new Bucket(n, this.bucketDir(n)); this.buckets.set(n, b); }
    return b;
  }

  private debug(obj: object, msg: string): void { this.logger?.debug?.(obj, msg); }

  /** Buckets `owner` holds now. */
  held(owner: LockOwner): number[] { return [...(this.heldBy.get(owner) ?? [])]; }

  /**
   * Takes bucket `n` for `owner` (re-entrant). Resolves at once (same tick) when the proxy holds
   * the bucket idle; rejects with LockTimeoutError after timeoutMs, LockDeadlockError on a local
   * wait cycle.
   */
  acquire(owner: LockOwner, n: number, timeoutMs: number): Promise<void> | null {
    if (this.closed) return Promise.reject(new Error('pgring: lock service is stopped'));
    const b = this.bucket(n);
    if (b.owner === owner) return null;
    if (b.owner === null && b.queue.length === 0 && this.grantable(b)) {
      this.grant(b, owner);
      this.stats.localGrants++;
      return null;
    }
    if (b.owner !== null && this.wouldDeadlock(owner, b)) {
      this.stats.deadlocks++;
      return Promise.reject(new LockDeadlockError(n));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { owner, since: Date.now(), resolve, reject, timer: null };
      if (timeoutMs > 0) w.timer = setTimeout(() => {
        const i = b.queue.indexOf(w);
        if (i < 0) return;
        b.queue.splice(i, 1);
        if (this.waitingOn.get(owner) === b) this.waitingOn.delete(owner);
        this.stats.timeouts++;
        this.debug({ bucket: n, owner: owner.label, timeoutMs }, 'lock wait timed out');
        reject(new LockTimeoutError(n, timeoutMs));
        this.pump(b);
      }, timeoutMs);
      b.queue.push(w);
      this.waitingOn.set(owner, b);
      this.debug({ bucket: n, owner: owner.label, holder: b.owner?.label ?? null, zk: b.zk }, 'waiting for lock');
      this.pump(b);
    });
  }

  /** Is a held bucket usable right now (connected, same session, nobody else queued)? */
  private grantable(b: Bucket): boolean {
    if (b.zk !== 'held' || (b.remoteWaiting > 0 && !b.fresh)) return false;
    const zk = this.session.handle();
    return this.session.state === 'connected' && !!zk && zk.sessionId === b.nodeSession;
  }

  private wouldDeadlock(owner: LockOwner, b: Bucket): boolean {
    // Owners `owner` would wait for: b's owner and the waiters ahead in b's queue.
    const seen = new Set<LockOwner>();
    const stack: LockOwner[] = [];
    if (b.owner) stack.push(b.owner);
    for (const w of b.queue) stack.push(w.owner);
    while (stack.length) {
      const o = stack.pop()!;
      if (o === owner) return true;
      if (seen.has(o)) continue;
      seen.add(o);
      const wb = this.waitingOn.get(o);
      if (!wb) continue;
      if (wb.owner) stack.push(wb.owner);
      for (const w of wb.queue) { if (w.owner === o) break; stack.push(w.owner); }
    }
    return false;
  }

  private grant(b: Bucket, owner: LockOwner): void {
    if (b.leaseTimer) { clearTimeout(b.leaseTimer); b.leaseTimer = null; }
    b.fresh = false;
    b.owner = owner;
    b.ownerSince = Date.now();
    let s = this.heldBy.get(owner);
    if (!s) { s = new Set(); this.heldBy.set(owner, s); }
    s.add(b.n);
    if (this.waitingOn.get(owner) === b) this.waitingOn.delete(owner);
  }

  /** Ends `owner`'s current wait with `err` (a limit or a cancel); false when it was not waiting. */
  abortWait(owner: LockOwner, err: Error): boolean {
    const wb = this.waitingOn.get(owner);
    if (!wb) return false;
    const i = wb.queue.findIndex((w) => w.owner === owner);
    if (i < 0) return false;
    this.waitingOn.delete(owner);
    const [w] = wb.queue.splice(i, 1);
    if (w!.timer) clearTimeout(w!.timer);
    this.debug({ bucket: wb.n, owner: owner.label, err: err.message }, 'lock wait ended');
    w!.reject(err);
    this.pump(wb);
    return true;
  }

  /** Releases every bucket of `owner` and cancels its waits. */
  releaseAll(owner: LockOwner): void {
    const wb = this.waitingOn.get(owner);
    if (wb) {
      this.waitingOn.delete(owner);
      const i = wb.queue.findIndex((w) => w.owner === owner);
      if (i >= 0) {
        const [w] = wb.queue.splice(i, 1);
        if (w!.timer) clearTimeout(w!.timer);
        w!.reject(new LockCancelledError(wb.n));
      }
      this.pump(wb);
    }
    const s = this.heldBy.get(owner);
    if (!s) return;
    this.heldBy.delete(owner);
    for (const n of s) {
      const b = this.buckets.get(n);
      if (!b || b.owner !== owner) continue;
      b.owner = null;
      this.pump(b);
    }
  }

  /** Why `owner`'s locks are not safe to commit under, or null when they are. */
  check(owner: LockOwner): string | null {
    const s = this.heldBy.get(owner);
    if (!s || s.size === 0) return null;
    const zk = this.session.handle();
    for (const n of s) {
      const b = this.buckets.get(n);
      if (!b || b.owner !== owner || b.zk !== 'held') return `lock bucket ${n} is no longer held`;
      if (this.session.state !== 'connected' || !zk || zk.sessionId !== b.nodeSession) {
        return `ZooKeeper session ${this.session.state} while holding lock bucket ${n}`;
      }
    }
    return null;
  }

  /** Decides what a bucket does next. */
  private pump(b: Bucket): void {
    if (this.closed) return;
    if (b.owner) return;
    if (b.queue.length === 0) {
      if (b.zk === 'held') {
        // leaseMs 0: kept until another proxy queues (its child watch says so), so a proxy's
        // steady state takes locks without a ZooKeeper round trip, and a bucket used by several
        // proxies costs a hand-over (5 requests) only when the user changes. Measured against
        // releasing idle buckets after 100 ms: fewer requests and less CPU per transaction with
        // one, two and three proxies (bench/RESULTS-proxies.md).
        const lease = this.opts.leaseMs;
        if (b.remoteWaiting > 0) this.releaseNode(b);
        else if (lease > 0 && !b.leaseTimer) {
          b.leaseTimer = setTimeout(() => {
            b.leaseTimer = null;
            if (b.owner === null && b.queue.length === 0 && b.zk === 'held') this.releaseNode(b);
          }, lease);
          b.leaseTimer.unref();
        }
      } else if (b.zk === 'acquiring') b.wake?.();   // nobody wants it any more: the loop cancels
      else if (b.zk === 'none') this.maybeForget(b);
      return;
    }
    if (b.zk === 'held') {
      if (b.remoteWaiting > 0 && !b.fresh) { this.releaseNode(b); return; }   // hand over; re-queue afterwards
      if (!this.grantable(b)) return;                               // suspended: wait
      const w = b.queue.shift()!;
      if (w.timer) clearTimeout(w.timer);
      this.grant(b, w.owner);
      this.stats.localGrants++;
      w.resolve();
      return;
    }
    if (b.zk === 'none') void this.acquireNode(b);
  }

  private maybeForget(b: Bucket): void {
    if (b.zk === 'none' && !b.owner && b.queue.length === 0) {
      this.buckets.delete(b.n);
      this.recent.add(b.n);
    }
  }

  /**
   * Safety net against a node of ours that no bucket state knows (a create or delete cut off by
   * connection losses in a way the paths above did not foresee): such a node would hold its
   * bucket for every proxy until this session ends. Every AUDIT_MS, buckets this proxy let go of
   * recently are listed, and a node with our prefix in a bucket we neither hold nor acquire is
   * deleted.
   */
  private async audit(): Promise<void> {
    const zk = this.session.handle();
    if (!zk || zk.dead || this.session.state !== 'connected' || this.auditing) return;
    this.auditing = true;
    const buckets = [...this.recent];
    this.recent.clear();
    try {
      for (const n of buckets) {
        if (this.buckets.get(n)?.zk !== undefined && this.buckets.get(n)!.zk !== 'none') continue;
        const dir = this.bucketDir(n);
        let kids: string[];
        try { kids = await zk.children(dir); } catch { continue; }
        for (const c of kids) {
          if (!c.startsWith(`${this.proxyPart}-`)) continue;
          const b = this.buckets.get(n);
          if (b && b.zk !== 'none') break;   // an acquisition began meanwhile: its node is in there
          this.logger?.warn({ bucket: n, node: c }, 'deleting a lock node no bucket state knows');
          await zk.delete(`${dir}/${c}`, -1).catch(() => undefined);
        }
      }
    } finally {
      this.auditing = false;
    }
  }

  // ---------------------------------------------------------------- ZooKeeper side

  private async connected(): Promise<Zk> {
    return this.session.waitConnected(24 * 3600 * 1000);
  }

  /** Runs the recipe until our node is first (or nobody waits any more). */
  private async acquireNode(b: Bucket): Promise<void> {
    b.zk = 'acquiring';
    let node: string | null = null;
    let zk: Zk | null = null;
    try {
      for (;;) {
        if (this.closed) break;
        if (b.queue.length === 0) break;                    // cancelled
        if (!zk || zk.dead || (node && zk.sessionId !== b.nodeSession)) {
          zk = await this.connected();
          node = null;
        }
        if (!this.session.handle() || this.session.handle() !== zk) { zk = null; continue; }
        let listed: string[] | null = null;
        if (!node) {
          // The children read goes out right behind the create: ZooKeeper serves one session's
          // requests in order, so it sees our node, and an uncontended lock costs one round trip.
          // The read arms the bucket's child watch: once we hold the bucket it tells us that
          // another proxy queued (no further read needed).
          b.changed = false;
          const cp = this.createNode(zk, b);
          const kp = this.readBucket(zk, b);
          kp.catch(() => undefined);
          node = await cp;
          if (!node) { zk = null; continue; }               // session changed during the create
          b.node = node; b.nodeSession = zk.sessionId; b.seq = seqOf(node);
          try { listed = await kp; } catch { listed = null; }
        }
        const name = node.slice(b.dir.length + 1);
        // After a wait: read again (this also arms the child watch again: the node ahead going
        // was a child change, which used it up).
        if (!listed || !listed.includes(name)) { b.changed = false; listed = await this.readBucket(zk, b); }
        const children = listed.filter((c) => c.includes('-lock-')).sort((x, y) => seqOf(x) - seqOf(y));
        const idx = children.indexOf(name);
        if (idx < 0) { node = null; b.node = null; continue; } // vanished (should not happen in a live session)
        if (idx === 0) {
          b.zk = 'held';
          b.fresh = true;
          b.heldSince = Date.now();
          b.remoteWaiting = children.length - 1;
          this.stats.zkAcquires++;
          this.debug({ bucket: b.n, node, waiting: b.queue.length, remoteWaiting: b.remoteWaiting }, 'lock acquired in ZooKeeper');
          // A change between our read and now (its event already delivered) means someone queued.
          if (b.changed) b.remoteWaiting = Math.max(1, b.remoteWaiting);
          this.pump(b);
          return;
        }
        // Wait for the node ahead of ours to go: an exists watch on it alone (DESIGN.md: watch
        // only the predecessor; a hand-over wakes one waiter, not all).
        const pred = `${b.dir}/${children[idx - 1]!}`;
        this.debug({ bucket: b.n, pred, idx }, 'lock queued behind another node');
        const zkNow = zk;
        await new Promise<void>((resolve) => {
          let done = false;
          const finish = () => { if (done) return; done = true; b.wake = null; resolve(); };
          b.wake = finish;
          zkNow.exists(pred, () => finish()).then((st) => { if (!st) finish(); }, () => finish());
        });
      }
    } catch (e) {
      if (!isZkError(e, 'CONNECTIONLOSS', 'SESSIONEXPIRED', 'OPERATIONTIMEOUT')) {
        this.logger?.warn({ bucket: b.n, err: (e as Error).message }, 'lock acquisition failed; retrying');
      }
      // Fall through: drop our node (if any) and try again shortly while someone waits.
      b.zk = 'none';
      const n = node, sid = b.nodeSession;
      b.node = null;
      if (n) void this.deleteNode(n, sid);
      if (!this.closed && b.queue.length) setTimeout(() => { if (b.zk === 'none') this.pump(b); }, 100).unref();
      return;
    }
    // cancelled (nobody waits) or closed
    b.zk = 'none';
    b.node = null;
    if (node) void this.deleteNode(node, b.nodeSession);
    if (!this.closed && b.queue.length) this.pump(b); else this.maybeForget(b);
  }

  /** Creates our sequential node; recovers it by prefix after CONNECTIONLOSS; null when the session changed. */
  private async createNode(zk: Zk, b: Bucket): Promise<string | null> {
    const prefix = `${this.proxyPart}-${randomUUID()}-lock-`;
    const data = encodeJson({ proxy: this.opts.proxyId, pid: process.pid, at: Date.now() });
    let maybeCreated = false;
    try {
      for (let i = 0; i < 100; i++) {
        try {
          return await zk.create(`${b.dir}/${prefix}`, data, 'ephemeral_sequential');
        } catch (e) {
          if (isZkError(e, 'NONODE')) { await zk.mkdirp(b.dir); continue; }
          if (!isZkError(e, 'CONNECTIONLOSS', 'OPERATIONTIMEOUT')) throw e;
          maybeCreated = true;
          // Did it get created? Look for our prefix once the same session is back (the look-up may
          // itself be cut off: look again).
          for (;;) {
            const again = await this.connected();
            if (again !== zk) return null;
            try {
              const mine = (await zk.children(b.dir)).find((c) => c.startsWith(prefix));
              if (mine) return `${b.dir}/${mine}`;
              maybeCreated = false;
              break;
            } catch (e2) {
              if (!isZkError(e2, 'CONNECTIONLOSS', 'OPERATIONTIMEOUT')) throw e2;
            }
          }
        }
      }
      throw new Error(`could not create a lock node in ${b.dir}`);
    } catch (e) {
      // A create that may have been applied must not leave a node nobody knows (it would hold the
      // bucket for every proxy until this session ends).
      if (maybeCreated) void this.deleteByPrefix(zk.sessionId, b.dir, prefix);
      throw e;
    }
  }

  /** Deletes this session's node with `prefix` in `dir`, if it exists (retried like deleteNode). */
  private async deleteByPrefix(sessionId: string, dir: string, prefix: string): Promise<void> {
    for (let i = 0; i < 1000; i++) {
      const zk = this.session.handle();
      if (!zk || zk.dead || zk.sessionId !== sessionId || this.session.state === 'closed') return;
      try {
        const mine = (await zk.children(dir)).find((c) => c.startsWith(prefix));
        if (mine) await this.deleteNode(`${dir}/${mine}`, sessionId);
        return;
      } catch {
        try { await this.session.waitConnected(5000); } catch { /* loop checks the session */ }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Lists the bucket's nodes, arming its child watch (unless one is armed on this handle already). */
  private readBucket(zk: Zk, b: Bucket): Promise<string[]> {
    return watchedRead(this.ws, zk, `bucket:${b.n}`, (ev: WatchEvent) => this.bucketEvent(zk, b, ev), (w) => zk.children(b.dir, w));
  }

  /**
   * The bucket's children changed. A waiter reads again. A holder takes it that another proxy
   * queued (the only other changes are a waiter giving up or a stale node going, both rare; the
   * cost of being wrong is one needless hand-over), so a hand-over costs the holder no read.
   */
  private bucketEvent(zk: Zk, b: Bucket, ev: WatchEvent): void {
    if (ev.type === 'session' || ev.type === 'notwatching') return;
    if (this.session.handle() !== zk || zk.dead) return;
    b.changed = true;
    if (b.zk === 'acquiring') return;   // waiters watch their predecessor, not this
    if (b.zk === 'held' && b.nodeSession === zk.sessionId) {
      if (b.remoteWaiting === 0) this.debug({ bucket: b.n }, 'another proxy waits for a held lock');
      b.remoteWaiting = Math.max(1, b.remoteWaiting);
      this.pump(b);
    }
  }

  /** Gives our node up (the next proxy in line gets the bucket). */
  private releaseNode(b: Bucket): void {
    if (b.zk !== 'held') return;
    if (b.leaseTimer) { clearTimeout(b.leaseTimer); b.leaseTimer = null; }
    const node = b.node!;
    const sid = b.nodeSession;
    const seq = b.seq;
    b.zk = 'releasing';
    b.node = null;
    b.remoteWaiting = 0;
    this.stats.zkReleases++;
    this.debug({ bucket: b.n, node, heldMs: Date.now() - b.heldSince }, 'lock released in ZooKeeper');
    this.recent.add(b.n);
    void this.deleteNode(node, sid).then(async () => {
      if (seq > SEQ_RECYCLE_THRESHOLD) await this.recycleParent(b);
    }).finally(() => {
      if (b.zk === 'releasing') b.zk = 'none';
      this.pump(b);
    });
  }

  /** Deletes a node, retrying until it is gone or the session that owned it is. */
  private async deleteNode(path: string, sessionId: string): Promise<void> {
    for (;;) {
      let zk = this.session.handle();
      if (this.session.state === 'closed') return;
      if (!zk || zk.dead) {
        // The session is being replaced. Its ephemerals go when ZooKeeper expires it, but a close
        // that could not reach the ensemble leaves them until then: delete from the next session.
        try { zk = await this.session.waitConnected(30000); } catch { return; }
      }
      try {
        await zk.delete(path, -1);
        return;
      } catch (e) {
        if (isZkError(e, 'NONODE')) return;
        if (isZkError(e, 'SESSIONEXPIRED') && this.session.handle() === zk) continue;
        if (!isZkError(e, 'CONNECTIONLOSS', 'OPERATIONTIMEOUT')) {
          this.logger?.warn({ path, err: (e as Error).message }, 'lock node delete failed; retrying');
        }
        if ((this.session.state as string) === 'closed') return;
        try { await this.session.waitConnected(5000); } catch { /* loop checks the session */ }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Deletes an empty bucket parent so that its sequence counter starts over. */
  private async recycleParent(b: Bucket): Promise<void> {
    try {
      const zk = this.session.current();
      await zk.delete(b.dir, -1);
      this.logger?.info?.({ bucket: b.n }, 'lock bucket parent recreated to reset its sequence counter');
    } catch { /* NOTEMPTY: someone queued; a later release tries again */ }
  }

  private sessionState(s: string, _prev: string): void {
    if (s === 'connected') {
      if (this.orphans.size) void this.dropOrphans();
      for (const b of this.buckets.values()) {
        const zk = this.session.handle();
        if (b.zk === 'held' && zk && zk.sessionId === b.nodeSession) {
          // Watches survive a reconnection of the same session; a read re-counts the waiters.
          void this.readBucket(zk, b).then((kids) => {
            if (b.zk !== 'held' || !b.node) return;
            const mine = b.node.slice(b.dir.length + 1);
            b.remoteWaiting = Math.max(b.remoteWaiting, kids.filter((c) => c !== mine && c.includes('-lock-')).length);
            this.pump(b);
          }, () => undefined);
        } else this.pump(b);
        b.wake?.();
      }
      return;
    }
    // suspended / lost / closed: locks held now are unsafe for their owners.
    const reason = `ZooKeeper session ${s}`;
    for (const b of this.buckets.values()) {
      if (b.owner) {
        this.logger?.warn({ bucket: b.n, owner: b.owner.label, reason }, 'lock lost: its transaction will be rolled back');
        try { b.owner.lost?.(b.n, reason); } catch { /* owner's problem */ }
      }
      if (s === 'lost' || s === 'closed') {
        if (b.leaseTimer) { clearTimeout(b.leaseTimer); b.leaseTimer = null; }
        if (b.zk === 'held' || b.zk === 'releasing' || b.zk === 'acquiring') this.orphans.add(b.n);
        if (b.zk === 'held' || b.zk === 'releasing') { b.zk = 'none'; b.node = null; b.remoteWaiting = 0; }
      }
      b.wake?.();
    }
  }

  /**
   * After a lost session, this proxy's nodes of the old session stay until ZooKeeper expires it
   * (a close that could not reach the ensemble), and every waiter, ours included, queues behind
   * them. They belong to no transaction any more (their owners were rolled back): delete them now.
   */
  private async dropOrphans(): Promise<void> {
    const zk = this.session.handle();
    if (!zk) return;
    const buckets = [...this.orphans];
    this.orphans.clear();
    for (const n of buckets) {
      const b = this.buckets.get(n);
      try {
        for (const c of await zk.children(this.bucketDir(n))) {
          const path = `${this.bucketDir(n)}/${c}`;
          if (!c.startsWith(`${this.proxyPart}-`) || path === b?.node) continue;
          const st = await zk.exists(path);
          if (!st || st.ephemeralOwner === zk.sessionId) continue;   // (a node of the new session)
          await zk.delete(path, -1).catch((e) => { if (!isZkError(e, 'NONODE')) throw e; });
          this.debug({ bucket: n, node: c }, 'deleted a lock node of our lost session');
        }
      } catch {
        this.orphans.add(n);   // cut off again: tried again at the next connection
      }
    }
  }

  /** Rows for SHOW LOCKS (buckets this proxy holds or waits for). */
  snapshot(): LockRow[] {
    const now = Date.now();
    const rows: LockRow[] = [];
    for (const b of this.buckets.values()) {
      if (b.zk === 'none' && !b.owner && b.queue.length === 0) continue;
      rows.push({
        bucket: b.n, proxy: this.opts.proxyId,
        state: b.zk === 'held' ? 'held' : b.zk === 'releasing' ? 'releasing' : 'acquiring',
        holder: b.owner?.label ?? null, waiting: b.queue.length, remoteWaiting: b.remoteWaiting,
        heldMs: b.zk === 'held' ? now - b.heldSince : 0, ownerMs: b.owner ? now - b.ownerSince : 0,
      });
    }
    return rows.sort((x, y) => x.bucket - y.bucket);
  }

  /** Releases everything (nodes deleted) and stops. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.auditTimer);
    this.session.off('state', this.onState);
    const dels: Promise<void>[] = [];
    for (const b of this.buckets.values()) {
      if (b.leaseTimer) clearTimeout(b.leaseTimer);
      for (const w of b.queue) { if (w.timer) clearTimeout(w.timer); w.reject(new LockCancelledError(b.n)); }
      b.queue = [];
      b.wake?.();
      if (b.node && (b.zk === 'held')) dels.push(this.deleteNode(b.node, b.nodeSession));
      b.zk = 'none';
    }
    await Promise.race([Promise.all(dels), new Promise((r) => setTimeout(r, 3000))]);
  }
}
