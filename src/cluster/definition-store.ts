// The cluster definition in ZooKeeper, kept exactly as the ring is: immutable versions
// definition/versions/v<NNNNNNNNNN> plus definition/active = {"version": N}, switched only by
// compare-and-set on the znode version of `active`. It lives beside the ring (not inside a ring
// version) because it changes for different reasons (a table registered, a table sharded) and
// must not cost a ring version, which resharding treats as a data migration.
import { EventEmitter } from 'node:events';
import { ClusterDefinition, DefinitionBody, sameDefinition, validateDefinition } from './definition';
import { ensureLayout, Layout, parseVersion } from './layout';
import { retrying } from './ring-store';
import { ClusterLogger, ZkLike, ZkSession, zkOf } from './session';
import { SyncLoop, WatchSet, watchedRead } from './sync';
import { decodeJson, encodeJson, isZkError, Zk } from './zk';

export interface ActiveDefinition { def: ClusterDefinition; statVersion: number }

function parsePointer(data: Buffer, layout: Layout): number {
  const p = decodeJson<{ version?: unknown }>(data, layout.definitionActive);
  if (!Number.isInteger(p.version)) throw new Error(`invalid ${layout.definitionActive}: ${data.toString()}`);
  return p.version as number;
}

const pointerData = (version: number): Buffer => encodeJson({ version, switchedAt: Date.now() });

async function readVersion(zk: Zk, layout: Layout, v: number): Promise<ClusterDefinition> {
  const path = layout.definitionVersion(v);
  return validateDefinition(decodeJson((await zk.get(path)).data, path), path);
}

/** The active definition and the znode version of `active` (the CAS token), or null. */
export async function readActiveDefinition(s: ZkLike, layout: Layout): Promise<ActiveDefinition | null> {
  return retrying(s, async (zk) => {
    let data: Buffer, statVersion: number;
    try { ({ data, stat: { version: statVersion } } = await zk.get(layout.definitionActive)); } catch (e) {
      if (isZkError(e, 'NONODE')) return null;
      throw e;
    }
    return { def: await readVersion(zk, layout, parsePointer(data, layout)), statVersion };
  });
}

async function listVersions(zk: Zk, layout: Layout): Promise<number[]> {
  try {
    return (await zk.children(layout.definitionVersions)).map(parseVersion).filter((v): v is number => v !== null).sort((a, b) => a - b);
  } catch (e) { if (isZkError(e, 'NONODE')) return []; throw e; }
}

/** Creates the next free version holding `body`; returns its number (never activates it). */
async function writeVersion(s: ZkLike, layout: Layout, body: DefinitionBody, atLeast: number): Promise<number> {
  return retrying(s, async (zk) => {
    let next = Math.max(atLeast, ((await listVersions(zk, layout)).at(-1) ?? 0) + 1);
    for (;;) {
      const data = encodeJson(validateDefinition({ ...body, version: next }));
      try { await zk.create(layout.definitionVersion(next), data, 'persistent'); return next; } catch (e) {
        if (!isZkError(e, 'NODEEXISTS')) throw e;
        if ((await zk.get(layout.definitionVersion(next))).data.equals(data)) return next; // ours, from a retried call
        next++;
      }
    }
  });
}

/**
 * Makes sure a definition is active: if none is, `body` becomes version 1 (racing proxies and
 * `ring init` agree on whichever was created first). Returns the active definition.
 */
export async function initDefinition(s: ZkLike, layout: Layout, body: DefinitionBody): Promise<ActiveDefinition> {
  validateDefinition({ ...body, version: 1 });
  await ensureLayout(await zkOf(s), layout);
  for (let attempt = 0; attempt < 20; attempt++) {
    const cur = await readActiveDefinition(s, layout);
    if (cur) return cur;
    await retrying(s, async (zk) => {
      try { await zk.create(layout.definitionVersion(1), encodeJson({ ...body, version: 1 }), 'persistent'); } catch (e) { if (!isZkError(e, 'NODEEXISTS')) throw e; }
      const target = (await listVersions(zk, layout))[0] ?? 1;
      try { await zk.create(layout.definitionActive, pointerData(target), 'persistent'); } catch (e) { if (!isZkError(e, 'NODEEXISTS')) throw e; }
    });
  }
  throw new Error('could not establish an active cluster definition');
}

