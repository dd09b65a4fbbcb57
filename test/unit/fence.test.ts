// WriteFence state machine over a scripted session (states only; the ZooKeeper side is tested
// in test/integration/fail-closed.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { defaultSelfFenceMs, WriteFence } from '../../src/cluster/fence';
import type { SessionState, ZkSession } from '../../src/cluster/session';
import type { Zk } from '../../src/cluster/zk';

class ScriptedSession extends EventEmitter {
  state: SessionState = 'connected';
  readonly opts = { connect: 'test:1' };
  private h = { id: 1 } as unknown as Zk;
  handle(): Zk | null { return this.state === 'connected' ? this.h : null; }
  set(s: SessionState, newHandle = false): void {
    const prev = this.state;
    this.state = s;
    if (newHandle) this.h = { id: Math.random() } as unknown as Zk;
    this.emit('state', s, prev);
  }
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

function make(selfFenceMs = 40) {
  const s = new ScriptedSession();
  const f = new WriteFence(s as unknown as ZkSession, { selfFenceMs, retryMs: 10 });
  return { s, f };
}

describe('WriteFence', () => {
  it('defaults to half the session timeout', () => {
    assert.equal(defaultSelfFenceMs(10000), 5000);
  });

  it('a suspension shorter than selfFenceMs does not fence', async () => {
    const { s, f } = make();
    s.set('suspended');
    await tick(10);
    s.set('connected');
    await tick(60);
    assert.equal(f.closed, false);
    assert.equal(f.epoch, 0);
    f.stop();
  });

  it('a suspension longer than selfFenceMs fences, naming the config key; resync opens it', async () => {
    const { s, f } = make();
    let resyncs = 0;
    f.addResync(async () => { resyncs++; });
    s.set('suspended');
    await tick(70);
    assert.equal(f.closed, true);
    assert.match(f.why!, /zookeeper\.selfFenceMs \(40 ms\)/);
    assert.equal(f.epoch, 1);
    s.set('connected');
    await tick(5);
    assert.equal(resyncs, 1);
    assert.equal(f.closed, false);
    assert.equal(f.history[0]!.openedAt !== null, true);
    f.stop();
  });

  it('a lost session fences at once; it stays closed until a resync in a connection succeeds', async () => {
    const { s, f } = make(10000);
    let fail = 2;
    f.addResync(async () => { if (fail-- > 0) throw new Error('read failed'); });
    s.set('lost');
    assert.equal(f.closed, true);
    assert.match(f.why!, /session lost/);
    s.set('connecting', true);
    assert.equal(f.closed, true);
    s.set('connected');
    await tick(5);
    assert.equal(f.closed, true, 'first resync failed');
    await tick(60);
    assert.equal(f.closed, false, 'opened after the retries succeeded');
    f.stop();
  });

  it('a resync that finishes after the connection dropped again does not open the fence', async () => {
    const { s, f } = make(10000);
    let release!: () => void;
    f.addResync(() => new Promise<void>((r) => { release = r; }));
    s.set('lost');
    s.set('connected', true);
    s.set('suspended');
    release();
    await tick(5);
    assert.equal(f.closed, true);
    assert.equal(f.epoch, 1, 'one closing, not two');
    f.stop();
  });
});
