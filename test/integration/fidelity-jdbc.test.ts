// The PostgreSQL JDBC driver (pgjdbc) through pgring, checked against plain PostgreSQL: the
// message sequences pgjdbc sends, replayed with the raw wire client, directly and through
// pgring (one shard, transaction pooling and session pooling, same server, another database);
// the answers must be identical. Found by running pgjdbc programs through pgring
// (scripts/drivers-jdbc.sh); the tests do not need Java.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'pg-protocol';
import { RunningProxy } from '../helpers/proxy';
import { comparedDatabases } from '../helpers/compare';
import { WireClient, WireMsg } from '../helpers/wire';

let txProxy: RunningProxy;
let sessionProxy: RunningProxy;
let serverPort: number;
let directDb: string;
let proxiedDb: string;

comparedDatabases('fidj', [{ pool: { maxSize: 4 } }, { pool: { maxSize: 4, mode: 'session' } }], (e) => {
  ({ serverPort, directDb, proxiedDb } = e);
  [txProxy, sessionProxy] = e.proxies as [RunningProxy, RunningProxy];
});

const { parse: P, bind: B, describe: D, execute: E, sync: S, close: C } = serialize;

/** Each step's messages sent once the previous step's answers (up to its Syncs) arrived, as
 *  pgjdbc does; directly and through both proxies. The answers must be the same. */
async function sameSteps(steps: [Buffer[], number][]): Promise<WireMsg[][]> {
  const all: WireMsg[][][] = [];
  for (const [port, db] of [[serverPort, directDb], [txProxy.port, proxiedDb], [sessionProxy.port, proxiedDb]] as const) {
    const c = await WireClient.connect(port, db);
    const answers: WireMsg[][] = [];
    try {
      for (const [i, [msgs, syncs]] of steps.entries()) {
        c.send(msgs);
        answers.push(await c.until(syncs, 10000).catch((e: Error) => { throw new Error(`port ${port === serverPort ? 'direct' : port === txProxy.port ? 'transaction' : 'session'}, step ${i}: ${e.message}`); }));
      }
    } finally { c.close(); }
    all.push(answers);
  }
  if (process.env.DUMP) console.log(JSON.stringify(all.map((a) => a.map((s) => s.map((m) => m.name + (m.tag ? ':' + m.tag : '') + (m.status ?? '')).join(' ')))));
  assert.deepEqual(all[1], all[0], 'transaction pooling');
  assert.deepEqual(all[2], all[0], 'session pooling');
  return all[0]!;
}

