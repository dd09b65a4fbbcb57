// The read filter of a migration (pure): a read spanning shards gets each referenced sharded
// table shadowed by a CTE of the rows the shard owns; other statements are left alone.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { ownedRowsSql } from '../../src/reshard/read-filter';

const T = [{ name: 'pgbench_accounts', column: 'aid', type: 'integer' as const }, { name: 'pgbench_branches', column: 'bid', type: 'integer' as const }];
const pred = (t: { column: string }) => `P(${t.column})`;
const cte = (t: string, c: string) => `"${t}" AS NOT MATERIALIZED (SELECT * FROM "public"."${t}" WHERE P(${c}))`;

describe('resharding read filter', () => {
  it('shadows each referenced sharded table, unqualified or public.-qualified', () => {
    assert.equal(ownedRowsSql('select count(*) from pgbench_branches', T, pred), `WITH ${cte('pgbench_branches', 'bid')} select count(*) from pgbench_branches`);
    assert.equal(ownedRowsSql('SELECT a.aid FROM public.pgbench_accounts a JOIN "pgbench_branches" b ON true', T, pred),
      `WITH ${cte('pgbench_accounts', 'aid')}, ${cte('pgbench_branches', 'bid')} SELECT a.aid FROM pgbench_accounts a JOIN "pgbench_branches" b ON true`);
  });

  it('joins the statement\'s own WITH list (also RECURSIVE) after leading comments', () => {
    assert.equal(ownedRowsSql(' -- c\n/* d */ WITH x AS (SELECT 1) SELECT * FROM pgbench_accounts, x', T, pred),
      ` -- c\n/* d */ WITH ${cte('pgbench_accounts', 'aid')}, x AS (SELECT 1) SELECT * FROM pgbench_accounts, x`);
    assert.equal(ownedRowsSql('with recursive r(n) as (select 1) select * from r, pgbench_accounts', T, pred),
      `with recursive ${cte('pgbench_accounts', 'aid')}, r(n) as (select 1) select * from r, pgbench_accounts`);
  });

  it('leaves statements without sharded tables, and locking reads, unchanged (null)', () => {
    assert.equal(ownedRowsSql('SELECT * FROM pgbench_tellers', T, pred), null);
    assert.equal(ownedRowsSql('SELECT pgbench_accounts_x FROM y', T, pred), null);
    assert.equal(ownedRowsSql('SELECT * FROM pgbench_accounts FOR UPDATE', T, pred), null);
  });
});
