// The cluster definition: which tables are sharded (and by which key), which are reference
// tables, and what happens to tables named nowhere. Pure logic (no I/O): validation, the
// document a config file seeds, the comparison of a file with the cluster's active version,
// and the changes the `pgring table` commands make.
import type { Config, KeyType, ShardedTableConfig } from '../config/types';
import { definitionName } from '../ring/ring';

export type UnknownTablePolicy = 'reference' | 'reject';

export interface ClusterDefinition {
  version: number;
  sharded: ShardedTableConfig[];
  reference: string[];
  unknownTables: UnknownTablePolicy;
}

export type DefinitionBody = Omit<ClusterDefinition, 'version'>;

export const KEY_TYPES: readonly KeyType[] = ['smallint', 'integer', 'bigint', 'text', 'varchar', 'uuid'];

/** The name as the router matches it: last part of a qualified name, folded to lower case
 *  unless double-quoted (PostgreSQL identifier rules). */
export function tableKey(name: string): string {
  const parts: string[] = [];
  let cur = '', q = false;
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (c === '"') { if (q && name[i + 1] === '"') { cur += '""'; i++; continue; } q = !q; cur += c; continue; }
    if (c === '.' && !q) { parts.push(cur); cur = ''; continue; }
    cur += c;
  }
  parts.push(cur);
  const last = parts[parts.length - 1]!;
  if (last.length >= 2 && last.startsWith('"') && last.endsWith('"')) return last.slice(1, -1).split('""').join('"');
  return last.toLowerCase();
}

/** Throws a descriptive Error when `x` is not a valid definition document. */
export function validateDefinition(x: unknown, where = 'definition'): ClusterDefinition {
  const bad = (why: string): never => { throw new Error(`invalid cluster definition (${where}): ${why}`); };
  if (!x || typeof x !== 'object') bad('not an object');
  const d = x as Record<string, unknown>;
  if (!Number.isInteger(d.version) || (d.version as number) < 0) bad('version must be a non-negative integer');
  if (!Array.isArray(d.sharded)) bad('sharded must be an array');
  if (!Array.isArray(d.reference)) bad('reference must be an array');
  if (d.unknownTables !== 'reference' && d.unknownTables !== 'reject') bad('unknownTables must be "reference" or "reject"');
  const seen = new Set<string>();
  const sharded: ShardedTableConfig[] = [];
  for (const t of d.sharded as Record<string, unknown>[]) {
    if (!t || typeof t.name !== 'string' || !t.name) bad(`bad sharded table ${JSON.stringify(t)}`);
    if (typeof t.column !== 'string' || !t.column) bad(`table ${t.name}: column must be a non-empty string`);
    if (!KEY_TYPES.includes(t.type as KeyType)) bad(`table ${t.name}: type must be one of ${KEY_TYPES.join(', ')}`);
    if (t.columns !== undefined && (!Array.isArray(t.columns) || !t.columns.every((c) => typeof c === 'string'))) bad(`table ${t.name}: columns must be an array of strings`);
    const k = tableKey(t.name as string);
    if (seen.has(k)) bad(`table ${t.name} named twice`);
    seen.add(k);
    if (t.layout !== undefined && (!Number.isInteger(t.layout) || (t.layout as number) < 0)) bad(`table ${t.name}: layout must be a non-negative integer`);
    sharded.push({ name: t.name as string, column: t.column as string, type: t.type as KeyType, ...(t.columns ? { columns: [...(t.columns as string[])] } : {}), ...(t.layout ? { layout: t.layout as number } : {}) });
  }
  const reference: string[] = [];
  for (const r of d.reference as unknown[]) {
    if (typeof r !== 'string' || !r) bad(`bad reference table ${JSON.stringify(r)}`);
    const k = tableKey(r as string);
    if (seen.has(k)) bad(`table ${r} named twice`);
    seen.add(k);
    reference.push(r as string);
  }
  return { version: d.version as number, sharded, reference, unknownTables: d.unknownTables as UnknownTablePolicy };
}

