// COPY FROM STDIN: forwarding CopyData/CopyDone/CopyFail, and splitting rows across shards.
import { B, F } from '../protocol/codes';
import { PgError, SQLSTATE } from '../protocol/errors';
import type { RoutedStatement } from '../router/router';
import { routeShards } from './routing';
import { Group } from './group';
import { CopySplitter } from './copy';
import type { ClientSession } from './client';
import { K } from './session-types';
import type { Link } from './session-types';
import { quoteLiteral } from './session-util';
import { columnsOf } from './reference-defaults';
import { copyFail, copyWithColumns, COPY_DONE, divergentDefaults, ReferenceCopy } from './copy-reference';
import { copyDataMessage, query } from '../protocol/messages';

export class CopyIn {
  constructor(private readonly s: ClientSession) {}

  /** The commit of an autocommit COPY over several shards, set when it started: the client's
   *  CopyDone / CopyFail makes it the work nothing may overtake (the pump waits for it). */
  private implicitCommit: Promise<void> | null = null;

  onCopyMessage(type: number, msg: Buffer): void {
    if (type !== F.CopyData && this.implicitCommit) { this.s.blockingWork = this.implicitCommit; this.implicitCommit = null; }
    if (this.s.copySplit) {
      this.s.copySplit.clientMessage(type, msg);
      if (type !== F.CopyData) this.s.copySplit = null;
      return;
    }
    const links = this.s.copyLinks ?? this.s.attachedLinks.slice(-1);
    for (const l of links) l.conn.write(msg);
    if (type !== F.CopyData) this.s.copyLinks = null;
  }

  /**
   * COPY FROM STDIN over every shard: into a sharded table each row goes to the shard that owns
   * its key (CopySplitter); into a reference table every shard gets every row. Outside a
   * transaction the shards' COPYs run in one distributed transaction (BEGIN on each, committed
   * together, two-phase with the transaction layer), as PostgreSQL's COPY is one statement:
   * a row one shard refuses leaves no row on any shard.
   */
  async startCopySplit(stmt: RoutedStatement, msg: Buffer): Promise<void> {
    const spec = stmt.plan.copy!;
    const reference = stmt.plan.target !== 'sharded';
    const shards = routeShards({ kind: 'all' }, this.s.ctx.shards.shardCount);
    await this.s.simple.beforeWrite(stmt, shards, null, null);
    const implicit = this.s.txStatus === 'I' && !this.s.virtualTx;
    if (implicit) this.s.transaction.beginImplicit();
    const links: Link[] = [];
    let splitter: CopySplitter | null = null;
    try {
      for (const s of shards) links.push(await this.s.servers.link(s));
      if (reference && links.length > 1) {
        await this.alignSequences(spec.table, links);
        const chunked = await this.referenceChunks(stmt, links, implicit);
        if (chunked) return;
      }
      if (!reference) splitter = new CopySplitter(spec, await this.copyKeyIndex(stmt, links[0]!), stmt.plan.keyType!, this.s.ctx.shards, links.map((l) => l.conn), (b) => this.s.text(b));
    } catch (e) {
      if (implicit) await this.s.transaction.endImplicit(true);
      throw e;
    }
    const group = new Group(reference ? 'first' : 'copy', links.length, stmt, []);
    links.forEach((l, i) => {
      const p = this.s.responses.push(K.Query, l, false);
      p.group = group; p.member = i; p.plans = [stmt];
    });
    const result = this.s.responses.push(K.GroupResult, null, false);
    if (splitter) this.s.copySplit = splitter; else this.s.copyLinks = links;
    group.onCopyIn = (first) => { if (first) { this.s.write(first); this.s.flush(); } };
    let finished: (msgs: Buffer[]) => void = () => undefined;
    if (implicit) {
      this.implicitCommit = new Promise<Buffer[]>((resolve) => { finished = resolve; }).then(async (msgs) => {
        const err = await this.s.transaction.endImplicit(msgs.some((m) => m[0] === B.ErrorResponse));
        if (err) this.s.ctx.metrics?.error(err.code);
        result.out = err ? [err.toMessage()] : msgs;
        this.s.responses.complete(result);
      });
    }
    group.onFinish = (msgs) => {
      const out = splitter?.error ? [splitter.error.toMessage()] : msgs;
      this.s.copySplit = null;
      if (implicit) { finished(out); return; }
      result.out = out;
      this.s.responses.complete(result);
    };
    for (const l of links) { l.conn.busy = true; l.conn.write(msg); }
    this.s.responses.rfq();
  }

