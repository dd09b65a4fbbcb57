// Which shards a statement runs on, for this session (hints, SET pgring.shard_key, bound
// parameters, the links in use). The key-to-shard mapping itself is in routing.ts.
import * as reads from './read-routing';
import type { KeyType } from '../config/types';
import { PgError, SQLSTATE } from '../protocol/errors';
import type { Plan, RoutedStatement } from '../router/router';
import { Route, directRoute, shardByName, shardsForKeys } from './routing';
import type { ClientSession } from './client';
import { keyLiteral, pushKey } from './session-util';

export class SessionRouting {
  constructor(private readonly s: ClientSession) {}

  /** Which shards a statement runs on. */
  route(stmt: RoutedStatement, params: (Buffer | null)[] | null, formats: number[] | null): Route {
    const r = this.routeStatement(stmt, params, formats);
    if (stmt.plan.command === 'declare_cursor' && r.kind === 'direct' && stmt.plan.cursor) this.noteCursor(stmt.plan.cursor, r.shard);
    return r;
  }

  /** DECLARE records where its cursor lives (bounded: oldest first out). */
  private noteCursor(name: string, shard: number): void {
    const m = this.s.cursorShards ??= new Map();
    m.delete(name);
    if (m.size >= 1000) m.delete(m.keys().next().value as string);
    m.set(name, shard);
  }

  /** FETCH / MOVE / CLOSE go where their DECLARE went (a transaction may have other shards
   *  attached, and the lowest of them is not necessarily the cursor's); CLOSE ALL to every shard in use. */
  private cursorRoute(name: string | null | undefined): Route | null {
    if (name) {
      const shard = this.s.cursorShards?.get(name);
      return shard !== undefined && shard < this.s.ctx.shards.shardCount ? { kind: 'direct', shard } : null;
    }
    const shards = this.s.attachedLinks.map((l) => l.shard).sort((a, b) => a - b);
    return shards.length > 1 ? { kind: 'multi', shards } : null;
  }

  private routeStatement(stmt: RoutedStatement, params: (Buffer | null)[] | null, formats: number[] | null): Route {
    const plan = stmt.plan;
    const hint = stmt.hint ?? plan.hint;
    if (hint?.shard !== undefined) return { kind: 'direct', shard: shardByName(this.s.ctx.shards, hint.shard) };
    if (hint?.shardKey !== undefined) return { kind: 'direct', shard: this.s.ctx.shards.shardForKey(plan.keyType ?? this.defaultKeyType(), hint.shardKey) };
    if (this.s.routeShard !== null) return { kind: 'direct', shard: shardByName(this.s.ctx.shards, this.s.routeShard) };
    if (this.s.routeShardKey !== null) return { kind: 'direct', shard: this.s.ctx.shards.shardForKey(plan.keyType ?? this.defaultKeyType(), this.s.routeShardKey) };
    const n = this.s.ctx.shards.shardCount;
    if (n === 1) return directRoute(0);
    const g = this.s.gidShard;
    if (g !== null && g.gid === plan.gid) { this.s.gidShard = null; if (g.shard >= 0) return { kind: 'direct', shard: g.shard }; }
    if (plan.command === 'fetch' || plan.command === 'close_cursor') {
      const r = this.cursorRoute(plan.cursor);
      if (r) return r;
    }
    if (plan.savepoint !== undefined || (plan.setVar !== undefined && (plan.setVar.local || plan.setVar.name === 'transaction') && this.s.txStatus !== 'I')) {
      // SAVEPOINT / RELEASE / ROLLBACK TO act on every shard in the transaction (shards that join
      // later get the savepoints replayed after their BEGIN); with none yet, one shard starts it.
      // SET LOCAL and SET TRANSACTION too (shards that join later get them with their BEGIN).
      const shards = this.s.attachedLinks.map((l) => l.shard).sort((a, b) => a - b);
      if (shards.length > 1) return { kind: 'multi', shards };
      if (shards.length === 1) return { kind: 'direct', shard: shards[0]! };
    }
    if (plan.command === 'ddl') return { kind: 'all' };
    // LISTEN / UNLISTEN / NOTIFY meet on one shard, whatever else the session uses
    if (plan.command === 'listen' || plan.command === 'unlisten' || plan.command === 'notify') return { kind: 'direct', shard: this.notifyShard() };
    // advisory locks too: two sessions locking the same number must lock it on the same server
    if (plan.advisory && plan.target === 'none') return { kind: 'direct', shard: this.notifyShard() };
    if (plan.target === 'sharded') {
      if (plan.keys && plan.keyType) {
        const values: (string | null)[] = [];
        for (const k of plan.keys) {
          if (k.kind === 'literal') pushKey(values, keyLiteral(stmt, k.slot, plan.keyType), k.array);
          else if (k.kind === 'value') pushKey(values, k.text, k.array);
          else {
            const v = params?.[k.index];
            if (v === undefined) throw new PgError(SQLSTATE.ProtocolViolation, `bind message supplies ${params?.length ?? 0} parameters, but the shard key uses $${k.index + 1}`);
            if (v === null) { values.push(null); continue; }
            const fmt = formats && formats.length ? (formats.length === 1 ? formats[0] : formats[k.index]) : 0;
            if (fmt === 1) {
              if (k.array) return { kind: 'all' }; // binary arrays: not decoded, ask every shard
              return this.binaryRoute(plan.keyType, plan.keys, params!, formats!, stmt);
            }
            pushKey(values, this.s.text(v), k.array);
          }
        }
        return shardsForKeys(this.s.ctx.shards, plan.keyType, values);
      }
      return { kind: 'all' };
    }
    if (plan.target === 'reference' && plan.write) return { kind: 'all' };
    return { kind: 'direct', shard: this.preferredShard() };
  }