/** The definition a config file states (the seed of version 1). */
export function definitionFromConfig(cfg: Config): DefinitionBody {
  return {
    sharded: cfg.sharding.tables.map((t) => ({ name: t.name, column: t.column, type: t.type, ...(t.columns ? { columns: [...t.columns] } : {}) })),
    reference: [...(cfg.sharding.referenceTables ?? [])],
    unknownTables: cfg.sharding.unknownTables ?? 'reference',
  };
}

/** True when the config file states sharding rules (else it takes the cluster's). */
export function configStatesDefinition(cfg: Config): boolean { return cfg.sharding.stated === true; }

function describeKey(t: ShardedTableConfig): string {
  return `${t.column} ${t.type}${t.columns ? ` columns (${t.columns.join(', ')})` : ''}`;
}
function describeSharded(t: ShardedTableConfig): string { return `${t.name} by ${describeKey(t)}`; }

/**
 * What in the file contradicts the cluster's definition (empty: they agree). The file must name
 * exactly the cluster's sharded tables with the same keys; reference tables it lists must be
 * reference tables of the cluster (tables registered online need not be in the file); a policy it
 * states must be the cluster's.
 */
export function definitionConflicts(file: DefinitionBody, cluster: ClusterDefinition, fileStatesPolicy: boolean): string[] {
  const out: string[] = [];
  const fileSharded = new Map(file.sharded.map((t) => [tableKey(t.name), t]));
  const clusterSharded = new Map(cluster.sharded.map((t) => [tableKey(t.name), t]));
  for (const [k, t] of fileSharded) {
    const c = clusterSharded.get(k);
    if (!c) { out.push(`file shards ${describeSharded(t)}; the cluster ${cluster.reference.some((r) => tableKey(r) === k) ? 'has it as a reference table' : 'does not shard it'}`); continue; }
    const sameCols = JSON.stringify(t.columns ?? null) === JSON.stringify(c.columns ?? null) || t.columns === undefined;
    if (tableKey(t.column) !== tableKey(c.column) || t.type !== c.type || !sameCols) out.push(`table ${t.name}: the file shards it by ${describeKey(t)}; the cluster by ${describeKey(c)}`);
  }
  for (const [k, c] of clusterSharded) if (!fileSharded.has(k)) out.push(`the cluster shards ${describeSharded(c)}; the file does not`);
  const clusterRef = new Set(cluster.reference.map(tableKey));
  for (const r of file.reference) if (!clusterRef.has(tableKey(r)) && !clusterSharded.has(tableKey(r))) out.push(`file lists reference table ${r}; the cluster does not`);
  if (fileStatesPolicy && file.unknownTables !== cluster.unknownTables) out.push(`file has unknownTables "${file.unknownTables}"; the cluster "${cluster.unknownTables}"`);
  return out;
}

/** Where a table stands in a definition. */
export function lookupTable(def: DefinitionBody, name: string): { kind: 'sharded'; table: ShardedTableConfig } | { kind: 'reference'; name: string } | null {
  const k = tableKey(name);
  const s = def.sharded.find((t) => tableKey(t.name) === k);
  if (s) return { kind: 'sharded', table: s };
  const r = def.reference.find((t) => tableKey(t) === k);
  return r ? { kind: 'reference', name: r } : null;
}

export class DefinitionChangeError extends Error {
  constructor(msg: string) { super(msg); this.name = 'DefinitionChangeError'; }
}

