// Response ordering without sockets (src/frontend/response-queue.ts): responses reach the
// client in request order whatever order the servers answer in, pgring's own answers take
// their place in that order, and output after an extended-protocol error is dropped up to
// ReadyForQuery, as PostgreSQL skips those messages.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ResponseQueue } from '../../src/frontend/response-queue';
import { Fifo } from '../../src/frontend/fifo';
import { K } from '../../src/frontend/session-types';
import type { Link, Pending } from '../../src/frontend/session-types';
import { bindComplete, buildError, commandComplete, parseComplete } from '../../src/protocol/messages';

function fakeLink(shard: number): Link {
  return { shard, queue: new Fifo<Pending>(), conn: { fatalRelayed: false } } as unknown as Link;
}
const tags = (wq: Buffer[]) => wq.map((m) => m[0] === 0x43 ? m.toString('latin1', 5, m.length - 1) : String.fromCharCode(m[0]!));

describe('response queue', () => {
  it('buffers a later request answered first until the earlier one completes', () => {
    const wq: Buffer[] = [];
    const rq = new ResponseQueue(wq);
    const a = fakeLink(0), b = fakeLink(1);
    const p1 = rq.push(K.Query, a, false);
    const p2 = rq.push(K.Query, b, false);
    rq.out(p2, commandComplete('INSERT 0 2'));
    rq.complete(p2);
    assert.deepEqual(tags(wq), [], 'nothing before the head request answers');
    assert.equal(b.queue.length, 0, 'completed request leaves its link queue');
    rq.out(p1, commandComplete('INSERT 0 1'));
    assert.deepEqual(tags(wq), ['INSERT 0 1'], 'the head request streams');
    rq.complete(p1);
    assert.deepEqual(tags(wq), ['INSERT 0 1', 'INSERT 0 2']);
    assert.equal(rq.pendings.length, 0);
  });

  it("pgring's own answers wait for the requests before them", () => {
    const wq: Buffer[] = [];
    let ready = 0;
    class Q extends ResponseQueue { protected override ready(): void { ready++; super.ready(); } }
    const rq = new Q(wq);
    const l = fakeLink(0);
    const p = rq.push(K.Parse, l, true);
    rq.synth([parseComplete], true);
    rq.rfq();
    assert.deepEqual(tags(wq), []);
    assert.equal(ready, 0);
    rq.out(p, parseComplete);
    rq.complete(p);
    assert.deepEqual(tags(wq), ['1', '1', 'Z']);
    assert.equal(ready, 1, 'ReadyForQuery written once it reaches the head');
  });

  it('drops extended output after an extended error until ReadyForQuery', () => {
    const wq: Buffer[] = [];
    const rq = new ResponseQueue(wq);
    const l = fakeLink(0);
    const bind = rq.push(K.Bind, l, true);
    const exec = rq.push(K.Execute, l, true);
    rq.out(bind, buildError({ code: '22P02', message: 'bad input' }));
    rq.complete(bind);
    rq.out(exec, commandComplete('SELECT 1')); // a server would not send it; pgring must not either
    rq.complete(exec);
    rq.rfq();
    rq.synth([bindComplete], true);
    assert.deepEqual(tags(wq), ['E', 'Z', '2'], 'after ReadyForQuery the next unit is answered again');
  });

  it('simple-protocol output is not dropped by an extended error', () => {
    const wq: Buffer[] = [];
    const rq = new ResponseQueue(wq);
    rq.synth([buildError({ code: '42601', message: 'syntax' })], true);
    rq.synth([commandComplete('SET')], false);
    assert.deepEqual(tags(wq), ['E', 'SET']);
  });

  it('an entry completed out of its link order leaves that link queue too', () => {
    const rq = new ResponseQueue([]);
    const l = fakeLink(0);
    const p1 = rq.push(K.Internal, l, false);
    const p2 = rq.push(K.Internal, l, false);
    rq.complete(p2);
    assert.equal(l.queue.length, 1);
    assert.equal(l.queue.first(), p1);
  });

  it('moveToEnd puts a result entry after its members', () => {
    const wq: Buffer[] = [];
    const rq = new ResponseQueue(wq);
    const result = rq.push(K.GroupResult, null, false);
    const m = rq.push(K.Query, fakeLink(0), false);
    rq.moveToEnd(result);
    result.out = [commandComplete('SELECT 2')];
    rq.complete(result);
    assert.deepEqual(tags(wq), []);
    rq.complete(m);
    assert.deepEqual(tags(wq), ['SELECT 2']);
  });

  it('waitIdle resolves once every request is answered, waitUntil re-checks on completion', async () => {
    const rq = new ResponseQueue([]);
    const p = rq.push(K.Query, fakeLink(0), false);
    rq.rfq();
    let idle = false;
    const w = rq.waitIdle().then(() => { idle = true; });
    await Promise.resolve();
    assert.equal(idle, false);
    rq.complete(p);
    await w;
    assert.equal(idle, true);
    assert.equal(rq.waiters, null);
  });
});
