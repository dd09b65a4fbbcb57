// Measures fail-closed timings: TPC-B transactions (pg driver clients, so that a refused write
// does not end the client as it does in pgbench) through one pgring proxy while its ZooKeeper
// (standalone, this script's own) is stopped for a while and started again.
//   node dist/bench/fence-timings.js [locksMode=all] [outageMs=8000] [sessionTimeoutMs=10000]
// Prints: when writes started to fail after the stop (and with which SQLSTATE), and when the
// first transaction committed after the restart.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { LocalCluster } from '../src/local/cluster';
import { freePort, sleep } from '../src/local/proc';
import { parseConfig } from '../src/config/load';
import { Proxy } from '../src/proxy';
import { silentLogger } from '../src/log';
import { demoConfig } from '../src/cli/demo';
import { runTool } from '../test/helpers/tools';

interface Outcome { at: number; ok: boolean; code?: string; msg?: string }

async function client(port: number, db: string, outcomes: Outcome[], stop: () => boolean): Promise<void> {
  let c: pg.Client | null = null;
  while (!stop()) {
    try {
      if (!c) { c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: db }); c.on('error', () => undefined); await c.connect(); }
      const aid = 1 + Math.floor(Math.random() * 200000), tid = 1 + Math.floor(Math.random() * 20), bid = 1 + Math.floor(Math.random() * 2);
      const delta = Math.floor(Math.random() * 10001) - 5000;
      await c.query('BEGIN');
      try {
        await c.query(`UPDATE pgbench_accounts SET abalance = abalance + ${delta} WHERE aid = ${aid}`);
        await c.query(`SELECT abalance FROM pgbench_accounts WHERE aid = ${aid}`);
        await c.query(`UPDATE pgbench_tellers SET tbalance = tbalance + ${delta} WHERE tid = ${tid}`);
        await c.query(`UPDATE pgbench_branches SET bbalance = bbalance + ${delta} WHERE bid = ${bid}`);
        await c.query(`INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${tid}, ${bid}, ${aid}, ${delta}, CURRENT_TIMESTAMP)`);
        await c.query('COMMIT');
        outcomes.push({ at: Date.now(), ok: true });
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    } catch (e) {
      const err = e as pg.DatabaseError;
      outcomes.push({ at: Date.now(), ok: false, code: err.code, msg: err.message });
      if (!err.code) { await c?.end().catch(() => undefined); c = null; }
      await sleep(20);
    }
  }
  await c?.end().catch(() => undefined);
}

async function main(): Promise<void> {
  const mode = (process.argv[2] ?? 'all') as 'all' | 'multi_shard' | 'off';
  const outageMs = Number(process.argv[3] ?? 8000);
  const sessionTimeoutMs = Number(process.argv[4] ?? 10000);
  const lc = new LocalCluster({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-fence-')), shards: 2 });
  const info = await lc.start();
  let proxy: Proxy | null = null;
  try {
    for (const p of info.pg) { /* database per run */ lc.pgs.find((x) => x.port === p.port)!.psql('CREATE DATABASE fence'); }
    const raw = {
      listen: { host: '127.0.0.1', port: await freePort() }, metrics: { enabled: false }, logLevel: 'silent',
      users: [{ name: 'postgres', auth: 'trust', admin: true }],
      shards: info.pg.map((p, i) => ({ name: `s${i + 1}`, backends: [{ host: '127.0.0.1', port: p.port }] })),
      zookeeper: { connect: info.zk, cluster: 'fence', sessionTimeoutMs },
      sharding: (demoConfig(info.zk, [], 0, 0) as { sharding: unknown }).sharding,
      locks: { mode, timeoutMs: 30000 },
    };
    proxy = new Proxy({ config: parseConfig(raw), log: silentLogger });
    await proxy.start();
    const init = await runTool('pgbench', ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres', '-i', '-s', '2', '-q', 'fence']);
    if (init.code !== 0) throw new Error(init.stderr);
    const outcomes: Outcome[] = [];
    let stopping = false;
    const clients = Array.from({ length: 4 }, () => client(proxy!.port, 'fence', outcomes, () => stopping));
    await sleep(4000);
    const fence = proxy.coordinator!.fence;
    const t0 = Date.now();
    await lc.zk.stop();
    const t1 = Date.now();
    await sleep(outageMs);
    const t2 = Date.now();
    await lc.zk.start();
    const t3 = Date.now();
    await sleep(8000);
    stopping = true;
    await Promise.all(clients);
    const after = (t: number) => outcomes.filter((o) => o.at >= t);
    const firstFail = after(t0).find((o) => !o.ok);
    const lastOkBeforeFail = outcomes.filter((o) => o.ok && o.at >= t0 && (!firstFail || o.at < firstFail.at)).pop();
    const firstOkAfter = after(t2).find((o) => o.ok);
    const codes = new Map<string, number>();
    for (const o of outcomes) if (!o.ok) codes.set(`${o.code} ${o.msg?.slice(0, 90)}`, (codes.get(`${o.code} ${o.msg?.slice(0, 90)}`) ?? 0) + 1);
    const okDuring = outcomes.filter((o) => o.ok && firstFail && o.at > firstFail.at && o.at < t3).length;
    console.log(JSON.stringify({
      mode, outageMs, sessionTimeoutMs, selfFenceMs: sessionTimeoutMs / 2,
      zkStopTookMs: t1 - t0, zkStartTookMs: t3 - t2,
      firstRefusalAfterStopMs: firstFail ? firstFail.at - t0 : null,
      lastCommitAfterStopMs: lastOkBeforeFail ? lastOkBeforeFail.at - t0 : null,
      firstCommitAfterZkServingMs: firstOkAfter ? firstOkAfter.at - t3 : null,
      firstCommitAfterStartCommandMs: firstOkAfter ? firstOkAfter.at - t2 : null,
      commitsWhileFenced: okDuring,
      committed: outcomes.filter((o) => o.ok).length,
      fenceHistory: fence.history.map((h) => ({ reason: h.reason, closedAfterStopMs: h.closedAt - t0, openedAfterZkServingMs: h.openedAt ? h.openedAt - t3 : null })),
      errors: Object.fromEntries(codes),
    }, null, 2));
  } finally {
    await proxy?.stop().catch(() => undefined);
    await lc.stop();
    fs.rmSync(lc.opts.dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
