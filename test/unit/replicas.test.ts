// Pure logic of replicas and failover: WAL positions, replica choice for reads, the failover
// state machine's decisions, read-routing policy parsing.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatLsn, parseLsn } from '../../src/backend/lsn';
import { chooseReader, eligible, lagBytes } from '../../src/backend/replica-choice';
import { advance, chooseCandidate, fail, isFinished, newFailover, nextStep, shouldFailover, STEPS, syncStandbyNames, replicaSlotName } from '../../src/cluster/failover-plan';
import { parsePolicy, planReadUse, startupPolicy } from '../../src/frontend/read-routing';
import { replicationConf } from '../../src/local/postgres';
import type { Plan } from '../../src/router/types';
import { Topology } from '../../src/backend/topology';
import { parseConfig } from '../../src/config/load';

describe('WAL positions', () => {
  it('parses and formats PostgreSQL LSNs', () => {
    assert.equal(parseLsn('0/0'), 0);
    assert.equal(parseLsn('0/3054F60'), 0x3054f60);
    assert.equal(parseLsn('16/B374D848'), 0x16 * 2 ** 32 + 0xb374d848);
    assert.equal(formatLsn(parseLsn('16/B374D848')!), '16/B374D848');
    assert.equal(parseLsn('nonsense'), null);
    assert.equal(parseLsn(null), null);
  });
});

describe('choosing a reader', () => {
  const bounds = { primaryLsn: 1000, maxLagBytes: 100, maxLagMs: 1000, minLsn: null };
  it('skips replicas past the lag bounds or without a known position', () => {
    assert.equal(lagBytes(1000, 950), 50);
    assert.equal(lagBytes(900, 950), 0);
    assert.equal(eligible({ id: 'a', lsn: 950, lagMs: 0, outstanding: 0 }, bounds), true);
    assert.equal(eligible({ id: 'a', lsn: 850, lagMs: 0, outstanding: 0 }, bounds), false);
    assert.equal(eligible({ id: 'a', lsn: 950, lagMs: 5000, outstanding: 0 }, bounds), false);
    assert.equal(eligible({ id: 'a', lsn: null, lagMs: 0, outstanding: 0 }, bounds), false);
  });
  it('read-your-writes: only replicas that replayed the commit position', () => {
    assert.equal(eligible({ id: 'a', lsn: 950, lagMs: 0, outstanding: 0 }, { ...bounds, minLsn: 960 }), false);
    assert.equal(eligible({ id: 'a', lsn: 960, lagMs: 0, outstanding: 0 }, { ...bounds, minLsn: 960 }), true);
  });
  it('least outstanding among eligible; primary when none; any lets the primary compete', () => {
    const reps = [{ id: 'a', lsn: 990, lagMs: 0, outstanding: 3 }, { id: 'b', lsn: 995, lagMs: 0, outstanding: 1 }, { id: 'c', lsn: 10, lagMs: 0, outstanding: 0 }];
    assert.equal(chooseReader('replica', reps, 0, bounds), 'b');
    assert.equal(chooseReader('primary', reps, 0, bounds), 'primary');
    assert.equal(chooseReader('any', reps, 0, bounds), 'primary');
    assert.equal(chooseReader('any', reps, 5, bounds), 'b');
    assert.equal(chooseReader('replica', [reps[2]!], 0, bounds), 'primary');
  });
});

