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
