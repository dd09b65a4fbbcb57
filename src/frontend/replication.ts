// Replication connections (`replication=true|database` in the startup packet: pg_recvlogical,
// pg_receivewal, postgres.js subscribe, psycopg2 replication cursors, Debezium). After pgring's
// own authentication the client gets a dedicated server connection (never pooled) opened with
// its startup parameters, replication included, on one shard: the only one, or the one named
// with `options=-c pgring.shard=<name>`. From then on the bytes are relayed both ways as they
// are: the walsender protocol (replication commands as simple Query, CopyBoth) is PostgreSQL's.
import { PgError, SQLSTATE } from '../protocol/errors';
import { authOk, backendKeyData, parameterStatus, readyForQuery } from '../protocol/messages';
import { ServerConnection } from '../backend/server';
import type { ServerCredentials } from '../backend/server';
import type { ClientSession } from './client';

/** The startup packet's `replication` value when it asks for a walsender (null: a normal session). */
export function replicationValue(params: Map<string, string>): string | null {
  const v = params.get('replication');
  if (v === undefined) return null;
  return ['false', 'off', 'no', '0'].includes(v.toLowerCase()) ? null : v;
}

/** `pgring.shard` from the startup packet's `options` (`-c pgring.shard=s2` or `--pgring.shard=s2`). */
export function shardOption(options: string | undefined): string | null {
  if (!options) return null;
  const m = /(?:^|\s)(?:-c\s*|--)pgring\.shard=(\S+)/.exec(options);
  return m ? m[1]!.replace(/\\(.)/g, '$1') : null;
}

/** The shard a replication connection goes to, or the FATAL that refuses it (pure). */
export function replicationShard(shardNames: string[], options: string | undefined): number | PgError {
  const named = shardOption(options);
  if (named !== null) {
    const i = shardNames.indexOf(named);
    return i >= 0 ? i : PgError.fatal(SQLSTATE.InvalidParameterValue, `replication connection: shard "${named}" (options -c pgring.shard) does not exist`, { hint: `shards: ${shardNames.join(', ')}` });
  }
  if (shardNames.length === 1) return 0;
  return PgError.fatal(SQLSTATE.FeatureNotSupported,
    `replication connection: this pgring cluster has ${shardNames.length} shards; name the one to replicate from with options=-c pgring.shard=<name>`,
    { hint: `e.g. PGOPTIONS='-c pgring.shard=${shardNames[0] ?? 's1'}' or "options=-c pgring.shard=${shardNames[0] ?? 's1'}" in the connection string; shards: ${shardNames.join(', ')}` });
}

/** After authentication: opens the dedicated walsender connection and relays both ways. */
export async function startReplication(s: ClientSession, value: string, cred: ServerCredentials): Promise<void> {
  const topo = s.ctx.topology;
  const shard = replicationShard(topo.shards.map((x) => x.name), s.startupParams.find(([k]) => k === 'options')?.[1]);
  if (shard instanceof PgError) { s.fatal(shard); return; }
  let conn: ServerConnection;
  try {
    const b = topo.primary(shard);
    const target = { host: b.host, port: b.port, shard, shardName: topo.shards[shard]!.name };
    conn = await ServerConnection.connect(target, cred, [...s.startupParams, ['replication', value]], '', s.ctx.config.pool.connectTimeoutMs);
  } catch (e) {
    const err = e instanceof PgError ? e : new PgError(SQLSTATE.ConnectionFailure, (e as Error).message);
    s.fatal(PgError.fatal(err.code, err.message, err.opts));
    return;
  }
  if (s.phase === 'closed') { conn.terminate(); return; }
  const client = s.socket;
  // Server → client: every read as it is; the server waits while the client cannot take more.
  conn.onChunk = (chunk) => {
    if (client.destroyed) return;
    if (!client.write(chunk)) { conn.socket.pause(); client.once('drain', () => conn.socket.resume()); }
  };
  conn.owner = {
    onServerMessage: () => undefined,
    onServerBatchEnd: () => undefined,
    // The walsender's own FATAL (if any) was relayed as bytes: the client just closes after it.
    onServerClose: () => { try { client.end(); } catch { /* gone */ } s.close(); },
  };
  s.replicationConn = conn;
  // Client → server: raw bytes from now on (Dispatch.onData hands them here).
  s.relay = (chunk) => {
    if (!conn.socket.write(chunk)) { client.pause(); conn.socket.once('drain', () => client.resume()); }
  };
  s.pid = conn.pid;
  s.write(authOk);
  for (const [k, v] of conn.params) s.write(parameterStatus(k, v));
  s.write(backendKeyData(s.pid, s.secret));
  s.write(readyForQuery('I'));
  s.flush();
  s.phase = 'ready';
  clearTimeout(s.authTimer);
  s.ctx.sessions.set(s.key, s);
}