  /**
   * COPY into a reference table leaving out a column whose default the shards would each evaluate
   * differently (copy-reference.ts): pgring answers the COPY itself and runs it on the shards in
   * chunks, with the first shard's values of those defaults. False when the COPY needs none of it.
   */
  private async referenceChunks(stmt: RoutedStatement, links: Link[], implicit: boolean): Promise<boolean> {
    const spec = stmt.plan.copy!;
    if (!spec.columns) return false;
    const extra = divergentDefaults(await columnsOf(this.s, links[0]!, spec.table), spec.columns);
    if (extra.length === 0) return false;
    const names = extra.map((c) => `"${c.name}" (DEFAULT ${c.expr})`).join(', ');
    if (spec.format === 'binary') {
      throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: binary COPY into reference table "${spec.table}" that leaves out ${names} is not supported: each shard would evaluate the default itself`, { hint: 'List the column in the COPY, or use text or csv format.' });
    }
    const sql = copyWithColumns(stmt.sql, extra.map((c) => c.name));
    if (sql === null) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: cannot add ${names} to this COPY into reference table "${spec.table}"`, { hint: 'List the column in the COPY.' });
    const evalSql = (n: number): string => `SELECT ${extra.map((c) => `(${c.expr})::${c.type}`).join(', ')} FROM pg_catalog.generate_series(1, ${n})`;
    const onLinks = (tail: Buffer, count: boolean): Promise<{ count: number } | { error: Buffer }> => Promise.all(links.map((l) => new Promise<{ count: number; error: Buffer | null }>((resolve) => {
      if (l.conn.closed) { resolve({ count: 0, error: new PgError(SQLSTATE.ConnectionFailure, `pgring: the connection to shard "${this.s.ctx.topology.shards[l.shard]?.name}" is closed`).toMessage() }); return; }
      const r = { count: 0, error: null as Buffer | null };
      const p = this.s.responses.push(K.InternalRows, l, false);
      p.rows = [];
      p.onError = (m) => { r.error ??= m ?? null; };
      if (count) p.onCommand = (m) => { r.count = Number(/\d+/.exec(m.toString('latin1', 5, m.length - 1))?.[0] ?? 0); };
      p.onDone = () => resolve(r);
      l.conn.write(Buffer.concat([query(sql), tail]));
      this.s.flush();
    }))).then((rs) => {
      const bad = rs.find((r) => r.error);
      return bad ? { error: bad.error! } : { count: rs[0]!.count };
    });
    const copy = new ReferenceCopy(spec, extra, {
      evaluate: (n) => this.s.servers.queryRows(links[0]!, evalSql(n)),
      copy: (data) => onLinks(Buffer.concat([copyDataMessage(Buffer.concat(data)), COPY_DONE]), true),
      fail: (reason) => onLinks(copyFail(reason), false).then(() => undefined),
      encode: (t) => this.s.sqlBytes(t) ?? Buffer.from(t, 'utf8'),
    });
    const result = this.s.responses.push(K.GroupResult, null, false);
    const finish = async (msg: Buffer): Promise<void> => {
      const failed = msg[0] === B.ErrorResponse;
      let out = msg;
      if (implicit) {
        const err = await this.s.transaction.endImplicit(failed);
        if (err) { this.s.ctx.metrics?.error(err.code); out = err.toMessage(); }
      }
      result.out = [out];
      this.s.responses.complete(result);
      this.s.flush();
    };
    this.s.copySplit = {
      clientMessage: (type, msg) => {
        if (type === F.CopyData) { const w = copy.data(msg.subarray(5)); if (w) this.s.blockingWork = w; return; }
        if (type === F.CopyDone) { this.s.blockingWork = copy.done().then(finish); return; }
        this.s.blockingWork = copy.failed(msg.toString('utf8', 5, msg.length - 1)).then(finish);
      },
    };
    this.s.responses.out(result, ReferenceCopy.copyInResponse(spec.columns.length));
    this.s.responses.rfq();
    this.s.flush();
    return true;
  }

