// Operating pgring: the Prometheus endpoint after traffic, /healthz, SIGHUP reload
// of a child proxy (valid and invalid config), and SIGTERM with a transaction in
// flight (it commits; new connections are refused; exit code 0).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { psqlAt, testCluster, uniqueName } from '../helpers/env';
import { baseConfig, ChildProxy, client, createDatabase, dropDatabase, RawConfig, RunningProxy, spawnProxy, startProxy, withClient } from '../helpers/proxy';
import { freePort } from '../../src/local/proc';
import type { ClusterInfo } from '../../src/local/cluster';

let cluster: ClusterInfo;
let db: string;
let ports: number[];

before(async () => {
  cluster = await testCluster();
  ports = cluster.pg.slice(0, 2).map((p) => p.port);
  db = uniqueName('ops');
  createDatabase(ports, db);
});
after(() => dropDatabase(ports, db));

/** Value of one sample line `name{labels} value` (labels matched as a substring). */
function sample(text: string, name: string, labels = ''): number | null {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (labels && !(m[2] ?? '').includes(labels)) continue;
    return Number(m[3]);
  }
  return null;
}

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

describe('metrics endpoint', () => {
  let proxy: RunningProxy;
  let metricsPort: number;

  before(async () => {
    metricsPort = await freePort();
    proxy = await startProxy(await baseConfig(cluster, 2, { metrics: { enabled: true, host: '127.0.0.1', port: metricsPort } }));
  });
  after(async () => { await proxy?.stop(); });

  it('exports query, transaction, pool, error, ring and event-loop metrics after traffic', async () => {
    await withClient(proxy.port, db, async (c) => {
      await c.query('CREATE TABLE IF NOT EXISTS m (id int primary key)');
      for (let i = 0; i < 5; i++) await c.query('SELECT $1::int AS x', [i]);
      await c.query('BEGIN');
      await c.query('SELECT 1');
      await c.query('COMMIT');
      await assert.rejects(c.query('SELECT * FROM no_such_table_here'));
    });
    assert.equal(proxy.proxy.metricsPort, metricsPort);
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const text = await res.text();
    const queries = (sample(text, 'pgring_queries_total', 'shard="s1"') ?? 0) + (sample(text, 'pgring_queries_total', 'shard="s2"') ?? 0);
    assert.ok(queries >= 7, `queries counted: ${queries}`);
    assert.ok((sample(text, 'pgring_transactions_total', 'shard="s') ?? 0) > 0, 'transactions counted');
    assert.ok((sample(text, 'pgring_query_duration_seconds_count', 'shard="s') ?? 0) > 0, 'query histogram');
    assert.ok((sample(text, 'pgring_query_duration_seconds_bucket', 'le="+Inf"') ?? 0) > 0, 'histogram buckets');
    assert.equal(sample(text, 'pgring_errors_total', 'class="42"'), 1, 'undefined table counted under class 42');
    assert.ok(sample(text, 'pgring_server_connections', 'state="idle"') !== null, 'pool gauges present');
    assert.ok(/pgring_server_connections\{shard="s\d",backend="127\.0\.0\.1:\d+",database="[^"]+",user="postgres",state="active"\}/.test(text));
    assert.ok(sample(text, 'pgring_pool_waiting_clients') !== null);
    assert.ok(sample(text, 'pgring_pool_max_wait_seconds') !== null);
    assert.ok((sample(text, 'pgring_bytes_total', 'direction="in"') ?? 0) > 0, 'bytes in counted');
    assert.ok((sample(text, 'pgring_bytes_total', 'direction="out"') ?? 0) > 0, 'bytes out counted');
    assert.equal(sample(text, 'pgring_ring_version'), 1);
    assert.equal(sample(text, 'pgring_shard_up', 'shard="s1"'), 1);
    assert.ok(sample(text, 'pgring_ring_share_percent', 'shard="s2"')! > 0);
    assert.ok(sample(text, 'nodejs_eventloop_lag_seconds') !== null, 'event-loop lag');
    assert.ok(text.includes('# TYPE pgring_lock_wait_seconds histogram'), 'lock wait histogram hook');
    assert.ok(text.includes('# TYPE pgring_two_phase_commits_total counter'));
    assert.equal(sample(text, 'pgring_zookeeper_connected'), null, 'no ZooKeeper configured');
  });

  it('counts clients per database, user and state', async () => {
    const c = client(proxy.port, db);
    await c.connect();
    try {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.equal(sample(text, 'pgring_client_connections', `database="${db}",user="postgres",state="idle"`), 1);
    } finally { await c.end(); }
  });

  it('/healthz is 200 with a ring, 503 while shutting down; unknown paths 404', async () => {
    const ok = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
    assert.equal(ok.status, 200);
    assert.equal((await ok.json() as { status: string }).status, 'ok');
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/nope`)).status, 404);
    proxy.proxy.ctx.draining = true;
    try {
      const bad = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      assert.equal(bad.status, 503);
      assert.match(JSON.stringify(await bad.json()), /shutting down/);
    } finally { proxy.proxy.ctx.draining = false; }
  });

  it('two proxies in one process keep separate registries', async () => {
    const port2 = await freePort();
    const other = await startProxy(await baseConfig(cluster, 1, { metrics: { enabled: true, host: '127.0.0.1', port: port2 } }));
    try {
      const text = await (await fetch(`http://127.0.0.1:${port2}/metrics`)).text();
      assert.equal(sample(text, 'pgring_queries_total'), null, 'no traffic on the second proxy');
      assert.equal(sample(text, 'pgring_shard_up', 'shard="s2"'), null);
    } finally { await other.stop(); }
  });

  it('reports ZooKeeper state and health with a ZooKeeper-backed ring', async () => {
    const mport = await freePort();
    const zk = await startProxy(await baseConfig(cluster, 2, {
      metrics: { enabled: true, host: '127.0.0.1', port: mport },
      zookeeper: { connect: cluster.zk, cluster: uniqueName('opszk') },
    }));
    try {
      const text = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text();
      assert.equal(sample(text, 'pgring_zookeeper_connected'), 1);
      assert.equal(sample(text, 'pgring_zookeeper_session_state', 'state="connected"'), 1);
      assert.equal(sample(text, 'pgring_write_fence_closed'), 0);
      assert.ok(sample(text, 'pgring_ring_version')! >= 1);
      const h = await fetch(`http://127.0.0.1:${mport}/healthz`);
      assert.equal(h.status, 200, await h.text());
    } finally { await zk.stop(); }
  });
});

