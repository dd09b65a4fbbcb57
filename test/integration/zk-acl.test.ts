// ZooKeeper access control: with `zookeeper.auth`, every znode pgring creates under its cluster
// root carries the digest ACL of those credentials only, so a second ZooKeeper client without
// them (or with other ones) can read nothing and change nothing there, while pgring works.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testCluster, uniqueName } from '../helpers/env';
import { baseConfig, client, createDatabase, dropDatabase, RunningProxy, startProxy } from '../helpers/proxy';
import { digestId, isZkError, Zk } from '../../src/cluster/zk';
import { Layout } from '../../src/cluster/layout';

const auth = { scheme: 'digest' as const, user: 'pgring', password: 'acl-test-secret' };
let proxy: RunningProxy;
let zkConnect: string;
let layout: Layout;
let db: string;
let pgPort: number;
let rawConfig: Record<string, unknown>;

before(async () => {
  const cluster = await testCluster();
  zkConnect = cluster.zk;
  pgPort = cluster.pg[0]!.port;
  db = uniqueName('zkacl');
  createDatabase([pgPort, cluster.pg[1]!.port], db);
  const name = uniqueName('acl');
  layout = new Layout(name);
  rawConfig = await baseConfig(cluster, 2, {
    zookeeper: { connect: cluster.zk, cluster: name, sessionTimeoutMs: 6000, auth },
    sharding: { tables: [{ name: 'acct', column: 'id', type: 'integer' }] },
    locks: { mode: 'all' },
  });
  proxy = await startProxy(rawConfig);
});
after(async () => { await proxy?.stop(); dropDatabase([pgPort], db); });

async function walk(zk: Zk, path: string, out: string[]): Promise<string[]> {
  // a node listed may be gone before its own children are read (a decision record removed after
  // 300 ms idle, a lock released): it is skipped, as the ACL checks below skip such nodes
  const children = await zk.children(path).catch((e) => { if (isZkError(e, 'NONODE') && out.length) return null; throw e; });
  if (children === null) return out;
  out.push(path);
  for (const c of children) await walk(zk, `${path}/${c}`, out);
  return out;
}

let owner: Zk;
/** NOAUTH; or NONODE for a node that is gone meanwhile (a released lock), as the owner confirms. */
async function refused(what: string, path: string, p: Promise<unknown>): Promise<void> {
  try { await p; } catch (e) {
    if (isZkError(e, 'NOAUTH')) return;
    if (isZkError(e, 'NONODE') && (await owner.exists(path)) === null) return;
    throw e;
  }
  assert.fail(`${what}: allowed`);
}

describe('ZooKeeper ACLs', () => {
  it('pgring works with auth, and every node under its root has only its digest ACL', async () => {
    const c = client(proxy.port, db);
    await c.connect();
    try {
      await c.query('CREATE TABLE IF NOT EXISTS acct (id int primary key, v int)');
      await c.query('BEGIN');
      for (let i = 0; i < 20; i++) await c.query('INSERT INTO acct VALUES ($1, $1) ON CONFLICT (id) DO UPDATE SET v = acct.v + 1', [i]);
      await c.query('COMMIT'); // two shards: locks and a two-phase commit record
      assert.equal(Number((await c.query('SELECT count(*) AS n FROM acct')).rows[0].n), 20);
    } finally { await c.end(); }

    const owner = await Zk.connect({ connect: zkConnect, auth });
    try {
      const nodes = await walk(owner, layout.base, []);
      assert.ok(nodes.includes(layout.ringActive) && nodes.some((n) => n.startsWith(layout.proxies + '/')), nodes.join('\n'));
      const id = digestId(auth.user, auth.password);
      let checked = 0;
      for (const n of nodes) {
        // a node listed by the walk may be gone by now (a lock released, a decision record removed)
        const acl = await owner.getAcl(n).catch((e) => { if (isZkError(e, 'NONODE')) return null; throw e; });
        if (acl === null) continue;
        assert.deepEqual(acl, [{ perms: 31, scheme: 'digest', id }], n);
        checked++;
      }
      assert.ok(checked >= nodes.length / 2, `ACLs of ${checked} of ${nodes.length} nodes read`);
      // the shared parent lets other clusters create their roots, and nothing more
      const parent = await owner.getAcl('/pgring');
      assert.ok(parent.some((a) => a.scheme === 'world' && a.perms === (1 | 4)), JSON.stringify(parent));
    } finally { await owner.close(); }
  });

  it('a client without the credentials, or with others, can read nothing and change nothing under the root', async () => {
    owner = await Zk.connect({ connect: zkConnect, auth });
    const nodes = await walk(owner, layout.base, []);
    for (const creds of [undefined, { ...auth, password: 'wrong' }]) {
      const other = await Zk.connect({ connect: zkConnect, auth: creds });
      try {
        for (const n of nodes) {
          await refused(`get ${n}`, n, other.get(n));
          await refused(`children ${n}`, n, other.children(n));
          await refused(`set ${n}`, n, other.set(n, 'x', -1));
          await refused(`create under ${n}`, n, other.create(`${n}/intruder`, 'x', 'persistent'));
        }
        await refused(`delete ${layout.ringActive}`, layout.ringActive, other.delete(layout.ringActive, -1));
      } finally { await other.close(); }
    }
    await owner.close();
  });

  it('the shard commands read the cluster with the credentials of --config', () => {
    // (they once connected without them: NOAUTH on the demo's own cluster)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-acl-cli-'));
    try {
      const file = path.join(dir, 'proxy.json');
      fs.writeFileSync(file, JSON.stringify(rawConfig));
      const main = path.resolve(__dirname, '../../src/cli/main.js');
      const cli = (...args: string[]) => spawnSync(process.execPath, [main, 'shard', ...args, '--config', file], { encoding: 'utf8', timeout: 60000 });
      // the shard record (protected) is read, and the bogus target refused: nothing is started
      const r = cli('switchover', 's1', '--to', '127.0.0.1:1');
      assert.doesNotMatch(`${r.stdout}${r.stderr}`, /NOAUTH/);
      assert.match(`${r.stdout}${r.stderr}`, /--to 127\.0\.0\.1:1 is not a replica of shard "s1"/);
      const st = cli('failover-status', 's1');
      assert.equal(st.status, 0, `${st.stdout}${st.stderr}`);
      assert.match(st.stdout, /shard "s1": no failover or switchover yet/);
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });

  it('pgring keeps serving after the intrusion attempts', async () => {
    const c = client(proxy.port, db);
    await c.connect();
    assert.equal((await c.query('SELECT v FROM acct WHERE id = 3')).rows[0].v, 3);
    await c.end();
  });
});
