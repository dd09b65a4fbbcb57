// SELECT pg_notify(...) held until the commit (src/frontend/held-notify.ts): which statements the
// planner marks, that a cached plan reads each statement's own constants, and the checks and
// answer PostgreSQL gives at the call.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../../src/router/router';
import { heldNotifyResult, heldNotifySql } from '../../src/frontend/held-notify';
import { parseDataRow, parseRowDescription } from '../../src/router/merge';
import type { NotifyArg } from '../../src/router/types';

let r: Router;
before(async () => { await Router.init(); r = new Router({ tables: [{ name: 't', column: 'id', type: 'integer' }] }); });

test('only a plain select of pg_notify() calls with constant or parameter arguments is held', () => {
  const calls = (sql: string) => r.plan(sql)[0]!.plan.notifyCalls;
  assert.deepEqual(calls("SELECT pg_notify($1, $2)")?.map((c) => c.args), [[{ param: 0 }, { param: 1 }]]);
  assert.deepEqual(calls("SELECT pg_catalog.pg_notify($1::text, NULL) AS x")?.map((c) => [c.name, c.args]), [['x', [{ param: 0 }, { text: null }]]]);
  for (const sql of ["SELECT pg_notify('a', 'b') FROM t", "SELECT pg_notify('a', 'b'), 1", "SELECT pg_notify('a', b) FROM (SELECT 'x' AS b) s",
    "SELECT pg_notify('a', 'b') WHERE false", "SELECT pg_notify('a', upper('b'))", "SELECT now()"]) {
    assert.equal(calls(sql), undefined, sql);
  }
});

test('a cached plan resolves each statement\'s own constants', () => {
  const value = (sql: string): string => {
    const st = r.plan(sql)[0]!;
    return heldNotifySql(st.plan.notifyCalls!, (a: NotifyArg) => ('slot' in a ? st.literals[a.slot] ?? null : 'text' in a ? a.text : null));
  };
  assert.equal(value("SELECT pg_notify('c1', 'p1')"), "SELECT pg_notify('c1', 'p1')");
  assert.equal(value("SELECT pg_notify('c2', 'it''s')"), "SELECT pg_notify('c2', 'it''s')");
  assert.equal(value("SELECT pg_notify('c3', E'back\\\\slash')"), "SELECT pg_notify('c3', E'back\\\\slash')");
});

test('checks and answer', () => {
  const c = [{ name: 'pg_notify', args: [{ param: 0 }, { param: 1 }] as [NotifyArg, NotifyArg] }];
  const sql = (ch: string | null, p: string | null): string => heldNotifySql(c, (a) => ('param' in a ? (a.param === 0 ? ch : p) : null));
  assert.equal(sql('ch', null), "SELECT pg_notify('ch', '')");
  assert.throws(() => sql(null, 'x'), /channel name cannot be empty/);
  assert.throws(() => sql('é'.repeat(32), 'x'), /channel name too long/);   // 64 bytes
  assert.equal(sql('é'.repeat(31) + 'a', 'x').length > 0, true);           // 63 bytes
  assert.throws(() => sql('ch', 'y'.repeat(8000)), /payload string too long/);
  const res = heldNotifyResult(c, [1]);
  assert.deepEqual(parseRowDescription(res.rowDescription).map((f) => [f.name, f.typeOid, f.format]), [['pg_notify', 2278, 1]]);
  assert.deepEqual(parseDataRow(res.dataRow).map((b) => b?.length), [0]);
});
