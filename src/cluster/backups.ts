// Backups in ZooKeeper, under /pgring/<cluster>/backups/:
//
//   barrier                 ephemeral (owned by the `backup create` process): a cut is being
//                           taken; proxies write no new two-phase-commit decision while it exists
//   acks/<cutId>/<proxy>    ephemeral: this proxy has seen the barrier and has no decision write
//                           in flight (so the set of decisions is fixed until the barrier goes)
//   manifests/<name>        persistent: the manifest of a completed cut (src/backup/manifest.ts)
//
// The barrier is ephemeral so that a `backup create` that dies never leaves commits held.
import type { Layout } from './layout';
import { checkSegment } from './layout';
import { decodeJson, encodeJson, isZkError, Zk } from './zk';
import type { Manifest } from '../backup/manifest';
import { validateManifest } from '../backup/manifest';

export interface BarrierData { cutId: string; name: string; maxPauseMs: number; createdAt: number }

export function barrierPath(layout: Layout): string { return `${layout.backups}/barrier`; }
export function acksDir(layout: Layout, cutId: string): string { return `${layout.backups}/acks/${checkSegment('cut id', cutId)}`; }
export function ackPath(layout: Layout, cutId: string, proxy: string): string { return `${acksDir(layout, cutId)}/${checkSegment('proxy id', proxy)}`; }
export function manifestsDir(layout: Layout): string { return `${layout.backups}/manifests`; }
export function manifestPath(layout: Layout, name: string): string { return `${manifestsDir(layout)}/${checkSegment('backup', name)}`; }

/** The barrier, or null (NONODE). */
export async function readBarrier(zk: Zk, layout: Layout, watch?: () => void): Promise<BarrierData | null> {
  const p = barrierPath(layout);
  try {
    return decodeJson<BarrierData>((await zk.get(p, watch)).data, p);
  } catch (e) {
    if (!isZkError(e, 'NONODE')) throw e;
  }
  // Watch for its creation; it may have appeared in between.
  const st = await zk.exists(p, watch);
  if (!st) return null;
  return readBarrier(zk, layout, watch);
}

/** Creates the ephemeral ack of one proxy (idempotent). */
export async function writeAck(zk: Zk, layout: Layout, cutId: string, proxy: string): Promise<void> {
  const p = ackPath(layout, cutId, proxy);
  await zk.mkdirp(acksDir(layout, cutId));
  try { await zk.create(p, encodeJson({ at: Date.now() }), 'ephemeral'); } catch (e) {
    if (!isZkError(e, 'NODEEXISTS')) throw e;
  }
}

export async function readManifest(zk: Zk, layout: Layout, name: string): Promise<Manifest | null> {
  const p = manifestPath(layout, name);
  try { return validateManifest(decodeJson((await zk.get(p)).data, p), p); } catch (e) {
    if (isZkError(e, 'NONODE')) return null;
    throw e;
  }
}

/** Every manifest of the cluster, oldest first. */
export async function listManifests(zk: Zk, layout: Layout): Promise<Manifest[]> {
  let names: string[];
  try { names = await zk.children(manifestsDir(layout)); } catch (e) { if (isZkError(e, 'NONODE')) return []; throw e; }
  const out: Manifest[] = [];
  for (const n of names) {
    try { const m = await readManifest(zk, layout, n); if (m) out.push(m); } catch { /* not a manifest: skipped */ }
  }
  return out.sort((a, b) => a.createdAt - b.createdAt);
}

/** Records a manifest; false when the name is taken. */
export async function createManifest(zk: Zk, layout: Layout, m: Manifest): Promise<boolean> {
  await zk.mkdirp(manifestsDir(layout));
  try { await zk.create(manifestPath(layout, m.name), encodeJson(m), 'persistent'); return true; } catch (e) {
    if (isZkError(e, 'NODEEXISTS')) return false;
    throw e;
  }
}

/** Removes acks/<cutId> and its children (best effort; ephemeral children of live proxies may race). */
export async function dropAcks(zk: Zk, layout: Layout, cutId: string): Promise<void> {
  const d = acksDir(layout, cutId);
  try {
    for (const c of await zk.children(d)) { try { await zk.delete(`${d}/${c}`, -1); } catch { /* gone */ } }
    await zk.delete(d, -1);
  } catch { /* left for the next cut's clean-up */ }
}
