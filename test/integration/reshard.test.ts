// Online resharding with real PostgreSQL and ZooKeeper: an own cluster of four servers, three in
// the ring; TPC-B runs through two proxies (simple and prepared protocol, --max-tries) while
// `pgring shard add s4` moves the arcs s4 takes over. Afterwards: pgbench had 0 failed
// transactions, the whole ledger holds over the four shards, every row is on the shard the
// active ring names for its key (the ring's SQL predicate per shard), about a quarter of the
// accounts moved and the old shards only lost rows, nothing is left prepared, and no slot,
// publication, subscription or fence of the migration is left. During each migration, counts
// read through both proxies (simple and extended protocol) are exact: no row is seen twice
// while copies and old rows exist on shards that do not own them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { killAtExit } from '../../src/local/exit-cleanup';
import { LocalCluster, ClusterInfo } from '../../src/local/cluster';
import { sleep } from '../../src/local/proc';
import { ZkSession } from '../../src/cluster/session';
import { Layout } from '../../src/cluster/layout';
import { readActiveRing } from '../../src/cluster/ring-store';
import { listMigrations, readFence } from '../../src/reshard/store';
import { quoteIdent, Ring } from '../../src/ring/ring';
import { demoConfig } from '../../src/cli/demo';
import { psqlAt } from '../helpers/env';
import { baseConfig, ChildProxy, createDatabase, spawnProxy, withClient } from '../helpers/proxy';
import { pgbenchSummary, runTool } from '../helpers/tools';
import { assertLedger, ledger, preparedLeft } from '../helpers/tpcb';

// TPC-B runs in ROUND-second pgbench runs repeated until the migration has finished, so the
// load goes on through the copy, the cut-over, the release and the clean-up, and new client
// sessions start during each phase (each run reads its scale with a count(*) through the proxy).
// PGRING_RESHARD_ROUNDS=0: one run of ROUND (20) seconds instead.
const ROUNDS = process.env.PGRING_RESHARD_ROUNDS !== '0';
/** PGRING_RESHARD_DEBUG=1: statement logs on the servers, per-key ledger differences after `shard add`. */
const DEBUG = process.env.PGRING_RESHARD_DEBUG === '1';
const ROUND = Number(process.env.PGRING_RESHARD_ROUND_SECONDS ?? (ROUNDS ? 3 : 20));
const TABLES = [['pgbench_accounts', 'aid'], ['pgbench_tellers', 'tid'], ['pgbench_branches', 'bid'], ['pgbench_history', 'aid'], ['tickets', 'tenant']] as const;
const SCALE = 2;
let lc: LocalCluster;
let cluster: ClusterInfo;
let ports: number[];
const db = 'reshard';
const zkName = `reshard_${process.pid}`;
const proxies: ChildProxy[] = [];

/** Runs the pgring CLI; `killWhen`: SIGKILL it as soon as its output matches (a controller dying there). */
function cli(args: string[], killWhen?: RegExp): Promise<{ code: number | null; out: string; killed: boolean }> {
  const main = path.resolve(__dirname, '../../src/cli/main.js');
  return new Promise((resolve) => {
    const ch = killAtExit(spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let killed = false;
    ch.stdout.on('data', (d) => { out += d; if (killWhen && !killed && killWhen.test(out)) { killed = true; ch.kill('SIGKILL'); } });
    ch.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => ch.kill('SIGKILL'), 150000);
    ch.on('close', (code) => { clearTimeout(t); resolve({ code, out, killed }); });
  });
}

function count(port: number, sql: string): number { return Number(psqlAt(port, sql, db).trim()); }

