// Transaction control decided without sockets: what BEGIN / COMMIT / ROLLBACK [AND CHAIN] do
// given the session's transaction state (src/frontend/tx-decision.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decideTxControl, endTag, TxAction } from '../../src/frontend/tx-decision';
import type { TxFacts } from '../../src/frontend/tx-decision';

const idle: TxFacts = { cmd: 'begin', chain: false, status: 'I', attached: 0, active: 0, txFailed: false, virtualFailed: false, implicit: 0 };
const decide = (f: Partial<TxFacts>) => decideTxControl({ ...idle, ...f });

describe('transaction control decisions', () => {
  it('BEGIN: answered by pgring with no server attached, forwarded on a pinned session', () => {
    assert.equal(decide({ cmd: 'begin' }), TxAction.BeginVirtual);
    assert.equal(decide({ cmd: 'begin', attached: 1 }), TxAction.BeginOnServer);
  });
  it('BEGIN inside a transaction warns, inside a failed one is refused', () => {
    assert.equal(decide({ cmd: 'begin', status: 'T' }), TxAction.AlreadyInProgress);
    assert.equal(decide({ cmd: 'begin', status: 'T', attached: 2, active: 2 }), TxAction.AlreadyInProgress);
    assert.equal(decide({ cmd: 'begin', status: 'E', attached: 1, active: 1 }), TxAction.RefuseInFailed);
  });
  it('COMMIT / ROLLBACK outside a transaction: warning, or an error with AND CHAIN', () => {
    for (const cmd of ['commit', 'rollback'] as const) {
      assert.equal(decide({ cmd }), TxAction.NoTransaction);
      assert.equal(decide({ cmd, attached: 2 }), TxAction.NoTransaction);
      assert.equal(decide({ cmd, chain: true }), TxAction.ChainOutsideBlock);
    }
  });
  it('COMMIT / ROLLBACK in an extended-protocol unit ends its implicit transaction on the servers', () => {
    assert.equal(decide({ cmd: 'rollback', implicit: 1, attached: 1 }), TxAction.EndImplicit);
    assert.equal(decide({ cmd: 'commit', implicit: 2, attached: 2 }), TxAction.EndImplicit);
    // AND CHAIN outside a block is still an error
    assert.equal(decide({ cmd: 'commit', implicit: 1, chain: true }), TxAction.ChainOutsideBlock);
  });
  it('a transaction no server joined ends in pgring: COMMIT commits unless it failed there', () => {
    assert.equal(decide({ cmd: 'commit', status: 'T' }), TxAction.EndCommitted);
    assert.equal(decide({ cmd: 'rollback', status: 'T' }), TxAction.EndRolledBack);
    assert.equal(decide({ cmd: 'commit', status: 'E', virtualFailed: true }), TxAction.EndRolledBack);
    assert.equal(decide({ cmd: 'commit', status: 'T', chain: true, attached: 1 }), TxAction.EndCommitted);
  });
  it('a transaction pgring failed (the servers do not know) is rolled back everywhere', () => {
    assert.equal(decide({ cmd: 'commit', status: 'E', txFailed: true, attached: 1, active: 1 }), TxAction.RollbackAll);
    assert.equal(decide({ cmd: 'rollback', status: 'E', txFailed: true, attached: 3, active: 2 }), TxAction.RollbackAll);
    // a virtual transaction a server had joined when pgring failed it (a Bind after DDL)
    assert.equal(decide({ cmd: 'commit', status: 'E', virtualFailed: true, attached: 1, active: 1 }), TxAction.RollbackAll);
  });
  it('over several shards: ROLLBACK, and COMMIT of a failed transaction, roll back every shard', () => {
    assert.equal(decide({ cmd: 'rollback', status: 'T', attached: 2, active: 2 }), TxAction.RollbackAll);
    assert.equal(decide({ cmd: 'commit', status: 'E', attached: 2, active: 2 }), TxAction.RollbackAll);
  });
  it('COMMIT of a healthy transaction: distributed over several shards, forwarded (after the veto hook) on one', () => {
    assert.equal(decide({ cmd: 'commit', status: 'T', attached: 2, active: 2 }), TxAction.CommitMulti);
    assert.equal(decide({ cmd: 'commit', status: 'T', attached: 3, active: 1 }), TxAction.Commit);
  });
  it('on one shard, ROLLBACK and COMMIT of a failed transaction go to that server', () => {
    assert.equal(decide({ cmd: 'rollback', status: 'T', attached: 1, active: 1 }), TxAction.Forward);
    assert.equal(decide({ cmd: 'rollback', status: 'E', attached: 2, active: 1 }), TxAction.Forward);
    assert.equal(decide({ cmd: 'commit', status: 'E', attached: 1, active: 1 }), TxAction.Forward);
  });
  it('tags of the COMMIT / ROLLBACK pgring answers', () => {
    assert.equal(endTag('commit', true), 'COMMIT');
    assert.equal(endTag('commit', false), 'ROLLBACK');
    assert.equal(endTag('rollback', true), 'ROLLBACK');
  });
});
