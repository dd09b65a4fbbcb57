// What resharding does on the PostgreSQL servers: connections, preflight checks, schema copy,
// publications with row filters, subscriptions, catch-up checks and batched clean-up.
// Every step is idempotent (checks the catalog first), so a resumed migration can repeat it.
import { spawn } from 'node:child_process';
import pg from 'pg';
import { pgBin } from '../local/proc';
import { quoteIdent } from '../ring/ring';
import { INT4_SLOTS, sequenceRange, sequenceSlot } from '../frontend/sequences';

export interface ShardAddr { name: string; host: string; port: number }
export interface Creds { user: string; password?: string }

export function qname(table: string): string {
  return table.split('.').map(quoteIdent).join('.');
}

export function lit(s: string): string { return `'${s.replace(/'/g, "''")}'`; }

/** A PostgreSQL identifier pgring owns: pgring_<migration>_<parts>, lower case, at most 63 bytes. */
export function objName(migration: string, ...parts: string[]): string {
  return ['pgring', migration, ...parts].join('_').toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 63);
}

export async function connect(a: ShardAddr, db: string, c: Creds): Promise<pg.Client> {
  const client = new pg.Client({ host: a.host, port: a.port, user: c.user, password: c.password, database: db, connectionTimeoutMillis: 10000 });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

export async function withShard<T>(a: ShardAddr, db: string, c: Creds, fn: (cl: pg.Client) => Promise<T>): Promise<T> {
  const cl = await connect(a, db, c);
  try { return await fn(cl); } finally { await cl.end().catch(() => undefined); }
}

export function conninfo(a: ShardAddr, db: string, c: Creds): string {
  const kv = (k: string, v: string) => `${k}='${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  return [kv('host', a.host), kv('port', String(a.port)), kv('user', c.user), kv('dbname', db), ...(c.password ? [kv('password', c.password)] : [])].join(' ');
}

export async function ensureDatabase(a: ShardAddr, db: string, c: Creds): Promise<void> {
  await withShard(a, 'postgres', c, async (cl) => {
    const r = await cl.query('SELECT 1 FROM pg_database WHERE datname = $1', [db]);
    if (r.rowCount === 0) await cl.query(`CREATE DATABASE ${quoteIdent(db)}`);
  });
}

export async function tableExists(cl: pg.Client, table: string): Promise<boolean> {
  return (await cl.query('SELECT to_regclass($1) IS NOT NULL AS e', [qname(table)])).rows[0].e as boolean;
}

/** Column names and types in order ("" when the table is missing): schemas that differ are refused. */
export async function tableShape(cl: pg.Client, table: string): Promise<string> {
  const r = await cl.query(`SELECT coalesce(string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum), '') AS s
    FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, [qname(table)]);
  return r.rows[0].s as string;
}

/**
 * 'ok': the replica identity covers the key; 'full-needed': no identity at all (no primary key:
 * pgring sets REPLICA IDENTITY FULL for the move); else a reason to refuse.
 */
export async function identityCheck(cl: pg.Client, table: string, key: string): Promise<'ok' | 'full-needed' | string> {
  const r = await cl.query(`SELECT c.relreplident AS ri,
      EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))) AS has_index,
      EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
              WHERE i.indrelid = c.oid AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident)) AND a.attname = $2) AS has_key
    FROM pg_class c WHERE c.oid = to_regclass($1)`, [qname(table), key]);
  const row = r.rows[0] as { ri: string; has_index: boolean; has_key: boolean } | undefined;
  if (!row) return `table ${table} does not exist`;
  if (row.ri === 'f') return 'ok';
  if (row.ri === 'n') return `table ${table} has REPLICA IDENTITY NOTHING: logical replication cannot carry its updates (set REPLICA IDENTITY DEFAULT or FULL)`;
  if (!row.has_index) return row.ri === 'd' ? 'full-needed' : `table ${table}: its replica identity index is missing`;
  return row.has_key ? 'ok' : `the replica identity of table ${table} does not include the shard key column ${key}`;
}

/** Copies the tables' definitions (pg_dump --schema-only) from `src` into `dst` for those missing there. */
export async function copySchema(src: ShardAddr, dst: ShardAddr, db: string, c: Creds, tables: string[]): Promise<string[]> {
  const missing: string[] = [];
  await withShard(dst, db, c, async (cl) => { for (const t of tables) if (!(await tableExists(cl, t))) missing.push(t); });
  if (missing.length === 0) return [];
  const env = { ...process.env, ...(c.password ? { PGPASSWORD: c.password } : {}) };
  const dump = await run(pgBin('pg_dump'), ['-h', src.host, '-p', String(src.port), '-U', c.user, '-d', db, '--schema-only', '--no-owner', '--no-privileges',
    '--no-publications', '--no-subscriptions', ...missing.flatMap((t) => ['-t', qname(t)])], env);
  await run(pgBin('psql'), ['-h', dst.host, '-p', String(dst.port), '-U', c.user, '-d', db, '-X', '-q', '-v', 'ON_ERROR_STOP=1'], env, dump);
  return missing;
}

