// Behaviours found by running asyncpg's test suite (scripts/drivers-asyncpg.sh) through
// pgring: the same wire messages go to plain PostgreSQL and through pgring (one shard,
// transaction pooling, same server, another database) and the answers must be the same.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { serialize } from 'pg-protocol';
import { psqlAt } from '../helpers/env';
import { baseConfig, RunningProxy, startProxy } from '../helpers/proxy';
import { comparedDatabases } from '../helpers/compare';
import { WireClient, WireMsg } from '../helpers/wire';

let proxy: RunningProxy;
let serverPort: number;
let directDb: string;
let proxiedDb: string;

const env = comparedDatabases('fida', [{ pool: { maxSize: 4 } }], (e) => { ({ serverPort, directDb, proxiedDb } = e); proxy = e.proxies[0]!; });

const { parse: P, bind: B, describe: D, execute: E, close: C, sync: S } = serialize;

/** Each step (messages, number of ReadyForQuery to wait for) to plain PostgreSQL and through
 *  pgring on one connection each; the answers of every step must be the same. */
async function sameSteps(steps: [() => Buffer[], number][]): Promise<WireMsg[][]> {
  const runs: WireMsg[][][] = [];
  for (const [port, db] of [[serverPort, directDb], [proxy.port, proxiedDb]] as const) {
    const c = await WireClient.connect(port, db);
    const answers: WireMsg[][] = [];
    try {
      for (const [msgs, rfqs] of steps) {
        c.send(msgs());
        answers.push(await c.until(rfqs, 10000));
      }
    } finally { c.close(); }
    runs.push(answers);
  }
  assert.deepEqual(runs[1], runs[0]);
  return runs[0]!;
}

