// The native ZooKeeper client runs in a worker thread (src/cluster/zk-worker.ts); this is the
// main thread's stand-in for one native handle, with the same methods src/cluster/zk.ts calls.
//
// Why a thread: the package's binding watches the C client's socket with a libuv poll handle
// on the event loop it runs on. When the C client drops a connection (session timeout,
// server gone) it closes that socket at once, but the binding keeps the poll handle until
// it reconnects, and only then closes it: libuv then removes the *file descriptor number*
// from the loop's epoll set. If meanwhile that number was given to a new socket on the same
// loop (a client pgring accepted, a server connection), that socket stops getting events:
// its bytes wait unread in the kernel and the session hangs for ever (seen in
// test/integration/locks-forward.test.ts: a client accepted while the proxy was cut off from
// ZooKeeper never had its second query read). A worker has its own event loop and epoll set,
// so the binding's stale removal can never touch a socket of the proxy's.
// (Found since: the binding kept the poll handle of a socket the C client had closed inside
// zookeeper_interest (a timeout) or after a failed immediate send; scripts/patch-zookeeper.js
// fixes both, so the main loop is safe with the patched binding too. PGRING_ZK_THREAD=0 runs
// the binding there; the thread stays the default: measured no faster, see ARCHITECTURE.md.)
import * as path from 'node:path';
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { FromWorker, ToWorker } from './zk-worker';

type WatchCb = (type: number, state: number, path: string) => void;

class ZkThread {
  private readonly worker: Worker;
  private readonly handles = new Map<number, ThreadedZooKeeper>();
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  /** watch id -> its callback and the handle that set it */
  private readonly watches = new Map<number, { cb: WatchCb; h: ThreadedZooKeeper }>();
  private seq = 0;
  private failed: Error | null = null;

  private readonly exitFlag = new Int32Array(new SharedArrayBuffer(4));

  constructor() {
    this.worker = new Worker(path.join(__dirname, 'zk-worker.js'), { workerData: { exitFlag: this.exitFlag } });
    process.once('exit', this.onExit);
    this.worker.unref();   // referenced while a handle is open (open / forget)
    this.worker.on('message', (m: FromWorker) => this.onMessage(m));
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`the ZooKeeper client thread exited (${code})`)));
  }

  /** At process exit (synchronous): the worker closes every native handle first, or its
   *  teardown would abort the process on the handles still open in its loop. */
  private readonly onExit = (): void => {
    if (this.failed) return;
    try {
      this.worker.postMessage({ t: 'closeAll' } satisfies ToWorker);
      Atomics.wait(this.exitFlag, 0, 0, 2000);
    } catch { /* exiting anyway */ }
  };

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    process.off('exit', this.onExit);
    thread = null;   // the next handle gets a new thread
    for (const c of this.calls.values()) c.reject(invalidState(e.message));
    this.calls.clear();
    for (const h of [...this.handles.values()]) h.onEvent({ t: 'ev', h: h.h, ev: 'close', code: -112 });
  }

  send(m: ToWorker): void {
    if (this.failed) throw invalidState(this.failed.message);
    this.worker.postMessage(m);
  }

  open(h: ThreadedZooKeeper, cfg: Record<string, unknown>): void {
    this.handles.set(h.h, h);
    if (this.handles.size === 1) this.worker.ref();
    this.send({ t: 'new', h: h.h, cfg });
  }

  forget(h: ThreadedZooKeeper): void {
    if (!this.handles.delete(h.h)) return;
    for (const wid of h.watchIds) this.watches.delete(wid);
    h.watchIds.clear();
    if (this.handles.size === 0) this.worker.unref();
  }

  call(h: ThreadedZooKeeper, m: string, a: unknown[], watchIndex = -1, cb?: WatchCb): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = ++this.seq;
      let wid = 0;
      if (cb) {
        wid = ++this.seq;
        this.watches.set(wid, { cb, h });
        h.watchIds.add(wid);
      }
      this.calls.set(id, {
        resolve,
        reject: (e) => {
          // A failed call set no watch, except exists on a missing node (ZooKeeper watches for its creation).
          if (wid && !(m === 'w_exists' && /^\s*-101\b/.test(e.message))) { this.watches.delete(wid); h.watchIds.delete(wid); }
          reject(e);
        },
      });
      try { this.send({ t: 'call', id, h: h.h, m, a, w: watchIndex, wid }); } catch (e) { this.calls.delete(id); reject(e as Error); }
    });
  }

  private onMessage(m: FromWorker): void {
    if (m.t === 'res') {
      const c = this.calls.get(m.id);
      if (!c) return;
      this.calls.delete(m.id);
      if (m.ok) c.resolve(fromWorker(m.r)); else c.reject(new Error(m.msg));
      return;
    }
    if (m.t === 'watch') {
      const w = this.watches.get(m.wid);
      if (!w) return;
      // A watch fires once for its node; session events (type -1) may come more than once,
      // until the session expires (-112).
      if (m.type !== -1 || m.state === -112) {
        this.watches.delete(m.wid);
        w.h.watchIds.delete(m.wid);
      }
      w.cb(m.type, m.state, m.path);
      return;
    }
    this.handles.get(m.h)?.onEvent(m);
  }
}

