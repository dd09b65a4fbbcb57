// Cancel through any proxy. Proxies usually sit behind one address, so a client's
// CancelRequest reaches a proxy at random. Each proxy claims a small number (1..1023) as the
// ephemeral znode proxy-numbers/<n> holding its address, and puts it in the top 10 bits of the
// 31-bit secret of every BackendKeyData it issues. A proxy that receives a CancelRequest for a
// number other than its own forwards the 16 bytes to that proxy (as PgBouncer's `peers` does);
// a key of its own that it does not know, or of a number nobody holds, is ignored, as
// PostgreSQL ignores unknown keys.
import { randomInt } from 'node:crypto';
import * as net from 'node:net';
import * as os from 'node:os';
import { Layout } from './layout';
import { EphemeralNode } from './registry';
import { ClusterLogger, ZkSession } from './session';
import { decodeJson, encodeJson, isZkError } from './zk';

export const MAX_PROXY_NUMBER = 1023;
const RANDOM_BITS = 21;

export interface ProxyNumberRecord { id: string; host: string; port: number }

/** A secret carrying proxy number `n` (1..1023) in its top bits; 21 random bits below. */
export function encodeSecret(n: number): number {
  return ((n << RANDOM_BITS) | randomInt(1 << RANDOM_BITS)) >>> 0;
}

/** The proxy number a secret carries (0: issued by a proxy without a number). */
export function proxyNumberOf(secret: number): number {
  return (secret >>> RANDOM_BITS) & MAX_PROXY_NUMBER;
}

/** The 16-byte CancelRequest packet. */
export function cancelPacket(pid: number, secret: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(80877102, 4);
  b.writeInt32BE(pid | 0, 8);
  b.writeInt32BE(secret | 0, 12);
  return b;
}

/** The address other proxies reach this one at (a wildcard listen address: the host name). */
export function advertisedHost(listenHost: string): string {
  return listenHost === '0.0.0.0' || listenHost === '::' || listenHost === '' ? os.hostname() : listenHost;
}

export class CancelPeers {
  number = 0;
  private node: EphemeralNode<ProxyNumberRecord> | null = null;

  constructor(private readonly session: ZkSession, private readonly layout: Layout, private readonly logger: ClusterLogger) {}

  /** Claims the lowest free number and keeps its znode across sessions. */
  async start(rec: ProxyNumberRecord): Promise<number> {
    const zk = await this.session.waitConnected();
    await zk.mkdirp(this.layout.proxyNumbers);
    for (let n = 1; n <= MAX_PROXY_NUMBER; n++) {
      const path = this.layout.proxyNumber(n);
      try { await zk.create(path, encodeJson(rec), 'ephemeral'); } catch (e) {
        if (isZkError(e, 'NODEEXISTS')) continue;
        throw e;
      }
      this.number = n;
      this.node = new EphemeralNode(this.session, path, rec, { logger: this.logger });
      await this.node.start();
      return n;
    }
    throw new Error(`all ${MAX_PROXY_NUMBER} proxy numbers of cluster "${this.layout.cluster}" are taken`);
  }

  async stop(): Promise<void> { await this.node?.stop(); this.node = null; }

  /** A secret for a new client session. */
  secret(): number { return this.number ? encodeSecret(this.number) : randomInt(1 << RANDOM_BITS); }

  /**
   * Forwards a CancelRequest this proxy cannot serve to the proxy that issued the key.
   * Resolves when done (or ignored); never rejects.
   */
  async forward(pid: number, secret: number): Promise<void> {
    const n = proxyNumberOf(secret);
    if (n === 0 || n === this.number) return; // ours and unknown: ignored as PostgreSQL does
    let peer: ProxyNumberRecord;
    try {
      const zk = this.session.current();
      peer = decodeJson<ProxyNumberRecord>((await zk.get(this.layout.proxyNumber(n))).data, this.layout.proxyNumber(n));
    } catch (e) {
      if (!isZkError(e, 'NONODE')) this.logger.warn({ err: (e as Error).message, proxyNumber: n }, 'cancel request not forwarded');
      return;
    }
    await new Promise<void>((resolve) => {
      const sock = net.connect({ host: peer.host, port: peer.port });
      const done = () => { clearTimeout(t); sock.destroy(); resolve(); };
      const t = setTimeout(done, 5000);
      sock.on('connect', () => sock.write(cancelPacket(pid, secret))); // the peer closes once its servers got it
      sock.on('error', (e) => { this.logger.warn({ err: e.message, peer: `${peer.host}:${peer.port}` }, 'cancel request not forwarded'); done(); });
      sock.on('close', done);
      sock.resume();
    });
  }
}
