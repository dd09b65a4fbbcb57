// A multi-row INSERT whose rows belong to different shards, split per shard (pure, no I/O).
// Each shard gets head + its rows + tail; with bind parameters, the parameters its text uses are
// renumbered $1..$k in order of their old numbers, and the Bind carries just those values. The
// rows each shard got (statement positions) let RETURNING rows come back in the statement's order.
import { tokenize } from '../router/lexer';
import type { InsertSplit, KeyRef } from '../router/types';

export interface InsertPart {
  shard: number;
  /** statement positions of the rows this shard inserts, ascending */
  rows: number[];
  sql: string;
  /** old 0-based parameter index of each new parameter $1..$k (empty without parameters) */
  params: number[];
}

/** Rows grouped by shard (`shardOf` throws for a key that cannot be routed), shards ascending. */
export function splitInsertRows(split: InsertSplit, shardOf: (key: KeyRef) => number): InsertPart[] {
  const byShard = new Map<number, number[]>();
  split.rows.forEach((row, i) => {
    const sh = shardOf(row.key);
    let list = byShard.get(sh);
    if (!list) byShard.set(sh, list = []);
    list.push(i);
  });
  return [...byShard.keys()].sort((a, b) => a - b).map((shard) => {
    const rows = byShard.get(shard)!;
    const sql = split.head + rows.map((i) => split.rows[i]!.sql).join(', ') + split.tail;
    return { shard, rows, sql, params: [] };
  });
}

/** Renumbers the $n parameters of `part.sql` to $1..$k (k = distinct parameters used). */
export function renumberParams(part: InsertPart): InsertPart {
  const toks = tokenize(part.sql).filter((t) => t.type === 'param');
  const used = [...new Set(toks.map((t) => Number(t.text.slice(1)) - 1))].sort((a, b) => a - b);
  const map = new Map(used.map((old, i) => [old, i + 1]));
  let out = '';
  let pos = 0;
  for (const t of toks) {
    out += part.sql.slice(pos, t.start) + '$' + map.get(Number(t.text.slice(1)) - 1);
    pos = t.end;
  }
  out += part.sql.slice(pos);
  return { ...part, sql: out, params: used };
}

/** A Bind for one part: the portal, `statement`, the part's parameter values and formats, and
 *  the client's result formats (from `resultOffset` of the client's Bind `msg`). */
export function partBind(msg: Buffer, portal: string, statement: string, params: (Buffer | null)[], formats: number[], resultOffset: number, part: InsertPart): Buffer {
  const fmts = formats.length > 1 ? part.params.map((i) => formats[i] ?? 0) : formats;
  let len = 4 + Buffer.byteLength(portal) + 1 + Buffer.byteLength(statement) + 1 + 2 + 2 * fmts.length + 2;
  for (const i of part.params) len += 4 + (params[i]?.length ?? 0);
  const res = msg.subarray(resultOffset);
  len += res.length;
  const b = Buffer.allocUnsafe(1 + len);
  b[0] = 0x42; b.writeInt32BE(len, 1);
  let p = 5;
  p += b.write(portal, p, 'utf8'); b[p++] = 0;
  p += b.write(statement, p, 'utf8'); b[p++] = 0;
  b.writeUInt16BE(fmts.length, p); p += 2;
  for (const f of fmts) { b.writeInt16BE(f, p); p += 2; }
  b.writeUInt16BE(part.params.length, p); p += 2;
  for (const i of part.params) {
    const v = params[i] ?? null;
    if (v === null) { b.writeInt32BE(-1, p); p += 4; } else { b.writeInt32BE(v.length, p); p += 4; v.copy(b, p); p += v.length; }
  }
  res.copy(b, p);
  return b;
}

/** RETURNING rows of the parts put back in statement order: part k returned one row per row it
 *  inserted, in its VALUES order. When a part returned another number of rows (ON CONFLICT DO
 *  NOTHING skipped some), the parts' rows follow each other in shard order. */
export function statementOrder(rowsOf: Buffer[][], parts: { rows: number[] }[]): Buffer[] {
  if (!rowsOf.every((r, k) => r.length === parts[k]!.rows.length)) return rowsOf.flat();
  const total = parts.reduce((n, p) => n + p.rows.length, 0);
  const out: Buffer[] = new Array(total);
  rowsOf.forEach((r, k) => r.forEach((row, j) => { out[parts[k]!.rows[j]!] = row; }));
  return out;
}
