// Which proxy serves a lock bucket (pure). Every bucket has one owner among the proxies that
// serve lock requests: the one with the highest rendezvous score for the bucket. Proxies that
// see the same set of proxies pick the same owner; when a proxy joins or leaves, only the
// buckets it wins or held change owner (about 1/N of them).
//
// The owner is a performance choice, never a safety one: the owner still takes the bucket's
// ZooKeeper lock before it grants, so two proxies that briefly disagree on the owner both queue
// in ZooKeeper and ZooKeeper orders them (src/cluster/lock-peers.ts).

/** FNV-1a of a string, 32 bits. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A 32-bit mix (murmur3's finaliser). */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Rendezvous score of proxy (by its seed) for a bucket. */
function score(seed: number, bucket: number): number {
  return mix(seed ^ Math.imul(bucket + 1, 0x9e3779b1));
}

/** Owners of buckets for one set of proxies, computed once per bucket (the set rarely changes). */
export class BucketOwners {
  private readonly ids: string[];
  private readonly seeds: number[];
  private readonly cache = new Map<number, string>();

  constructor(ids: Iterable<string>) {
    this.ids = [...new Set(ids)].sort();
    this.seeds = this.ids.map(fnv1a);
  }

  get size(): number { return this.ids.length; }
  has(id: string): boolean { return this.ids.includes(id); }
  members(): readonly string[] { return this.ids; }

  /** The owner of `bucket`, or null when no proxy serves locks. */
  ownerOf(bucket: number): string | null {
    const hit = this.cache.get(bucket);
    if (hit !== undefined) return hit;
    if (this.ids.length === 0) return null;
    let best = 0;
    let bestScore = -1;
    for (let i = 0; i < this.ids.length; i++) {
      const s = score(this.seeds[i]!, bucket);
      // ties (rare) go to the smaller id: every proxy decides the same way
      if (s > bestScore) { best = i; bestScore = s; }
    }
    const id = this.ids[best]!;
    if (this.cache.size < 1 << 20) this.cache.set(bucket, id);
    return id;
  }

  /** Same members (order ignored)? */
  sameAs(ids: Iterable<string>): boolean {
    const o = [...new Set(ids)].sort();
    return o.length === this.ids.length && o.every((x, i) => x === this.ids[i]);
  }
}
