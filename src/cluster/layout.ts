// Where pgring keeps things in ZooKeeper: everything of one cluster under /pgring/<cluster>/.
//
//   config                              persistent, cluster-wide settings (JSON)
//   ring/versions/v<NNNNNNNNNN>         persistent, immutable ring documents
//   ring/active                         persistent, {version}; changed only by compare-and-set
//   definition/versions/v<NNNNNNNNNN>   persistent, immutable cluster definitions (sharded and
//                                       reference tables, policy for unknown tables)
//   definition/active                   persistent, {version}; changed only by compare-and-set
//   proxy-numbers/<n>                   ephemeral, the small number a proxy encodes in its cancel keys
//   shards/<name>                       persistent, shard records
//   backends/<shard>/<host:port>        ephemeral liveness (heartbeat) per backend
//   proxies/<id>                        ephemeral, one per running proxy
//   controller/                         leader latch (ephemeral sequential children)
//   locks/                              write locks (built elsewhere)
//   txns/                               two-phase-commit decisions (built elsewhere)
//   backups/                            consistent cuts: barrier, acks, manifests (src/cluster/backups.ts)
import type { Zk } from './zk';

export const DEFAULT_ROOT = '/pgring';

/** A single znode name: non-empty, no '/', not '.' or '..', no control characters. */
export function checkSegment(kind: string, s: string): string {
  // eslint-disable-next-line no-control-regex
  if (typeof s !== 'string' || s.length === 0 || s === '.' || s === '..' || s.includes('/') || /[\u0000-\u001f\u007f]/.test(s) || s === 'zookeeper') {
    throw new Error(`invalid ${kind} name for ZooKeeper: ${JSON.stringify(s)}`);
  }
  return s;
}

export function formatVersion(v: number): string {
  if (!Number.isInteger(v) || v < 0 || v > 9_999_999_999) throw new Error(`invalid ring version ${v}`);
  return 'v' + String(v).padStart(10, '0');
}

/** 'v0000000042' -> 42; null for anything else. */
export function parseVersion(name: string): number | null {
  const m = /^v(\d{10})$/.exec(name);
  return m ? Number(m[1]) : null;
}

export function hostPort(host: string, port: number): string {
  return `${host}:${port}`;
}

export class Layout {
  readonly base: string;
  constructor(readonly cluster: string, readonly root: string = DEFAULT_ROOT) {
    checkSegment('cluster', cluster);
    if (!root.startsWith('/') || root.endsWith('/')) throw new Error(`invalid ZooKeeper root ${JSON.stringify(root)}`);
    this.base = `${root}/${cluster}`;
  }
  get config(): string { return `${this.base}/config`; }
  get ring(): string { return `${this.base}/ring`; }
  get ringVersions(): string { return `${this.base}/ring/versions`; }
  ringVersion(v: number): string { return `${this.ringVersions}/${formatVersion(v)}`; }
  get ringActive(): string { return `${this.base}/ring/active`; }
  get definition(): string { return `${this.base}/definition`; }
  get definitionVersions(): string { return `${this.base}/definition/versions`; }
  definitionVersion(v: number): string { return `${this.definitionVersions}/${formatVersion(v)}`; }
  get definitionActive(): string { return `${this.base}/definition/active`; }
  get proxyNumbers(): string { return `${this.base}/proxy-numbers`; }
  proxyNumber(n: number): string { return `${this.proxyNumbers}/${n}`; }
  get shards(): string { return `${this.base}/shards`; }
  shard(name: string): string { return `${this.shards}/${checkSegment('shard', name)}`; }
  get backends(): string { return `${this.base}/backends`; }
  backendShard(shard: string): string { return `${this.backends}/${checkSegment('shard', shard)}`; }
  backend(shard: string, addr: string): string { return `${this.backendShard(shard)}/${checkSegment('backend address', addr)}`; }
  get proxies(): string { return `${this.base}/proxies`; }
  proxy(id: string): string { return `${this.proxies}/${checkSegment('proxy id', id)}`; }
  get controller(): string { return `${this.base}/controller`; }
  get locks(): string { return `${this.base}/locks`; }
  get txns(): string { return `${this.base}/txns`; }
  get backups(): string { return `${this.base}/backups`; }

  /** The persistent directories every other module expects. */
  dirs(): string[] {
    return [this.ringVersions, this.definitionVersions, this.proxyNumbers, this.shards, this.backends, this.proxies, this.controller, this.locks, this.txns];
  }
}

/** Creates the persistent skeleton (idempotent; safe when several processes race). */
export async function ensureLayout(zk: Zk, layout: Layout): Promise<void> {
  for (const d of layout.dirs()) await zk.mkdirp(d);
}
