// `pgring shard switchover NAME [--to HOST:PORT]`, `pgring shard rejoin NAME --host H --port P
// --data-dir D` and `pgring shard failover-status NAME`. Switchover only records the request
// (failover/<shard>, a state machine): the elected controller (a running proxy) does the steps,
// and this command follows its log. Rejoin runs where the former primary's data directory is.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../config/load';
import { ZkSession } from '../cluster/session';
import { withSession } from './cluster-commands';
import { Layout } from '../cluster/layout';
import { getShard, MembershipWatcher } from '../cluster/registry';
import { isFinished, newFailover, replicaSlotName, syncStandbyNames } from '../cluster/failover-plan';
import { readFailover, startFailover } from '../cluster/failover';
import * as admin from '../backend/replication-admin';
import { chownPostgres, pgBin, runAsPostgres, sleep } from '../local/proc';

export interface ShardArgs { config?: string; zk?: string; cluster?: string; name: string }

function target(a: ShardArgs) {
  const config = a.config ? loadConfig(a.config) : null;
  const connect = a.zk ?? config?.zookeeper?.connect;
  if (!connect) throw new Error('no ZooKeeper address: pass --zk HOST:PORT or --config with a zookeeper section');
  const u = config?.users.find((x) => x.admin) ?? config?.users[0];
  const cred = u ? { user: u.serverUser ?? u.name, password: u.serverPassword ?? u.password } : { user: 'postgres' };
  const layout = new Layout(a.cluster ?? config?.zookeeper?.cluster ?? 'default');
  // the config's ZooKeeper credentials: a cluster with ACLs (the demo's) answers NOAUTH without them
  return { connect, layout, cred, zkOpts: { auth: config?.zookeeper?.auth, protectedRoot: layout.base } };
}

const quiet = { warn: () => undefined, info: () => undefined };

/** The shard's primary and the other backends (record, then registered liveness nodes). */
async function shardView(s: ZkSession, layout: Layout, name: string): Promise<{ epoch: number; primary: string; others: string[] }> {
  const rec = await getShard(s, layout, name);
  if (!rec) throw new Error(`shard "${name}" does not exist in cluster "${layout.cluster}"`);
  const m = new MembershipWatcher(s, layout, { logger: quiet });
  await m.start();
  const live = m.all().get(name) ?? [];
  m.stop();
  const configured = (Array.isArray(rec.backends) ? rec.backends as { host?: string; port: number; role?: string }[] : []).map((b) => ({ addr: `${b.host ?? '127.0.0.1'}:${b.port}`, role: b.role ?? 'primary' }));
  const primary = typeof rec.primary === 'string' ? rec.primary : configured.find((b) => b.role === 'primary')?.addr ?? live.find((b) => b.role === 'primary')?.addr;
  if (!primary) throw new Error(`shard "${name}" has no primary`);
  const others = [...new Set([...configured.map((b) => b.addr), ...live.map((b) => b.addr)])].filter((x) => x !== primary).sort();
  return { epoch: typeof rec.epoch === 'number' ? rec.epoch : 0, primary, others };
}

/** Follows a run's log until it finishes; true when done. */
async function follow(s: ZkSession, layout: Layout, name: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let printed = 0;
  for (;;) {
    const cur = await readFailover(await s.waitConnected(), layout, name);
    if (cur) {
      for (const l of cur.state.log.slice(printed)) console.log(`${new Date(l.at).toISOString()}  ${l.step.padEnd(8)} ${l.msg}`);
      printed = cur.state.log.length;
      if (isFinished(cur.state)) {
        console.log(cur.state.step === 'done' ? `${cur.state.kind} of shard "${name}" done: primary ${cur.state.candidate}, epoch ${cur.state.epoch}` : `${cur.state.kind} of shard "${name}" failed: ${cur.state.error}`);
        return cur.state.step === 'done';
      }
    }
    if (Date.now() > deadline) { console.error(`not finished within ${timeoutMs} ms (is a pgring proxy with ZooKeeper running? only the elected controller advances it)`); return false; }
    await sleep(200);
  }
}

export async function switchover(a: ShardArgs & { to?: string; timeout: number }): Promise<void> {
  const { connect, layout, zkOpts } = target(a);
  await withSession(connect, async (s) => {
    const v = await shardView(s, layout, a.name);
    if (a.to && !v.others.includes(a.to)) throw new Error(`--to ${a.to} is not a replica of shard "${a.name}" (known: ${v.others.join(', ') || 'none'})`);
    const st = newFailover({ shard: a.name, kind: 'switchover', currentEpoch: v.epoch, oldPrimary: v.primary, replicas: v.others, target: a.to ?? null, by: 'cli', now: Date.now() });
    const r = await startFailover(await s.waitConnected(), layout, st);
    if (!r.started) throw new Error(`a ${r.state.kind} of shard "${a.name}" is already running (step ${r.state.step})`);
    console.log(`switchover of shard "${a.name}" requested: ${v.primary} -> ${a.to ?? 'the most advanced replica'}`);
    if (!await follow(s, layout, a.name, a.timeout)) process.exitCode = 1;
  }, zkOpts);
}

