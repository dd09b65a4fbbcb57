// Lock forwarding between proxies: the transport, the owner side and the view of who owns what.
//
// Why: a bucket that two proxies both use changes hands in ZooKeeper about once per transaction
// (5 ZooKeeper requests, ~1 ms of CPU on a small machine), which made two proxies slower than
// one. Instead, every bucket has one owner proxy (rendezvous hash over the proxies that serve
// locks, src/cluster/lock-owner.ts). The owner takes the bucket's ZooKeeper lock as before and
// keeps it; it grants the bucket to its own transactions and, over a TCP link, to the
// transactions of other proxies, one at a time in FIFO order, through the same ZkLockService
// queue (a remote transaction is one more local lock owner there). In the steady state a lock
// costs no ZooKeeper request on any proxy, and a remote lock costs two small messages.
//
// Safety stays with ZooKeeper: the owner grants only while it holds the bucket's node, so two
// proxies that disagree on the owner (a membership change) queue in ZooKeeper and ZooKeeper
// orders them. A forwarded grant is as good as the owner's session and the link:
// - the owner's session suspended or lost: the owner tells the holder ('l'), whose transaction
//   is rolled back, exactly as for a local lock (ZkLockService.lost);
// - the link breaks or stays silent longer than `staleMs` (shorter than the session timeout, so
//   before the owner's nodes can expire): the holder's transactions with grants from that owner
//   are rolled back unless their commit decision is already taken; a waiting request falls back
//   to queueing in ZooKeeper itself;
// - the owner keeps a remote proxy's grants while that proxy is alive (its proxies/<id> znode
//   exists) even if the link broke, until the proxy reconnects and says which it still holds
//   (`keep` in its hello) or releases them; a dead proxy's grants go with its znode, as its own
//   ZooKeeper nodes go with its session.
//
// Wire: newline-delimited JSON over TCP, one link per (requesting proxy, owner) pair; the
// requester connects and authenticates with the owner's token from the owner's proxies/<id>
// record (as protected as ZooKeeper itself).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import type { Layout } from './layout';
import { ClusterLogger, ZkSession } from './session';
import { decodeJson, isZkError, Zk } from './zk';
import { SyncLoop, WatchSet, watchedRead } from './sync';
import { BucketOwners } from './lock-owner';
import { LockCancelledError, LockDeadlockError, LockOwner, ZkLockService } from './locks';
import type { ProxyRecord } from './registry';

/** What a proxy publishes in its proxies/<id> record to serve locks. */
export interface LockPeerRecord {
  host: string; port: number; token: string;
  /** a Unix socket of the same service, and the machine it is on (proxies on that machine use it:
   *  a message costs less than over loopback TCP) */
  path?: string; machine?: string;
}

/** This machine, as far as a Unix socket path is concerned (host name and boot id). */
export function machineId(): string {
  let boot = '';
  try { boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(); } catch { /* not Linux */ }
  return `${os.hostname()}/${boot}`;
}

export type DenyKind = 'deadlock' | 'cancelled' | 'unavailable';

export type PeerMsg =
  | { t: 'h'; id: string; tok: string; keep: string[] }   // hello (requester -> owner)
  | { t: 'a'; x: string; b: number; l: string }          // acquire bucket b for transaction x
  | { t: 'c'; x: string; b: number }                     // end x's wait for b
  | { t: 'r'; x: string }                                // x ended: release all it holds
  | { t: 'p' }                                           // ping
  | { t: 'P'; i?: 1 }                                    // pong; i: the owner is idle (LockPeers.idleFor)
  | { t: 'g'; x: string; b: number }                     // granted (owner -> requester)
  | { t: 'd'; x: string; b: number; e: DenyKind }        // denied
  | { t: 'l'; x: string; b: number; r: string };         // a granted bucket is no longer safe

export const PING_MS = 1000;