describe('failover state machine', () => {
  const s0 = newFailover({ shard: 's1', kind: 'failover', currentEpoch: 3, oldPrimary: 'h:1', replicas: ['h:1', 'h:2', 'h:3'], by: 'p1', now: 1 });
  it('starts at fence with the next epoch and without the old primary among the replicas', () => {
    assert.equal(s0.step, 'fence');
    assert.equal(s0.epoch, 4);
    assert.deepEqual(s0.replicas, ['h:2', 'h:3']);
  });
  it('advances through every step in order, recording what it learned and who did it', () => {
    let s = s0;
    const seen: string[] = [];
    while (!isFinished(s)) { seen.push(s.step); s = advance(s, 'p2', 2, `did ${s.step}`, s.step === 'choose' ? { candidate: 'h:3' } : {}); }
    assert.deepEqual(seen, STEPS.slice(0, -1));
    assert.equal(s.step, 'done');
    assert.equal(s.candidate, 'h:3');
    assert.equal(s.by, 'p2');
    assert.equal(s.log.length, 1 + seen.length);
    assert.equal(nextStep('done'), 'done');
    assert.equal(fail(s0, 'p1', 3, 'boom').step, 'failed');
  });
  it('fails over only for a leader that sees ZooKeeper, past the grace time, with a live replica, none running', () => {
    const base = { enabled: true, leader: true, zkConnected: true, downSince: 0, now: 5000, graceMs: 5000, liveReplicas: 1, running: false };
    assert.equal(shouldFailover(base), true);
    assert.equal(shouldFailover({ ...base, now: 4999 }), false);
    assert.equal(shouldFailover({ ...base, zkConnected: false }), false);
    assert.equal(shouldFailover({ ...base, leader: false }), false);
    assert.equal(shouldFailover({ ...base, liveReplicas: 0 }), false);
    assert.equal(shouldFailover({ ...base, running: true }), false);
    assert.equal(shouldFailover({ ...base, enabled: false }), false);
    assert.equal(shouldFailover({ ...base, downSince: null }), false);
  });
  it('promotes the replica that received the most WAL, never a server out of recovery', () => {
    const list = [
      { addr: 'h:2', receiveLsn: 100, replayLsn: 90, inRecovery: true },
      { addr: 'h:3', receiveLsn: 120, replayLsn: 80, inRecovery: true },
      { addr: 'h:4', receiveLsn: null, replayLsn: 130, inRecovery: true },
      { addr: 'h:1', receiveLsn: null, replayLsn: null, inRecovery: false },
    ];
    assert.equal(chooseCandidate(list), 'h:4');
    assert.equal(chooseCandidate(list.slice(0, 2)), 'h:3');
    assert.equal(chooseCandidate(list, 'h:2'), 'h:2');
    assert.equal(chooseCandidate(list, 'h:1'), null);
    assert.equal(chooseCandidate([{ addr: 'b', receiveLsn: 5, replayLsn: 5, inRecovery: true }, { addr: 'a', receiveLsn: 5, replayLsn: 5, inRecovery: true }]), 'a');
  });
  it('names slots and synchronous standbys', () => {
    assert.equal(replicaSlotName('s-1', 5443), 'pgring_s_1_5443');
    assert.equal(syncStandbyNames([]), '');
    assert.equal(syncStandbyNames(['a']), 'FIRST 1 ("a")');
    assert.equal(syncStandbyNames(['a', 'b']), 'ANY 1 ("a", "b")');
  });
});

describe('read routing policy', () => {
  it('parses startup options, SET values and hints', () => {
    assert.equal(startupPolicy([['options', '-c pgring.reads=replica']]), 'replica');
    assert.equal(startupPolicy([['options', '-c search_path=x --pgring.reads=any']]), 'any');
    assert.equal(startupPolicy([['application_name', 'x']]), null);
    assert.throws(() => startupPolicy([['options', '-c pgring.reads=nope']]), (e: { code?: string }) => e.code === '22023');
    assert.equal(parsePolicy(' Replica ', 'SET'), 'replica');
    const sel = { command: 'select', write: false } as unknown as Plan;
    assert.equal(planReadUse(sel), true);
    assert.equal(planReadUse({ ...sel, hint: { reads: 'replica' } } as Plan), 'replica');
    assert.equal(planReadUse({ ...sel, write: true } as Plan), false);
    assert.equal(planReadUse({ command: 'update', write: true } as unknown as Plan), false);
  });
  it('local servers made for replication get the settings failover and pg_rewind need', () => {
    const c = replicationConf({ replication: true, syncStandbyNames: 'FIRST 1 ("r")' }).join('\n');
    for (const k of ['wal_level = logical', 'full_page_writes = on', 'wal_log_hints = on', 'synchronous_commit = on', `synchronous_standby_names = 'FIRST 1 ("r")'`]) assert.ok(c.includes(k), k);
    assert.deepEqual(replicationConf({}), []);
  });
});