before(async () => {
  lc = new LocalCluster({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-reshard-')), shards: 4 });
  cluster = await lc.start();
  ports = cluster.pg.map((p) => p.port);
  createDatabase(ports.slice(0, 3), db);
  if (DEBUG) {
    for (const p of ports) psqlAt(p, `ALTER SYSTEM SET log_statement = 'all'`), psqlAt(p, `ALTER SYSTEM SET log_line_prefix = '%m [%p] x%x %a %v '`), psqlAt(p, 'SELECT pg_reload_conf()');
    console.log(`# debug: server logs under ${lc.opts.dir}`);
  }
  for (let i = 0; i < 2; i++) {
    proxies.push(await spawnProxy(await baseConfig(cluster, 3, {
      zookeeper: { connect: cluster.zk, cluster: zkName, sessionTimeoutMs: 8000 },
      sharding: withTickets((demoConfig(cluster.zk, [], 0, 0) as { sharding: { tables: unknown[] } }).sharding),
      locks: { mode: 'all' }, pool: { mode: 'transaction', maxSize: 8 }, logLevel: 'warn',
    })));
  }
  const r = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(proxies[0]!.port), '-U', 'postgres', '-i', '-s', String(SCALE), '-q', db]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  // A reference table (created through pgring: registered as one, present on every shard).
  await withClient(proxies[0]!.port, db, async (c) => {
    await c.query('CREATE TABLE ref_items (id int PRIMARY KEY, name text NOT NULL)');
    await c.query(`INSERT INTO ref_items SELECT g, 'item ' || g FROM generate_series(1, 100) g`);
    // A reference table with serial ids (the default is taken on every shard: they must count alike).
    await c.query('CREATE TABLE ref_seq (id serial PRIMARY KEY, name text)');
    await c.query("INSERT INTO ref_seq (name) VALUES ('a'), ('b'), ('c')");
    // A table sharded by tenant with its own bigserial ids: each shard counts in a range of its own.
    await c.query('CREATE TABLE tickets (tenant int, id bigserial, note text, n serial, PRIMARY KEY (tenant, id))');
    await c.query(`INSERT INTO tickets (tenant, note) VALUES ${Array.from({ length: 60 }, (_, i) => `(${i + 1}, 'before')`).join(', ')}`);
  });
});

/** The demo's sharding plus `tickets`, sharded by tenant. */
function withTickets(sh: { tables: unknown[] }): unknown {
  return { ...sh, tables: [...sh.tables, { name: 'tickets', column: 'tenant', type: 'integer' }] };
}

after(async () => {
  for (const p of proxies) await p.stop('SIGKILL').catch(() => undefined);
  await lc?.stop();
  if (lc && !DEBUG) fs.rmSync(lc.opts.dir, { recursive: true, force: true });   // ~350 MB of data per run
});

async function activeRing(): Promise<Ring> {
  const s = new ZkSession({ connect: cluster.zk, sessionTimeoutMs: 8000, logger: { warn: () => undefined, info: () => undefined } });
  await s.start(15000);
  try { return new Ring((await readActiveRing(s, new Layout(zkName)))!.ring); } finally { await s.close(); }
}

function zkArgs(): string[] { return ['--zk', cluster.zk, '--cluster', zkName, '--database', db]; }

/**
 * TPC-B through both proxies during `change` (one ROUND-second run, or with ROUNDS repeated
 * runs until the change has finished). Returns the transactions pgbench committed; 0 failed is
 * asserted for every run.
 */
async function underLoad(change: () => Promise<void>): Promise<number> {
  let done = false;
  let retried = 0;
  const loops = proxies.map(async (p, i) => {
    let committed = 0;
    do {
      const r = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', '-n', '-M', i ? 'prepared' : 'simple',
        '-c', '2', '-j', '1', '-T', String(ROUND), '--max-tries=1000', db], { timeoutMs: (ROUND + 120) * 1000 });
      assert.equal(r.code, 0, `pgbench through proxy ${i + 1}: ${r.stderr.slice(-2000)}${r.stdout}${p.output().slice(-3000)}`);
      const s = pgbenchSummary(r.stdout);
      assert.equal(s.failed, 0, r.stdout);
      committed += s.processed;
      retried += Number(/number of transactions retried: (\d+)/.exec(r.stdout)?.[1] ?? 0);
    } while (ROUNDS && !done);
    return committed;
  });
  for (const l of loops) l.catch(() => undefined);   // surfaced by Promise.all below
  // Reads spanning shards see every row once during the whole migration (simple and extended protocol).
  const wrong: string[] = [];
  let reads = 0;
  const reader = (async () => {
    while (!done) {
      const [a] = (await withClient(proxies[0]!.port, db, (c) => c.query('SELECT count(*) AS n FROM pgbench_accounts'))).rows;
      const [b] = (await withClient(proxies[1]!.port, db, (c) => c.query('SELECT count(*) AS n, count(DISTINCT bid) AS d FROM pgbench_branches WHERE bid > $1', [0]))).rows;
      reads++;
      if (Number(a.n) !== 100000 * SCALE || Number(b.n) !== SCALE || Number(b.d) !== SCALE) wrong.push(`accounts ${a.n}, branches ${b.n} (${b.d} distinct)`);
      await sleep(400);
    }
  })();
  reader.catch(() => undefined);
  await sleep(1500);
  try { await change(); } finally { done = true; }
  await reader;
  assert.deepEqual(wrong, [], `reads through the proxies during the migration (${reads} rounds)`);
  const committed = (await Promise.all(loops)).reduce((a, b) => a + b, 0);
  assert.ok(committed > 0);
  console.log(`# committed ${committed}; retried ${retried}`);
  return committed;
}

