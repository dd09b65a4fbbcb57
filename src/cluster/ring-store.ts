// The ring in ZooKeeper: immutable versions ring/versions/v<NNNNNNNNNN> (never modified after
// creation) plus ring/active = {"version": N}, switched only by compare-and-set on the znode
// version of `active` (the zookeeper package has no multi-op).
import { EventEmitter } from 'node:events';
import { ensureLayout, Layout, parseVersion } from './layout';
import { ClusterLogger, ZkLike, ZkSession, zkOf } from './session';
import { SyncLoop, WatchSet, watchedRead } from './sync';
import { decodeJson, encodeJson, isZkError, RETRYABLE_CODES, Stat, Zk, ZkError } from './zk';

/** Same shape as RingDefinition in src/ring/ring.ts (kept local on purpose). */
export type RingDocument = {
  version: number;
  shards: { name: string; weight: number }[];
  vnodes: number;
  seed: number;
  hash: 'pg-hashint8extended-v1';
};

export interface ActiveRing {
  version: number;
  ring: RingDocument;
  /** znode version of ring/active when read (the compare-and-set token) */
  activeStatVersion: number;
}

export class RingConflictError extends Error {
  constructor(readonly attempted: number, readonly active: number | null, msg: string) {
    super(msg);
    this.name = 'RingConflictError';
  }
}

/** Throws a descriptive Error when `x` is not a valid ring document. */
export function validateRingDocument(x: unknown, where = 'ring'): RingDocument {
  const bad = (why: string): never => { throw new Error(`invalid ring document (${where}): ${why}`); };
  if (!x || typeof x !== 'object') bad('not an object');
  const d = x as Record<string, unknown>;
  if (!Number.isInteger(d.version) || (d.version as number) < 0) bad('version must be a non-negative integer');
  if (!Array.isArray(d.shards) || d.shards.length === 0) bad('shards must be a non-empty array');
  const names = new Set<string>();
  for (const s of d.shards as unknown[]) {
    const r = s as Record<string, unknown>;
    if (!r || typeof r.name !== 'string' || r.name.length === 0 || r.name.includes('/')) bad(`bad shard name ${JSON.stringify(r?.name)}`);
    if (names.has(r.name as string)) bad(`duplicate shard ${r.name}`);
    names.add(r.name as string);
    if (typeof r.weight !== 'number' || !Number.isFinite(r.weight) || r.weight <= 0) bad(`shard ${r.name}: weight must be a positive number`);
  }
  if (!Number.isInteger(d.vnodes) || (d.vnodes as number) < 1) bad('vnodes must be a positive integer');
  if (typeof d.seed !== 'number' || !Number.isFinite(d.seed)) bad('seed must be a number');
  if (d.hash !== 'pg-hashint8extended-v1') bad(`unknown hash ${JSON.stringify(d.hash)}`);
  return {
    version: d.version as number,
    shards: (d.shards as { name: string; weight: number }[]).map((s) => ({ name: s.name, weight: s.weight })),
    vnodes: d.vnodes as number, seed: d.seed as number, hash: 'pg-hashint8extended-v1',
  };
}

interface ActivePointer { version: number; statVersion: number }

async function readPointer(zk: Zk, layout: Layout): Promise<ActivePointer | null> {
  try {
    const { data, stat } = await zk.get(layout.ringActive);
    return { version: parsePointer(data, layout), statVersion: stat.version };
  } catch (e) {
    if (isZkError(e, 'NONODE')) return null;
    throw e;
  }
}

function parsePointer(data: Buffer, layout: Layout): number {
  const p = decodeJson<{ version?: unknown }>(data, layout.ringActive);
  if (!Number.isInteger(p.version)) throw new Error(`invalid ${layout.ringActive}: ${data.toString()}`);
  return p.version as number;
}

function pointerData(version: number): Buffer {
  return encodeJson({ version, switchedAt: Date.now() });
}