/** Newline-delimited JSON in both directions; writes of one tick go out in one segment. */
class MsgSocket {
  private readonly dec = new StringDecoder('utf8');
  private rest = '';
  private corked = false;
  constructor(readonly sock: net.Socket, private readonly onMsg: (m: PeerMsg) => void, private readonly onBad: (why: string) => void) {
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => this.data(d));
  }

  private data(d: Buffer): void {
    let s = this.rest + this.dec.write(d);
    let i: number;
    while ((i = s.indexOf('\n')) >= 0) {
      const line = s.slice(0, i);
      s = s.slice(i + 1);
      let m: PeerMsg;
      try { m = JSON.parse(line) as PeerMsg; } catch { this.onBad('malformed message'); return; }
      if (!m || typeof m !== 'object' || typeof m.t !== 'string') { this.onBad('malformed message'); return; }
      this.onMsg(m);
      if (this.sock.destroyed) return;
    }
    if (s.length > 1 << 20) { this.onBad('message too long'); return; }
    this.rest = s;
  }

  send(m: PeerMsg): void {
    if (this.sock.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.sock.cork();
      process.nextTick(() => { this.corked = false; this.sock.uncork(); });
    }
    this.sock.write(JSON.stringify(m) + '\n');
  }
}

// ---------------------------------------------------------------- owner side

/** A transaction of another proxy, as a lock owner in this proxy's ZkLockService. */
class RemoteTxn implements LockOwner {
  constructor(readonly peer: RemoteProxy, readonly x: string, readonly label: string) {}
  lost(bucket: number, reason: string): void { this.peer.send({ t: 'l', x: this.x, b: bucket, r: reason }); }
}

/** Another proxy that takes locks here. */
class RemoteProxy {
  conn: MsgSocket | null = null;
  /** when it last asked for a bucket here */
  lastAsked = 0;
  readonly txns = new Map<string, RemoteTxn>();
  constructor(readonly id: string) {}
  send(m: PeerMsg): void { this.conn?.send(m); }
}

// ---------------------------------------------------------------- requester side

/** What the requesting side (ForwardingLocks) is told. */
export interface PeerClient {
  onGrant(owner: string, x: string, b: number): void;
  onDeny(owner: string, x: string, b: number, e: DenyKind): void;
  onLost(owner: string, x: string, b: number, reason: string): void;
  /** the link to `owner` broke or went silent */
  onLinkDown(owner: string, reason: string): void;
  /** transactions that hold grants of `owner` (sent in the hello: the owner releases the rest) */
  keepFor(owner: string): string[];
  /** has state with `owner` (the link is re-established after a break to settle it) */
  hasStateWith(owner: string): boolean;
  /** a link to `owner` opened (its hello said what we keep: anything else is settled) */
  onLinkOpen(owner: string): void;
  /** `owner` left the cluster (its grants went with it) */
  onOwnerGone(owner: string): void;
}

class PeerLink {
  state: 'connecting' | 'open' | 'closed' = 'connecting';
  lastHeard = Date.now();
  downUntil = 0;
  /** when the last unanswered ping went out (round-trip statistics) */
  pingAt = 0n;
  conn: MsgSocket | null = null;
  private queued: PeerMsg[] = [];
  constructor(readonly id: string, readonly rec: LockPeerRecord) {}
  send(m: PeerMsg): boolean {
    if (this.state === 'open') { this.conn!.send(m); return true; }
    if (this.state === 'connecting') { this.queued.push(m); return true; }
    return false;
  }
  flush(): void {
    const q = this.queued; this.queued = [];
    for (const m of q) this.conn!.send(m);
  }
  fresh(staleMs: number): boolean { return this.state === 'open' && Date.now() - this.lastHeard <= staleMs; }
  /** the owner said at its last pong that nobody but us uses its buckets: take them in ZooKeeper */
  ownerIdle = false;
}

