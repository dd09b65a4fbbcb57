// The cluster definition (pure parts): validation, file-vs-cluster comparison, the changes of
// `pgring table`, the router's unknown-table policy and CREATE TABLE registration, and the
// proxy number carried by cancel keys.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ClusterDefinition, definitionConflicts, DefinitionChangeError, lookupTable, tableKey, validateDefinition, withReference, withSharded, without,
  renamed, withColumnChanges,
} from '../../src/cluster/definition';
import { encodeSecret, proxyNumberOf, cancelPacket } from '../../src/cluster/cancel-peers';
import { Router } from '../../src/router/router';

const def: ClusterDefinition = {
  version: 3,
  sharded: [{ name: 'users', column: 'id', type: 'bigint', columns: ['id', 'name'] }],
  reference: ['cities'],
  unknownTables: 'reference',
};

before(async () => { await Router.init(); });

test('validateDefinition refuses malformed documents with the reason', () => {
  assert.deepEqual(validateDefinition(def), def);
  assert.throws(() => validateDefinition({ ...def, unknownTables: 'maybe' }), /unknownTables must be/);
  assert.throws(() => validateDefinition({ ...def, sharded: [{ name: 'x', column: 'id', type: 'float' }] }), /type must be one of/);
  assert.throws(() => validateDefinition({ ...def, reference: ['USERS'] }), /users|USERS named twice/);
});

test('table names fold as PostgreSQL identifiers', () => {
  assert.equal(tableKey('Users'), 'users');
  assert.equal(tableKey('public.Users'), 'users');
  assert.equal(tableKey('"Mixed"'), 'Mixed');
  assert.equal(tableKey('public."a.b"'), 'a.b');
});

test('definitionConflicts: sharded tables must match; online-registered reference tables are fine', () => {
  const file = { sharded: def.sharded, reference: [], unknownTables: 'reference' as const };
  assert.deepEqual(definitionConflicts(file, def, false), []);
  assert.deepEqual(definitionConflicts({ ...file, sharded: [{ name: 'users', column: 'id', type: 'bigint' }] }, def, false), [], 'a file without the column list agrees');
  const other = definitionConflicts({ ...file, sharded: [{ name: 'users', column: 'name', type: 'text' }, { name: 'orders', column: 'uid', type: 'bigint' }] }, def, false);
  assert.equal(other.length, 2);
  assert.match(other[0]!, /table users: the file shards it by name text; the cluster by id bigint/);
  assert.match(other[1]!, /file shards orders by uid bigint; the cluster does not shard it/);
  assert.match(definitionConflicts({ ...file, sharded: [] }, def, false)[0]!, /the cluster shards users by id bigint columns \(id, name\); the file does not/);
  assert.match(definitionConflicts({ ...file, reference: ['colors'] }, def, false)[0]!, /reference table colors; the cluster does not/);
  assert.match(definitionConflicts({ ...file, unknownTables: 'reject' }, def, true)[0]!, /unknownTables "reject"; the cluster "reference"/);
});

test('table changes: shard, reference, forget; the key of a sharded table never changes', () => {
  const s = withSharded(def, { name: 'cities', column: 'name', type: 'text' });
  assert.equal(lookupTable(s, 'cities')?.kind, 'sharded');
  assert.deepEqual(s.reference, []);
  assert.equal(withSharded(def, { name: 'Users', column: 'ID', type: 'bigint' }), def, 'same key: no change');
  assert.throws(() => withSharded(def, { name: 'users', column: 'name', type: 'text' }), DefinitionChangeError);
  assert.throws(() => withReference(def, 'users'), /sharded by id/);
  assert.deepEqual(withReference(def, 'colors').reference, ['cities', 'colors']);
  assert.deepEqual(without(def, 'cities').reference, []);
  assert.throws(() => without(def, 'nothere'), /not in the cluster definition/);
});