describe('pgjdbc message sequences through pgring (against plain PostgreSQL)', () => {
  it('setFetchSize in a transaction: Execute of a suspended named portal after a Sync fetches the next rows', async () => {
    // pgjdbc: BEGIN and the query with a named portal and a row limit in one pipeline, then
    // Execute(portal, limit) + Sync for each further batch, Close(portal) at the end.
    const got = await sameSteps([
      [[P({ text: 'BEGIN' }), B({}), E({}),
        P({ text: 'SELECT g FROM generate_series(1, 7) g' }), B({ portal: 'C_1' }), D({ type: 'P', name: 'C_1' }), E({ portal: 'C_1', rows: 3 }), S()], 1],
      [[E({ portal: 'C_1', rows: 3 }), S()], 1],
      [[E({ portal: 'C_1', rows: 3 }), S()], 1],
      [[C({ type: 'P', name: 'C_1' }), S()], 1],
      [[P({ text: 'COMMIT' }), B({}), E({}), S()], 1],
    ]);
    assert.deepEqual(got.flat().filter((m) => m.name === 'dataRow').map((m) => m.values![0]), ['1', '2', '3', '4', '5', '6', '7']);
  });

  it('a statement prepared again after DDL changed its result type gets a new plan (pgjdbc heals 0A000 by re-preparing)', async () => {
    // PostgreSQL fails the Bind of the old statement with "cached plan must not change result
    // type"; pgjdbc closes it and parses the same text under a new name. pgring shares server
    // statements by text and answered that Parse from the stale copy, so the retry failed too.
    const q = 'SELECT * FROM jdbc_ddl';
    const got = await sameSteps([
      [[serialize.query('SET client_min_messages = warning; DROP TABLE IF EXISTS jdbc_ddl; CREATE TABLE jdbc_ddl (a int); INSERT INTO jdbc_ddl VALUES (1)')], 1],
      [[P({ name: 'S_1', text: q }), B({ statement: 'S_1' }), D({ type: 'P' }), E({}), S()], 1],
      [[serialize.query('ALTER TABLE jdbc_ddl ADD COLUMN b int DEFAULT 5')], 1],
      [[B({ statement: 'S_1' }), D({ type: 'P' }), E({}), S()], 1],
      [[C({ type: 'S', name: 'S_1' }), P({ name: 'S_2', text: q }), B({ statement: 'S_2' }), D({ type: 'P' }), E({}), S()], 1],
      [[B({ statement: 'S_2' }), D({ type: 'P' }), E({}), S()], 1],
    ]);
    assert.equal(got[3]!.find((m) => m.name === 'error')?.code, '0A000');
    assert.deepEqual(got[4]!.filter((m) => m.name === 'dataRow').map((m) => m.values), [['1', '5']]);
  });

  it('after one client saw 0A000 and re-prepared, another client\'s older statement of the same text fails its Bind too, as on PostgreSQL', async () => {
    // Through pgring both clients' statements are one server statement; once re-prepared for
    // the first client, the second client's Bind ran the new plan and its rows no longer
    // matched the row description it had cached (pgjdbc printed one column of two).
    const q = 'SELECT * FROM jdbc_ddl2';
    const all: WireMsg[][][] = [];
    for (const [port, db] of [[serverPort, directDb], [txProxy.port, proxiedDb], [sessionProxy.port, proxiedDb]] as const) {
      const a = await WireClient.connect(port, db);
      const b = await WireClient.connect(port, db);
      const out: WireMsg[][] = [];
      const step = async (c: WireClient, msgs: Buffer[]): Promise<void> => { c.send(msgs); out.push(await c.until(1, 10000)); };
      try {
        await step(a, [serialize.query('SET client_min_messages = warning; DROP TABLE IF EXISTS jdbc_ddl2; CREATE TABLE jdbc_ddl2 (a int); INSERT INTO jdbc_ddl2 VALUES (1)')]);
        await step(a, [P({ name: 'S_1', text: q }), B({ statement: 'S_1' }), D({ type: 'P' }), E({}), S()]);
        await step(b, [P({ name: 'S_1', text: q }), B({ statement: 'S_1' }), D({ type: 'P' }), E({}), S()]);
        await step(a, [serialize.query('ALTER TABLE jdbc_ddl2 ADD COLUMN b int DEFAULT 5')]);
        await step(a, [B({ statement: 'S_1' }), E({}), S()]);
        await step(a, [C({ type: 'S', name: 'S_1' }), P({ name: 'S_2', text: q }), B({ statement: 'S_2' }), D({ type: 'P' }), E({}), S()]);
        await step(b, [B({ statement: 'S_1' }), E({}), S()]);
        await step(b, [C({ type: 'S', name: 'S_1' }), P({ name: 'S_2', text: q }), B({ statement: 'S_2' }), D({ type: 'P' }), E({}), S()]);
      } finally { a.close(); b.close(); }
      all.push(out);
    }
    assert.deepEqual(all[1], all[0], 'transaction pooling');
    assert.deepEqual(all[2], all[0], 'session pooling');
    assert.equal(all[0]![6]!.find((m) => m.name === 'error')?.code, '0A000');
    assert.deepEqual(all[0]![7]!.filter((m) => m.name === 'dataRow').map((m) => m.values), [['1', '5']]);
  });
});