export interface LockPeersOptions {
  proxyId: string;
  /** address to listen on (the proxy's listen host) and to advertise */
  host: string;
  advertise: string;
  port: number;
  /** a link silent this long is broken (shorter than the ZooKeeper session timeout) */
  staleMs: number;
  /** locks.idleOwnerMs: how long without lock use of its own (and of a third proxy) an owner is idle; 0: never */
  idleOwnerMs?: number;
  logger: ClusterLogger & { debug?(obj: object, msg: string): void };
}

export class LockPeers {
  readonly token = randomBytes(16).toString('hex');
  private server: net.Server | null = null;
  private unixServer: net.Server | null = null;
  private unixPath: string | null = null;
  private readonly machine = machineId();
  private local: ZkLockService | null = null;
  private client: PeerClient | null = null;
  private readonly remotes = new Map<string, RemoteProxy>();
  private readonly serverConns = new Set<net.Socket>();
  /** proxies registered now, with their lock peer record (null: they do not serve locks) */
  private records = new Map<string, LockPeerRecord | null>();
  private owners = new BucketOwners([]);
  private readonly links = new Map<string, PeerLink>();
  private readonly ws = new WatchSet();
  private readonly loop: SyncLoop;
  private pingTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** when a transaction of this proxy last asked for a lock (ForwardingLocks.acquire) */
  private ownUseAt = Date.now();
  readonly stats = { linksOpened: 0, linksLost: 0, served: 0, pings: 0, rttUsSum: 0, rttUsMax: 0, idleBypass: 0 };

  constructor(readonly session: ZkSession, readonly layout: Layout, readonly opts: LockPeersOptions) {
    this.loop = new SyncLoop(session, (zk) => this.sync(zk), { name: 'lock peers', logger: opts.logger });
  }

  /** Starts listening; the record goes into this proxy's proxies/<id> znode. */
  async listen(): Promise<LockPeerRecord> {
    const srv = net.createServer({ noDelay: true }, (s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(this.opts.port, this.opts.host, () => { srv.off('error', reject); resolve(); });
    });
    this.server = srv;
    const port = (srv.address() as net.AddressInfo).port;
    const rec: LockPeerRecord = { host: this.opts.advertise, port, token: this.token };
    if (process.platform !== 'win32') {
      const p = path.join(os.tmpdir(), `pgring-locks-${process.pid}-${this.token.slice(0, 8)}.sock`);
      try {
        const usrv = net.createServer((s) => this.accept(s));
        await new Promise<void>((resolve, reject) => { usrv.once('error', reject); usrv.listen(p, () => { usrv.off('error', reject); resolve(); }); });
        this.unixServer = usrv;
        this.unixPath = p;
        rec.path = p;
        rec.machine = machineId();
      } catch (e) {
        this.opts.logger.warn({ path: p, err: (e as Error).message }, 'lock peers: no Unix socket (TCP only)');
      }
    }
    return rec;
  }

  /** The lock service remote transactions take buckets from; the requester side. */
  attach(local: ZkLockService, client: PeerClient): void {
    this.local = local;
    this.client = client;
    this.loop.start();
    this.pingTimer = setInterval(() => this.tick(), PING_MS);
    this.pingTimer.unref();
  }

  get staleMs(): number { return this.opts.staleMs; }

  /** Proxies that serve locks now (SHOW/tests). */
  members(): readonly string[] { return this.owners.members(); }

  ownerOf(bucket: number): string | null { return this.owners.ownerOf(bucket); }

  /**
   * A transaction of this proxy asks for a lock (keeps this proxy a busy owner). The first one
   * after an idle spell tells every linked proxy at once (an unsolicited pong without `i`), so
   * that proxies starting to write together do not queue in ZooKeeper for up to a ping interval.
   */
  noteOwnUse(now: number): void {
    const ms = this.opts.idleOwnerMs ?? 0;
    if (ms > 0 && now - this.ownUseAt >= ms) for (const rp of this.remotes.values()) rp.send({ t: 'P' });
    this.ownUseAt = now;
  }