describe('topology: fencing by epoch and reads from replicas', () => {
  // Pools are created lazily and open no connection until a client acquires one.
  const cfg = parseConfig({ users: [{ name: 'postgres' }], replicaMaxLagBytes: 100, replicaMaxLagMs: 1000, shards: [{ name: 's1', backends: [{ port: 1001 }, { port: 1002, role: 'replica' }] }] });
  const cred = { user: 'postgres', database: 'postgres' };
  const beat = (t: Topology, port: number, role: 'primary' | 'replica', lsn: string, at: number, lagMs = 0) =>
    t.applyLocalBeat('s1', { host: '127.0.0.1', port, role, healthy: true, lsn, sampledAt: at, ...(role === 'replica' ? { lagMs } : {}) });

  it('a higher epoch moves writes to the recorded primary, ends the old pools, and 57P03 while none is recorded', () => {
    const t = new Topology(cfg.shards, cfg);
    const old = t.pool(0, cred);
    assert.equal(old.target.port, 1001);
    t.applyShardPrimary('s1', { epoch: 1, primary: null });
    assert.throws(() => t.pool(0, cred), (e: { code?: string; message: string }) => e.code === '57P03' && /"s1".*failover in progress \(epoch 1\)/.test(e.message));
    assert.equal(old.outstanding, 0);
    t.applyShardPrimary('s1', { epoch: 1, primary: '127.0.0.1:1002' });
    assert.equal(t.pool(0, cred).target.port, 1002);
    beat(t, 1001, 'primary', '0/10', 1);  // the old primary comes back, still says primary
    assert.equal(t.pool(0, cred).target.port, 1002);
    assert.equal(t.isFenced(0, t.backends[0]![0]!), true);
    t.applyShardPrimary('s1', { epoch: 0, primary: '127.0.0.1:1001' });  // stale epoch: ignored
    assert.equal(t.pool(0, cred).target.port, 1002);
    t.close();
  });

  it('replica reads: within the lag bound, after the session\'s last commit was sampled and replayed', () => {
    const t = new Topology(cfg.shards, cfg);
    beat(t, 1001, 'primary', '0/100', 10);
    beat(t, 1002, 'replica', '0/100', 11);
    assert.equal(t.pool(0, cred, { policy: 'replica', lastWriteAt: 0 }).target.port, 1002);
    assert.equal(t.pool(0, cred, { policy: 'replica', lastWriteAt: 20 }).target.port, 1001, 'no primary sample since the commit');
    beat(t, 1001, 'primary', '0/150', 30);
    assert.equal(t.pool(0, cred, { policy: 'replica', lastWriteAt: 20 }).target.port, 1001, 'replica has not replayed 0/150');
    beat(t, 1002, 'replica', '0/150', 31);
    assert.equal(t.pool(0, cred, { policy: 'replica', lastWriteAt: 20 }).target.port, 1002);
    beat(t, 1001, 'primary', '0/300', 40);   // 0x150 bytes behind > 100
    assert.equal(t.pool(0, cred, { policy: 'replica', lastWriteAt: 0 }).target.port, 1001);
    beat(t, 1002, 'replica', '0/300', 41, 5000); // caught up in bytes, but replay delay past 1 s
    assert.equal(t.pool(0, cred, { policy: 'replica', lastWriteAt: 0 }).target.port, 1001);
    beat(t, 1002, 'replica', '0/300', 42, 0);
    assert.equal(t.pool(0, cred, { policy: 'replica', lastWriteAt: 0 }).target.port, 1002);
    t.close();
  });
});