/** After a migration: its phase is done, the fence is gone, every row sits where the active ring says; returns accounts per shard. */
async function checkPlacement(shards: string[]): Promise<number[]> {
  const s = new ZkSession({ connect: cluster.zk, sessionTimeoutMs: 8000, logger: { warn: () => undefined, info: () => undefined } });
  await s.start(15000);
  try {
    const layout = new Layout(zkName);
    const active = await readActiveRing(s, layout);
    assert.deepEqual(active!.ring.shards.map((x) => x.name), shards);
    const ring = new Ring(active!.ring);
    for (const [t, col] of TABLES) {
      for (let i = 0; i < 4; i++) {
        const k = ring.shardIndex(`s${i + 1}`);
        const pred = k < 0 ? 'false' : ring.sqlPredicate(k, quoteIdent(col), 'integer');
        const wrong = count(ports[i]!, `SELECT count(*) FROM ${t} WHERE NOT ${pred}`);
        assert.equal(wrong, 0, `${t}: ${wrong} rows on s${i + 1} that the ring gives to another shard`);
      }
    }
    const ms = await listMigrations(s, layout);
    assert.equal(ms.at(-1)!.phase, 'done', JSON.stringify(ms.at(-1)));
    assert.equal(await readFence(s, layout), null);
    console.log(`# ${ms.at(-1)!.id}: ${ms.at(-1)!.log.filter((l) => /cut-over|active/.test(l)).join(' | ')}`);
  } finally { await s.close(); }
  for (const p of ports) {
    assert.equal(psqlAt(p, `SELECT count(*) FROM pg_replication_slots`, db).trim(), '0', `slots left on ${p}`);
    assert.equal(psqlAt(p, `SELECT count(*) FROM pg_subscription`, db).trim(), '0', `subscriptions left on ${p}`);
    assert.equal(psqlAt(p, `SELECT count(*) FROM pg_publication`, db).trim(), '0', `publications left on ${p}`);
    assert.equal(psqlAt(p, `SELECT relreplident FROM pg_class WHERE relname = 'pgbench_history'`, db).trim(), 'd', `replica identity of pgbench_history on ${p}`);
    assert.equal(psqlAt(p, `SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgring%'`, db).trim(), '0', `guard triggers left on ${p}`);
  }
  assert.deepEqual(await preparedLeft(ports, db), []);
  const accounts = ports.map((p) => count(p, 'SELECT count(*) FROM pgbench_accounts'));
  assert.equal(accounts.reduce((a, b) => a + b, 0), 200000, `accounts per shard ${accounts.join(', ')}`);
  return accounts;
}