  /**
   * Whether `asker` may take this proxy's buckets in ZooKeeper itself: neither this proxy's own
   * transactions nor a third proxy asked for a lock here for idleOwnerMs. Why: an owner whose
   * clients write nothing (a standby proxy, one that has just started) made every lock of the
   * proxy doing the work cost a link round trip for half the buckets (two proxies), where
   * queueing in ZooKeeper once and keeping the bucket costs nothing after the first time. Safety
   * does not depend on it: the owner and the bypassing proxy queue in ZooKeeper like any two
   * proxies that disagree on the owner, and the asker forwards again from the next pong on
   * (within PING_MS) once this proxy's clients write.
   */
  private idleFor(asker: RemoteProxy, now: number): boolean {
    const ms = this.opts.idleOwnerMs ?? 0;
    if (ms <= 0 || now - this.ownUseAt < ms) return false;
    for (const rp of this.remotes.values()) if (rp !== asker && now - rp.lastAsked < ms) return false;
    return true;
  }

  // ------------------------------------------------------------ membership

  private async sync(zk: Zk): Promise<void> {
    const kids = await watchedRead(this.ws, zk, 'proxies', () => this.loop.trigger(), (w) => zk.children(this.layout.proxies, w))
      .catch((e) => { if (isZkError(e, 'NONODE')) return [] as string[]; throw e; });
    const next = new Map<string, LockPeerRecord | null>();
    for (const id of kids) {
      if (this.records.has(id)) { next.set(id, this.records.get(id)!); continue; }
      try {
        const { data } = await zk.get(this.layout.proxy(id));
        const rec = decodeJson<ProxyRecord>(data, this.layout.proxy(id));
        const lp = rec.lockPeer;
        next.set(id, lp && typeof lp.host === 'string' && typeof lp.port === 'number' && typeof lp.token === 'string' ? lp : null);
      } catch (e) {
        if (!isZkError(e, 'NONODE')) throw e;
      }
    }
    this.records = next;
    const serving = [...next].filter(([, r]) => r !== null).map(([id]) => id);
    if (!this.owners.sameAs(serving)) {
      this.owners = new BucketOwners(serving);
      this.opts.logger.info?.({ proxies: serving }, 'lock bucket owners changed');
    }
    // A link to a proxy that re-registered with another address or token (restarted): reconnect.
    for (const [id, link] of this.links) {
      const r = next.get(id);
      if (!r || r.port !== link.rec.port || r.host !== link.rec.host || r.token !== link.rec.token) this.dropLink(link, 'the proxy left or restarted');
    }
    // Remote transactions of proxies that are gone: their grants go, as their own nodes did.
    for (const rp of this.remotes.values()) if (!next.has(rp.id)) this.forgetRemote(rp, 'proxy gone');
  }

  // ------------------------------------------------------------ owner side