export async function failoverStatus(a: ShardArgs): Promise<void> {
  const { connect, layout, zkOpts } = target(a);
  await withSession(connect, async (s) => {
    const cur = await readFailover(await s.waitConnected(), layout, a.name);
    if (!cur) { console.log(`shard "${a.name}": no failover or switchover yet`); return; }
    console.log(JSON.stringify(cur.state, null, 2));
  }, zkOpts);
}

const STANDBY_KEYS = /^\s*(primary_conninfo|primary_slot_name|synchronous_standby_names|default_transaction_read_only)\s*=/;

/**
 * Turns a former primary into a replica of the shard's current primary: stop it, pg_rewind
 * from the new primary (crash recovery first when it was killed), keep its own configuration
 * files (pg_rewind copies the source's), stream through a slot, become a synchronous standby.
 */
export async function rejoin(a: ShardArgs & { host: string; port: number; dataDir: string; logFile?: string }): Promise<void> {
  const { connect, layout, cred, zkOpts } = target(a);
  await withSession(connect, async (s) => {
    const v = await shardView(s, layout, a.name);
    const me = `${a.host}:${a.port}`;
    if (v.primary === me) throw new Error(`${me} is the primary of shard "${a.name}": nothing to rejoin`);
    const p = { host: v.primary.slice(0, v.primary.lastIndexOf(':')), port: Number(v.primary.slice(v.primary.lastIndexOf(':') + 1)) };
    const dataDir = path.resolve(a.dataDir);
    console.log(`rejoin ${me} to shard "${a.name}" as a replica of ${v.primary}`);
    try { runAsPostgres(pgBin('pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', 'stop']); console.log('stopped the server'); } catch { /* not running */ }
    const keep = ['postgresql.conf', 'postgresql.auto.conf', 'pg_hba.conf', 'pg_ident.conf'].filter((f) => fs.existsSync(path.join(dataDir, f)))
      .map((f) => [f, fs.readFileSync(path.join(dataDir, f), 'utf8')] as const);
    // A freshly promoted primary writes its new timeline into pg_control only at a checkpoint;
    // without one pg_rewind sees the same timeline and rewinds nothing.
    await admin.withServer(p, cred, (c) => c.query('CHECKPOINT'));
    const out = runAsPostgres(pgBin('pg_rewind'), ['--target-pgdata', dataDir, '--source-server', `host=${p.host} port=${p.port} user=${cred.user} dbname=postgres`]);
    console.log(out.trim() || 'pg_rewind done');
    const slot = replicaSlotName(a.name, a.port);
    await admin.withServer(p, cred, (c) => c.query(`SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, [slot]));
    for (const [f, text] of keep) {
      let t = text;
      if (f === 'postgresql.auto.conf') {
        t = t.split('\n').filter((l) => !STANDBY_KEYS.test(l)).join('\n').replace(/\n*$/, '\n')
          + `primary_conninfo = 'host=${p.host} port=${p.port} user=${cred.user} application_name=${slot}'\nprimary_slot_name = '${slot}'\n`;
      }
      fs.writeFileSync(path.join(dataDir, f), t);
    }
    fs.writeFileSync(path.join(dataDir, 'standby.signal'), '');
    chownPostgres(dataDir);
    runAsPostgres(pgBin('pg_ctl'), ['-D', dataDir, '-l', a.logFile ?? path.join(path.dirname(dataDir), 'postgres.log'), '-w', '-t', '60', 'start']);
    console.log('started as a streaming replica');
    const deadline = Date.now() + 20000;
    for (;;) {
      const names = await admin.withServer(p, cred, async (c) => (await c.query(`SELECT application_name AS n FROM pg_stat_replication WHERE state = 'streaming'`)).rows.map((r) => r.n as string));
      if (names.includes(slot)) {
        await admin.setSyncStandbys(p, syncStandbyNames(names.filter((n) => n.startsWith('pgring_'))), cred);
        console.log(`${me} streams from ${v.primary}; synchronous_standby_names '${syncStandbyNames(names.filter((n) => n.startsWith('pgring_')))}'`);
        return;
      }
      if (Date.now() > deadline) throw new Error(`${me} started but does not stream from ${v.primary} within 20 s (see its log)`);
      await sleep(250);
    }
  }, zkOpts);
}
