// Migrations in ZooKeeper, under /pgring/<cluster>/migrations:
//   m<NNNNNNNNNN>   persistent JSON: one migration's whole state, changed only by compare-and-set
//   fence           persistent JSON while a cut-over holds writes to the moving arcs (proxies watch it)
//   lock/           leader latch of the process that advances migrations
import type { Layout } from '../cluster/layout';
import { retrying } from '../cluster/ring-store';
import type { ZkLike } from '../cluster/session';
import { decodeJson, encodeJson, isZkError } from '../cluster/zk';
import type { RingDefinition } from '../ring/ring';
import type { RingChange, Move } from './plan';

export type Phase = 'planned' | 'schema' | 'copying' | 'catching-up' | 'fencing' | 'switched' | 'cleaning' | 'done' | 'rolling-back' | 'aborted';
export const FINAL: Phase[] = ['done', 'aborted'];

export interface TableProgress { table: string; kind: 'sharded' | 'reference'; source: string; target: string; expected: number; copied: number }

export interface Migration {
  id: string;
  change: RingChange;
  database: string;
  phase: Phase;
  fromVersion: number;
  toVersion: number | null;
  from: RingDefinition;
  to: RingDefinition;
  moves: Move[];
  /** names of new shards' records (host/port) written for the new ring */
  newShards: { name: string; host: string; port: number }[];
  /** tables whose replica identity pgring set to FULL for the move (restored at clean-up) */
  identityFull: { shard: string; table: string }[];
  /** tables as the cluster definition named them when the migration was planned */
  sharded: { name: string; column: string; type: import('../config/types').KeyType }[];
  reference: string[];
  progress: TableProgress[];
  /** the subscriptions were dropped during the cut-over (the fence must then stay until the flip) */
  dropped: boolean;
  lagBytes: number | null;
  /** cut-over attempts so far (each bounded by maxPauseMs) */
  attempts: number;
  fenceToken: string | null;
  createdAt: number;
  updatedAt: number;
  error: string | null;
  log: string[];
}

export const migrationsDir = (l: Layout) => `${l.base}/migrations`;
export const fencePath = (l: Layout) => `${migrationsDir(l)}/fence`;
export const lockDir = (l: Layout) => `${migrationsDir(l)}/lock`;
const idPath = (l: Layout, id: string) => `${migrationsDir(l)}/${id}`;

export interface Versioned<T> { value: T; stat: number }

export async function listMigrations(s: ZkLike, l: Layout): Promise<Migration[]> {
  return retrying(s, async (zk) => {
    let names: string[];
    try { names = await zk.children(migrationsDir(l)); } catch (e) { if (isZkError(e, 'NONODE')) return []; throw e; }
    const out: Migration[] = [];
    for (const n of names.filter((x) => /^m\d{10}$/.test(x)).sort()) {
      try { out.push(decodeJson<Migration>((await zk.get(idPath(l, n))).data, idPath(l, n))); } catch (e) { if (!isZkError(e, 'NONODE')) throw e; }
    }
    return out;
  });
}

export async function readMigration(s: ZkLike, l: Layout, id: string): Promise<Versioned<Migration> | null> {
  return retrying(s, async (zk) => {
    try {
      const { data, stat } = await zk.get(idPath(l, id));
      return { value: decodeJson<Migration>(data, idPath(l, id)), stat: stat.version };
    } catch (e) { if (isZkError(e, 'NONODE')) return null; throw e; }
  });
}

/** Creates the migration znode with the next free id (the caller checked nothing is in flight). */
export async function createMigration(s: ZkLike, l: Layout, m: Omit<Migration, 'id'>): Promise<Versioned<Migration>> {
  return retrying(s, async (zk) => {
    await zk.mkdirp(migrationsDir(l));
    const existing = (await zk.children(migrationsDir(l))).filter((x) => /^m\d{10}$/.test(x)).map((x) => Number(x.slice(1)));
    let n = existing.length ? Math.max(...existing) + 1 : 1;
    for (;;) {
      const id = `m${String(n).padStart(10, '0')}`;
      const value = { ...m, id } as Migration;
      try { await zk.create(idPath(l, id), encodeJson(value), 'persistent'); return { value, stat: 0 }; } catch (e) {
        if (!isZkError(e, 'NODEEXISTS')) throw e;
        n++;
      }
    }
  });
}

