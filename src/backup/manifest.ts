// The manifest of a consistent cut (pure): what `backup create` records and `backup restore`
// needs, and the rule that settles the prepared transactions a restored shard holds.
import type { RingDocument } from '../cluster/ring-store';
import type { DecisionRecord } from '../cluster/txns';
import { parseGid, recordDecides } from '../cluster/txns';

export interface ManifestShard {
  name: string;
  /** the primary the restore point was written on */
  host: string;
  port: number;
  stanza: string;
  config: string;
  /** pg_create_restore_point()'s LSN */
  lsn: string;
  /** the pgBackRest backup set restore starts from (the newest that ended before the cut) */
  backupSet: string;
}

export interface Manifest {
  format: 1;
  name: string;
  cluster: string;
  /** the restore point written in every shard's WAL (unique per cut, so an aborted cut never shadows it) */
  restorePoint: string;
  createdAt: number;
  /** how long two-phase-commit decisions were held (barrier created -> released) */
  pauseMs: number;
  ringVersion: number;
  ring: RingDocument;
  shards: ManifestShard[];
  /** two-phase-commit decisions present in ZooKeeper at the cut (their transactions commit on restore) */
  decisions: DecisionRecord[];
  /** proxies that acknowledged the barrier */
  proxies: string[];
  /** the sharding section of the config given to `backup create`, for the printed proxy config */
  sharding?: unknown;
}

/** Backup names: also used as a znode and a file name. */
export function checkBackupName(name: string): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$/.test(name)) {
    throw new Error(`invalid backup name ${JSON.stringify(name)}: use 1-40 letters, digits, '_', '.', '-' (starting with a letter or digit)`);
  }
  return name;
}

/** pgring_<name>_<cut id>: below PostgreSQL's 64-byte restore point name limit. */
export function restorePointName(name: string, cutId: string): string {
  return `pgring_${checkBackupName(name)}_${cutId}`;
}

export type Settlement = { gid: string; database: string; action: 'commit' | 'rollback' | 'foreign'; why: string };

/**
 * What restore does with one prepared transaction: a pgring transaction of the manifest's
 * cluster commits when its decision was in force at the cut and rolls back otherwise (its
 * decision came after the cut, so no shard had committed it at the cut either); anything else
 * is not pgring's (left alone and reported).
 */
export function settle(m: Pick<Manifest, 'cluster' | 'decisions'>, gid: string, database: string): Settlement {
  const p = parseGid(gid);
  if (!p || p.cluster !== m.cluster) return { gid, database, action: 'foreign', why: 'not a pgring transaction of this cluster' };
  const found = m.decisions.some((d) => recordDecides(d, p.proxy, p.txid));
  return found
    ? { gid, database, action: 'commit', why: `decision ${p.proxy}/${p.txid} was recorded before the cut` }
    : { gid, database, action: 'rollback', why: `no decision for ${p.proxy}/${p.txid} at the cut` };
}

/** 'X/Y' (hex) -> a comparable number. */
export function lsnValue(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!m) throw new Error(`bad LSN ${JSON.stringify(lsn)}`);
  return (BigInt('0x' + m[1]) << 32n) | BigInt('0x' + m[2]);
}

/** The backup set to restore from: the newest one whose backup ended at or before the cut's LSN. */
export function pickBackupSet(sets: { label: string; lsnStop: string }[], cutLsn: string): string | null {
  const cut = lsnValue(cutLsn);
  const ok = sets.filter((s) => s.lsnStop && lsnValue(s.lsnStop) <= cut).sort((a, b) => (lsnValue(a.lsnStop) < lsnValue(b.lsnStop) ? -1 : 1));
  return ok.at(-1)?.label ?? null;
}

export function validateManifest(x: unknown, where: string): Manifest {
  const m = x as Manifest;
  if (!m || typeof m !== 'object' || m.format !== 1 || typeof m.name !== 'string' || typeof m.restorePoint !== 'string' ||
      !Array.isArray(m.shards) || !Array.isArray(m.decisions) || !m.ring || !Array.isArray(m.ring.shards)) {
    throw new Error(`${where}: not a pgring backup manifest`);
  }
  return m;
}