let thread: ZkThread | null = null;

/** A failure in the text zk.ts parses for a refused call on a closed handle. */
function invalidState(why: string): Error { return new Error(`result: "ZINVALIDSTATE -9" (${why})`); }

/** Results cross the thread as clones: Buffers arrive as Uint8Arrays. */
function fromWorker(r: unknown): unknown {
  if (r instanceof Uint8Array && !Buffer.isBuffer(r)) return Buffer.from(r.buffer, r.byteOffset, r.byteLength);
  if (Array.isArray(r)) return r.map(fromWorker);
  return r;
}

let handleSeq = 0;

/** One native handle, in the worker. The subset of the package's API that zk.ts uses. */
export class ThreadedZooKeeper extends EventEmitter {
  readonly h = ++handleSeq;
  readonly watchIds = new Set<number>();
  client_id = '0';
  client_password = '';
  timeout = 0;
  private readonly t: ZkThread;
  private closed = false;

  constructor(private readonly cfg: Record<string, unknown>) {
    super();
    this.t = thread ??= new ZkThread();
  }

  init(_opts: Record<string, unknown>): this {
    this.t.open(this, this.cfg);
    return this;
  }

  onEvent(m: Extract<FromWorker, { t: 'ev' }>): void {
    if (m.ev === 'connect') {
      this.client_id = m.id;
      this.client_password = m.pw;
      this.timeout = m.to;
      this.emit('connect', this);
    } else if (m.ev === 'connecting') {
      this.emit('connecting', this);
    } else {
      this.closed = true;
      this.t.forget(this);
      this.emit('close', this, m.code);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try { this.t.send({ t: 'close', h: this.h }); } catch { /* thread gone */ }
    this.t.forget(this);
    // As the binding does: 'close' once the handle is closed.
    setImmediate(() => this.emit('close', this, 0));
  }

  add_auth(scheme: string, auth: string, _cb: (rc: number, error: string) => void): void {
    try { this.t.send({ t: 'auth', h: this.h, scheme, auth }); } catch { /* thread gone: calls fail */ }
  }

  create(p: string, data: string | Buffer, flags: number) { return this.t.call(this, 'create', [p, data, flags]) as Promise<string>; }
  exists(p: string, watch: boolean) { return this.t.call(this, 'exists', [p, watch]); }
  w_exists(p: string, cb: WatchCb) { return this.t.call(this, 'w_exists', [p, null], 1, cb); }
  get(p: string, watch: boolean) { return this.t.call(this, 'get', [p, watch]); }
  w_get(p: string, cb: WatchCb) { return this.t.call(this, 'w_get', [p, null], 1, cb); }
  get_children(p: string, watch: boolean) { return this.t.call(this, 'get_children', [p, watch]); }
  w_get_children(p: string, cb: WatchCb) { return this.t.call(this, 'w_get_children', [p, null], 1, cb); }
  set(p: string, data: string | Buffer, version: number) { return this.t.call(this, 'set', [p, data, version]); }
  delete_(p: string, version: number) { return this.t.call(this, 'delete_', [p, version]); }
  set_acl(p: string, version: number, acl: unknown[]) { return this.t.call(this, 'set_acl', [p, version, acl]); }
  get_acl(p: string) { return this.t.call(this, 'get_acl', [p]); }
}