  /**
   * Before a COPY into a reference table, every shard's sequences that the table's defaults draw
   * from (serial, identity, DEFAULT nextval(...)) are brought to the one furthest along. Each shard
   * fills the defaults of the rows it copies itself, from its own sequence, in the same row order;
   * but an INSERT's defaults are evaluated once, on the first shard (reference-defaults.ts), so only
   * that shard's sequence moved: `INSERT` then `COPY t (v)` gave the copied rows ids the other
   * shards had already used (23505 there, where PostgreSQL copies them) or, worse, other ids on
   * each shard. Writers of a reference table queue for its lock, so no other write moves them meanwhile.
   */
  private async alignSequences(table: string, links: Link[]): Promise<void> {
    const t = `${quoteLiteral(table)}::pg_catalog.regclass`;
    const seqs = await this.s.servers.queryRows(links[0]!, 'SELECT s.oid::pg_catalog.regclass::pg_catalog.text, q.seqincrement < 0 FROM pg_catalog.pg_class s JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid'
      + ` WHERE s.oid IN (SELECT d.refobjid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attrdef a ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = a.oid WHERE a.adrelid = ${t})`
      + ` OR s.oid IN (SELECT d.objid FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = ${t} AND d.deptype IN ('a', 'i'))`);
    if (seqs.length === 0) return;
    const names = seqs.map((r) => `${quoteLiteral(r[0]!)}::pg_catalog.regclass`);
    const last = await Promise.all(links.map((l) => this.s.servers.queryRows(l, `SELECT ${names.map((n) => `pg_catalog.pg_sequence_last_value(${n})::pg_catalog.text`).join(', ')}`)));
    const furthest = seqs.map((r, i) => {
      let best: bigint | null = null;
      for (const rows of last) {
        const v = rows[0]?.[i];
        if (v == null) continue;
        const b = BigInt(v);
        if (best === null || (r[1] === 't' ? b < best : b > best)) best = b;
      }
      return best;
    });
    await Promise.all(links.map((l, li) => {
      const sets = names.flatMap((n, i) => (furthest[i] !== null && last[li]![0]?.[i] !== String(furthest[i]) ? [`pg_catalog.setval(${n}, ${furthest[i]}, true)`] : []));
      return sets.length ? this.s.servers.queryRows(l, `SELECT ${sets.join(', ')}`) : null;
    }));
  }

  /** Position of the shard key in the COPY rows: from the column list, the config, or the catalog. */
  async copyKeyIndex(stmt: RoutedStatement, link: Link): Promise<number> {
    const spec = stmt.plan.copy!;
    if (spec.keyColumnIndex !== null) return spec.keyColumnIndex;
    const table = this.s.ctx.config.sharding.tables.find((t) => t.name === stmt.plan.table);
    if (spec.columns) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: COPY into sharded table "${spec.table}" must include its shard key column "${table?.column}"`);
    if (table?.columns) {
      const i = table.columns.indexOf(table.column);
      if (i >= 0) return i;
    }
    const rows = await this.s.servers.queryRows(link, `SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = ${quoteLiteral(spec.table)}::pg_catalog.regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`);
    const i = rows.findIndex((r) => r[0] === table?.column);
    if (i < 0) throw new PgError(SQLSTATE.FeatureNotSupported, `pgring: cannot find shard key column "${table?.column}" of table "${spec.table}"`);
    return i;
  }
}