export class MigrationConflict extends Error {}

/** Compare-and-set of the migration document; throws MigrationConflict when someone else changed it. */
export async function casMigration(s: ZkLike, l: Layout, cur: Versioned<Migration>, next: Migration): Promise<Versioned<Migration>> {
  next.updatedAt = Date.now();
  const data = encodeJson(next);
  return retrying(s, async (zk) => {
    try {
      const st = await zk.set(idPath(l, next.id), data, cur.stat);
      return { value: next, stat: st.version };
    } catch (e) {
      if (!isZkError(e, 'BADVERSION')) throw e;
      // A retried set whose first attempt was applied reads back as ours.
      const now = await zk.get(idPath(l, next.id));
      if (now.data.equals(data)) return { value: next, stat: now.stat.version };
      throw new MigrationConflict(`migration ${next.id} was changed by another process (znode version ${now.stat.version}, expected ${cur.stat})`);
    }
  });
}

export interface FenceDoc { token: string; migration: string; fromVersion: number; toVersion: number; since: number }

export async function setFence(s: ZkLike, l: Layout, f: FenceDoc): Promise<void> {
  await retrying(s, async (zk) => {
    await zk.mkdirp(migrationsDir(l));
    try { await zk.create(fencePath(l), encodeJson(f), 'persistent'); } catch (e) {
      if (!isZkError(e, 'NODEEXISTS')) throw e;
      await zk.set(fencePath(l), encodeJson(f), -1);
    }
  });
}

export async function readFence(s: ZkLike, l: Layout): Promise<FenceDoc | null> {
  return retrying(s, async (zk) => {
    try { return decodeJson<FenceDoc>((await zk.get(fencePath(l))).data, fencePath(l)); } catch (e) { if (isZkError(e, 'NONODE')) return null; throw e; }
  });
}

export async function clearFence(s: ZkLike, l: Layout): Promise<void> {
  await retrying(s, async (zk) => { try { await zk.delete(fencePath(l), -1); } catch (e) { if (!isZkError(e, 'NONODE')) throw e; } });
}

/**
 * While a migration has rows on shards that do not own them (copies on the targets before the
 * flip, the old rows on the sources until the clean-up), proxies filter reads that span shards
 * to the rows each shard owns (src/reshard/read-filter.ts). Present from before the copy starts
 * until the clean-up or roll-back has deleted the extra rows.
 */
export interface FilterDoc { migration: string; tables: Migration['sharded'] }
export const filterPath = (l: Layout) => `${migrationsDir(l)}/filter`;

export async function setFilter(s: ZkLike, l: Layout, f: FilterDoc): Promise<void> {
  await retrying(s, async (zk) => {
    await zk.mkdirp(migrationsDir(l));
    try { await zk.create(filterPath(l), encodeJson(f), 'persistent'); } catch (e) {
      if (!isZkError(e, 'NODEEXISTS')) throw e;
      await zk.set(filterPath(l), encodeJson(f), -1);
    }
  });
}

export async function readFilter(s: ZkLike, l: Layout): Promise<FilterDoc | null> {
  return retrying(s, async (zk) => {
    try { return decodeJson<FilterDoc>((await zk.get(filterPath(l))).data, filterPath(l)); } catch (e) { if (isZkError(e, 'NONODE')) return null; throw e; }
  });
}

export async function clearFilter(s: ZkLike, l: Layout): Promise<void> {
  await retrying(s, async (zk) => { try { await zk.delete(filterPath(l), -1); } catch (e) { if (!isZkError(e, 'NONODE')) throw e; } });
}
