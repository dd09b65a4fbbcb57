// pgring authenticating to PostgreSQL servers that ask for SCRAM-SHA-256 or md5, and
// LISTEN/NOTIFY passed through (LISTEN pins the client to its server connection).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalPostgres } from '../../src/local/postgres';
import { freePort } from '../../src/local/proc';
import { RunningProxy, startProxy, withClient, client } from '../helpers/proxy';

let pg: LocalPostgres;
let proxy: RunningProxy;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-srvauth-'));

before(async () => {
  pg = new LocalPostgres({ dir, port: await freePort() });
  pg.start();
  const server = pg;
  process.on('exit', () => server.stop('immediate'));
  pg.psql(`SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_srv LOGIN PASSWORD 's3rv-scram'`);
  pg.psql(`SET password_encryption = 'md5'; CREATE ROLE md5_srv LOGIN PASSWORD 's3rv-md5'`);
  pg.psql(`CREATE ROLE other_srv LOGIN PASSWORD 'other-pw'`);
  pg.setHba([
    'local all all trust',
    'host all scram_srv 127.0.0.1/32 scram-sha-256',
    'host all md5_srv 127.0.0.1/32 md5',
    'host all other_srv 127.0.0.1/32 scram-sha-256',
    'host all postgres 127.0.0.1/32 trust',
  ]);
  pg.reload();
  proxy = await startProxy({
    listen: { host: '127.0.0.1', port: await freePort() },
    metrics: { enabled: false },
    logLevel: 'silent',
    users: [
      { name: 'postgres', auth: 'trust', admin: true },
      { name: 'scram_srv', auth: 'scram-sha-256', password: 's3rv-scram' },
      { name: 'md5_srv', auth: 'md5', password: 's3rv-md5' },
      { name: 'wrong_srv', auth: 'trust', serverUser: 'other_srv', serverPassword: 'not-it' },
    ],
    shards: [{ name: 's1', backends: [{ host: '127.0.0.1', port: pg.port }] }],
  });
});

after(async () => {
  await proxy?.stop();
  pg?.stop('immediate');
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('authentication to servers', () => {
  it('logs in to a server with SCRAM-SHA-256 and with md5', async () => {
    for (const [user, password] of [['scram_srv', 's3rv-scram'], ['md5_srv', 's3rv-md5']]) {
      await withClient(proxy.port, 'postgres', async (c) => {
        assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, user);
      }, { user, password });
    }
  });

  it('reports the server\'s 28P01 when the configured server password is wrong', async () => {
    const c = client(proxy.port, 'postgres', { user: 'wrong_srv' });
    await assert.rejects(c.connect(), (e: { code?: string }) => e.code === '28P01');
  });
});

describe('LISTEN / NOTIFY', () => {
  it('delivers notifications to a listening client', async () => {
    const listener = client(proxy.port, 'postgres');
    await listener.connect();
    try {
      const got = new Promise<{ channel: string; payload?: string }>((resolve) => listener.on('notification', resolve));
      await listener.query('LISTEN pgring_chan');
      await withClient(proxy.port, 'postgres', (c) => c.query(`NOTIFY pgring_chan, 'hello'`));
      const n = await Promise.race([got, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no notification')), 5000))]);
      assert.equal(n.channel, 'pgring_chan');
      assert.equal(n.payload, 'hello');
    } finally { await listener.end(); }
  });
});
