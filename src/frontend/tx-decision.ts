// What a BEGIN / COMMIT / ROLLBACK [AND CHAIN] does, given the session's transaction state: a
// pure decision (no I/O), carried out by transaction.ts (TransactionControl.txControl).
//
// pgring answers BEGIN itself while no server is involved yet (a "virtual" transaction that the
// first statement's shard joins), so what the client's BEGIN/COMMIT/ROLLBACK means depends on
// how many server connections are attached and which of them are inside a transaction.
import type { TxStatus } from '../protocol/messages';

/** The facts the decision depends on (the caller reuses one object: no allocation per statement). */
export interface TxFacts {
  cmd: 'begin' | 'commit' | 'rollback';
  /** COMMIT/ROLLBACK AND CHAIN. */
  chain: boolean;
  /** Transaction status as the client sees it. */
  status: TxStatus;
  /** Server connections attached to the session. */
  attached: number;
  /** Attached server connections inside a transaction (status 'T' or 'E'). */
  active: number;
  /** pgring failed a statement of the transaction and the servers do not know. */
  txFailed: boolean;
  /** The transaction pgring answered BEGIN for (no server yet) failed ('E'). */
  virtualFailed: boolean;
  /** Extended protocol only: links that ran messages since the last Sync (an implicit transaction). */
  implicit: number;
}

export const enum TxAction {
  /** BEGIN in a failed transaction: 25P02. */
  RefuseInFailed = 1,
  /** BEGIN inside a transaction: WARNING 25001 and the tag. */
  AlreadyInProgress,
  /** BEGIN with server connections attached (pinned session): forward it. */
  BeginOnServer,
  /** BEGIN answered by pgring; the shards join on first use. */
  BeginVirtual,
  /** COMMIT/ROLLBACK AND CHAIN outside a transaction block: 25P01 error. */
  ChainOutsideBlock,
  /** COMMIT/ROLLBACK ending the implicit transaction of the extended-protocol unit on its servers. */
  EndImplicit,
  /** COMMIT/ROLLBACK outside a transaction: WARNING 25P01 and the tag. */
  NoTransaction,
  /** End of a transaction no server is in: committed (pgring answers COMMIT). */
  EndCommitted,
  /** End of a transaction no server is in, or that failed where no server is: ROLLBACK. */
  EndRolledBack,
  /** Roll back every active server (pgring's failure, or several shards to roll back). */
  RollbackAll,
  /** COMMIT of a healthy transaction on one server: ask the transaction layer, then forward. */
  Commit,
  /** COMMIT of a healthy transaction on several servers: the distributed commit. */
  CommitMulti,
  /** Forward the statement to the server(s) as usual (e.g. ROLLBACK on the one server in the transaction). */
  Forward,
}

export function decideTxControl(f: Readonly<TxFacts>): TxAction {
  if (f.cmd === 'begin') {
    // PostgreSQL refuses every command but the ones ending the block in a failed transaction.
    if (f.status === 'E') return TxAction.RefuseInFailed;
    if (f.status !== 'I') return TxAction.AlreadyInProgress;
    return f.attached > 0 ? TxAction.BeginOnServer : TxAction.BeginVirtual;
  }
  if (f.active === 0) {
    if (f.status === 'I') {
      if (f.chain) return TxAction.ChainOutsideBlock;
      // Extended messages since the last Sync run in an implicit transaction, which PostgreSQL
      // ends here (asyncpg's executemany rolls back that way).
      return f.implicit > 0 ? TxAction.EndImplicit : TxAction.NoTransaction;
    }
    return f.cmd === 'commit' && !f.virtualFailed ? TxAction.EndCommitted : TxAction.EndRolledBack;
  }
  // The servers' transactions are healthy but the client's failed: roll them back (also a
  // virtual transaction that failed after a server joined it: pgring's own error at a Bind).
  if (f.txFailed || f.virtualFailed) return TxAction.RollbackAll;
  // ROLLBACK (or COMMIT of a failed transaction) over several shards: every shard rolls back
  // (forwarded, the statement would reach one of them; a COMMIT would commit the healthy ones).
  if (f.active > 1 && (f.cmd === 'rollback' || f.status === 'E')) return TxAction.RollbackAll;
  if (f.cmd === 'commit' && f.status === 'T') return f.active > 1 ? TxAction.CommitMulti : TxAction.Commit;
  return TxAction.Forward;
}

/** The command tag of a COMMIT / ROLLBACK that pgring answers. */
export function endTag(cmd: TxFacts['cmd'], committed: boolean): string {
  return cmd === 'commit' && committed ? 'COMMIT' : 'ROLLBACK';
}