/** `pgring table shard`: a reference (or unknown) table becomes sharded; a sharded table's key never changes. */
export function withSharded(def: DefinitionBody, t: ShardedTableConfig): DefinitionBody {
  if (!KEY_TYPES.includes(t.type)) throw new DefinitionChangeError(`unknown key type "${t.type}" (one of ${KEY_TYPES.join(', ')})`);
  const cur = lookupTable(def, t.name);
  if (cur?.kind === 'sharded') {
    if (tableKey(cur.table.column) === tableKey(t.column) && cur.table.type === t.type) return def;
    throw new DefinitionChangeError(`table ${cur.table.name} is already sharded by ${cur.table.column} ${cur.table.type}: changing the shard key moves rows between shards, which this command does not do`);
  }
  const k = tableKey(t.name);
  return { ...def, sharded: [...def.sharded, t], reference: def.reference.filter((r) => tableKey(r) !== k) };
}

/** `pgring table reference` and tables created through a proxy. */
export function withReference(def: DefinitionBody, name: string): DefinitionBody {
  const cur = lookupTable(def, name);
  if (cur?.kind === 'reference') return def;
  if (cur?.kind === 'sharded') throw new DefinitionChangeError(`table ${cur.table.name} is sharded by ${cur.table.column}: making it a reference table would need every row copied to every shard, which this command does not do (forget it first only if the rows are already on every shard)`);
  return { ...def, reference: [...def.reference, name] };
}

/** `ALTER TABLE from RENAME TO to` (column undefined) or `ALTER TABLE from RENAME COLUMN column TO to`
 *  succeeded through a proxy: the definition follows the table (unchanged when it names neither). */
export function renamed(def: DefinitionBody, from: string, to: string, column?: string): DefinitionBody {
  const k = tableKey(from);
  if (column === undefined) {
    const rename = (name: string): string => {
      const dot = name.lastIndexOf('.');
      const schema = dot > 0 && !name.endsWith('"') ? name.slice(0, dot + 1) : '';
      return schema + definitionName(to);
    };
    return {
      ...def,
      sharded: def.sharded.map((t) => (tableKey(t.name) === k ? { ...t, name: rename(t.name) } : t)),
      reference: def.reference.map((r) => (tableKey(r) === k ? rename(r) : r)),
    };
  }
  const c = column.toLowerCase();
  return {
    ...def,
    sharded: def.sharded.map((t) => (tableKey(t.name) !== k ? t : {
      ...t,
      column: t.column.toLowerCase() === c ? to : t.column,
      ...(t.columns ? { columns: t.columns.map((x) => (x.toLowerCase() === c ? to : x)) } : {}),
    })),
  };
}

/** `ALTER TABLE t ADD COLUMN … / DROP COLUMN …` (or CREATE TABLE of a sharded name) succeeded through
 *  a proxy: a column list the definition states follows (PostgreSQL appends added columns); a table
 *  without one gets a new layout count, so that every proxy reads its columns from the catalog again. */
export function withColumnChanges(def: DefinitionBody, table: string, add: string[], drop: string[]): DefinitionBody {
  const k = tableKey(table);
  const d = new Set(drop.map((c) => c.toLowerCase()));
  return {
    ...def,
    // A stated column list follows the change; a list the proxies read from the catalog is read
    // again by every proxy when the table's layout count moves.
    sharded: def.sharded.map((t) => (tableKey(t.name) !== k ? t : t.columns ? { ...t, columns: [...t.columns.filter((c) => !d.has(c.toLowerCase())), ...add] } : { ...t, layout: (t.layout ?? 0) + 1 })),
  };
}

/** `pgring table forget`: the table falls back to the cluster's unknownTables policy. */
export function without(def: DefinitionBody, name: string): DefinitionBody {
  const k = tableKey(name);
  if (!lookupTable(def, name)) throw new DefinitionChangeError(`table ${name} is not in the cluster definition`);
  return { ...def, sharded: def.sharded.filter((t) => tableKey(t.name) !== k), reference: def.reference.filter((r) => tableKey(r) !== k) };
}

export function sameDefinition(a: DefinitionBody, b: DefinitionBody): boolean {
  const norm = (d: DefinitionBody) => JSON.stringify({ s: d.sharded, r: d.reference, u: d.unknownTables });
  return norm(a) === norm(b);
}