/** Retries an idempotent operation across connection loss / a replaced session (also used by definition-store). */
export async function retrying<T>(s: ZkLike, fn: (zk: Zk) => Promise<T>, timeoutMs = 30000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const zk = await zkOf(s, Math.max(1, deadline - Date.now()));
    try { return await fn(zk); } catch (e) {
      const retry = isZkError(e) && (RETRYABLE_CODES.has(e.code) || (e.code === 'SESSIONEXPIRED' && s instanceof ZkSession));
      if (!retry || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function readRingVersion(s: ZkLike, layout: Layout, version: number): Promise<RingDocument> {
  return retrying(s, async (zk) => {
    const { data } = await zk.get(layout.ringVersion(version));
    return validateRingDocument(decodeJson(data, layout.ringVersion(version)), layout.ringVersion(version));
  });
}

/** Version numbers present under ring/versions, ascending. */
export async function listRingVersions(s: ZkLike, layout: Layout): Promise<number[]> {
  return retrying(s, async (zk) => {
    try {
      return (await zk.children(layout.ringVersions)).map(parseVersion).filter((v): v is number => v !== null).sort((a, b) => a - b);
    } catch (e) { if (isZkError(e, 'NONODE')) return []; throw e; }
  });
}

/** The active ring, or null when none was ever activated. */
export async function readActiveRing(s: ZkLike, layout: Layout): Promise<ActiveRing | null> {
  return retrying(s, async (zk) => {
    const p = await readPointer(zk, layout);
    if (!p) return null;
    const { data } = await zk.get(layout.ringVersion(p.version));
    return { version: p.version, ring: validateRingDocument(decodeJson(data, layout.ringVersion(p.version)), layout.ringVersion(p.version)), activeStatVersion: p.statVersion };
  });
}

/**
 * Writes `def` as a new immutable version (max existing + 1; `def.version` is overwritten)
 * without activating it. Returns the version number.
 */
export async function writeRingVersion(s: ZkLike, layout: Layout, def: Omit<RingDocument, 'version'> & { version?: number }): Promise<number> {
  validateRingDocument({ ...def, version: 0 });
  const zk0 = await zkOf(s);
  await ensureLayout(zk0, layout);
  const existing = await listRingVersions(s, layout);
  const p = await retrying(s, (zk) => readPointer(zk, layout));
  let next = Math.max(existing.at(-1) ?? 0, p?.version ?? 0) + 1;
  for (;;) {
    const doc: RingDocument = { ...validateRingDocument({ ...def, version: next }) };
    const data = encodeJson(doc);
    const zk = await zkOf(s);
    try {
      await zk.create(layout.ringVersion(next), data, 'persistent');
      return next;
    } catch (e) {
      if (isZkError(e, 'NODEEXISTS')) {
        // Ours, if an earlier attempt of this call was applied before the connection dropped.
        const { data: have } = await retrying(s, (z) => z.get(layout.ringVersion(next)));
        if (have.equals(data)) return next;
        next++;
        continue;
      }
      if (isZkError(e) && (RETRYABLE_CODES.has(e.code) || e.code === 'SESSIONEXPIRED') && s instanceof ZkSession) {
        await new Promise((r) => setTimeout(r, 100));
        continue; // retry the same number; NODEEXISTS with equal data means it was ours
      }
      throw e;
    }
  }
}

/**
 * Raw compare-and-set of ring/active: points it at `version` if its znode version is still
 * `expectedStatVersion` (-1 is refused: this is a CAS). Throws ZkError('BADVERSION') on a race.
 */
export async function switchActive(s: ZkLike, layout: Layout, version: number, expectedStatVersion: number): Promise<Stat> {
  if (!Number.isInteger(expectedStatVersion) || expectedStatVersion < 0) throw new ZkError('BADARGUMENTS', 'switchActive needs the expected znode version of ring/active');
  const zk = await zkOf(s);
  const stat = await zk.exists(layout.ringVersion(version));
  if (!stat) throw new ZkError('NONODE', `ring version ${version} does not exist`, -101, layout.ringVersion(version));
  return zk.set(layout.ringActive, pointerData(version), expectedStatVersion);
}

export interface PublishOptions {
  /** only switch if the active version is still this one (null: no active ring yet) */
  expectedActive?: number | null;
  timeoutMs?: number;
}

/**
 * Writes `def` as a new version and switches ring/active to it by compare-and-set, re-reading
 * and retrying on BADVERSION. Never moves `active` backwards: if a newer version became active
 * meanwhile (or `expectedActive` no longer holds) it throws RingConflictError and the written
 * version stays inactive. Returns the new version number.
 */
export async function publishRing(s: ZkLike, layout: Layout, def: Omit<RingDocument, 'version'> & { version?: number }, opts: PublishOptions = {}): Promise<number> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30000);
  const v = await writeRingVersion(s, layout, def);
  for (;;) {
    const zk = await zkOf(s, Math.max(1, deadline - Date.now()));
    try {
      const cur = await readPointer(zk, layout);
      if (cur?.version === v) return v;
      if (opts.expectedActive !== undefined && (cur?.version ?? null) !== opts.expectedActive) {
        throw new RingConflictError(v, cur?.version ?? null, `ring version ${v} not activated: active is ${cur?.version ?? 'none'}, expected ${opts.expectedActive ?? 'none'}`);
      }
      if (cur && cur.version > v) {
        throw new RingConflictError(v, cur.version, `ring version ${v} not activated: newer version ${cur.version} is active`);
      }
      if (!cur) await zk.create(layout.ringActive, pointerData(v), 'persistent');
      else await zk.set(layout.ringActive, pointerData(v), cur.statVersion);
      return v;
    } catch (e) {
      if (e instanceof RingConflictError) throw e;
      const again = isZkError(e, 'BADVERSION', 'NODEEXISTS', 'CONNECTIONLOSS', 'OPERATIONTIMEOUT') || (isZkError(e, 'SESSIONEXPIRED') && s instanceof ZkSession);
      if (!again || Date.now() > deadline) throw e;
      if (!isZkError(e, 'BADVERSION', 'NODEEXISTS')) await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Makes sure a ring is active: if none is, writes `def` as version 1 (unless versions exist)
 * and activates it. Idempotent and safe when several proxies race; returns the active ring.
 */
export async function initRing(s: ZkLike, layout: Layout, def: Omit<RingDocument, 'version'> & { version?: number }): Promise<ActiveRing> {
  validateRingDocument({ ...def, version: 1 });
  const zk0 = await zkOf(s);
  await ensureLayout(zk0, layout);
  for (let attempt = 0; ; attempt++) {
    const cur = await readActiveRing(s, layout);
    if (cur) return cur;
    const versions = await listRingVersions(s, layout);
    let target = versions.at(-1);
    if (target === undefined) {
      target = 1;
      await retrying(s, async (zk) => {
        try { await zk.create(layout.ringVersion(1), encodeJson(validateRingDocument({ ...def, version: 1 })), 'persistent'); } catch (e) {
          if (!isZkError(e, 'NODEEXISTS')) throw e;
        }
      });
    }
    await retrying(s, async (zk) => {
      try { await zk.create(layout.ringActive, pointerData(target!), 'persistent'); } catch (e) {
        if (!isZkError(e, 'NODEEXISTS')) throw e;
      }
    });
    if (attempt > 20) throw new Error('initRing: could not establish an active ring');
  }
}

/**
 * Mirrors ring/active: re-reads on every watch event and every (re)connection and emits
 * 'ring' (ring: RingDocument, prev: RingDocument | null) when the active version changed, and
 * 'synced' (version | null) after every successful read.
 */
export class RingWatcher extends EventEmitter {
  private cur: RingDocument | null = null;
  private loop: SyncLoop;
  private ws = new WatchSet();
  private readonly logger: ClusterLogger;

  constructor(readonly session: ZkSession, readonly layout: Layout, opts: { logger?: ClusterLogger } = {}) {
    super();
    this.logger = opts.logger ?? session.logger;
    this.loop = new SyncLoop(session, (zk) => this.sync(zk), { name: `ring watcher ${layout.base}`, logger: this.logger });
  }

  /** Starts watching; resolves after the first successful read (the ring may still be null). */
  async start(): Promise<void> {
    const first = this.loop.synced();
    this.loop.start();
    await first;
  }

  stop(): void { this.loop.stop(); }

  /** Resolves after a complete re-read that started after this call. */
  refreshed(): Promise<void> { const p = this.loop.synced(); this.loop.trigger(true); return p; }

  /** The active ring document as last read, or null. */
  current(): RingDocument | null { return this.cur; }

  /** Resolves once a ring with version >= v is active here. */
  waitForVersion(v: number, timeoutMs = 30000): Promise<RingDocument> {
    if (this.cur && this.cur.version >= v) return Promise.resolve(this.cur);
    return new Promise((resolve, reject) => {
      const on = (r: RingDocument) => { if (r.version >= v) { clearTimeout(t); this.off('ring', on); resolve(r); } };
      const t = setTimeout(() => { this.off('ring', on); reject(new Error(`ring version ${v} not seen within ${timeoutMs} ms (have ${this.cur?.version ?? 'none'})`)); }, timeoutMs);
      this.on('ring', on);
    });
  }

  private async sync(zk: Zk): Promise<void> {
    const fire = () => this.loop.trigger();
    let version: number | null = null;
    for (;;) {
      try {
        const { data } = await watchedRead(this.ws, zk, 'active', fire, (w) => zk.get(this.layout.ringActive, w));
        version = parsePointer(data, this.layout);
        break;
      } catch (e) {
        if (!isZkError(e, 'NONODE')) throw e;
      }
      // No active ring yet: watch for its creation.
      const st = await watchedRead(this.ws, zk, 'active-exists', fire, (w) => zk.exists(this.layout.ringActive, w));
      if (!st) break;
    }
    if (version !== null && version !== this.cur?.version) {
      const { data } = await zk.get(this.layout.ringVersion(version));
      const ring = validateRingDocument(decodeJson(data, this.layout.ringVersion(version)), this.layout.ringVersion(version));
      const prev = this.cur;
      this.cur = ring;
      this.emit('ring', ring, prev);
    }
    this.emit('synced', version);
  }
}
