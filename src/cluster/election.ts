// Leader latch under controller/: each candidate holds an ephemeral-sequential node
// "latch-<uuid>-<seq>"; the lowest sequence leads; the others watch only their predecessor.
// A node whose create was cut off by connection loss is recovered by its unique prefix.
// Leadership is given up at once when the connection is suspended or the session lost, and
// the candidate re-enters with a new node in every new session.
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { Layout } from './layout';
import { ClusterLogger, ZkSession } from './session';
import { SyncLoop, WatchSet, watchedRead } from './sync';
import { encodeJson, isZkError, Zk } from './zk';

function seqOf(name: string): number {
  const m = /(\d{10})$/.exec(name);
  return m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}

export interface LeaderLatchOptions {
  /** who we are (stored in the node's data) */
  id: string;
  /** latch directory; default layout.controller */
  path?: string;
  logger?: ClusterLogger;
}

/** Events: 'leader', 'follower' (on every change of isLeader()). */
export class LeaderLatch extends EventEmitter {
  readonly dir: string;
  readonly prefix = `latch-${randomUUID()}-`;
  private node: string | null = null;    // full path of our node
  private nodeSession = '';
  private leader = false;
  private loop: SyncLoop;
  private ws = new WatchSet();
  private readonly onState = (st: string) => { if (st !== 'connected') this.setLeader(false); };
  private readonly logger: ClusterLogger;

  constructor(readonly session: ZkSession, layout: Layout, readonly opts: LeaderLatchOptions) {
    super();
    this.dir = opts.path ?? layout.controller;
    this.logger = opts.logger ?? session.logger;
    this.loop = new SyncLoop(session, (zk) => this.sync(zk), { name: `leader latch ${this.dir}`, logger: this.logger });
  }

  isLeader(): boolean { return this.leader; }
  /** our node's path in the current session, if any */
  get nodePath(): string | null { return this.node; }

  async start(): Promise<void> {
    this.session.on('state', this.onState);
    const first = this.loop.synced();
    this.loop.start();
    await first;
  }

  /** Leaves the election (deletes our node; the next candidate takes over). */
  async stop(): Promise<void> {
    this.loop.stop();
    this.session.off('state', this.onState);
    this.setLeader(false);
    const zk = this.session.handle();
    const node = this.node;
    this.node = null;
    if (zk && zk.connected && node) { try { await zk.delete(node, -1); } catch { /* gone */ } }
  }

  /** Resolves when we lead (or rejects after timeoutMs). */
  waitLeader(timeoutMs = 30000): Promise<void> {
    if (this.leader) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const on = () => { clearTimeout(t); resolve(); };
      const t = setTimeout(() => { this.off('leader', on); reject(new Error(`not leader within ${timeoutMs} ms`)); }, timeoutMs);
      this.once('leader', on);
    });
  }

  private setLeader(v: boolean): void {
    if (this.leader === v) return;
    this.leader = v;
    this.emit(v ? 'leader' : 'follower');
  }

  private async sync(zk: Zk): Promise<void> {
    await zk.mkdirp(this.dir);
    for (let i = 0; i < 20; i++) {
      const children = (await zk.children(this.dir)).filter((c) => c.startsWith('latch-')).sort((a, b) => seqOf(a) - seqOf(b));
      if (this.nodeSession !== zk.sessionId) this.node = null;
      const mine = children.filter((c) => c.startsWith(this.prefix));
      if (!this.node) {
        // Recover a node created in this session whose reply was lost; remove older sessions' ones.
        for (const c of mine) {
          const st = await zk.exists(`${this.dir}/${c}`);
          if (st && st.ephemeralOwner === zk.sessionId && !this.node) { this.node = `${this.dir}/${c}`; this.nodeSession = zk.sessionId; } else if (st) {
            try { await zk.delete(`${this.dir}/${c}`, -1); } catch (e) { if (!isZkError(e, 'NONODE')) throw e; }
          }
        }
        if (!this.node) {
          this.node = await zk.create(`${this.dir}/${this.prefix}`, encodeJson({ id: this.opts.id, pid: process.pid, at: Date.now() }), 'ephemeral_sequential');
          this.nodeSession = zk.sessionId;
          continue;
        }
      }
      const name = this.node.slice(this.dir.length + 1);
      const idx = children.indexOf(name);
      if (idx < 0) { this.node = null; continue; }   // our node vanished: re-enter
      if (idx === 0) { this.setLeader(true); return; }
      this.setLeader(false);
      const pred = children[idx - 1]!;
      const st = await watchedRead(this.ws, zk, `pred:${pred}`, () => this.loop.trigger(), (w) => zk.exists(`${this.dir}/${pred}`, w));
      if (st) return;  // wait for the predecessor to go
    }
    throw new Error(`leader latch ${this.dir}: did not settle`);
  }
}