test('router: unknownTables reject refuses unnamed user tables, not catalogs, CTEs or the tables it names', () => {
  const created: string[] = [];
  const r = new Router({ tables: def.sharded, reference: def.reference, unknownTables: 'reject' }, { onCreateTable: (t) => created.push(t) });
  const why = (sql: string) => r.plan(sql)[0]!.plan.unsupported;
  assert.match(why('SELECT * FROM stray') ?? '', /table "stray", which the cluster definition does not name .*pgring table reference stray/);
  assert.match(why('INSERT INTO stray VALUES (1)') ?? '', /"stray"/);
  assert.equal(why('SELECT * FROM cities'), undefined);
  assert.equal(why('SELECT * FROM users WHERE id = 1'), undefined);
  assert.equal(why('SELECT * FROM pg_class'), undefined);
  assert.equal(why('SELECT * FROM information_schema.tables'), undefined);
  assert.equal(why('WITH x AS (SELECT 1) SELECT * FROM x'), undefined);
  assert.equal(why('CREATE TABLE fresh (x int)'), undefined);
  r.plan('CREATE TABLE fresh (x int)'); r.plan('CREATE TEMP TABLE tmp (x int)'); r.plan('CREATE TABLE users (id bigint)');
  r.planPrepared('CREATE TABLE public.other AS SELECT 1 AS x');
  assert.deepEqual(created, ['fresh', 'fresh', 'other'], 'permanent tables the definition does not know');
  const lenient = new Router({ tables: def.sharded });
  assert.equal(lenient.plan('SELECT * FROM stray')[0]!.plan.target, 'reference');
});

test('cancel keys carry the issuing proxy number', () => {
  for (const n of [1, 2, 77, 1023]) {
    const s = encodeSecret(n);
    assert.ok(s >= 0 && s <= 0x7fffffff);
    assert.equal(proxyNumberOf(s), n);
  }
  const p = cancelPacket(42, encodeSecret(5));
  assert.equal(p.length, 16);
  assert.equal(p.readInt32BE(4), 80877102);
  assert.equal(p.readInt32BE(8), 42);
});

test('a statement prepared with a live router re-plans once a newer definition replaced it', () => {
  const old = new Router({ tables: [] }, { live: true });
  const st = old.planPrepared('INSERT INTO items (id, v) VALUES ($1, $2)');
  assert.equal(st.plan.target, 'reference');
  const next = new Router({ tables: [{ name: 'items', column: 'id', type: 'integer' }] }, { live: true });
  old.successor = next;
  assert.equal(st.plan.target, 'sharded');
  assert.deepEqual(st.plan.keys, [{ kind: 'param', index: 0 }]);
  assert.equal(st.sql, 'INSERT INTO items (id, v) VALUES ($1, $2)');
  const plain = new Router({ tables: [] }).planPrepared('SELECT 1');
  assert.equal(Object.getPrototypeOf(plain), Object.prototype, 'without live: a plain routed statement');
});

test('a rename through a proxy: the definition follows the table, its schema and its shard key column', () => {
  const def = { sharded: [{ name: 'app.orders', column: 'id', type: 'bigint' as const, columns: ['id', 'note'] }, { name: 'items', column: 'k', type: 'text' as const }], reference: ['cities'], unknownTables: 'reference' as const };
  const t = renamed(def, 'app.orders', 'purchases');
  assert.equal(t.sharded[0]!.name, 'app.purchases');
  assert.equal(renamed(def, 'cities', 'Towns').reference[0], '"Towns"');
  const c = renamed(def, 'orders', 'order_id', 'ID');
  assert.deepEqual(c.sharded[0], { name: 'app.orders', column: 'order_id', type: 'bigint', columns: ['order_id', 'note'] });
  assert.deepEqual(renamed(def, 'other', 'x'), def);
});

test('ADD / DROP COLUMN through a proxy: a stated column list follows; tables without one are unchanged', () => {
  const def = { sharded: [{ name: 'sc', column: 'id', type: 'integer' as const, columns: ['a', 'id', 'v'] }, { name: 'lc', column: 'id', type: 'integer' as const }], reference: [], unknownTables: 'reference' as const };
  assert.deepEqual(withColumnChanges(def, 'sc', ['w'], ['A']).sharded[0]!.columns, ['id', 'v', 'w']);
  // learned from the catalog: the layout count moves (every proxy reads the columns again)
  assert.deepEqual(withColumnChanges(def, 'lc', ['w'], ['a']).sharded[1], { ...def.sharded[1]!, layout: 1 });
  assert.equal(withColumnChanges(withColumnChanges(def, 'lc', [], []), 'lc', [], []).sharded[1]!.layout, 2);
  assert.equal(validateDefinition({ version: 3, ...withColumnChanges(def, 'lc', [], []) }).sharded[1]!.layout, 1);
  assert.throws(() => validateDefinition({ version: 3, sharded: [{ name: 'x', column: 'id', type: 'bigint', layout: -1 }], reference: [], unknownTables: 'reference' }), /layout/);
});
