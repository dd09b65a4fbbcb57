// What the Go driver pgx (v4, with pgconn) relies on, checked against plain PostgreSQL: the same
// raw message sequences go to PostgreSQL and through pgring (one shard, transaction pooling, one
// server connection so that it really changes hands) and the answers must be the same. Found by
// running pgx's own test suite through pgring (scripts/drivers-pgx.sh).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'pg-protocol';
import { RunningProxy } from '../helpers/proxy';
import { comparedDatabases } from '../helpers/compare';
import { WireClient, WireMsg } from '../helpers/wire';

let proxy: RunningProxy;
let serverPort: number;
let directDb: string;
let proxiedDb: string;

const env = comparedDatabases('fidpgx', [{ pool: { maxSize: 1 } }], (e) => { ({ serverPort, directDb, proxiedDb } = e); proxy = e.proxies[0]!; });

const { parse: P, bind: B, describe: D, execute: E, sync: S, query: Q } = serialize;

/** Steps of [client, messages, ReadyForQuery count] run by `clients` connections, directly and
 *  through pgring; the answers of every step must be the same. */
async function sameAnswers(clients: number, steps: [number, Buffer[], number][]): Promise<WireMsg[][]> {
  const runs: WireMsg[][][] = [];
  for (const [port, db] of [[serverPort, directDb], [proxy.port, proxiedDb]] as const) {
    const cs: WireClient[] = [];
    try {
      for (let i = 0; i < clients; i++) cs.push(await WireClient.connect(port, db));
      const answers: WireMsg[][] = [];
      for (const [i, msgs, rfq] of steps) {
        cs[i]!.send(msgs);
        answers.push(await cs[i]!.until(rfq, 10000));
      }
      runs.push(answers);
    } finally { for (const c of cs) c.close(); }
  }
  assert.deepEqual(runs[1], runs[0]);
  return runs[0]!;
}

describe('pgx through transaction pooling (against plain PostgreSQL)', () => {
  it('SQL DEALLOCATE drops a protocol-level prepared statement (pgx Conn.Deallocate, statement cache)', async () => {
    const got = await sameAnswers(1, [
      [0, [P({ name: 'test', text: 'SELECT $1::int' }), S()], 1],
      [0, [Q('deallocate "test"')], 1],
      // the name is free again, and Bind of the dropped statement fails
      [0, [B({ statement: 'test', values: ['1'] }), E({}), S()], 1],
      [0, [P({ name: 'test', text: 'SELECT $1::int + 1' }), S()], 1],
      [0, [B({ statement: 'test', values: ['1'] }), E({}), S()], 1],
      // DEALLOCATE ALL drops it too; the unnamed statement goes with any simple Query
      [0, [P({ text: 'SELECT 7' }), S(), Q('DEALLOCATE ALL')], 2],
      [0, [B({ statement: 'test', values: ['1'] }), E({}), S(), B({}), E({}), S()], 2],
      [0, [Q('deallocate nosuch')], 1],
    ]);
    assert.equal(got[1]![0]!.tag, 'DEALLOCATE');
    assert.equal(got[2]![0]!.code, '26000');
    assert.deepEqual(got[4]!.find((m) => m.name === 'dataRow')?.values, ['2']);
    assert.deepEqual(got[6]!.filter((m) => m.name === 'error').map((m) => m.code), ['26000', '26000']);
    assert.equal(got[7]![0]!.code, '26000');
  });

  it('a Parse after ALTER TABLE plans the new table, though another client prepared the same text before', async () => {
    // pgring shares one server-side statement per text; PostgreSQL would plan the second
    // client's Parse afresh, never answer "cached plan must not change result type" (0A000).
    const got = await sameAnswers(2, [
      [0, [Q('DROP TABLE IF EXISTS drop_cols; CREATE TABLE drop_cols (id int, f1 int, f2 int); INSERT INTO drop_cols VALUES (1, 2, 3)')], 1],
      [0, [P({ name: 'a', text: 'SELECT * FROM drop_cols WHERE id = $1' }), D({ type: 'S', name: 'a' }), S()], 1],
      [0, [B({ statement: 'a', values: ['1'] }), E({}), S()], 1],
      [1, [Q('ALTER TABLE drop_cols DROP COLUMN f1')], 1],
      [1, [P({ name: 'b', text: 'SELECT * FROM drop_cols WHERE id = $1' }), D({ type: 'S', name: 'b' }), S()], 1],
      [1, [B({ statement: 'b', values: ['1'] }), E({}), S()], 1],
    ]);
    assert.deepEqual(got[5]!.find((m) => m.name === 'dataRow')?.values, ['1', '3']);
  });
});
