// Checks that refuse a migration before anything is touched, each naming the table or setting.
import type pg from 'pg';
import * as sql from './shard-sql';
import { streamsOf } from './controller';
import type { Migration } from './store';

export class PreflightError extends Error {
  constructor(readonly problems: string[]) { super(`preflight refused the migration:\n  - ${problems.join('\n  - ')}`); this.name = 'PreflightError'; }
}

type Addr = (name: string) => Promise<sql.ShardAddr>;

async function setting(c: pg.Client, name: string): Promise<string> {
  return (await c.query('SELECT current_setting($1) AS v', [name])).rows[0].v as string;
}

/** Problems found (empty: go). `cleanLeftovers`: rows of the moving arcs already on a target are deleted instead of refused. */
export async function preflight(m: Migration, addr: Addr, creds: sql.Creds, cleanLeftovers: boolean): Promise<string[]> {
  const problems: string[] = [];
  const streams = streamsOf({ ...m, id: 'm0000000000' });
  const shapes = new Map<string, string>();
  for (const src of new Set(streams.map((s) => s.source))) {
    const a = await addr(src);
    await sql.withShard(a, m.database, creds, async (c) => {
      const wal = await setting(c, 'wal_level');
      if (wal !== 'logical') problems.push(`shard ${src} (${a.host}:${a.port}): wal_level is ${wal}, resharding needs wal_level = logical (restart required)`);
      const need = streams.filter((s) => s.source === src).length;
      const r = (await c.query(`SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots) AS free,
        current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication) AS senders,
        (SELECT string_agg(slot_name, ', ') FROM pg_replication_slots WHERE slot_name LIKE 'pgring\\_%') AS left`)).rows[0];
      if (Number(r.free) < need) problems.push(`shard ${src}: max_replication_slots leaves ${r.free} free slots, the migration needs ${need}`);
      if (Number(r.senders) < need) problems.push(`shard ${src}: max_wal_senders leaves ${r.senders} free senders, the migration needs ${need}`);
      if (r.left) problems.push(`shard ${src}: replication slots of an earlier pgring migration are left: ${r.left} (drop them with pg_drop_replication_slot)`);
      for (const t of m.sharded) {
        const why = await sql.identityCheck(c, t.name, t.column);
        if (why !== 'ok' && why !== 'full-needed') problems.push(`shard ${src}: ${why}`);
        if (!shapes.has(t.name)) shapes.set(t.name, await sql.tableShape(c, t.name));
      }
      for (const t of m.reference) if (!shapes.has(t)) shapes.set(t, await sql.tableShape(c, t));
    });
  }
  for (const tgt of new Set(streams.map((s) => s.target))) {
    const a = await addr(tgt);
    const isNew = m.newShards.some((n) => n.name === tgt);
    const dbExists = await sql.withShard(a, 'postgres', creds, async (c) => {
      const workers = Number(await setting(c, 'max_logical_replication_workers'));
      const need = streams.filter((s) => s.target === tgt).length + 1;
      if (workers < need) problems.push(`shard ${tgt} (${a.host}:${a.port}): max_logical_replication_workers is ${workers}, the migration needs ${need}`);
      return ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [m.database])).rowCount ?? 0) > 0;
    }).catch((e: Error) => { problems.push(`shard ${tgt} (${a.host}:${a.port}): cannot connect: ${e.message}`); return false; });
    if (!dbExists) { if (!isNew) problems.push(`shard ${tgt}: database ${m.database} does not exist`); continue; }
    await sql.withShard(a, m.database, creds, async (c) => {
      for (const [t, shape] of shapes) {
        const have = await sql.tableShape(c, t);
        if (have === '') { if (!isNew) problems.push(`shard ${tgt}: table ${t} does not exist`); continue; }
        if (have !== shape) problems.push(`shard ${tgt}: table ${t} differs from the source: (${have}) vs (${shape})`);
      }
      for (const st of streams.filter((s) => s.target === tgt)) {
        for (const t of st.tables) {
          if (shapes.get(t.table) === undefined || (await sql.tableShape(c, t.table)) === '') continue;
          const n = await sql.countWhere(c, t.table, t.filter);
          if (n === 0) continue;
          if (cleanLeftovers) await sql.deleteBatched(c, t.table, t.filter ?? 'true', 10000);
          else problems.push(`shard ${tgt}: table ${t.table} already holds ${n} rows of the arcs that would move there (left by an aborted move?); rerun with --clean-leftovers to delete them`);
        }
      }
    });
  }
  return problems;
}