/** Debug: per key, the balance against the sum of its history deltas over all shards (balances start at 0). */
async function diagnose(): Promise<void> {
  const rows = async (sql: string) => (await Promise.all(ports.map((p, i) => withClient(p, db, async (c) => (await c.query(sql)).rows.map((r) => ({ ...r, shard: i + 1 })))))).flat();
  const hist = await rows('SELECT aid, tid, bid, delta, mtime::text FROM pgbench_history');
  const sum = (k: 'aid' | 'tid' | 'bid') => { const m = new Map<number, number>(); for (const h of hist) m.set(h[k], (m.get(h[k]) ?? 0) + h.delta); return m; };
  for (const [t, k, bal] of [['pgbench_accounts', 'aid', 'abalance'], ['pgbench_tellers', 'tid', 'tbalance'], ['pgbench_branches', 'bid', 'bbalance']] as const) {
    const s = sum(k);
    const all = await rows(`SELECT ${k} AS k, ${bal} AS b FROM ${t} WHERE ${bal} <> 0`);
    const seen = new Map<number, number>();
    for (const r of all) {
      seen.set(r.k, (seen.get(r.k) ?? 0) + 1);
      if ((s.get(r.k) ?? 0) !== r.b) console.log(`# DIAG ${t} ${k}=${r.k} on s${r.shard}: balance ${r.b}, history sum ${s.get(r.k) ?? 0}, diff ${r.b - (s.get(r.k) ?? 0)}`);
    }
    for (const [key, v] of s) if (v !== 0 && !seen.has(key)) console.log(`# DIAG ${t} ${k}=${key}: balance 0/missing, history sum ${v}`);
    for (const [key, n] of seen) if (n > 1) console.log(`# DIAG ${t} ${k}=${key} on ${n} shards`);
  }
}

let nextRingDoc: Ring | null = null;
/** s1's predicate under the ring with s4 (what s1 keeps). */
function movedPredicate(): string { return nextRingDoc!.sqlPredicate(0, quoteIdent('aid'), 'integer'); }

