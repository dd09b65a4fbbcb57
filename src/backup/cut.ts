// `pgring backup init` and `pgring backup create`: the coordinator side of a consistent cut.
//
// create: (1) connect to every primary, check archiving and that a base backup exists;
// (2) create the ephemeral barrier; (3) wait until every live proxy has acknowledged it (dead
// proxies, whose ephemeral node is gone, can write nothing: their session expired) — or abort
// after backup.maxPauseMs; (4) read the decisions in ZooKeeper: fixed until the barrier goes;
// (5) pg_create_restore_point on every primary; (6) check that the barrier is still ours (our
// session never expired, so proxies held throughout) and the ring did not change; (7) release;
// (8) `pgbackrest check` (switches WAL and waits until the segment holding the restore point is
// archived); (9) record the manifest in the repository and in ZooKeeper. Any failure before (9)
// records nothing.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Layout } from '../cluster/layout';
import { barrierPath, acksDir, createManifest, dropAcks, readManifest, BarrierData } from '../cluster/backups';
import { listDecisions } from '../cluster/txns';
import { readActiveRing } from '../cluster/ring-store';
import { encodeJson, isZkError, Zk } from '../cluster/zk';
import { chownPostgres } from '../local/proc';
import { checkBackupName, Manifest, pickBackupSet, restorePointName } from './manifest';
import { backupSets, repoPath, run, StanzaRef, stanzaInfo } from './pgbackrest';
import type { Progress } from './progress';
import { BackupError, openPrimaries, Primary, primariesOf } from './shards';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function shardFail(p: Primary, e: unknown): BackupError {
  return new BackupError(`shard "${p.name}" (${p.host}:${p.port}): ${(e as Error).message}`);
}

/** Runs fn for every shard, waits for all of them, then throws the failures (each naming its shard). */
async function eachShard<T, R>(items: T[], shard: (x: T) => Primary, fn: (x: T) => Promise<R>): Promise<R[]> {
  const res = await Promise.allSettled(items.map(fn));
  const errs = res.flatMap((r, i) => (r.status === 'rejected' ? [r.reason instanceof BackupError ? r.reason.message : shardFail(shard(items[i]!), r.reason).message] : []));
  if (errs.length) throw new BackupError(errs.join('\n'));
  return res.map((r) => (r as PromiseFulfilledResult<R>).value);
}

/** One stanza per primary, archiving checked on every shard, then a full base backup of each. */
export async function backupInit(zk: Zk, layout: Layout, progress: Progress): Promise<{ shard: string; stanza: string; config: string; backupSet: string }[]> {
  const { primaries } = await primariesOf(zk, layout);
  const open = await openPrimaries(primaries);
  await Promise.all(open.map((x) => x.c.end().catch(() => undefined)));
  await eachShard(open, (x) => x.p, async ({ p, ref }) => {
    await progress.step(`${p.name}: stanza-create (${ref.stanza})`, () => run(ref, 'stanza-create', [], 120000));
    await progress.step(`${p.name}: check WAL archiving`, () => run(ref, 'check', [], 120000));
  });
  return eachShard(open, (x) => x.p, async ({ p, ref }) => {
    await progress.step(`${p.name}: full base backup`, () => run(ref, 'backup', ['--type=full']));
    const sets = await backupSets(ref);
    return { shard: p.name, stanza: ref.stanza, config: ref.config, backupSet: sets.at(-1)?.label ?? '' };
  });
}

export interface CreateOptions { name: string; maxPauseMs: number; base: boolean; sharding?: unknown; progress: Progress }

export async function backupCreate(zk: Zk, layout: Layout, o: CreateOptions): Promise<Manifest> {
  checkBackupName(o.name);
  if (await readManifest(zk, layout, o.name)) throw new BackupError(`backup name "${o.name}" is already used in cluster "${layout.cluster}" (see pgring backup list)`);
  const { primaries } = await primariesOf(zk, layout);
  const open = await openPrimaries(primaries);
  try {
    for (const { p, ref } of open) {
      const info = await stanzaInfo(ref).catch((e) => { throw shardFail(p, e); });
      if (!info.sets.length && !o.base) {
        throw new BackupError(`shard "${p.name}": stanza "${ref.stanza}" (${ref.config}) has no base backup (pgBackRest: ${info.status.message}): run \`pgring backup init\` first`);
      }
    }
    if (o.base) {
      await eachShard(open, (x) => x.p, ({ p, ref }) => o.progress.step(`${p.name}: full base backup`, () => run(ref, 'backup', ['--type=full'])));
    }
    const cut = await o.progress.step(`consistent cut "${o.name}" over ${open.length} shards`, () => takeCut(zk, layout, o, open));
    // The restore point must be in the archive before the backup counts.
    await eachShard(open, (x) => x.p, ({ p, ref }) => o.progress.step(`${p.name}: WAL with the restore point archived (pgbackrest check)`, () => run(ref, 'check', [], 120000))
      .catch((e) => { throw new BackupError(`shard "${p.name}": WAL archiving is failing, no backup recorded: ${(e as Error).message}`); }));
    const shards = [];
    for (const [i, { p, ref }] of open.entries()) {
      const label = pickBackupSet(await backupSets(ref), cut.lsns[i]!);
      if (!label) throw new BackupError(`shard "${p.name}": no pgBackRest backup ended before the cut: run \`pgring backup init\` or use --base`);
      shards.push({ name: p.name, host: p.host, port: p.port, stanza: ref.stanza, config: ref.config, lsn: cut.lsns[i]!, backupSet: label });
    }
    const m: Manifest = {
      format: 1, name: o.name, cluster: layout.cluster, restorePoint: cut.restorePoint, createdAt: cut.at, pauseMs: cut.pauseMs,
      ringVersion: cut.ring.version, ring: cut.ring.ring, shards, decisions: cut.decisions, proxies: cut.proxies,
      ...(o.sharding ? { sharding: o.sharding } : {}),
    };
    writeRepoCopies(m, open.map((x) => x.ref));
    if (!(await createManifest(zk, layout, m))) throw new BackupError(`backup name "${o.name}" is already used in cluster "${layout.cluster}"`);
    return m;
  } finally {
    await Promise.all(open.map((x) => x.c.end().catch(() => undefined)));
  }
}