  private accept(sock: net.Socket): void {
    if (this.stopped) { sock.destroy(); return; }
    this.serverConns.add(sock);
    let rp: RemoteProxy | null = null;
    const bad = (why: string) => { this.opts.logger.warn({ why, remote: rp?.id ?? sock.remoteAddress }, 'lock peer connection refused'); sock.destroy(); };
    const conn: MsgSocket = new MsgSocket(sock, (m) => {
      if (!rp) {
        if (m.t !== 'h' || m.tok !== this.token || typeof m.id !== 'string' || !Array.isArray(m.keep)) { bad('bad hello'); return; }
        rp = this.remotes.get(m.id) ?? new RemoteProxy(m.id);
        this.remotes.set(m.id, rp);
        if (rp.conn && rp.conn !== conn) rp.conn.sock.destroy();
        rp.conn = conn;
        // What the requester no longer holds (its link broke before it could say so) goes now.
        const keep = new Set(m.keep);
        for (const [x, rt] of rp.txns) if (!keep.has(x)) { rp.txns.delete(x); this.local?.releaseAll(rt); }
        return;
      }
      this.serve(rp, m);
    }, bad);
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.serverConns.delete(sock);
      if (!rp || rp.conn !== conn) return;
      rp.conn = null;
      // Its waits end (the requester queues elsewhere); its grants stay while it lives.
      for (const rt of rp.txns.values()) this.local?.abortWait(rt, new LockCancelledError(-1));
      if (!this.records.has(rp.id)) this.forgetRemote(rp, 'link closed');
    });
  }

  private serve(rp: RemoteProxy, m: PeerMsg): void {
    const local = this.local;
    switch (m.t) {
      case 'p': rp.send(this.idleFor(rp, Date.now()) ? { t: 'P', i: 1 } : { t: 'P' }); return;
      case 'a': {
        const { x, b } = m;
        if (!local || this.stopped || this.session.state !== 'connected' || typeof b !== 'number') { rp.send({ t: 'd', x, b, e: 'unavailable' }); return; }
        let rt = rp.txns.get(x);
        if (!rt) { rt = new RemoteTxn(rp, x, `${m.l} (via ${rp.id})`); rp.txns.set(x, rt); }
        this.stats.served++;
        rp.lastAsked = Date.now();
        let p: Promise<void> | null;
        try { p = local.acquire(rt, b, 0); } catch { rp.send({ t: 'd', x, b, e: 'unavailable' }); return; }
        if (!p) { rp.send({ t: 'g', x, b }); return; }
        const owner = rt;
        p.then(() => {
          // Released meanwhile ('r' raced the grant): give it back at once.
          if (rp.txns.get(x) !== owner) { local.releaseAll(owner); return; }
          rp.send({ t: 'g', x, b });
        }, (e: unknown) => {
          rp.send({ t: 'd', x, b, e: e instanceof LockDeadlockError ? 'deadlock' : e instanceof LockCancelledError ? 'cancelled' : 'unavailable' });
        });
        return;
      }
      case 'c': {
        const rt = rp.txns.get(m.x);
        if (rt) local?.abortWait(rt, new LockCancelledError(m.b));
        return;
      }
      case 'r': {
        const rt = rp.txns.get(m.x);
        if (rt) { rp.txns.delete(m.x); local?.releaseAll(rt); }
        return;
      }
      default:
        return;
    }
  }

  private forgetRemote(rp: RemoteProxy, why: string): void {
    if (rp.txns.size) this.opts.logger.info?.({ proxy: rp.id, why, txns: rp.txns.size }, 'releasing the locks another proxy took here');
    for (const rt of rp.txns.values()) this.local?.releaseAll(rt);
    rp.txns.clear();
    if (!rp.conn) this.remotes.delete(rp.id);
  }

  // ------------------------------------------------------------ requester side

  /**
   * The link to the owner of `bucket`, or null when this proxy takes it itself (it owns it, no
   * other proxy serves locks, the session is not connected, or the owner was unreachable a moment ago).
   */
  linkFor(bucket: number): string | null {
    if (this.stopped || this.session.state !== 'connected') return null;
    const id = this.owners.ownerOf(bucket);
    if (id === null || id === this.opts.proxyId) return null;
    const link = this.link(id);
    if (link === null) return null;
    if (link.ownerIdle) { this.stats.idleBypass++; return null; }
    return id;
  }

  private link(id: string): PeerLink | null {
    let link = this.links.get(id);
    if (link && link.state !== 'closed') return link;
    if (link && Date.now() < link.downUntil) return null;
    const rec = this.records.get(id);
    if (!rec) return null;
    link = new PeerLink(id, rec);
    this.links.set(id, link);
    this.connect(link);
    return link;
  }

  private connect(link: PeerLink): void {
    const r = link.rec;
    const sock = r.path && r.machine === this.machine ? net.connect(r.path) : net.connect({ host: r.host, port: r.port });
    const conn = new MsgSocket(sock, (m) => this.fromOwner(link, m), (why) => { this.opts.logger.warn({ owner: link.id, why }, 'lock peer sent a bad message'); sock.destroy(); });
    link.conn = conn;
    sock.on('error', () => undefined);
    sock.once('connect', () => {
      if (link.state !== 'connecting') { sock.destroy(); return; }
      link.state = 'open';
      link.lastHeard = Date.now();
      this.stats.linksOpened++;
      conn.send({ t: 'h', id: this.opts.proxyId, tok: link.rec.token, keep: this.client?.keepFor(link.id) ?? [] });
      this.client?.onLinkOpen(link.id);
      link.flush();
    });
    sock.once('close', () => this.linkClosed(link, 'connection closed'));
  }

  private fromOwner(link: PeerLink, m: PeerMsg): void {
    link.lastHeard = Date.now();
    const c = this.client;
    if (!c) return;
    switch (m.t) {
      case 'g': c.onGrant(link.id, m.x, m.b); return;
      case 'd': c.onDeny(link.id, m.x, m.b, m.e); return;
      case 'l': c.onLost(link.id, m.x, m.b, String(m.r)); return;
      case 'P': {
        link.ownerIdle = m.i === 1;
        if (link.pingAt) { const us = Number(process.hrtime.bigint() - link.pingAt) / 1000; this.stats.pings++; this.stats.rttUsSum += us; this.stats.rttUsMax = Math.max(this.stats.rttUsMax, us); link.pingAt = 0n; }
        return;
      }
      default: return;
    }
  }

  private dropLink(link: PeerLink, why: string): void {
    link.conn?.sock.destroy();
    this.linkClosed(link, why);
  }

  private linkClosed(link: PeerLink, why: string): void {
    if (link.state === 'closed') return;
    const wasOpen = link.state === 'open';
    link.state = 'closed';
    link.ownerIdle = false;
    link.downUntil = Date.now() + PING_MS;
    if (wasOpen) this.stats.linksLost++;
    this.opts.logger.warn({ owner: link.id, why, wasOpen }, 'lock peer link lost');
    this.client?.onLinkDown(link.id, `the link to proxy ${link.id} that serves its lock bucket broke (${why})`);
  }

  /** Sends to the owner's current link (dropped when there is none: the owner settles on reconnection or our znode going). */
  send(id: string, m: PeerMsg): boolean {
    const link = this.links.get(id);
    return link ? link.send(m) : false;
  }

  /** Is a grant of `id` still good (link open and heard from within staleMs)? */
  fresh(id: string): boolean {
    return this.links.get(id)?.fresh(this.opts.staleMs) ?? false;
  }

  private tick(): void {
    const now = Date.now();
    for (const link of this.links.values()) {
      if (link.state === 'open') {
        if (now - link.lastHeard > this.opts.staleMs) { this.dropLink(link, `silent for ${now - link.lastHeard} ms`); continue; }
        link.pingAt = process.hrtime.bigint();
        link.send({ t: 'p' });
      } else if (link.state === 'closed' && now >= link.downUntil) {
        if (!this.records.has(link.id)) {
          // Gone from ZooKeeper: what it granted us went with its session.
          this.links.delete(link.id);
          this.client?.onOwnerGone(link.id);
        } else if (this.client?.hasStateWith(link.id)) {
          // Settle what the owner still keeps for us (the hello's keep list).
          this.link(link.id);
        }
      }
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.loop.stop();
    if (this.pingTimer) clearInterval(this.pingTimer);
    for (const link of this.links.values()) { link.state = 'closed'; link.conn?.sock.destroy(); }
    for (const rp of this.remotes.values()) for (const rt of rp.txns.values()) this.local?.releaseAll(rt);
    this.remotes.clear();
    for (const s of this.serverConns) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    await new Promise<void>((r) => (this.unixServer ? this.unixServer.close(() => r()) : r()));
    if (this.unixPath) fs.rmSync(this.unixPath, { force: true });
  }
}