/**
 * A new shard's copies of the bigint sequences owned by `tables` (serial columns, identities)
 * come from another shard's dump and would count from 1, repeating the ids of the shard whose
 * range that is: each one still at PostgreSQL's default range moves to the first range slot
 * above every slot its namesakes on `others` use (frontend/sequences.ts). Idempotent: a moved
 * sequence no longer starts at 1. Returns the sequences moved.
 */
export async function moveSequencesToFreeRange(dst: ShardAddr, others: ShardAddr[], db: string, c: Creds, tables: string[]): Promise<string[]> {
  const seqs = await withShard(dst, db, c, async (cl) => (await cl.query(
    `SELECT DISTINCT c.oid::pg_catalog.regclass::text AS seq, s.seqtypid = 'pg_catalog.int4'::pg_catalog.regtype AS int4 FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
       JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')
      WHERE d.refobjid = ANY (SELECT pg_catalog.to_regclass(t) FROM pg_catalog.unnest($1::text[]) t)
        AND s.seqtypid IN ('pg_catalog.int8'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype) AND s.seqstart = 1 AND s.seqmin = 1 AND s.seqincrement = 1`,
    [tables.map(qname)])).rows.map((r) => ({ seq: r.seq as string, int4: r.int4 as boolean })));
  if (seqs.length === 0) return [];
  const slots = new Map<string, number>(seqs.map((q) => [q.seq, 0]));
  for (const o of others) {
    await withShard(o, db, c, async (cl) => {
      for (const q of seqs) {
        const r = await cl.query('SELECT s.seqmin::text AS min FROM pg_catalog.pg_sequence s WHERE s.seqrelid = pg_catalog.to_regclass($1)', [q.seq]);
        if (r.rows[0]) slots.set(q.seq, Math.max(slots.get(q.seq)!, sequenceSlot(BigInt(r.rows[0].min as string), q.int4)));
      }
    });
  }
  const moved: string[] = [];
  await withShard(dst, db, c, async (cl) => {
    for (const q of seqs) {
      const slot = slots.get(q.seq)! + 1;
      if (q.int4 && slot >= INT4_SLOTS) continue;   // no integer range left: counts as PostgreSQL's
      const { lo, hi } = sequenceRange(slot, q.int4);
      await cl.query(`ALTER SEQUENCE ${q.seq} MINVALUE ${lo} MAXVALUE ${hi} START WITH ${lo} RESTART`);
      moved.push(q.seq);
    }
  });
  return moved;
}

/**
 * The sequences owned by reference `tables` on `dst` set to where they are on `src`: logical
 * replication copies a reference table's rows to a new shard but not its sequences, which would
 * count from 1 there, so the next INSERT taking the default (sent to every shard) would give the
 * new shard another id than the others (or a duplicate key). Run while writes are fenced.
 */
export async function syncSequences(src: ShardAddr, dst: ShardAddr, db: string, c: Creds, tables: string[]): Promise<string[]> {
  if (tables.length === 0) return [];
  const state = await withShard(src, db, c, async (cl) => {
    const seqs = (await cl.query(
      `SELECT DISTINCT d.objid::pg_catalog.regclass::text AS seq FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
          AND d.refobjid = ANY (SELECT pg_catalog.to_regclass(t) FROM pg_catalog.unnest($1::text[]) t)`, [tables.map(qname)])).rows.map((r) => r.seq as string);
    const out: { seq: string; last: string; called: boolean }[] = [];
    for (const q of seqs) {
      const r = (await cl.query(`SELECT last_value::text AS last, is_called FROM ${q}`)).rows[0];
      out.push({ seq: q, last: r.last as string, called: r.is_called as boolean });
    }
    return out;
  });
  await withShard(dst, db, c, async (cl) => {
    for (const s of state) await cl.query('SELECT pg_catalog.setval($1::pg_catalog.regclass, $2::bigint, $3)', [s.seq, s.last, s.called]);
  });
  return state.map((s) => s.seq);
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ch = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '', err = '';
    ch.stdout.on('data', (d) => { out += d; });
    ch.stderr.on('data', (d) => { err += d; });
    ch.on('error', reject);
    ch.on('close', (code) => code === 0 ? resolve(out) : reject(new Error(`${cmd.split('/').pop()} failed (${code}): ${err.trim().slice(0, 2000)}`)));
    ch.stdin.on('error', () => undefined);
    ch.stdin.end(input ?? '');
  });
}

