// Clients whose client_encoding is not UTF8 (psql on Windows sends WIN1252) through a 3-shard
// pgring. PostgreSQL converts their text to UTF8 before it hashes a shard key; pgring read their
// bytes as UTF8, so 'café' from a LATIN1 client went to another shard than 'café' from a UTF8
// client (3 of 5 such keys were not found by key afterwards), and text pgring rewrote (a
// multi-row INSERT split over shards) was re-encoded as UTF8 for a server expecting LATIN1.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { WireClient } from '../helpers/wire';
import { ClusterInfo } from '../../src/local/cluster';

let cluster: ClusterInfo;
let ports: number[];
let db: string;
let proxy: RunningProxy;
const KEYS = ['café', 'über', 'niño', 'søren', 'år', 'crème brûlée', 'façade'];

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 3).map((p) => p.port);
  db = uniqueName('enc');
  createDatabase(ports, db);
  for (const p of ports) {
    const c = new pg.Client({ host: '127.0.0.1', port: p, user: 'postgres', database: db });
    await c.connect();
    await c.query('CREATE TABLE tk (k text PRIMARY KEY, v text)');
    await c.end();
  }
  proxy = await startProxy(await baseConfig(cluster, 3, { sharding: { tables: [{ name: 'tk', column: 'k', type: 'text', columns: ['k', 'v'] }] } }));
});

after(async () => {
  await proxy?.stop();
  dropDatabase(ports, db);
});

/** A simple Query in an encoding other than UTF8 (the bytes a LATIN1 / WIN1252 client sends). */
function rawQuery(sql: string, enc: BufferEncoding | ((s: string) => Buffer)): Buffer {
  const body = typeof enc === 'function' ? enc(sql) : Buffer.from(sql, enc);
  const m = Buffer.alloc(6 + body.length);
  m[0] = 0x51; m.writeInt32BE(5 + body.length, 1); body.copy(m, 5); m[m.length - 1] = 0;
  return m;
}
const win1252 = (s: string): Buffer => Buffer.from([...s].map((ch) => (ch === '€' ? 0x80 : ch.charCodeAt(0))));

async function reset(): Promise<void> {
  for (const p of ports) {
    const c = new pg.Client({ host: '127.0.0.1', port: p, user: 'postgres', database: db });
    await c.connect();
    await c.query('TRUNCATE tk');
    await c.end();
  }
}
/** Each key found by key from a UTF8 client, and on the shard pgring's hash of its UTF8 text names. */
async function checkPlaced(keys: string[], values?: Map<string, string>): Promise<void> {
  const c = client(proxy.port, db);
  await c.connect();
  try {
    for (const k of keys) {
      const r = await c.query('SELECT v FROM tk WHERE k = $1', [k]);
      assert.equal(r.rowCount, 1, `key ${k} not found by key`);
      if (values) assert.equal(r.rows[0].v, values.get(k), `value of ${k}`);
      const shard = proxy.proxy.ctx.shards.shardForKey('text', k);
      const d = new pg.Client({ host: '127.0.0.1', port: ports[shard]!, user: 'postgres', database: db });
      await d.connect();
      try { assert.equal((await d.query('SELECT count(*)::int AS n FROM tk WHERE k = $1', [k])).rows[0].n, 1, `${k} not on shard ${shard + 1}`); } finally { await d.end(); }
    }
  } finally { await c.end(); }
}

describe('client encodings other than UTF8 over 3 shards', () => {
  it('LATIN1 from the startup packet: simple INSERTs, a split multi-row INSERT and COPY place keys as a UTF8 client finds them', async () => {
    await reset();
    const w = await WireClient.connect(proxy.port, db, 'postgres', { client_encoding: 'LATIN1' });
    try {
      w.send([rawQuery(`INSERT INTO tk VALUES ('${KEYS[0]}', 'un café'), ('${KEYS[1]}', 'größer')`, 'latin1')]);
      w.send([rawQuery(`INSERT INTO tk VALUES ('${KEYS[2]}', 'año')`, 'latin1')]);
      w.send([rawQuery('COPY tk FROM STDIN', 'latin1'), serialize.copyData(Buffer.from(`${KEYS[3]}\tø\n${KEYS[4]}\tå\n`, 'latin1')), serialize.copyDone()]);
      const got = await w.until(3, 20000);
      assert.deepEqual(got.filter((m) => m.name === 'error'), []);
      // an extended-protocol statement with the key in its text (pgring prepares it itself)
      w.send([serialize.parse({ name: 's1', text: '' }), serialize.sync()]);
      await w.until(1, 10000);
    } finally { w.close(); }
    await checkPlaced(KEYS.slice(0, 5), new Map([[KEYS[0]!, 'un café'], [KEYS[1]!, 'größer'], [KEYS[2]!, 'año'], [KEYS[3]!, 'ø'], [KEYS[4]!, 'å']]));
  });

  it('WIN1252 set with SET client_encoding: bind parameters and the statement text', async () => {
    await reset();
    const w = await WireClient.connect(proxy.port, db);
    try {
      w.send([serialize.query("SET client_encoding TO 'WIN1252'")]);
      await w.until(1, 10000);
      // Parse with non-ASCII text, Bind with a WIN1252-encoded key value
      const parse = (() => {
        const text = win1252("INSERT INTO tk VALUES ($1, '€ prix')");
        const body = Buffer.concat([Buffer.from('ins\0'), text, Buffer.from([0, 0, 0])]);
        const m = Buffer.alloc(5 + body.length); m[0] = 0x50; m.writeInt32BE(4 + body.length, 1); body.copy(m, 5); return m;
      })();
      const bind = (key: string): Buffer => {
        const v = win1252(key);
        const body = Buffer.concat([Buffer.from('\0ins\0'), Buffer.from([0, 0, 0, 1]), Buffer.alloc(4), v, Buffer.from([0, 0])]);
        body.writeInt32BE(v.length, 5 + 4 + 2 - 2);
        const m = Buffer.alloc(5 + body.length); m[0] = 0x42; m.writeInt32BE(4 + body.length, 1); body.copy(m, 5); return m;
      };
      w.send([parse, bind(KEYS[5]!), serialize.execute({}), bind('€uro'), serialize.execute({}), bind(KEYS[6]!), serialize.execute({}), serialize.sync()]);
      const got = await w.until(1, 20000);
      assert.deepEqual(got.filter((m) => m.name === 'error'), []);
      assert.equal(got.filter((m) => m.name === 'commandComplete').length, 3);
    } finally { w.close(); }
    await checkPlaced([KEYS[5]!, '€uro', KEYS[6]!], new Map([[KEYS[5]!, '€ prix'], ['€uro', '€ prix'], [KEYS[6]!, '€ prix']]));
  });
});