  binaryRoute(type: KeyType, keys: Plan['keys'], params: (Buffer | null)[], formats: number[], stmt: RoutedStatement): Route {
    const seen = new Set<number>();
    for (const k of keys!) {
      if (k.kind === 'literal') { const t = keyLiteral(stmt, k.slot, type); if (t != null) seen.add(this.s.ctx.shards.shardForKey(type, t)); continue; }
      if (k.kind === 'value') { if (k.text !== null) seen.add(this.s.ctx.shards.shardForKey(type, k.text)); continue; }
      const v = params[k.index];
      if (v == null) continue;
      const fmt = formats.length === 1 ? formats[0] : formats[k.index];
      seen.add(fmt === 1 ? this.s.ctx.shards.shardForBinaryKey(type, v) : this.s.ctx.shards.shardForKey(type, this.s.text(v)));
    }
    if (seen.size <= 1) return { kind: 'direct', shard: seen.size ? seen.values().next().value as number : 0 };
    return { kind: 'multi', shards: [...seen].sort((a, b) => a - b) };
  }

  defaultKeyType(): KeyType { return this.s.ctx.config.sharding.tables[0]?.type ?? 'text'; }

  /** Shard for statements that touch no sharded table: one already in use, else a live one. */
  /** The shard where every session's LISTEN, NOTIFY and advisory locks go, so that they meet: the first live one. */
  notifyShard(): number { return this.s.ctx.topology.anyLiveShard(0); }

  preferredShard(): number {
    for (const l of this.s.links) if (l) return l.shard;
    return this.s.ctx.topology.anyLiveShard(0);
  }

  /** pgring's own settings (SET pgring.shard_key / pgring.shard): consumed here. */
  ownSetting(stmt: RoutedStatement): boolean {
    const v = stmt.plan.setVar;
    if (!v || !v.name.startsWith('pgring.')) return false;
    if (v.name === 'pgring.shard_key') this.s.routeShardKey = v.value;
    else if (v.name === 'pgring.shard') {
      if (v.value !== null) shardByName(this.s.ctx.shards, v.value);
      this.s.routeShard = v.value;
    } else if (v.name === 'pgring.reads') reads.setReads(this.s, v.value);
    else if (v.name === 'all') return false;
    else throw new PgError(SQLSTATE.InvalidParameterValue, `unrecognized configuration parameter "${v.name}"`, { hint: 'pgring knows pgring.shard_key, pgring.shard and pgring.reads' });
    return true;
  }

  /** For Parse/Describe of a statement before any Bind: a shard already in use, else where its key would go. */
  preferredShardFor(_stmt: RoutedStatement): number {
    for (const l of this.s.unitLinks) return l.shard;
    return this.preferredShard();
  }
}
