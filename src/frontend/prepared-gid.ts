// COMMIT PREPARED / ROLLBACK PREPARED of a transaction the client prepared itself (PREPARE
// TRANSACTION of a transaction on one shard, as a JTA transaction manager does). Nothing in the
// statement says which shard holds it, and a later session — or the transaction manager's
// recovery, after a restart, through another proxy — may finish it: the shards are asked
// (pg_prepared_xacts, over pgring's own connections, outside the client's unit, since the
// statement cannot run inside a transaction block), and the statement goes to the one that has it.
// None has it: it goes where it would have, and that server answers 42704 as PostgreSQL does.
import { serviceCredentials, shardTargets, withPg } from '../txn/recovery';
import type { ClientSession } from './client';
import type { RoutedStatement } from '../router/router';

/** Whether `stmt` is a COMMIT / ROLLBACK PREPARED whose shard pgring has yet to find (several
 *  shards, outside a transaction block, no shard named by the client). */
export function needsGidShard(s: ClientSession, stmt: RoutedStatement): boolean {
  const gid = stmt.plan.gid;
  return gid !== undefined && s.gidShard?.gid !== gid && s.ctx.shards.shardCount > 1 && s.txStatus === 'I'
    && s.routeShard === null && s.routeShardKey === null && stmt.hint === undefined && stmt.plan.hint === undefined;
}

/** Finds the shard holding `gid` in the client's database and routes the next such statement there. */
export async function findPreparedGid(s: ClientSession, gid: string): Promise<void> {
  const targets = shardTargets(s.ctx.topology);
  const cred = serviceCredentials(s.ctx.config);
  const found = await Promise.all(targets.map((t) => withPg(t, cred, s.database, async (c) =>
    (await c.query('SELECT 1 FROM pg_catalog.pg_prepared_xacts WHERE gid = $1 AND database = current_database()', [gid])).rowCount! > 0).catch(() => false)));
  const t = targets[found.indexOf(true)];
  s.gidShard = { gid, shard: t ? s.ctx.topology.shards.findIndex((x) => x.name === t.name) : -1 };
}