describe('online resharding', () => {
  it('shard add s4 while TPC-B runs through two proxies', async () => {
    const before = await ledger(ports.slice(0, 3), db);
    const accountsBefore = ports.slice(0, 3).map((p) => count(p, 'SELECT count(*) FROM pgbench_accounts'));
    const committed = await underLoad(async () => {
      const add = await cli(['shard', 'add', 's4', '--host', '127.0.0.1', '--port', String(ports[3]), ...zkArgs(), '--json']);
      assert.equal(add.code, 0, add.out);
    });
    if (DEBUG) await diagnose();
    const accounts = await checkPlacement(['s1', 's2', 's3', 's4']);
    assertLedger(before, await ledger(ports, db), committed, 'shard add s4');
    const share = accounts[3]! / 200000;
    assert.ok(share > 0.18 && share < 0.32, `s4 holds ${(share * 100).toFixed(1)}% of the accounts`);
    accounts.slice(0, 3).forEach((n, i) => assert.ok(n <= accountsBefore[i]!, `s${i + 1} gained accounts: ${accountsBefore[i]} -> ${n}`));
    console.log(`# accounts per shard ${accounts.join(', ')}`);
    // The new shard got a full copy of the reference table before any arc moved.
    assert.deepEqual(ports.map((p) => count(p, 'SELECT count(*) FROM ref_items')), [100, 100, 100, 100]);
    // Its copy of a sharded table's bigserial sequence counts in a range no other shard uses
    // (before: from 1, repeating the ids s1 hands out).
    await withClient(proxies[0]!.port, db, (c) => c.query(`INSERT INTO tickets (tenant, note) VALUES ${Array.from({ length: 60 }, (_, i) => `(${i + 1}, 'after')`).join(', ')}`));
    const ids = ports.map((p) => psqlAt(p, "SELECT id FROM tickets WHERE note = 'after'", db).split('\n').map((x) => x.trim()).filter(Boolean));
    assert.ok(ids[3]!.length > 0, 'no new ticket on s4');
    const all = ids.flat();
    assert.equal(new Set(all).size, all.length, `ids repeat across shards: ${JSON.stringify(ids)}`);
    assert.equal(psqlAt(ports[3]!, "SELECT seqmin FROM pg_sequence WHERE seqrelid = 'tickets_id_seq'::regclass", db).trim(), String((3n << 48n) + 1n));
    assert.equal(psqlAt(ports[3]!, "SELECT seqmin FROM pg_sequence WHERE seqrelid = 'tickets_n_seq'::regclass", db).trim(), String(3 * 2 ** 27 + 1));
    const ns = ports.map((p) => psqlAt(p, "SELECT n FROM tickets WHERE note = 'after'", db).split('\n').map((x) => x.trim()).filter(Boolean)).flat();
    assert.equal(new Set(ns).size, ns.length, `serial values repeat across shards: ${ns.join(', ')}`);
    // The reference table's sequence on s4 continues where the others are (before: from 1, so the
    // next INSERT failed with a duplicate key on s4 and nothing was inserted anywhere).
    await withClient(proxies[0]!.port, db, (c) => c.query("INSERT INTO ref_seq (name) VALUES ('after')"));
    assert.deepEqual(ports.map((p) => psqlAt(p, "SELECT id FROM ref_seq WHERE name = 'after'", db).trim()), ['4', '4', '4', '4']);
  });

  it('shard remove s4 while TPC-B runs; its controller is SIGKILLed during the copy and `shard resume` finishes', async () => {
    const before = await ledger(ports, db);
    const committed = await underLoad(async () => {
      const first = await cli(['shard', 'remove', 's4', ...zkArgs(), '--json'], /"phase":"copying"/);
      assert.ok(first.killed, `the controller was to be killed during the copy: ${first.out}`);
      const resume = await cli(['shard', 'resume', ...zkArgs()]);
      assert.equal(resume.code, 0, resume.out);
    });
    assertLedger(before, await ledger(ports, db), committed, 'shard remove s4');
    const accounts = await checkPlacement(['s1', 's2', 's3']);
    assert.equal(accounts[3], 0);
    console.log(`# accounts per shard ${accounts.join(', ')}`);
  });

  it('shard add s4 whose controller stops right after the flip (fence still up); `shard resume` finishes', async () => {
    const before = await ledger(ports, db);
    // s4 still holds the reference table's rows from its first membership: refused, naming it.
    const refused = await cli(['shard', 'add', 's4', '--host', '127.0.0.1', '--port', String(ports[3]), ...zkArgs()]);
    assert.notEqual(refused.code, 0, refused.out);
    assert.match(refused.out, /shard s4: table ref_items already holds 100 rows .*--clean-leftovers/);
    const committed = await underLoad(async () => {
      const first = await cli(['shard', 'add', 's4', '--host', '127.0.0.1', '--port', String(ports[3]), ...zkArgs(), '--stop-at', 'switched', '--clean-leftovers']);
      nextRingDoc = await activeRing();
      assert.equal(first.code, 0, first.out);
      assert.match(first.out, /phase switched/);
      // The guard: a write that bypasses the proxies to a moved row still on its old shard fails.
      const moved = count(ports[0]!, `SELECT count(*) FROM pgbench_accounts WHERE NOT ${movedPredicate()}`);
      assert.ok(moved > 0, 'moved rows are still on s1 before the clean-up');
      await withClient(ports[0]!, db, async (c) => {
        await assert.rejects(c.query(`UPDATE pgbench_accounts SET filler = 'x' WHERE aid = (SELECT aid FROM pgbench_accounts WHERE NOT ${movedPredicate()} LIMIT 1)`),
          (e: { code?: string; message: string }) => e.code === '55006' && /read-only during resharding migration/.test(e.message));
      });
      const resume = await cli(['shard', 'resume', ...zkArgs()]);
      assert.equal(resume.code, 0, resume.out);
    });
    assertLedger(before, await ledger(ports, db), committed, 'shard add s4 again');
    const accounts = await checkPlacement(['s1', 's2', 's3', 's4']);
    assert.ok(accounts[3]! > 0.18 * 200000 && accounts[3]! < 0.32 * 200000, `accounts per shard ${accounts.join(', ')}`);
  });

  it('shard remove s2 stopped before the cut-over and rolled back by `shard abort`: the old ring stays, nothing is left', async () => {
    const before = await ledger(ports, db);
    const accountsBefore = ports.map((p) => count(p, 'SELECT count(*) FROM pgbench_accounts'));
    const first = await cli(['shard', 'remove', 's2', ...zkArgs(), '--stop-at', 'fencing']);
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /phase fencing/);
    const abort = await cli(['shard', 'abort', ...zkArgs()]);
    assert.notEqual(abort.code, 0, 'an aborted migration exits non-zero');
    assert.match(abort.out, /phase aborted/);
    assert.deepEqual(ports.map((p) => count(p, 'SELECT count(*) FROM pgbench_accounts')), accountsBefore);
    assert.deepEqual(await ledger(ports, db), before);
    const s = new ZkSession({ connect: cluster.zk, sessionTimeoutMs: 8000, logger: { warn: () => undefined, info: () => undefined } });
    await s.start(15000);
    try {
      const layout = new Layout(zkName);
      assert.deepEqual((await readActiveRing(s, layout))!.ring.shards.map((x) => x.name), ['s1', 's2', 's3', 's4']);
      assert.equal((await listMigrations(s, layout)).at(-1)!.phase, 'aborted');
      // The admin console of a proxy shows every migration of the cluster.
      const shown = await withClient(proxies[0]!.port, 'pgring', (c) => c.query('SHOW MIGRATIONS'));
      assert.deepEqual(shown.rows.map((r) => `${r.change} ${r.phase}`), ['add s4 done', 'remove s4 done', 'add s4 done', 'remove s2 aborted']);
      assert.ok(shown.rows.every((r) => r.this_proxy === null), 'no proxy holds writes any more');
      assert.equal(await readFence(s, layout), null);
    } finally { await s.close(); }
    for (const p of ports) {
      assert.equal(psqlAt(p, `SELECT count(*) FROM pg_replication_slots`, db).trim(), '0', `slots left on ${p}`);
      assert.equal(psqlAt(p, `SELECT count(*) FROM pg_subscription`, db).trim(), '0', `subscriptions left on ${p}`);
      assert.equal(psqlAt(p, `SELECT count(*) FROM pg_publication`, db).trim(), '0', `publications left on ${p}`);
      assert.equal(psqlAt(p, `SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgring%'`, db).trim(), '0', `guard triggers left on ${p}`);
    }
  });

  it('shard rebalance s1 --weight 2 while TPC-B runs; its controller is SIGKILLed during the cut-over and `shard resume` finishes: s1 takes arcs from the others only; `shard status` shows every migration', async () => {
    const before = await ledger(ports, db);
    const accountsBefore = ports.map((p) => count(p, 'SELECT count(*) FROM pgbench_accounts'));
    const committed = await underLoad(async () => {
      // Killed as soon as it reports the cut-over phase (the fence going up, proxies acknowledging).
      const first = await cli(['shard', 'rebalance', 's1', '--weight', '2', ...zkArgs(), '--json'], /"phase":"fencing"/);
      assert.ok(first.killed, `the controller was to be killed during the cut-over: ${first.out}`);
      const resume = await cli(['shard', 'resume', ...zkArgs()]);
      assert.equal(resume.code, 0, resume.out);
    });
    assertLedger(before, await ledger(ports, db), committed, 'shard rebalance s1 (controller killed in the cut-over)');
    const accounts = await checkPlacement(['s1', 's2', 's3', 's4']);
    assert.ok(accounts[0]! > accountsBefore[0]!, `s1 gained rows: ${accountsBefore.join(', ')} -> ${accounts.join(', ')}`);
    accounts.slice(1).forEach((n, i) => assert.ok(n <= accountsBefore[i + 1]!, `s${i + 2} gained rows: ${accountsBefore.join(', ')} -> ${accounts.join(', ')}`));
    const st = await cli(['shard', 'status', ...zkArgs()]);
    assert.equal(st.code, 0, st.out);
    assert.match(st.out, /remove s2 .*phase aborted/);
    assert.match(st.out, /rebalance s1=2 .*phase done/);
  });
});
