// Builds a proxy's resharding write gate from its coordinator and transaction manager.
import type { Coordinator } from '../cluster/coordinator';
import type { ShardConfig } from '../config/types';
import type { Logger } from '../log';
import type { TxnManager } from '../txn/manager';
import type { Topology } from '../backend/topology';
import { quoteIdent, Ring } from '../ring/ring';
import { WriteGate } from './gate';
import { ownedRowsSql } from './read-filter';

export function startGate(c: Coordinator, txn: TxnManager, log: Logger, ringVersion: () => number, addShards: (s: ShardConfig[]) => void): WriteGate {
  const logger = { warn: (o: object, m: string) => log.warn(o, m), info: (o: object, m: string) => log.info(o, m) };
  return new WriteGate(c.session, c.layout, {
    ringVersion,
    writers: () => txn.writers(),
    async prepare(next) {
      // The new ring's shards are routable (and health-checked) here before we acknowledge.
      const shards = await c.resolveShards(next);
      await c.checkShards(shards);
      addShards(shards);
    },
    ack(token) {
      const n = c.proxyNode;
      if (n && (n.data.reshardAck ?? null) !== token) n.update({ ...n.data, reshardAck: token });
    },
    ackFilter(migration) {
      const n = c.proxyNode;
      if (n && (n.data.reshardFilter ?? null) !== migration) n.update({ ...n.data, reshardFilter: migration });
    },
  }, logger);
}

/**
 * The proxy's read filter: while the gate reports a migration's filter, a read spanning shards
 * runs on each shard limited to the rows that shard owns under the ring this proxy routes by.
 */
export function ownedSqlOf(gate: WriteGate, ring: () => Ring, topology: Topology): (sql: string, shard: number) => string | null {
  const preds = new Map<string, string>();
  return (sql, shard) => {
    const f = gate.filter;
    if (!f) return null;
    const r = ring();
    const name = topology.shards[shard]?.name ?? '';
    return ownedRowsSql(sql, f.tables, (t) => {
      const key = `${r.version}\0${name}\0${t.column}\0${t.type}`;
      let p = preds.get(key);
      if (p === undefined) {
        const k = r.shardNames.indexOf(name);
        p = k < 0 ? 'false' : r.sqlPredicate(k, quoteIdent(t.column), t.type);
        if (preds.size > 1000) preds.clear();
        preds.set(key, p);
      }
      return p;
    });
  };
}
