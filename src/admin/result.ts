// Result sets the admin console answers with: real RowDescription / DataRow /
// CommandComplete messages, numbers typed int8 / numeric so drivers parse them.
import { commandComplete, dataRow, OID, rowDescription } from '../protocol/messages';

export type ColType = 'text' | 'int8' | 'numeric' | 'bool';
export interface Col { name: string; type?: ColType }
export type Cell = string | number | bigint | boolean | null | undefined;

const TYPE_OID: Record<ColType, number> = { text: OID.text, int8: OID.int8, numeric: OID.numeric, bool: OID.bool };

/** Columns from a compact spec: 'name' (text), 'name:int8', 'name:numeric', 'name:bool'. */
export function cols(...spec: string[]): Col[] {
  return spec.map((s) => {
    const [name, type] = s.split(':') as [string, ColType | undefined];
    return { name, type: type ?? 'text' };
  });
}

function cell(v: Cell, type: ColType): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return type === 'bool' ? (v ? 't' : 'f') : String(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return null;
    if (type === 'int8') return String(Math.trunc(v));
    return String(v);
  }
  return String(v);
}

/** A whole result: RowDescription, one DataRow per row, CommandComplete (`SHOW` by default). */
export function resultSet(columns: Col[], rows: Cell[][], tag = 'SHOW'): Buffer[] {
  const out: Buffer[] = [rowDescription(columns.map((c) => ({ name: c.name, typeOid: TYPE_OID[c.type ?? 'text'], typeSize: c.type === 'int8' ? 8 : c.type === 'bool' ? 1 : -1 })))];
  for (const r of rows) out.push(dataRow(columns.map((c, i) => cell(r[i], c.type ?? 'text'))));
  out.push(commandComplete(tag));
  return out;
}

/** Rows given as objects keyed by column name. */
export function objectResult(columns: Col[], rows: Record<string, Cell>[], tag = 'SHOW'): Buffer[] {
  return resultSet(columns, rows.map((r) => columns.map((c) => r[c.name])), tag);
}

export const fmtTime = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : null);
export const pct = (x: number): string => x.toFixed(2);
