// Advances one migration through its phases (docs/ARCHITECTURE.md, "Resharding"):
//   planned -> copying -> catching-up -> fencing -> switched -> cleaning -> done
//   (or rolling-back -> aborted before the flip)
// Each phase's work is idempotent and every phase change is a compare-and-set of the migration
// znode, so a controller that dies is replaced by the next one (`pgring shard resume`), which
// repeats the current phase's work and carries on.
import type { Layout } from '../cluster/layout';
import { getShard, listProxies, putShard } from '../cluster/registry';
import { readActiveRing, switchActive } from '../cluster/ring-store';
import type { ZkSession } from '../cluster/session';
import { quoteIdent } from '../ring/ring';
import { rangeFilterSql } from './plan';
import * as sql from './shard-sql';
import { casMigration, clearFence, clearFilter, FINAL, Migration, readMigration, setFence, setFilter, TableProgress, Versioned } from './store';

export interface RunnerOptions {
  creds: sql.Creds;
  /** longest write pause of one cut-over attempt (ms) */
  maxPauseMs: number;
  /** cut-over attempts before the migration rolls back */
  tries: number;
  /** rows per DELETE in the clean-up */
  batch: number;
  onUpdate?(m: Migration): void;
  /** stop after reaching this phase (tests: a controller that dies there) */
  stopAt?: Migration['phase'];
}

/** One logical-replication stream: a publication on `source`, a subscription on `target` (same name as its slot). */
export interface Stream { name: string; source: string; target: string; tables: { table: string; filter: string | null; kind: 'sharded' | 'reference' }[] }

export function streamsOf(m: Migration): Stream[] {
  const out: Stream[] = m.moves.map((mv) => ({
    name: sql.objName(m.id, mv.source, mv.target), source: mv.source, target: mv.target,
    tables: m.sharded.map((t) => ({ table: t.name, kind: 'sharded' as const, filter: rangeFilterSql(quoteIdent(t.column), t.type, m.from.seed, mv.ranges) })),
  }));
  // A new shard gets a full copy of the reference tables from a shard of the old ring.
  const ref = m.from.shards[0]!.name;
  if (m.reference.length) {
    for (const n of m.newShards) out.push({ name: sql.objName(m.id, 'ref', n.name), source: ref, target: n.name, tables: m.reference.map((t) => ({ table: t, kind: 'reference' as const, filter: null })) });
  }
  return out;
}

