// Builds a proxy's resharding write gate from its coordinator and transaction manager.
import type { Coordinator } from '../cluster/coordinator';
import type { ShardConfig } from '../config/types';
import type { Logger } from '../log';
import type { TxnManager } from '../txn/manager';
import { WriteGate } from './gate';

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
  }, logger);
}