describe('asyncpg through pgring, against plain PostgreSQL', () => {
  it('a named portal bound before a Sync runs (Execute, Describe, Close) in a later unit of the transaction', async () => {
    // asyncpg's cursors: Bind + Sync, then Execute(portal, n) + Sync; pgring forwarded the
    // Execute but not the Sync after it, so the answer never came.
    const got = await sameSteps([
      [() => [P({ name: 'one', text: 'SELECT 1000' }), D({ type: 'S', name: 'one' }), S()], 1],
      [() => [serialize.query('BEGIN')], 1],
      [() => [B({ portal: 'cur', statement: 'one' }), S()], 1],
      [() => [D({ type: 'P', name: 'cur' }), S()], 1],
      [() => [E({ portal: 'cur', rows: 1 }), S()], 1],
      [() => [C({ type: 'P', name: 'cur' }), S()], 1],
      [() => [serialize.query('COMMIT')], 1],
    ]);
    assert.deepEqual(got[4]!.filter((m) => m.name === 'dataRow').map((m) => m.values), [['1000']]);
  });

  it('a statement parsed after a change of its result type is analysed then, not served from an older copy', async () => {
    // asyncpg re-prepares a statement after "cached plan must not change result type"; pgring
    // answered the new Parse from the server's copy of the same text, which failed again.
    const got = await sameSteps([
      [() => [serialize.query('DROP TABLE IF EXISTS tab1; CREATE TABLE tab1 (a int, b int); INSERT INTO tab1 VALUES (1, 2)')], 1],
      [() => [P({ name: 's1', text: 'SELECT * FROM tab1' }), D({ type: 'S', name: 's1' }), B({ statement: 's1' }), E({}), S()], 1],
      [() => [serialize.query('ALTER TABLE tab1 ALTER COLUMN b SET DATA TYPE text')], 1],
      [() => [B({ statement: 's1' }), E({}), S()], 1],
      [() => [C({ type: 'S', name: 's1' }), P({ name: 's2', text: 'SELECT * FROM tab1' }), D({ type: 'S', name: 's2' }), S()], 1],
      [() => [B({ statement: 's2' }), E({}), S()], 1],
    ]);
    assert.equal(got[3]!.find((m) => m.name === 'error')?.code, '0A000');
    assert.deepEqual(got[4]!.find((m) => m.name === 'rowDescription')?.types, [23, 25]);
    assert.deepEqual(got[5]!.filter((m) => m.name === 'dataRow').map((m) => m.values), [['1', '2']]);
  });

  it('ROLLBACK / COMMIT before Sync end the implicit transaction of the messages since the last Sync', async () => {
    // asyncpg's executemany() rolls back a failed batch this way; pgring answered the ROLLBACK
    // itself and the Sync committed the rows.
    const got = await sameSteps([
      [() => [serialize.query('DROP TABLE IF EXISTS exmany; CREATE TABLE exmany (a int)')], 1],
      [() => [P({ name: 'ins', text: 'INSERT INTO exmany VALUES ($1)', types: [23] }),
        B({ statement: 'ins', values: ['1'] }), E({}), B({ statement: 'ins', values: ['2'] }), E({}),
        P({ text: 'ROLLBACK' }), B({}), E({}), S()], 1],
      [() => [B({ statement: 'ins', values: ['3'] }), E({}), P({ text: 'COMMIT' }), B({}), E({}),
        P({ text: 'SELECT 1/0' }), B({}), E({}), S()], 1],
      [() => [serialize.query('SELECT a FROM exmany ORDER BY a')], 1],
    ]);
    assert.deepEqual(got[1]!.filter((m) => m.name === 'notice').map((m) => m.code), ['25P01']);
    assert.deepEqual(got[3]!.filter((m) => m.name === 'dataRow').map((m) => m.values), [['3']]);
  });

  it('a CancelRequest connection is closed only after the server got the cancel, as PostgreSQL closes it', async () => {
    // asyncpg waits for that close before its next statement; pgring closed it at once, so a
    // late cancel could hit the next statement. Server connections go through a relay that
    // holds new connections (the cancel's) for 500 ms.
    let hold = false;
    const relay = net.createServer((c) => {
      const go = (): void => { const s = net.connect({ host: '127.0.0.1', port: serverPort }); c.pipe(s).pipe(c); s.on('error', () => c.destroy()); c.on('error', () => s.destroy()); };
      if (hold) setTimeout(go, 500); else go();
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const raw = await baseConfig(env.cluster, 1);
    raw.shards = [{ name: 's1', backends: [{ host: '127.0.0.1', port: (relay.address() as net.AddressInfo).port }] }];
    const slow = await startProxy(raw);
    let c: WireClient | null = null;
    try {
      c = await WireClient.connect(slow.port, proxiedDb);
      const key = c.backendKey!;
      c.send([serialize.query('SELECT pg_sleep(30)')]);
      await new Promise((r) => setTimeout(r, 300));
      hold = true;
      const t0 = Date.now();
      const s = net.connect({ host: '127.0.0.1', port: slow.port });
      s.on('error', () => undefined);
      await new Promise<void>((r) => s.once('connect', r));
      const pkt = Buffer.alloc(16);
      pkt.writeInt32BE(16, 0); pkt.writeInt32BE(80877102, 4); pkt.writeInt32BE(key.pid, 8); pkt.writeInt32BE(key.secret, 12);
      s.write(pkt);
      await new Promise<void>((r) => s.once('close', r));
      assert.ok(Date.now() - t0 >= 450, `closed after ${Date.now() - t0} ms, before the server got the cancel`);
      const got = await c.until(1, 10000);
      assert.equal(got.find((m) => m.name === 'error')?.code, '57014');
    } finally {
      c?.close();
      psqlAt(serverPort, `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = '${proxiedDb}' AND query = 'SELECT pg_sleep(30)'`);
      await slow.stop(); relay.close();
    }
  });

  it('a notification names the notifying client by the pid of its BackendKeyData', async () => {
    // asyncpg's listeners compare it with get_server_pid() of the notifying connection.
    for (const [port, db] of [[serverPort, directDb], [proxy.port, proxiedDb]] as const) {
      const listener = await WireClient.connect(port, db);
      const notifier = await WireClient.connect(port, db);
      try {
        listener.send([serialize.query('LISTEN ipc')]);
        await listener.until(1, 10000);
        notifier.send([serialize.query("NOTIFY ipc, 'hello'")]);
        await notifier.until(1, 10000);
        listener.send([serialize.query('SELECT 1')]); // the notification arrives before its answer
        const got = await listener.until(1, 10000);
        assert.deepEqual(got.filter((m) => m.name === 'notification').map((m) => m.pid), [notifier.backendKey!.pid], `port ${port}`);
        listener.send([serialize.query('UNLISTEN *')]);
        await listener.until(1, 10000);
      } finally { listener.close(); notifier.close(); }
    }
  });
});
