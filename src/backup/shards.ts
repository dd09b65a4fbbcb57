// The shard primaries a backup works on (from ZooKeeper: active ring + shard records) and
// what their PostgreSQL says about WAL archiving.
import pg from 'pg';
import type { Layout } from '../cluster/layout';
import { getShard } from '../cluster/registry';
import { ActiveRing, readActiveRing } from '../cluster/ring-store';
import type { Zk } from '../cluster/zk';
import { parseArchiveCommand, StanzaRef } from './pgbackrest';

/** A user-facing failure of a backup command (printed without a stack). */
export class BackupError extends Error {}

export interface Primary { name: string; host: string; port: number }

export async function primariesOf(zk: Zk, layout: Layout): Promise<{ active: ActiveRing; primaries: Primary[] }> {
  const active = await readActiveRing(zk, layout);
  if (!active) throw new BackupError(`cluster "${layout.cluster}" has no ring in ZooKeeper (is the cluster name right?)`);
  const primaries: Primary[] = [];
  for (const s of active.ring.shards) {
    const rec = await getShard(zk, layout, s.name);
    const backends = (Array.isArray(rec?.backends) ? rec!.backends : []) as { host: string; port: number; role?: string }[];
    const p = backends.find((b) => (b.role ?? 'primary') === 'primary');
    if (!p) throw new BackupError(`shard "${s.name}" has no primary backend in its ZooKeeper record`);
    primaries.push({ name: s.name, host: p.host, port: p.port });
  }
  return { active, primaries };
}

export async function connect(p: { name: string; host: string; port: number }, database = 'postgres'): Promise<pg.Client> {
  const c = new pg.Client({ host: p.host, port: p.port, user: process.env.PGUSER ?? 'postgres', database, connectionTimeoutMillis: 5000 });
  c.on('error', () => undefined);
  try { await c.connect(); } catch (e) {
    throw new BackupError(`shard "${p.name}" (${p.host}:${p.port}) is down or refuses connections: ${(e as Error).message}`);
  }
  return c;
}

/** The pgBackRest stanza this primary archives into, from its own archive settings. */
export async function archiveRef(c: pg.Client, p: Primary): Promise<StanzaRef> {
  const mode = (await c.query('SHOW archive_mode')).rows[0].archive_mode as string;
  const cmd = (await c.query('SHOW archive_command')).rows[0].archive_command as string;
  const expect = "archive_mode = on and archive_command = 'pgbackrest --config=FILE --stanza=NAME archive-push %p' (set before the server starts)";
  if (mode === 'off') throw new BackupError(`shard "${p.name}" (${p.host}:${p.port}): WAL archiving is not configured (archive_mode = off); pgring expects ${expect}`);
  const ref = parseArchiveCommand(cmd);
  if (!ref) throw new BackupError(`shard "${p.name}" (${p.host}:${p.port}): archive_command ${JSON.stringify(cmd)} does not push to pgBackRest; pgring expects ${expect}`);
  return ref;
}

/** Connects to every primary and reads its stanza; closes what it opened on failure. */
export async function openPrimaries(primaries: Primary[]): Promise<{ p: Primary; c: pg.Client; ref: StanzaRef }[]> {
  const out: { p: Primary; c: pg.Client; ref: StanzaRef }[] = [];
  try {
    for (const p of primaries) {
      const c = await connect(p);
      out.push({ p, c, ref: { config: '', stanza: '' } });
      const rec = (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r as boolean;
      if (rec) throw new BackupError(`shard "${p.name}" (${p.host}:${p.port}) is in recovery: not a primary`);
      out[out.length - 1]!.ref = await archiveRef(c, p);
    }
    return out;
  } catch (e) {
    await Promise.all(out.map((x) => x.c.end().catch(() => undefined)));
    throw e;
  }
}
