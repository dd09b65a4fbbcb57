// What the failover controller and `pgring shard rejoin` do on PostgreSQL servers, over plain
// `pg` connections with pgring's service credentials. Every function is idempotent.
import pg from 'pg';
import { parseLsn } from './lsn';

export interface Cred { user: string; password?: string }
export interface Addr { host: string; port: number }

export async function withServer<T>(a: Addr, cred: Cred, fn: (c: pg.Client) => Promise<T>, timeoutMs = 10000): Promise<T> {
  const c = new pg.Client({ host: a.host, port: a.port, user: cred.user, password: cred.password, database: 'postgres', connectionTimeoutMillis: timeoutMs, application_name: 'pgring-failover' });
  c.on('error', () => undefined);
  await c.connect();
  try { return await fn(c); } finally { await c.end().catch(() => undefined); }
}

function lit(s: string): string { return `'${s.replace(/'/g, "''")}'`; }

export async function position(a: Addr, cred: Cred): Promise<{ inRecovery: boolean; receiveLsn: number | null; replayLsn: number | null; currentLsn: number | null }> {
  return withServer(a, cred, async (c) => {
    const r = (await c.query(`SELECT pg_is_in_recovery() AS r, pg_last_wal_receive_lsn()::text AS recv, pg_last_wal_replay_lsn()::text AS rep,
      CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END AS cur`)).rows[0];
    return { inRecovery: r.r === true, receiveLsn: parseLsn(r.recv), replayLsn: parseLsn(r.rep), currentLsn: parseLsn(r.cur) };
  }, 3000);
}

/** Switchover fence: the old primary refuses new writes and its client sessions end; returns its flushed WAL position. */
export async function fenceOldPrimary(a: Addr, cred: Cred): Promise<number | null> {
  return withServer(a, cred, async (c) => {
    await c.query('ALTER SYSTEM SET default_transaction_read_only = on');
    await c.query('SELECT pg_reload_conf()');
    await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`);
    // a checkpoint-free marker: the flush position after every session ended
    const r = await c.query(`SELECT pg_current_wal_flush_lsn()::text AS l`);
    return parseLsn(r.rows[0].l);
  });
}

/** Promotes a replica (no-op when already promoted); waits until it accepts writes. */
export async function promote(a: Addr, cred: Cred): Promise<'promoted' | 'already'> {
  return withServer(a, cred, async (c) => {
    const r = await c.query('SELECT pg_is_in_recovery() AS r');
    if (r.rows[0].r !== true) return 'already';
    const p = await c.query('SELECT pg_promote(true, 60) AS ok');
    if (p.rows[0].ok !== true) throw new Error(`pg_promote did not finish within 60 s on ${a.host}:${a.port}`);
    // A promoted server that kept default_transaction_read_only from a switchover must take writes.
    await c.query('ALTER SYSTEM RESET default_transaction_read_only');
    await c.query('SELECT pg_reload_conf()');
    // The new timeline reaches pg_control (what pg_rewind of the old primary compares) at a checkpoint.
    await c.query('CHECKPOINT');
    return 'promoted';
  }, 70000);
}

/** Makes `replica` stream from `primary` through a physical slot `slot` created there. */
export async function repoint(replica: Addr, primary: Addr, slot: string, cred: Cred): Promise<void> {
  await withServer(primary, cred, async (c) => {
    await c.query(`SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, [slot]);
  });
  await withServer(replica, cred, async (c) => {
    const conninfo = `host=${primary.host} port=${primary.port} user=${cred.user}${cred.password ? ` password=${cred.password}` : ''} application_name=${slot}`;
    await c.query(`ALTER SYSTEM SET primary_conninfo = ${lit(conninfo)}`);
    await c.query(`ALTER SYSTEM SET primary_slot_name = ${lit(slot)}`);
    await c.query('SELECT pg_reload_conf()');
  });
}

export async function setSyncStandbys(primary: Addr, names: string, cred: Cred): Promise<void> {
  await withServer(primary, cred, async (c) => {
    await c.query(`ALTER SYSTEM SET synchronous_standby_names = ${lit(names)}`);
    await c.query('SELECT pg_reload_conf()');
  });
}

/** Waits until `a` has replayed `lsn` (switchover: no acknowledged write left behind). */
export async function waitReplayed(a: Addr, lsn: number, cred: Cred, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await position(a, cred);
    if (!p.inRecovery || (p.replayLsn ?? -1) >= lsn) return;
    if (Date.now() > deadline) throw new Error(`${a.host}:${a.port} did not replay ${lsn} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
