// What Perl DBD::Pg's own test suite (run by scripts/drivers-libpq.sh) found different through
// pgring, checked against plain PostgreSQL with the same server.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { serialize } from 'pg-protocol';
import { client, RunningProxy } from '../helpers/proxy';
import { comparedDatabases } from '../helpers/compare';
import { WireClient, WireMsg } from '../helpers/wire';

let txPool: RunningProxy;
let sessionPool: RunningProxy;
let serverPort: number;
let directDb: string;
let proxiedDb: string;

comparedDatabases('fidd', [{ pool: { mode: 'transaction', maxSize: 4 } }, { pool: { mode: 'session', maxSize: 4 } }], (e) => {
  ({ serverPort, directDb, proxiedDb } = e);
  [txPool, sessionPool] = e.proxies as [RunningProxy, RunningProxy];
});

/** Each target: plain PostgreSQL (its own database), pgring in transaction and in session pooling. */
const targets = (): [string, number, string][] => [['direct', serverPort, directDb], ['transaction', txPool.port, proxiedDb], ['session', sessionPool.port, proxiedDb]];

describe('DBD::Pg through pgring, against plain PostgreSQL', () => {
  // DBD::Pg prepares with Parse ("dbdpg_p<pid>_<n>") and frees the statement with an SQL
  // DEALLOCATE (t/03smethod.t: every statement handle replaced in a transaction). PostgreSQL has
  // one namespace for both; pgring renamed the statement on the server, so the DEALLOCATE failed
  // with 26000 and aborted the client's transaction.
  it('SQL DEALLOCATE drops a statement prepared with Parse, also inside a transaction', async () => {
    const seen: WireMsg[][] = [];
    for (const [, port, db] of targets()) {
      const c = await WireClient.connect(port, db);
      try {
        c.send([serialize.query('BEGIN'), serialize.parse({ name: 'dbdpg_p1_1', text: 'SELECT $1::int + 1', types: [23] }), serialize.sync()]);
        const out = await c.until(2, 10000);
        c.send([serialize.query('DEALLOCATE dbdpg_p1_1')]);
        out.push(...await c.until(1, 10000));
        // the name is gone (Bind fails), and the transaction is still healthy
        c.send([serialize.bind({ statement: 'dbdpg_p1_1', values: ['1'] }), serialize.execute({}), serialize.sync()]);
        out.push(...await c.until(1, 10000));
        c.send([serialize.query('ROLLBACK')]);
        out.push(...await c.until(1, 10000));
        // DEALLOCATE ALL drops named Parse statements too
        c.send([serialize.parse({ name: 'dbdpg_p1_2', text: 'SELECT 2', types: [] }), serialize.sync(), serialize.query('DEALLOCATE ALL'),
          serialize.bind({ statement: 'dbdpg_p1_2', values: [] }), serialize.execute({}), serialize.sync()]);
        out.push(...await c.until(3, 10000));
        seen.push(out);
      } finally { c.close(); }
    }
    assert.deepEqual(seen[0], [
      { name: 'commandComplete', tag: 'BEGIN' }, { name: 'readyForQuery', status: 'T' },
      { name: 'parseComplete' }, { name: 'readyForQuery', status: 'T' },
      { name: 'commandComplete', tag: 'DEALLOCATE' }, { name: 'readyForQuery', status: 'T' },
      { name: 'error', code: '26000', severity: 'ERROR' }, { name: 'readyForQuery', status: 'E' },
      { name: 'commandComplete', tag: 'ROLLBACK' }, { name: 'readyForQuery', status: 'I' },
      { name: 'parseComplete' }, { name: 'readyForQuery', status: 'I' },
      { name: 'commandComplete', tag: 'DEALLOCATE ALL' }, { name: 'readyForQuery', status: 'I' },
      { name: 'error', code: '26000', severity: 'ERROR' }, { name: 'readyForQuery', status: 'I' },
    ]);
    assert.deepEqual(seen[1], seen[0], 'transaction pooling');
    assert.deepEqual(seen[2], seen[0], 'session pooling');
  });

  // t/12placeholders.t: in a transaction that a failed statement aborted, a string PostgreSQL
  // cannot parse still gets its syntax error (it parses before it checks the transaction
  // state); pgring answered 25P02 itself.
  it('in a failed transaction, a string that does not parse gets its syntax error, not 25P02', async () => {
    const seen: WireMsg[][] = [];
    for (const [, port, db] of targets()) {
      const c = await WireClient.connect(port, db);
      try {
        const out: WireMsg[] = [];
        // one at a time, as DBD::Pg sends them (pgring knows the transaction failed once it is answered)
        for (const sql of ['BEGIN', 'SELECT 1/0', 'SELECT $abc/$ 123 $abc/$', "SELECT 'unterminated", 'SELECT 1', 'ROLLBACK']) {
          c.send([serialize.query(sql)]);
          out.push(...await c.until(1, 10000));
        }
        seen.push(out);
      } finally { c.close(); }
    }
    assert.deepEqual(seen[0], [
      { name: 'commandComplete', tag: 'BEGIN' }, { name: 'readyForQuery', status: 'T' },
      { name: 'error', code: '22012', severity: 'ERROR' }, { name: 'readyForQuery', status: 'E' },
      { name: 'error', code: '42601', severity: 'ERROR' }, { name: 'readyForQuery', status: 'E' },
      { name: 'error', code: '42601', severity: 'ERROR' }, { name: 'readyForQuery', status: 'E' },
      { name: 'error', code: '25P02', severity: 'ERROR' }, { name: 'readyForQuery', status: 'E' },
      { name: 'commandComplete', tag: 'ROLLBACK' }, { name: 'readyForQuery', status: 'I' },
    ]);
    assert.deepEqual(seen[1], seen[0], 'transaction pooling');
    assert.deepEqual(seen[2], seen[0], 'session pooling');
  });

  // t/08async.t: pg_cancel() of an async query that is just finishing, then the next query.
  // PostgreSQL closes the cancel connection once the backend has been signalled, so a late
  // cancel can never hit the next query; pgring closed it before passing the cancel on, and it
  // cancelled the client's next statement.
  it('a CancelRequest is passed on before its connection closes: it never hits the next query', async () => {
    for (const [name, port, db] of targets()) {
      const c = client(port, db);
      await c.connect();
      try {
        const k = c as unknown as { processID: number; secretKey: number };
        const next: (string | null)[] = [];
        const firsts: (string | null)[] = [];
        for (let i = 0; i < 20; i++) {
          await c.query('BEGIN');
          // a query that ends about when the cancel reaches the server
          const first = c.query('SELECT pg_sleep(0.003)').then(() => null, (e: { code?: string }) => e.code ?? 'error');
          await cancelRequest(port, k.processID, k.secretKey);
          const f = await first;
          firsts.push(f);
          if (f) { await c.query('ROLLBACK'); await c.query('BEGIN'); }
          next.push(await c.query('SELECT pg_sleep(0.05)').then(() => null, (e: { code?: string }) => e.code ?? 'error'));
          await c.query('ROLLBACK');
        }
        assert.deepEqual(next, next.map(() => null), `${name}: first queries ${JSON.stringify(firsts)}`);
      } finally { await c.end(); }
    }
  });
});

/** A CancelRequest as libpq's PQcancel sends it: the packet, then waiting for the server to close. */
function cancelRequest(port: number, pid: number, secret: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      const pkt = Buffer.alloc(16);
      pkt.writeInt32BE(16, 0); pkt.writeInt32BE(80877102, 4); pkt.writeInt32BE(pid, 8); pkt.writeInt32BE(secret, 12);
      s.write(pkt);
    });
    s.on('error', reject);
    s.on('close', () => resolve());
  });
}
