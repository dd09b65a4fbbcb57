// `pgring table list|shard|reference|forget`: changes to the cluster definition in ZooKeeper,
// each a new version activated by compare-and-set. `shard` of a table that was a reference
// table (every row on every shard) waits until every running proxy routes by the new version,
// then has every shard delete, in batches, the rows the ring gives to another shard.
import pg from 'pg';
import type { Config, KeyType } from '../config/types';
import { ClusterDefinition, DefinitionChangeError, definitionConflicts, definitionFromConfig, lookupTable, withReference, withSharded, without } from '../cluster/definition';
import { initDefinition, readActiveDefinition, updateDefinition } from '../cluster/definition-store';
import { Layout } from '../cluster/layout';
import { listProxies, listShards } from '../cluster/registry';
import { readActiveRing } from '../cluster/ring-store';
import { ZkSession } from '../cluster/session';
import { quoteIdent, Ring } from '../ring/ring';
import { withSession, zkTarget, ZkArgs } from './cluster-commands';
import { INT4_SLOTS, sequenceRange } from '../frontend/sequences';

export interface TableArgs extends ZkArgs {
  action: 'list' | 'shard' | 'reference' | 'forget';
  name?: string; column?: string; type?: string; columns?: string;
  json?: boolean; batch?: number; user?: string; password?: string; ackTimeout?: number;
}

function printDefinition(cluster: string, d: ClusterDefinition, json: boolean): void {
  if (json) { console.log(JSON.stringify({ cluster, ...d }, null, 2)); return; }
  console.log(`cluster "${cluster}"  definition version ${d.version}  unknown tables: ${d.unknownTables}`);
  console.log('table                      kind       key');
  for (const t of d.sharded) console.log(`${t.name.padEnd(26)} sharded    ${t.column} ${t.type}${t.columns ? `  columns (${t.columns.join(', ')})` : ''}`);
  for (const r of d.reference) console.log(`${r.padEnd(26)} reference`);
}

export async function tableCommand(a: TableArgs): Promise<void> {
  const { connect, cluster, config } = zkTarget(a);
  const layout = new Layout(cluster);
  await withSession(connect, async (s) => {
    if (a.action === 'list') {
      const cur = await readActiveDefinition(s, layout);
      if (!cur) { console.log(`cluster "${cluster}": no cluster definition yet (run \`pgring ring init --config FILE\`)`); process.exitCode = 1; return; }
      printDefinition(cluster, cur.def, !!a.json);
      return;
    }
    if (!a.name) throw new Error(`pgring table ${a.action} needs the table name`);
    const name = a.name;
    let before: ClusterDefinition | null = null;
    const change = (cur: ClusterDefinition) => {
      before = cur;
      if (a.action === 'reference') return withReference(cur, name);
      if (a.action === 'forget') return without(cur, name);
      if (!a.column || !a.type) throw new DefinitionChangeError('pgring table shard needs --column and --type');
      return withSharded(cur, { name, column: a.column, type: a.type as KeyType, ...(a.columns ? { columns: a.columns.split(',').map((c) => c.trim()) } : {}) });
    };
    let res: { def: ClusterDefinition; changed: boolean };
    try { res = await updateDefinition(s, layout, change); } catch (e) {
      if (e instanceof DefinitionChangeError) { console.error(`pgring table ${a.action}: ${e.message}`); process.exitCode = 1; return; }
      throw e;
    }
    console.log(res.changed ? `definition version ${res.def.version} is active: table ${name} ${a.action === 'forget' ? 'forgotten' : `is ${a.action === 'shard' ? 'sharded' : 'a reference table'}`}`
      : `definition version ${res.def.version} unchanged: table ${name} already ${a.action === 'forget' ? 'absent' : a.action === 'shard' ? 'sharded so' : 'a reference table'}`);
    if (a.action !== 'shard') return;
    const wasSharded = before !== null && lookupTable(before as ClusterDefinition, name)?.kind === 'sharded' && !res.changed;
    if (wasSharded) return; // rows already live on their owner only
    await waitForProxies(s, layout, res.def.version, (a.ackTimeout ?? 30) * 1000);
    const t = lookupTable(res.def, name);
    if (t?.kind !== 'sharded') return;
    await deleteForeignRows(s, layout, config, t.table.name, t.table.column, t.table.type, a);
  }, { auth: config?.zookeeper?.auth, protectedRoot: layout.base });
}