/** The manifest beside the backups: <repo1-path>/pgring/<cluster>/<name>.json of every repository used. */
function writeRepoCopies(m: Manifest, refs: StanzaRef[]): void {
  const dirs = new Set(refs.map((r) => path.join(repoPath(r.config) ?? path.dirname(r.config), 'pgring', m.cluster)));
  for (const d of dirs) {
    try {
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, `${m.name}.json`), JSON.stringify(m, null, 2));
      chownPostgres(path.dirname(d));
    } catch (e) {
      throw new BackupError(`could not write the manifest into the pgBackRest repository (${d}): ${(e as Error).message}; no backup recorded`);
    }
  }
}

interface Cut { restorePoint: string; at: number; pauseMs: number; lsns: string[]; decisions: Manifest['decisions']; proxies: string[]; ring: NonNullable<Awaited<ReturnType<typeof readActiveRing>>> }

async function takeCut(zk: Zk, layout: Layout, o: CreateOptions, open: { p: Primary; c: import('pg').Client }[]): Promise<Cut> {
  const cutId = Date.now().toString(36) + randomBytes(2).toString('hex');
  const restorePoint = restorePointName(o.name, cutId);
  const data: BarrierData = { cutId, name: o.name, maxPauseMs: o.maxPauseMs, createdAt: Date.now() };
  await zk.mkdirp(layout.backups);
  try { await zk.create(barrierPath(layout), encodeJson(data), 'ephemeral'); } catch (e) {
    if (isZkError(e, 'NODEEXISTS')) throw new BackupError(`another backup cut is in progress in cluster "${layout.cluster}" (${barrierPath(layout)} exists)`);
    throw e;
  }
  const t0 = Date.now();
  let result: Cut | null = null;
  try {
    const proxies = await waitAcks(zk, layout, cutId, t0 + o.maxPauseMs, o.maxPauseMs);
    const ring1 = await readActiveRing(zk, layout);
    if (!ring1) throw new BackupError('the ring disappeared from ZooKeeper');
    // Fixed from here until release: every live proxy holds new decisions.
    const decisions = (await listDecisions(zk, layout)).map((d) => d.rec);
    const lsns = await Promise.all(open.map(async ({ p, c }) => {
      try { return (await c.query('SELECT pg_create_restore_point($1)::text AS lsn', [restorePoint])).rows[0].lsn as string; } catch (e) {
        throw new BackupError(`shard "${p.name}" (${p.host}:${p.port}) failed during the cut (${(e as Error).message}); cut aborted, no backup recorded`);
      }
    }));
    const st = await zk.exists(barrierPath(layout));
    if (!st || st.ephemeralOwner !== zk.sessionId) throw new BackupError('the barrier was lost during the cut (ZooKeeper session expired); cut aborted, no backup recorded');
    const ring2 = await readActiveRing(zk, layout);
    if (ring2?.version !== ring1.version) throw new BackupError(`the ring changed during the cut (version ${ring1.version} -> ${ring2?.version}); cut aborted, no backup recorded`);
    result = { restorePoint, at: Date.now(), pauseMs: 0, lsns, decisions, proxies, ring: ring1 };
    return result;
  } finally {
    await zk.delete(barrierPath(layout), -1).catch(() => undefined);
    const pauseMs = Date.now() - t0;
    if (result) result.pauseMs = pauseMs;
    o.progress.note(`barrier released after ${pauseMs} ms`);
    void dropAcks(zk, layout, cutId);
  }
}

/** Waits until every proxy registered now has acked or is gone; returns the ackers. */
async function waitAcks(zk: Zk, layout: Layout, cutId: string, deadline: number, maxPauseMs: number): Promise<string[]> {
  const expected = await zk.children(layout.proxies).catch(() => [] as string[]);
  for (;;) {
    const acks = new Set(await zk.children(acksDir(layout, cutId)).catch(() => [] as string[]));
    const alive = new Set(await zk.children(layout.proxies).catch(() => [] as string[]));
    const missing = expected.filter((p) => alive.has(p) && !acks.has(p));
    if (!missing.length) return expected.filter((p) => acks.has(p));
    if (Date.now() > deadline) {
      throw new BackupError(`proxy ${missing.join(', ')} did not acknowledge the backup barrier within ${maxPauseMs} ms (backup.maxPauseMs); cut aborted, no backup recorded`);
    }
    await sleep(3);
  }
}