describe('child proxy: SIGHUP and SIGTERM', () => {
  let raw: RawConfig;

  before(async () => {
    raw = await baseConfig(cluster, 1, { logLevel: 'info', shutdownGraceMs: 15000, pool: { maxSize: 4 } });
    psqlAt(ports[0]!, 'CREATE TABLE IF NOT EXISTS drained (id int primary key)', db);
  });

  async function adminConfig(port: number): Promise<Map<string, string>> {
    return withClient(port, 'pgring', async (c) => new Map((await c.query('SHOW CONFIG')).rows.map((r) => [r.key, r.value])));
  }

  async function waitFor(fn: () => boolean, ms = 10000): Promise<void> {
    const end = Date.now() + ms;
    while (!fn()) {
      if (Date.now() > end) throw new Error('timeout');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('SIGHUP applies a valid config, refuses an invalid one and keeps clients', async () => {
    const child: ChildProxy = await spawnProxy({ ...raw, listen: { host: '127.0.0.1', port: await freePort() } });
    try {
      const keep = client(child.port, db);
      keep.on('error', () => undefined);
      await keep.connect();
      const before = child.output().split('\n').length;
      for (let i = 0; i < 20; i++) await keep.query('SELECT 1');
      assert.ok(child.output().split('\n').length - before < 5, 'no info log line per statement');

      const next = { ...raw, listen: { host: '127.0.0.1', port: child.port }, pool: { maxSize: 9 }, logLevel: 'warn', users: [...(raw.users as unknown[]), { name: 'hupuser', auth: 'trust', serverUser: 'postgres' }] };
      fs.writeFileSync(child.configFile, JSON.stringify(next));
      child.child.kill('SIGHUP');
      await waitFor(() => /config reloaded/.test(child.output()));
      const cfg = await adminConfig(child.port);
      assert.equal(cfg.get('pool.maxSize'), '9');
      assert.equal(cfg.get('logLevel'), 'warn');
      await withClient(child.port, db, async (c) => assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2), { user: 'hupuser' });

      fs.writeFileSync(child.configFile, JSON.stringify({ ...next, logLevel: 'error', pool: { maxSize: 0 } }));
      child.child.kill('SIGHUP');
      await waitFor(() => /reload refused/.test(child.output()));
      assert.match(child.output(), /pool\.maxSize: must be >= 1/);
      assert.equal((await adminConfig(child.port)).get('pool.maxSize'), '9', 'old config stays');
      assert.equal((await keep.query('SELECT 3 AS x')).rows[0].x, 3, 'connected client kept');
      await keep.end();
    } finally {
      assert.equal(await child.stop('SIGTERM'), 0);
    }
  });

  it('SIGTERM lets a transaction in flight commit, refuses new connections, exits 0', async () => {
    const child: ChildProxy = await spawnProxy({ ...raw, listen: { host: '127.0.0.1', port: await freePort() } });
    const exited = new Promise<number | null>((resolve) => child.child.once('exit', (code) => resolve(code)));
    const tx = client(child.port, db);
    await tx.connect();
    const idle = client(child.port, db);
    await idle.connect();
    const idleErrors: { code?: string }[] = [];
    idle.on('error', (e) => idleErrors.push(e as { code?: string }));
    tx.on('error', () => undefined);
    try {
      await tx.query('BEGIN');
      await tx.query('INSERT INTO drained VALUES (1)');
      child.child.kill('SIGTERM');
      await waitFor(() => /shutting down/.test(child.output()));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(await connectRefused(child.port), true, 'new connections refused after SIGTERM');
      await waitFor(() => idleErrors.length > 0);
      assert.equal(idleErrors[0]!.code, '57P01', 'an idle client is told the proxy shuts down');
      assert.equal(child.child.exitCode, null, 'still running while the transaction is open');
      await tx.query('INSERT INTO drained VALUES (2)');
      await tx.query('COMMIT');
      assert.equal(await exited, 0);
    } finally {
      await tx.end().catch(() => undefined);
      await idle.end().catch(() => undefined);
      if (child.child.exitCode === null) child.child.kill('SIGKILL');
    }
    assert.equal(psqlAt(ports[0]!, 'SELECT count(*) FROM drained WHERE id IN (1, 2)', db).trim(), '2');
  });

  it('SIGTERM ends a transaction still open after shutdownGraceMs (rolled back), exit 0', async () => {
    const child: ChildProxy = await spawnProxy({ ...raw, shutdownGraceMs: 500, listen: { host: '127.0.0.1', port: await freePort() } });
    const tx = client(child.port, db);
    await tx.connect();
    const errs: { code?: string }[] = [];
    tx.on('error', (e) => errs.push(e as { code?: string }));
    await tx.query('BEGIN');
    await tx.query('INSERT INTO drained VALUES (3)');
    assert.equal(await child.stop('SIGTERM'), 0);
    await waitFor(() => errs.length > 0);
    assert.equal(errs[0]!.code, '57P01');
    await tx.end().catch(() => undefined);
    assert.equal(psqlAt(ports[0]!, 'SELECT count(*) FROM drained WHERE id = 3', db).trim(), '0');
  });
});
