// Where pgring puts the client's own pg_prepared_statements into a statement (pure: text in, text out).
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../../src/router/router';
import { viewTable, withPreparedView } from '../../src/frontend/prepared-view';
import type { ClientStatement } from '../../src/frontend/prepared';

before(async () => { await Router.init(); });

describe('withPreparedView', () => {
  const T = '(X)';
  it('replaces each reference, keeping aliases and giving the view name where there is none', () => {
    assert.equal(withPreparedView('SELECT * FROM pg_prepared_statements', T), 'SELECT * FROM (X) pg_prepared_statements');
    assert.equal(withPreparedView('select name from pg_catalog . "pg_prepared_statements" p', T), 'select name from (X) p');
    assert.equal(withPreparedView('SELECT a.name FROM PG_PREPARED_STATEMENTS AS a JOIN pg_prepared_statements b USING (name)', T), 'SELECT a.name FROM (X) AS a JOIN (X) b USING (name)');
    assert.equal(withPreparedView("SELECT 'é', count(*) FROM pg_prepared_statements", T), "SELECT 'é', count(*) FROM (X) pg_prepared_statements");
    assert.equal(withPreparedView('SELECT * FROM (SELECT name FROM pg_prepared_statements) s', T), 'SELECT * FROM (SELECT name FROM (X) pg_prepared_statements) s');
  });
  it('leaves what is not the catalog view alone', () => {
    assert.equal(withPreparedView('SELECT 1', T), null);
    assert.equal(withPreparedView('SELECT * FROM other.pg_prepared_statements', T), null);
    assert.equal(withPreparedView('WITH pg_prepared_statements AS (SELECT 1) SELECT * FROM pg_prepared_statements', T), null);
    assert.equal(withPreparedView('SELECT * FROM pg_catalog/**/.pg_prepared_statements', T), null, 'a form it cannot place: left as it is');
    assert.equal(withPreparedView('SELECT * FROM', T), null);
  });
});

describe('viewTable', () => {
  const cs = (clientName: string, sql: string, types: number[]) => ({ clientName, serverName: clientName ? 'pgring_1' : '', sql, types, preparedAt: 0 }) as unknown as ClientStatement;
  it('lists named statements only, with texts dollar-quoted whatever they hold', () => {
    assert.equal(viewTable([cs('', 'SELECT 1', [])], 150000), '(SELECT v.* FROM pg_catalog.pg_prepared_statement() v WHERE v.from_sql)');
    const t = viewTable([cs('a', "SELECT '$q$' || $1", [25])], 150000);
    assert.match(t, /\$qq\$SELECT '\$q\$' \|\| \$1\$qq\$::text/);
    assert.match(t, /'\{25\}'::oid\[\]::regtype\[\]/);
    assert.doesNotMatch(t, /result_types/);
    assert.match(viewTable([cs('a', 'SELECT 1', [])], 160002), /s\.result_types/);
  });
});
