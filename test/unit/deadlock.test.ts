// Distributed deadlock detection (graph, cycles, victim), lock-wait limits and lock scope: pure.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chooseVictim, findCycles, ProxyWaits, waitGraph, WaitingTxn } from '../../src/txn/deadlock';
import { parseDurationMs, valueInOptions, valueOfSetSql, waitLimit, waitLimitError } from '../../src/txn/wait-limit';
import { lockObjects } from '../../src/router/lock-scope';
// eslint-disable-next-line @typescript-eslint/no-var-requires
const libpg: { loadModule(): Promise<void>; parseSync(sql: string): { stmts: { stmt: Record<string, unknown> }[] } } = require('libpg-query');

const txn = (id: string, proxy: string, started: number, holds: number[], waitsBucket: number | null, backends: WaitingTxn['backends'] = [], blockedBy: WaitingTxn['blockedBy'] = []): WaitingTxn =>
  ({ id, proxy, started, holds, waitsBucket, backends, blockedBy });

describe('wait-for graph', () => {
  it('finds a two-proxy bucket cycle and picks the younger waiter on every proxy', () => {
    const a: ProxyWaits = { proxy: 'A', at: 0, txns: [txn('A/1', 'A', 100, [1], 2)] };
    const b: ProxyWaits = { proxy: 'B', at: 0, txns: [txn('B/1', 'B', 200, [2], 1)] };
    const cycles = findCycles(waitGraph([a, b]));
    assert.equal(cycles.length, 1);
    assert.deepEqual([...cycles[0]!].sort(), ['A/1', 'B/1']);
    const byId = new Map([...a.txns, ...b.txns].map((t) => [t.id, t]));
    assert.equal(chooseVictim(cycles[0]!, byId)!.id, 'B/1');
    // the same answer whichever proxy's view comes first
    assert.equal(chooseVictim(findCycles(waitGraph([b, a]))[0]!, byId)!.id, 'B/1');
  });
  it('a row-lock edge closes a cycle; the ZooKeeper waiter is the victim even when older', () => {
    const t1 = txn('A/1', 'A', 300, [1], null, [{ shard: 's2', pid: 11 }], [{ shard: 's2', pid: 22 }]);
    const t2 = txn('B/1', 'B', 100, [], 1, [{ shard: 's2', pid: 22 }]);
    const g = waitGraph([{ proxy: 'A', at: 0, txns: [t1] }, { proxy: 'B', at: 0, txns: [t2] }]);
    const cycles = findCycles(g);
    assert.equal(cycles.length, 1);
    assert.equal(chooseVictim(cycles[0]!, new Map([[t1.id, t1], [t2.id, t2]]))!.id, 'B/1');
  });
  it('no cycle: a chain of waits, and a wait for an idle held bucket', () => {
    const g = waitGraph([{ proxy: 'A', at: 0, txns: [txn('a', 'A', 1, [1], 2), txn('b', 'A', 2, [2], 3), txn('c', 'A', 3, [], 9)] }]);
    assert.deepEqual(findCycles(g), []);
  });
  it('three transactions in a ring', () => {
    const g = waitGraph([{ proxy: 'A', at: 0, txns: [txn('a', 'A', 1, [1], 2), txn('b', 'A', 2, [2], 3), txn('c', 'A', 3, [3], 1)] }]);
    const c = findCycles(g);
    assert.equal(c.length, 1);
    assert.equal(c[0]!.length, 3);
  });
});

describe('lock wait limits', () => {
  it('reads PostgreSQL time settings', () => {
    assert.equal(parseDurationMs("'100ms'"), 100);
    assert.equal(parseDurationMs('2s'), 2000);
    assert.equal(parseDurationMs('250'), 250);
    assert.equal(parseDurationMs("'1min'"), 60000);
    assert.equal(parseDurationMs('0'), 0);
    assert.equal(parseDurationMs('DEFAULT'), null);
    assert.equal(valueOfSetSql("SET lock_timeout = '100ms'"), "'100ms'");
    assert.equal(valueOfSetSql('set statement_timeout to 5000;'), '5000');
    assert.equal(valueInOptions('-c lock_timeout=50 -c foo=bar', 'lock_timeout'), '50');
    assert.equal(valueInOptions('--statement-timeout=7s', 'statement_timeout'), '7s');
  });
  it('the smallest enabled limit wins and is answered with its SQLSTATE', () => {
    assert.deepEqual(waitLimit(100, 5000, 600000), { ms: 100, kind: 'lock_timeout' });
    assert.deepEqual(waitLimit(0, 300, 600000), { ms: 300, kind: 'statement_timeout' });
    assert.deepEqual(waitLimit(null, null, 600000), { ms: 600000, kind: 'locks.timeoutMs' });
    assert.equal(waitLimit(null, 0, 0), null);
    assert.equal(waitLimitError({ ms: 100, kind: 'lock_timeout' }, 7).code, '55P03');
    assert.equal(waitLimitError({ ms: 100, kind: 'statement_timeout' }, 7).code, '57014');
  });
});

describe('lock scope of key-less writes', () => {
  before(() => libpg.loadModule());
  const objs = (sql: string) => { const s = libpg.parseSync(sql).stmts[0]!.stmt; const tag = Object.keys(s)[0]!; return lockObjects(tag, s); };
  it('DDL locks the objects it names, DML the table it writes, temporary objects nothing', () => {
    assert.deepEqual(objs('CREATE TABLE a (x int)'), ['rel:a']);
    assert.notDeepEqual(objs('CREATE TABLE a (x int)'), objs('CREATE TABLE b (x int)'));
    assert.deepEqual(objs('ALTER TABLE public.a ADD COLUMN y int'), ['rel:public.a']);
    assert.deepEqual(objs('DROP TABLE a, b'), ['obj:a', 'obj:b']);
    assert.deepEqual(objs('CREATE TEMP TABLE t (x int)'), ['temp:t']);
    assert.deepEqual(objs('INSERT INTO big SELECT * FROM other'), ['rel:big']);
    assert.deepEqual(objs('DELETE FROM pg_temp.t'), ['temp:t']);
    assert.deepEqual(objs('CREATE DATABASE d1'), ['dbname:d1']);
    assert.deepEqual(objs("DO $$ BEGIN END $$"), ['stmt:DoStmt']);
  });
});