/**
 * Applies `change` to the active definition and activates the result as a new version by
 * compare-and-set; on a race it re-reads and applies `change` again to the newer version.
 * `change` may throw (DefinitionChangeError) to refuse. Returns the active definition after
 * the call and whether this call changed it.
 */
export async function updateDefinition(s: ZkLike, layout: Layout, change: (cur: ClusterDefinition) => DefinitionBody, timeoutMs = 30000): Promise<{ def: ClusterDefinition; changed: boolean }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cur = await readActiveDefinition(s, layout);
    if (!cur) throw new Error(`no cluster definition in ZooKeeper for cluster "${layout.cluster}": run \`pgring ring init --config FILE\``);
    const body = change(cur.def);
    if (sameDefinition(body, cur.def)) return { def: cur.def, changed: false };
    const v = await writeVersion(s, layout, body, cur.def.version + 1);
    try {
      await (await zkOf(s)).set(layout.definitionActive, pointerData(v), cur.statVersion);
      return { def: { ...body, version: v }, changed: true };
    } catch (e) {
      // BADVERSION: another change won; the version written here stays inactive. Connection loss:
      // the set may have been applied, which the re-read shows (then `change` is a no-op).
      if (!isZkError(e, 'BADVERSION', 'CONNECTIONLOSS', 'OPERATIONTIMEOUT') || Date.now() > deadline) throw e;
      // Several proxies racing: back off a little, at random, so that one of them wins soon.
      await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 45)));
    }
  }
}

/**
 * Mirrors definition/active: re-reads on every watch event and every (re)connection and emits
 * 'definition' (def, prev) when the active version changed.
 */
export class DefinitionWatcher extends EventEmitter {
  private cur: ClusterDefinition | null = null;
  private loop: SyncLoop;
  private ws = new WatchSet();

  constructor(readonly session: ZkSession, readonly layout: Layout, opts: { logger?: ClusterLogger } = {}) {
    super();
    this.loop = new SyncLoop(session, (zk) => this.sync(zk), { name: `definition watcher ${layout.base}`, logger: opts.logger ?? session.logger });
  }

  async start(): Promise<void> {
    const first = this.loop.synced();
    this.loop.start();
    await first;
  }

  stop(): void { this.loop.stop(); }

  current(): ClusterDefinition | null { return this.cur; }

  /** Resolves once a definition with version >= v is active here. */
  waitForVersion(v: number, timeoutMs = 30000): Promise<ClusterDefinition> {
    if (this.cur && this.cur.version >= v) return Promise.resolve(this.cur);
    return new Promise((resolve, reject) => {
      const on = (d: ClusterDefinition) => { if (d.version >= v) { clearTimeout(t); this.off('definition', on); resolve(d); } };
      const t = setTimeout(() => { this.off('definition', on); reject(new Error(`definition version ${v} not seen within ${timeoutMs} ms`)); }, timeoutMs);
      this.on('definition', on);
    });
  }

  private async sync(zk: Zk): Promise<void> {
    const fire = () => this.loop.trigger();
    let version: number | null = null;
    for (;;) {
      try {
        const { data } = await watchedRead(this.ws, zk, 'active', fire, (w) => zk.get(this.layout.definitionActive, w));
        version = parsePointer(data, this.layout);
        break;
      } catch (e) { if (!isZkError(e, 'NONODE')) throw e; }
      const st = await watchedRead(this.ws, zk, 'active-exists', fire, (w) => zk.exists(this.layout.definitionActive, w));
      if (!st) break;
    }
    if (version !== null && version !== this.cur?.version) {
      const def = await readVersion(zk, this.layout, version);
      const prev = this.cur;
      this.cur = def;
      this.emit('definition', def, prev);
    }
    this.emit('synced', version);
  }
}