/** Every running proxy routes by definition version >= v (acknowledged in its znode). */
async function waitForProxies(s: ZkSession, layout: Layout, v: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const behind = (await listProxies(s, layout)).filter((p) => (p.definitionVersion ?? 0) < v);
    if (behind.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`proxies ${behind.map((p) => `${p.host}:${p.port}`).join(', ')} have not acknowledged definition version ${v} within ${timeoutMs} ms; `
        + 'no rows were deleted (run the same `pgring table shard` command again once they have)');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** On every shard, in every database holding the table: delete in batches the rows another shard owns. */
async function deleteForeignRows(s: ZkSession, layout: Layout, config: Config | null, table: string, column: string, type: KeyType, a: TableArgs): Promise<void> {
  const active = await readActiveRing(s, layout);
  if (!active) throw new Error('no active ring');
  const ring = new Ring(active.ring);
  const records = await listShards(s, layout);
  const user = a.user ?? config?.users.find((u) => u.admin)?.serverUser ?? config?.users[0]?.name ?? 'postgres';
  const password = a.password ?? config?.users.find((u) => u.name === user)?.serverPassword ?? config?.users.find((u) => u.name === user)?.password;
  const batch = a.batch ?? 10000;
  // Two passes: the sequences of every shard first (quickly, so that few ids are handed out from
  // the common numbering meanwhile), then the deletes (which may take long).
  for (const phase of ['sequences', 'rows'] as const)
  for (let i = 0; i < active.ring.shards.length; i++) {
    const shard = active.ring.shards[i]!.name;
    const backends = (records.find((r) => r.name === shard)?.backends ?? []) as { host: string; port: number; role?: string }[];
    const primary = backends.find((b) => (b.role ?? 'primary') === 'primary');
    if (!primary) throw new Error(`shard ${shard}: no primary backend recorded in ZooKeeper`);
    const conn = (database: string) => new pg.Client({ host: primary.host, port: primary.port, user, password, database });
    const c0 = conn('postgres');
    await c0.connect();
    const dbs = (await c0.query('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1')).rows.map((r) => r.datname as string);
    await c0.end();
    for (const db of dbs) {
      const c = conn(db);
      await c.connect();
      try {
        const reg = (await c.query('SELECT to_regclass($1) AS r', [table])).rows[0]?.r;
        if (!reg) continue;
        // The copies of its serial / identity sequences counted alike on every shard (a reference
        // table's INSERT ran everywhere): from now on each shard hands out ids of its own range,
        // as for a table sharded when it was created (frontend/sequences.ts).
        if (phase === 'sequences') {
          const moved = await moveOwnedSequences(c, reg as string, i);
          if (moved.length) console.log(`shard ${shard} database ${db}: sequences ${moved.join(', ')} of ${table} now count in the shard's own range`);
          continue;
        }
        const pred = ring.sqlPredicate(i, identSql(column), type);
        const rel = table.includes('.') ? table : identSql(table);
        let total = 0;
        for (;;) {
          const r = await c.query(`DELETE FROM ${rel} WHERE ctid = ANY (ARRAY(SELECT ctid FROM ${rel} WHERE NOT ${pred} LIMIT ${batch}))`);
          total += r.rowCount ?? 0;
          if ((r.rowCount ?? 0) < batch) break;
        }
        if (i === 0) {
          // Unique only per shard from now on (router/constraint-check.ts refuses such DDL through pgring).
          const attname = column.startsWith('"') ? column.slice(1, -1).replace(/""/g, '"') : column.toLowerCase();
          const perShard = await c.query(`SELECT i.indexrelid::regclass::text AS idx FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indisunique
            AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attname = $2 AND a.attnum = ANY (i.indkey::int2[]))`, [reg, attname]);
          for (const r of perShard.rows) console.log(`warning: database ${db}: unique index ${r.idx} of ${table} does not include the shard key column ${column}: each shard now enforces it for its own rows only (a value may repeat on another shard)`);
        }
        const nulls = Number((await c.query(`SELECT count(*) AS n FROM ${rel} WHERE ${identSql(column)} IS NULL`)).rows[0].n);
        console.log(`shard ${shard} database ${db}: deleted ${total} rows of ${table} owned by other shards${nulls ? ` (${nulls} rows with a NULL key kept)` : ''}`);
      } finally { await c.end(); }
    }
  }
}

/** Moves the untouched bigint / integer sequences `table` owns (serial, identity) to range `slot`
 *  (sequences.ts): shard 0 keeps its numbering (integer ones end at 2^27), shard k > 0 restarts at
 *  k * 2^48 + 1 (integer: k * 2^27 + 1; beyond 16 shards they keep PostgreSQL's range). */
async function moveOwnedSequences(c: pg.Client, table: string, slot: number): Promise<string[]> {
  const seqs = (await c.query(`SELECT DISTINCT c.oid::pg_catalog.regclass::text AS seq, s.seqtypid = 'pg_catalog.int4'::pg_catalog.regtype AS int4, s.seqmax::text AS max
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')
     WHERE d.refobjid = $1::pg_catalog.regclass AND s.seqstart = 1 AND s.seqmin = 1 AND s.seqincrement = 1
       AND s.seqtypid IN ('pg_catalog.int8'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype)`, [table])).rows as { seq: string; int4: boolean; max: string }[];
  const moved: string[] = [];
  for (const q of seqs) {
    if (q.int4 && slot >= INT4_SLOTS) continue;
    const { lo, hi } = sequenceRange(slot, q.int4);
    if (slot > 0) await c.query(`ALTER SEQUENCE ${q.seq} MINVALUE ${lo} MAXVALUE ${hi} START WITH ${lo} RESTART`);
    else if (q.int4 && BigInt(q.max) > hi) {
      // values already past the end of shard 0's range keep theirs (the ALTER would fail)
      const last = (await c.query(`SELECT coalesce(last_value, 0)::text AS v FROM ${q.seq}`)).rows[0]?.v as string | undefined;
      if (last !== undefined && BigInt(last) >= hi) continue;
      await c.query(`ALTER SEQUENCE ${q.seq} MAXVALUE ${hi}`);
    } else continue;
    moved.push(q.seq);
  }
  return moved;
}

/** An identifier as PostgreSQL reads it: quoted names as written, others folded to lower case. */
function identSql(name: string): string {
  return name.startsWith('"') ? name : quoteIdent(name.toLowerCase());
}

/** `pgring ring init`: version 1 of the cluster definition from the config file (kept when one
 *  is active; what the file says differently is printed, as a proxy with that file would refuse). */
export async function initDefinitionFromConfig(s: ZkSession, layout: Layout, config: Config): Promise<ClusterDefinition> {
  const file = definitionFromConfig(config);
  const def = (await initDefinition(s, layout, file)).def;
  const conflicts = config.sharding.stated ? definitionConflicts(file, def, config.sharding.unknownTables !== undefined) : [];
  if (conflicts.length) {
    console.error(`the cluster already has definition version ${def.version}, which the config contradicts: ${conflicts.join('; ')}`);
    process.exitCode = 1;
  }
  return def;
}
