// COPY FROM STDIN: forwarding CopyData/CopyDone/CopyFail, and splitting rows across shards.
import { F } from '../protocol/codes';
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

  onCopyMessage(type: number, msg: Buffer): void {
    if (this.s.copySplit) {
      this.s.copySplit.clientMessage(type, msg);
      if (type !== F.CopyData) this.s.copySplit = null;
      return;
    }
    const links = this.s.copyLinks ?? this.s.attachedLinks.slice(-1);
    for (const l of links) l.conn.write(msg);
    if (type !== F.CopyData) this.s.copyLinks = null;
  }

  async startCopySplit(stmt: RoutedStatement, msg: Buffer): Promise<void> {
    const spec = stmt.plan.copy!;
    const keyType = stmt.plan.keyType!;
    const shards = routeShards({ kind: 'all' }, this.s.ctx.shards.shardCount);
    const links: Link[] = [];
    for (const s of shards) links.push(await this.s.servers.link(s));
    const keyIndex = await this.copyKeyIndex(stmt, links[0]!);
    const splitter = new CopySplitter(spec, keyIndex, keyType, this.s.ctx.shards, links.map((l) => l.conn));
    await this.s.simple.beforeWrite(stmt, shards, null, null);
    const group = new Group('copy', links.length, stmt, []);
    links.forEach((l, i) => {
      const p = this.s.responses.push(K.Query, l, false);
      p.group = group; p.member = i; p.plans = [stmt];
    });
    const result = this.s.responses.push(K.GroupResult, null, false);
    this.s.copySplit = splitter;
    group.onCopyIn = (first) => { if (first) { this.s.write(first); this.s.flush(); } };
    group.onFinish = (msgs) => {
      result.out = splitter.error ? [splitter.error.toMessage()] : msgs;
      this.s.copySplit = null;
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