/** A shard's primary: a new shard of the migration, else its record in ZooKeeper. */
export async function shardAddr(s: ZkSession, layout: Layout, newShards: sql.ShardAddr[], name: string): Promise<sql.ShardAddr> {
  const n = newShards.find((x) => x.name === name);
  if (n) return n;
  const rec = await getShard(s, layout, name);
  const b = (rec?.backends as { host: string; port: number; role?: string }[] | undefined) ?? [];
  const p = b.find((x) => (x.role ?? 'primary') === 'primary');
  if (!p) throw new Error(`shard ${name} has no primary backend in its ZooKeeper record`);
  return { name, host: p.host, port: p.port };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class MigrationRunner {
  private cur!: Versioned<Migration>;
  constructor(readonly s: ZkSession, readonly layout: Layout, readonly opts: RunnerOptions) {}

  get migration(): Migration { return this.cur.value; }

  async run(id: string): Promise<Migration> {
    const m = await readMigration(this.s, this.layout, id);
    if (!m) throw new Error(`no migration ${id}`);
    this.cur = m;
    while (!FINAL.includes(this.cur.value.phase)) {
      const phase = this.cur.value.phase;
      if (this.opts.stopAt === phase) return this.cur.value;
      try {
        await this.step();
      } catch (e) {
        await this.note(`${phase}: ${(e as Error).message}`);
        throw e;
      }
    }
    return this.cur.value;
  }

  private async step(): Promise<void> {
    switch (this.cur.value.phase) {
      case 'planned': return this.prepare();
      case 'copying': return this.waitCopied();
      case 'catching-up': return this.waitLag();
      case 'fencing': return this.cutOver();
      case 'switched': return this.release();
      case 'cleaning': return this.clean();
      case 'rolling-back': return this.rollBack();
      default: throw new Error(`migration ${this.cur.value.id}: unknown phase ${this.cur.value.phase}`);
    }
  }

  private async save(patch: Partial<Migration>): Promise<void> {
    this.cur = await casMigration(this.s, this.layout, this.cur, { ...this.cur.value, ...patch });
    this.opts.onUpdate?.(this.cur.value);
  }

  private async note(line: string): Promise<void> {
    const log = [...this.cur.value.log, `${new Date().toISOString()} ${line}`].slice(-30);
    await this.save({ log }).catch(() => undefined);
  }

  addr(name: string): Promise<sql.ShardAddr> { return shardAddr(this.s, this.layout, this.cur.value.newShards, name); }

  private shard<T>(name: string, fn: (c: import('pg').Client) => Promise<T>): Promise<T> {
    return this.addr(name).then((a) => sql.withShard(a, this.cur.value.database, this.opts.creds, fn));
  }

  /** planned: shard records, databases and schema on the targets, replica identities, publications, subscriptions. */
  private async prepare(): Promise<void> {
    const m = this.cur.value;
    for (const n of m.newShards) await putShard(this.s, this.layout, { name: n.name, weight: m.to.shards.find((x) => x.name === n.name)?.weight ?? 1, backends: [{ host: n.host, port: n.port, role: 'primary' }] });
    const streams = streamsOf(m);
    const schemaFrom = await this.addr(m.from.shards[0]!.name);
    const tables = [...m.sharded.map((t) => t.name), ...m.reference];
    // Shards whose sequence ranges a new shard's must not overlap: the old ones, then each new one done.
    const ranged = await Promise.all(m.from.shards.map((x) => this.addr(x.name)));
    for (const tgt of new Set(streams.map((x) => x.target))) {
      const a = await this.addr(tgt);
      await sql.ensureDatabase(a, m.database, this.opts.creds);
      const made = await sql.copySchema(schemaFrom, a, m.database, this.opts.creds, tables);
      if (made.length) await this.note(`schema of ${made.join(', ')} created on ${tgt}`);
      if (!m.newShards.some((n) => n.name === tgt)) continue;
      const moved = await sql.moveSequencesToFreeRange(a, ranged, m.database, this.opts.creds, m.sharded.map((t) => t.name));
      if (moved.length) await this.note(`sequences ${moved.join(', ')} on ${tgt} moved to a value range of their own`);
      ranged.push(a);
    }
    const identityFull = [...m.identityFull];
    for (const src of new Set(streams.map((x) => x.source))) {
      await this.shard(src, async (c) => {
        for (const t of m.sharded) {
          const r = await sql.identityCheck(c, t.name, t.column);
          if (r === 'full-needed' && !identityFull.some((x) => x.shard === src && x.table === t.name)) {
            identityFull.push({ shard: src, table: t.name });
            await this.save({ identityFull });   // recorded first: the clean-up restores it
            await sql.setIdentity(c, t.name, true);
          }
        }
      });
    }
    // Before any row is copied: every proxy filters reads spanning shards to the rows each shard
    // owns (a copy on a target already in the ring would otherwise be read twice).
    await setFilter(this.s, this.layout, { migration: m.id, tables: m.sharded });
    if (!(await this.proxiesAll((p) => p.reshardFilter === m.id, Date.now() + 60000))) {
      throw new Error('proxies do not acknowledge the read filter of the migration within 60 s; run `pgring shard resume` again');
    }
    const progress: TableProgress[] = [];
    for (const st of streams) {
      await this.shard(st.source, async (c) => {
        await sql.ensurePublication(c, st.name, st.tables);
        for (const t of st.tables) progress.push({ table: t.table, kind: t.kind, source: st.source, target: st.target, expected: await sql.countWhere(c, t.table, t.filter), copied: 0 });
      });
      const src = await this.addr(st.source);
      await this.shard(st.target, (c) => sql.ensureSubscription(c, st.name, sql.conninfo(src, m.database, this.opts.creds), st.name));
    }
    await this.save({ phase: 'copying', progress });
  }

  private async refreshProgress(): Promise<string[]> {
    const m = this.cur.value;
    const waiting: string[] = [];
    const progress = m.progress.map((p) => ({ ...p }));
    let lag = 0;
    for (const st of streamsOf(m)) {
      waiting.push(...(await this.shard(st.target, (c) => sql.notReady(c, st.name))).map((t) => `${t} on ${st.target}`));
      await this.shard(st.target, async (c) => {
        for (const t of st.tables) {
          const p = progress.find((x) => x.table === t.table && x.source === st.source && x.target === st.target);
          if (p) p.copied = await sql.countWhere(c, t.table, t.filter);
        }
      });
      lag += (await this.shard(st.source, (c) => sql.slotLag(c, st.name))) ?? 0;
    }
    await this.save({ progress, lagBytes: lag });
    return waiting;
  }

  private async waitCopied(): Promise<void> {
    for (;;) {
      const waiting = await this.refreshProgress();
      if (waiting.length === 0) break;
      await sleep(500);
    }
    await this.save({ phase: 'catching-up' });
  }

  private async waitLag(): Promise<void> {
    for (;;) {
      await this.refreshProgress();
      if ((this.cur.value.lagBytes ?? 0) < 4 * 1024 * 1024) break;
      await sleep(300);
    }
    await this.save({ phase: 'fencing' });
  }

  /** Every live proxy's znode says `ok`; false when the deadline passed first. */
  private async proxiesAll(ok: (p: Awaited<ReturnType<typeof listProxies>>[number]) => boolean, deadline: number): Promise<boolean> {
    for (;;) {
      const behind = (await listProxies(this.s, this.layout)).filter((p) => !ok(p));
      if (behind.length === 0) return true;
      if (Date.now() > deadline) return false;
      await sleep(20);
    }
  }

  /** fencing: hold writes, wait for acks, prepared transactions and catch-up, drop the streams, flip. */
  private async cutOver(): Promise<void> {
    const m = this.cur.value;
    const active = await readActiveRing(this.s, this.layout);
    if (active?.version === m.toVersion) { await this.save({ phase: 'switched' }); return; }
    if (active?.version !== m.fromVersion) throw new Error(`ring version ${active?.version} is active, expected ${m.fromVersion}: another change happened; resolve by hand`);
    if (!m.dropped) {
      if (m.fenceToken) { await this.dropGuards(); await clearFence(this.s, this.layout); }   // a dead controller's attempt
      const ok = await this.attempt();
      if (!ok) {
        await this.dropGuards();
        await clearFence(this.s, this.layout);
        const attempts = this.cur.value.attempts;
        await this.note(`cut-over attempt ${attempts} did not finish within ${this.opts.maxPauseMs} ms; writes unfenced`);
        if (attempts >= this.opts.tries) {
          await this.save({ phase: 'rolling-back', error: `the cut-over did not finish within ${this.opts.maxPauseMs} ms in ${attempts} tries (proxies not acknowledging, long transactions or replication lag)` });
        }
        await sleep(1000);
        return;
      }
    } else {
      // A controller died after dropping the streams: the fence still stands (writes to the moving
      // arcs were held since), so the targets are complete; acknowledgements are checked again.
      const ok = await this.proxiesAll((p) => p.reshardAck === m.fenceToken, Date.now() + 60000);
      if (!ok) throw new Error('proxies do not acknowledge the fence; the migration stays fenced: run `pgring shard resume` again');
      for (const st of streamsOf(m)) await this.shard(st.target, (c) => sql.dropSubscription(c, st.name));   // it may have died half-way
    }
    const a = await readActiveRing(this.s, this.layout);
    if (a && a.version === m.fromVersion) await switchActive(this.s, this.layout, m.toVersion!, a.activeStatVersion);
    await this.note(`ring version ${m.toVersion} active`);
    await this.save({ phase: 'switched' });
  }

  private async attempt(): Promise<boolean> {
    const m = this.cur.value;
    const token = `${m.id}.${m.attempts + 1}`;
    await this.save({ attempts: m.attempts + 1, fenceToken: token });
    const streams = streamsOf(m);
    await this.guard(streams, false);   // triggers in place, not yet rejecting: outside the pause
    const t0 = Date.now();
    const deadline = t0 + this.opts.maxPauseMs;
    await setFence(this.s, this.layout, { token, migration: m.id, fromVersion: m.fromVersion, toVersion: m.toVersion!, since: t0 });
    if (!(await this.proxiesAll((p) => p.reshardAck === token, deadline))) return false;
    const tAck = Date.now();
    await this.guard(streams, true);
    const tGuard = Date.now();
    for (const src of new Set(streams.map((x) => x.source))) {
      const ok = await this.shard(src, async (c) => {
        // Every transaction that was running on the source when the proxies acknowledged has
        // ended (a proxy counts a transaction as ended when it forwards its COMMIT, which may
        // still be in flight), so the LSN below follows every write to the moving rows.
        const horizon = await sql.xidHorizon(c);
        while ((await sql.oldestRunningXid(c)) < horizon) { if (Date.now() > deadline) return false; await sleep(10); }
        while ((await sql.preparedCount(c)) > 0) { if (Date.now() > deadline) return false; await sleep(20); }
        const lsn = await sql.currentLsn(c);
        for (const st of streams.filter((x) => x.source === src)) {
          for (;;) {
            const lag = await sql.slotLag(c, st.name, lsn);
            if (lag === null) throw new Error(`replication slot ${st.name} is missing on ${src}`);
            if (lag <= 0) break;
            if (Date.now() > deadline) return false;
            await sleep(10);
          }
        }
        return true;
      });
      if (!ok) return false;
    }
    const tCaught = Date.now();
    // Writes without a key (reference tables) wait at the fence: the new shards' copies of the
    // reference tables' sequences are set to the sources' values before the flip.
    for (const st of streams.filter((x) => x.tables.some((t) => t.kind === 'reference'))) {
      const synced = await sql.syncSequences(await this.addr(st.source), await this.addr(st.target), m.database, this.opts.creds, m.reference);
      if (synced.length) await this.note(`sequences ${synced.join(', ')} of reference tables set on ${st.target} as on ${st.source}`);
    }
    await this.save({ dropped: true });
    // The subscriptions stop before the flip (a reference table's change must not be applied
    // twice on a new shard); their slots on the sources are dropped after it (release).
    for (const st of streams) await this.shard(st.target, (c) => sql.dropSubscription(c, st.name));
    const t1 = Date.now();
    await this.note(`cut-over: proxies held writes, targets caught up in ${t1 - t0} ms (acknowledged ${tAck - t0}, guard armed ${tGuard - tAck}, caught up ${tCaught - tGuard}, subscriptions dropped ${t1 - tCaught})`);
    return true;
  }

  /** Guard triggers on every source: writes to the moving rows that bypass the proxies fail. */
  private async guard(streams: Stream[], arm: boolean): Promise<void> {
    const m = this.cur.value;
    for (const src of new Set(streams.map((x) => x.source))) {
      const parts = streams.filter((x) => x.source === src).flatMap((st) => {
        const mv = m.moves.find((x) => x.source === st.source && x.target === st.target);
        if (!mv) return [];
        return m.sharded.map((t) => ({ table: t.name, trigger: sql.objName(m.id, 'guard', st.target), filterOf: (ref: 'NEW' | 'OLD') => rangeFilterSql(`${ref}.${quoteIdent(t.column)}`, t.type, m.from.seed, mv.ranges) }));
      });
      if (!parts.length) continue;
      await this.shard(src, (c) => (arm ? sql.armGuard(c, sql.objName(m.id, 'guard'), m.id) : sql.ensureGuard(c, sql.objName(m.id, 'guard'), parts)));
    }
  }

  private async dropGuards(): Promise<void> {
    const m = this.cur.value;
    for (const src of new Set(m.moves.map((x) => x.source))) await this.shard(src, (c) => sql.dropGuard(c, sql.objName(m.id, 'guard')));
  }

  private async dropStreams(streams: Stream[]): Promise<void> {
    for (const st of streams) {
      await this.shard(st.target, (c) => sql.dropSubscription(c, st.name));
      await this.shard(st.source, (c) => sql.dropSlot(c, st.name));
    }
  }

  /** switched: every proxy routes by the new ring; then the fence goes and the publications. */
  private async release(): Promise<void> {
    const m = this.cur.value;
    if (!(await this.proxiesAll((p) => (p.ringVersion ?? 0) >= m.toVersion!, Date.now() + 120000))) {
      throw new Error(`proxies have not switched to ring version ${m.toVersion}; run \`pgring shard resume\` again`);
    }
    await clearFence(this.s, this.layout);
    for (const st of streamsOf(m)) {
      await this.shard(st.target, (c) => sql.dropSubscription(c, st.name));   // a resumed cut-over may have left one
      await this.shard(st.source, (c) => sql.dropSlot(c, st.name));
      await this.shard(st.source, (c) => sql.dropPublication(c, st.name));
    }
    await this.save({ phase: 'cleaning' });
  }

  /** cleaning: the moved rows leave their old shards, in batches; replica identities are restored. */
  private async clean(): Promise<void> {
    const m = this.cur.value;
    for (const st of streamsOf(m)) {
      for (const t of st.tables) {
        if (t.kind !== 'sharded' || !t.filter) continue;
        const n = await this.shard(st.source, (c) => sql.deleteBatched(c, t.table, t.filter!, this.opts.batch));
        if (n) await this.note(`deleted ${n} moved rows of ${t.table} on ${st.source}`);
      }
    }
    await this.dropGuards();
    await this.restoreIdentity();
    await clearFilter(this.s, this.layout);   // no shard holds rows it does not own any more
    await this.save({ phase: 'done' });
  }

  private async restoreIdentity(): Promise<void> {
    for (const x of this.cur.value.identityFull) await this.shard(x.shard, (c) => sql.setIdentity(c, x.table, false));
  }

  /** rolling-back (before the flip only): streams, publications and copied rows go; the old ring stays. */
  private async rollBack(): Promise<void> {
    const m = this.cur.value;
    await this.dropGuards();
    await clearFence(this.s, this.layout);
    const streams = streamsOf(m);
    await this.dropStreams(streams);
    for (const st of streams) {
      await this.shard(st.source, (c) => sql.dropPublication(c, st.name));
      for (const t of st.tables) {
        if (t.kind === 'reference' && !m.newShards.some((n) => n.name === st.target)) continue;
        await this.shard(st.target, (c) => sql.deleteBatched(c, t.table, t.filter ?? 'true', this.opts.batch));
      }
    }
    await this.restoreIdentity();
    await clearFilter(this.s, this.layout);
    await this.save({ phase: 'aborted' });
  }
}
