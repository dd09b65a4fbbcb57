// Staleness of client statements after DDL (src/frontend/prepared.ts, issue 20): which DDL
// makes which earlier statement fail with 0A000, from the router's real plans.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../../src/router/router';
import { ddlNames, identifiers, isStale, makeStatement, noteDdl } from '../../src/frontend/prepared';
import { renameExecute } from '../../src/frontend/sql-prepared';

let r: Router;
before(async () => { await Router.init(); r = new Router({ tables: [] }, { cacheSize: 100 }); });

const stmt = (name: string, sql: string) => makeStatement(name, sql, [], r.planPrepared(sql), Buffer.alloc(0), 'u\u0000db');
const ddl = (db: string, sql: string) => { const p = r.plan(sql)[0]!.plan; noteDdl(db, ddlNames(p.lockObjects, p.shapeObjects)); };

describe('statements prepared before DDL', () => {
  it('fail when they return rows and name an object of the DDL, on that database only', () => {
    const sel = stmt('a', 'select * from test');
    const cols = stmt('b', 'SELECT x FROM public."Test2"');
    const ins = stmt('c', 'insert into test values ($1)');
    const ret = stmt('d', 'insert into test values ($1) returning *');
    const other = stmt('e', 'select * from unrelated');
    ddl('otherdb', 'drop table test');
    assert.equal(isStale(sel, 'db'), false);
    ddl('db', 'alter table public.test add column b bool');
    assert.equal(isStale(sel, 'db'), true);
    assert.equal(isStale(ins, 'db'), false, 'no result columns: PostgreSQL does not fail it either');
    assert.equal(isStale(ret, 'db'), true);
    assert.equal(isStale(other, 'db'), false);
    assert.equal(isStale(cols, 'db'), false);
    ddl('db', 'create table "Test2" (x int)');
    assert.equal(isStale(cols, 'db'), true);
    const fresh = stmt('f', 'select * from test');
    assert.equal(isStale(fresh, 'db'), false, 'parsed after the DDL');
  });

  it('DDL whose objects are unknown fails every earlier statement with result columns', () => {
    const sel = stmt('g', 'select 1 from nothing_named');
    assert.equal(ddlNames(undefined), null);
    assert.equal(ddlNames(['stmt:DoStmt']), null);
    noteDdl('db', null);
    assert.equal(isStale(sel, 'db'), true);
  });

  it('objects a DDL only reads, and DDL that changes no result columns, leave statements valid', () => {
    const cat = stmt('h', 'SELECT 1 FROM pg_catalog.pg_class c WHERE c.relname = $1');
    const parent = stmt('i', 'select * from parent_t');
    const src = stmt('j', 'select * from src_t');
    ddl('db', 'CREATE TEMP TABLE foobar AS SELECT * FROM pg_class LIMIT 3');
    ddl('db', 'create table child_t (b int) inherits (parent_t)');
    ddl('db', 'select * into copy_t from src_t');
    ddl('db', 'create view v_t as select * from src_t');
    ddl('db', "comment on column parent_t.a is 'x'");
    ddl('db', 'create index on parent_t (a)');
    ddl('db', 'grant select on parent_t to public');
    assert.equal(isStale(cat, 'db'), false);
    assert.equal(isStale(parent, 'db'), false);
    assert.equal(isStale(src, 'db'), false);
    const usesOp = stmt('l', 'select 1 ?? 2 as x');
    ddl('db', 'drop operator s.?? (int, int)');
    assert.equal(isStale(cat, 'db'), false, 'DROP OPERATOR: only statements that use the symbol');
    assert.equal(isStale(usesOp, 'db'), true);
    const usesF = stmt('m', 'select my_f(1)');
    ddl('db', 'drop function my_f(int)');
    assert.equal(isStale(usesF, 'db'), true);
    assert.equal(isStale(parent, 'db'), false);
    const onCopy = stmt('k', 'select * from copy_t');
    ddl('db', 'create or replace view copy_t as select 1 as a');
    assert.equal(isStale(onCopy, 'db'), true, 'the object it creates or replaces counts');
  });

  it('identifiers are compared in lower case, as lock objects are named', () => {
    assert.deepEqual([...identifiers('SELECT "A""b", c FROM S.T')].sort(), ['a"b', 'c', 'from', 's', 'select', 't']);
    assert.deepEqual([...(ddlNames(['rel:public.test', 'idxname:i1'])!)].sort(), ['i1', 'test']);
  });
});

describe('SQL EXECUTE of a protocol-level statement', () => {
  it('renames the statement, keeping the arguments', () => {
    assert.equal(renameExecute("EXECUTE foobar('x', 1)", 'pgring_3'), "EXECUTE pgring_3('x', 1)");
    assert.equal(renameExecute('  execute "Foo"', 'pgring_3'), '  execute pgring_3');
    assert.equal(renameExecute('/* c */ EXECUTE foo', 'pgring_3'), null);
  });
});

describe('sameResultColumns (revalidate.ts): what PostgreSQL\'s re-analysis compares', () => {
  const f = (name: string, typeOid: number, typmod = -1, tableOid = 0, format = 0) => ({ name, tableOid, attnum: 1, typeOid, typlen: -1, typmod, format });
  it('names, types and type modifiers count; the source table and the format codes do not', async () => {
    const { sameResultColumns } = await import('../../src/frontend/revalidate');
    const { buildRowDescription } = await import('../../src/router/merge');
    const rd = (...fs: ReturnType<typeof f>[]) => buildRowDescription(fs);
    assert.ok(sameResultColumns(rd(f('x', 23)), rd(f('x', 23, -1, 16384, 1))));   // table re-created, binary portal
    assert.ok(!sameResultColumns(rd(f('x', 23)), rd(f('x', 25))));
    assert.ok(!sameResultColumns(rd(f('x', 1042, 12)), rd(f('x', 1042, 14))));
    assert.ok(!sameResultColumns(rd(f('x', 23)), rd(f('y', 23))));
    assert.ok(!sameResultColumns(rd(f('x', 23)), rd(f('x', 23), f('y', 23))));
    assert.ok(sameResultColumns(null, null));
    assert.ok(!sameResultColumns(null, rd(f('x', 23))));
  });
});