export async function setIdentity(cl: pg.Client, table: string, full: boolean): Promise<void> {
  await cl.query(`ALTER TABLE ${qname(table)} REPLICA IDENTITY ${full ? 'FULL' : 'DEFAULT'}`);
}

/** A publication of `tables` (each with its row filter, or none for a whole table); inserts, updates and deletes only. */
export async function ensurePublication(cl: pg.Client, name: string, tables: { table: string; filter: string | null }[]): Promise<void> {
  const r = await cl.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [name]);
  if (r.rowCount) return;
  const list = tables.map((t) => `${qname(t.table)}${t.filter ? ` WHERE ${t.filter}` : ''}`).join(', ');
  await cl.query(`CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${list} WITH (publish = 'insert, update, delete')`);
}

export async function dropPublication(cl: pg.Client, name: string): Promise<void> {
  await cl.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(name)}`);
}

/** A subscription (and its slot on the source, same name) with the initial copy. */
export async function ensureSubscription(cl: pg.Client, name: string, conn: string, pub: string): Promise<void> {
  const r = await cl.query('SELECT 1 FROM pg_subscription WHERE subname = $1', [name]);
  if (r.rowCount) return;
  await cl.query(`CREATE SUBSCRIPTION ${quoteIdent(name)} CONNECTION ${lit(conn)} PUBLICATION ${quoteIdent(pub)} WITH (copy_data = true, slot_name = ${lit(name)})`);
}

/** Drops the subscription and its slot on the source; if the source is unreachable, the slot is dropped there separately. */
export async function dropSubscription(cl: pg.Client, name: string): Promise<void> {
  const r = await cl.query('SELECT 1 FROM pg_subscription WHERE subname = $1', [name]);
  if (!r.rowCount) return;
  await cl.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} DISABLE`);
  await cl.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} SET (slot_name = NONE)`);
  await cl.query(`DROP SUBSCRIPTION ${quoteIdent(name)}`);
}

export async function dropSlot(cl: pg.Client, name: string): Promise<void> {
  for (let i = 0; i < 250; i++) {
    const r = await cl.query('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [name]);
    if (!r.rowCount) return;
    const pid = r.rows[0].active_pid as number | null;
    if (pid) { await cl.query('SELECT pg_terminate_backend($1)', [pid]); await new Promise((res) => setTimeout(res, 20)); continue; }
    try { await cl.query('SELECT pg_drop_replication_slot($1)', [name]); return; } catch (e) { if (!/is active|does not exist/.test((e as Error).message)) throw e; }
  }
}

/** Tables of the subscription not yet in state 'r' (ready: initial copy done, streaming). */
export async function notReady(cl: pg.Client, sub: string): Promise<string[]> {
  const r = await cl.query(`SELECT r.srrelid::regclass::text AS t, r.srsubstate AS s FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
    WHERE s.subname = $1 AND r.srsubstate <> 'r'`, [sub]);
  return r.rows.map((x) => `${x.t} (${x.s})`);
}

export async function currentLsn(cl: pg.Client): Promise<string> {
  return (await cl.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l as string;
}

/** Bytes of WAL the slot's subscriber has not confirmed (null: no slot). */
export async function slotLag(cl: pg.Client, slot: string, lsn?: string): Promise<number | null> {
  const r = await cl.query(`SELECT pg_wal_lsn_diff(${lsn ? '$2::pg_lsn' : 'pg_current_wal_lsn()'}, confirmed_flush_lsn)::int8 AS lag FROM pg_replication_slots WHERE slot_name = $1`, lsn ? [slot, lsn] : [slot]);
  return r.rowCount ? Number(r.rows[0].lag) : null;
}

/** The first transaction id not yet assigned: every xid below it has started. */
export async function xidHorizon(cl: pg.Client): Promise<bigint> {
  return BigInt((await cl.query('SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x')).rows[0].x as string);
}

/** The oldest transaction id still running (or the horizon when none is). */
export async function oldestRunningXid(cl: pg.Client): Promise<bigint> {
  return BigInt((await cl.query('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x')).rows[0].x as string);
}

export async function preparedCount(cl: pg.Client): Promise<number> {
  return Number((await cl.query('SELECT count(*) AS n FROM pg_prepared_xacts WHERE database = current_database()')).rows[0].n);
}

export async function countWhere(cl: pg.Client, table: string, filter: string | null): Promise<number> {
  return Number((await cl.query(`SELECT count(*) AS n FROM ${qname(table)}${filter ? ` WHERE ${filter}` : ''}`)).rows[0].n);
}

/** Deletes the rows matching `filter` in batches of `batch`; returns how many. */
export async function deleteBatched(cl: pg.Client, table: string, filter: string, batch: number, onBatch?: (n: number) => void): Promise<number> {
  let total = 0;
  await cl.query('SET session_replication_role = replica');   // past the guard triggers (ours)
  for (;;) {
    const r = await cl.query(`DELETE FROM ${qname(table)} WHERE ctid = ANY (ARRAY(SELECT ctid FROM ${qname(table)} WHERE ${filter} LIMIT ${Math.max(1, Math.floor(batch))}))`);
    total += r.rowCount ?? 0;
    onBatch?.(total);
    if ((r.rowCount ?? 0) === 0) return total;
  }
}

/**
 * The guard on a source during the cut-over: triggers that reject writes to the moving rows from
 * anything that bypasses the proxies (the proxies hold theirs). `filterOf(ref)` is the row
 * filter over NEW or OLD. pgring's own clean-up runs with session_replication_role = replica.
 * The triggers are created before the cut-over with a function that lets every row through
 * (CREATE TRIGGER waits for the running transactions on its table and blocks new ones: 3 per
 * table and source inside the write pause cost about a second under TPC-B); `armGuard` then
 * replaces the function's body, which takes no table lock and applies to every session's next
 * statement.
 */
export async function ensureGuard(cl: pg.Client, fn: string, parts: { table: string; trigger: string; filterOf: (ref: 'NEW' | 'OLD') => string }[]): Promise<void> {
  await cl.query(`SET lock_timeout = '100ms'`);
  const exists = await cl.query('SELECT 1 FROM pg_proc WHERE proname = $1', [fn]);
  if (!exists.rowCount) await cl.query(`CREATE FUNCTION ${quoteIdent(fn)}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END; END $$`);
  for (const p of parts) {
    for (const [op, when] of [['INSERT', p.filterOf('NEW')], ['UPDATE', `${p.filterOf('OLD')} OR ${p.filterOf('NEW')}`], ['DELETE', p.filterOf('OLD')]] as const) {
      const name = `${p.trigger}_${op.toLowerCase()}`.slice(0, 63);
      const exists = await cl.query('SELECT 1 FROM pg_trigger WHERE tgname = $1 AND tgrelid = to_regclass($2)', [name, qname(p.table)]);
      if (exists.rowCount) continue;
      await retryLocks(() => cl.query(`CREATE TRIGGER ${quoteIdent(name)} BEFORE ${op} ON ${qname(p.table)} FOR EACH ROW WHEN (${when}) EXECUTE FUNCTION ${quoteIdent(fn)}()`));
    }
  }
  await cl.query('RESET lock_timeout');
}

/** Makes the guard's triggers reject the moving rows' writes (55006). */
export async function armGuard(cl: pg.Client, fn: string, migration: string): Promise<void> {
  await cl.query(`CREATE OR REPLACE FUNCTION ${quoteIdent(fn)}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION USING ERRCODE = '55006',
        MESSAGE = format('pgring: rows of table %s in the key ranges moving to another shard are read-only during resharding migration %s', TG_TABLE_NAME, ${lit(migration)}),
        HINT = 'Write through pgring: it routes the write to the shard that owns the key.';
    END $$`);
}

/**
 * Drops the guard's triggers one by one (each its own transaction: one table lock at a time, so
 * no deadlock with running transactions; a lock wait past 2 s is retried), then the function.
 */
export async function dropGuard(cl: pg.Client, fn: string): Promise<void> {
  const r = await cl.query(`SELECT t.tgname, t.tgrelid::regclass::text AS rel FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE p.proname = $1`, [fn]);
  await cl.query(`SET lock_timeout = '100ms'`);
  for (const row of r.rows as { tgname: string; rel: string }[]) {
    await retryLocks(() => cl.query(`DROP TRIGGER IF EXISTS ${quoteIdent(row.tgname)} ON ${row.rel}`));
  }
  await retryLocks(() => cl.query(`DROP FUNCTION IF EXISTS ${quoteIdent(fn)}()`));
  await cl.query('RESET lock_timeout');
}

/**
 * A DDL lock request queues every new writer of its table behind it. A transaction that holds the
 * table and waits for a pgring lock bucket held by one of those queued writers is a deadlock
 * across pgring's locks and PostgreSQL's that only lock_timeout breaks (2 s stalls of TPC-B in
 * bench/RESULTS-reshard.md): the timeout is short (100 ms) and the statement retried.
 */
async function retryLocks<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try { return await fn(); } catch (e) {
      const code = (e as { code?: string }).code;
      if ((code !== '40P01' && code !== '55P03') || i >= 300) throw e;
      await new Promise((res) => setTimeout(res, 20 + Math.random() * 50));
    }
  }
}
