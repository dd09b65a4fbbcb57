// Named prepared statements in transaction pooling. A client's statement name maps
// to a process-wide server-side name derived from the statement's text and
// parameter types, so any server connection that already prepared the same text
// is reused, and one that has not gets the Parse injected before the Bind. A copy
// prepared before the client's own Parse is prepared again (PostgreSQL analyses a
// statement at Parse: a copy from before a schema change or another search_path would
// fail with "cached plan must not change result type" where PostgreSQL would not).
import type { Codec } from '../protocol/encoding';
import { parseMsg } from '../protocol/messages';
import type { RoutedStatement } from '../router/router';

export interface ClientStatement {
  clientName: string;
  serverName: string;          // '' for the unnamed statement
  sql: string;
  types: number[];
  parse: Buffer;               // Parse message carrying serverName
  stmt: RoutedStatement;       // routing plan, made once at Parse
  parsedAt: number;            // prepareSeq() at the client's Parse
  preparedAt?: number;         // wall clock (ms) of a named statement's Parse: pg_prepared_statements.prepare_time
  gen: number;                 // generation of serverName when the client parsed it
  scope: string;               // database (and user) of the client: where DDL changes it
  idents?: Set<string>;        // identifiers of sql (lower case), made on the first DDL check
  ddlChecked?: number;         // DDL events up to this sequence number were checked: none applies
  uses?: ClientStatement;      // SQL EXECUTE of a protocol-level statement: the one it runs
  codec?: Codec | null;        // the client's encoding when not UTF8: Parse messages pgring builds use it
  shape?: Buffer | null;       // the RowDescription (null: NoData) its first Describe gave the client (revalidate.ts)
}

const registry = new Map<string, string>();
let counter = 0;
let seq = 0;

/** A process-wide sequence number: when a client parsed, when a server connection prepared. */
export function prepareSeq(): number { return ++seq; }

/** The server-side name for a statement text + parameter types (stable for the process). */
export function serverStatementName(sql: string, types: number[]): string {
  const key = types.length ? `${types.join(',')}\u0000${sql}` : sql;
  let name = registry.get(key);
  if (!name) {
    name = `pgring_${(++counter).toString(36)}`;
    registry.set(key, name);
  }
  return name;
}

export function makeStatement(clientName: string, sql: string, types: number[], stmt: RoutedStatement, rawParse: Buffer, scope = '', codec: Codec | null = null): ClientStatement {
  const parsedAt = prepareSeq();
  if (clientName === '') return { clientName, serverName: '', sql, types, parse: rawParse, stmt, parsedAt, gen: 0, scope, codec };
  const serverName = serverStatementName(sql, types);
  return { clientName, serverName, sql, types, parse: parseMsg(serverName, sql, types, codec), stmt, parsedAt, preparedAt: Date.now(), gen: generation.get(`${scope}\u0000${serverName}`) ?? 0, scope, codec };
}

/**
 * A server statement's result type changed (DDL; a Bind failed with 0A000). On PostgreSQL every
 * client that prepared the text before then has its own stale statement and gets 0A000 at its
 * next Bind; through pgring they share one, re-prepared: the generation tells them apart.
 * Returns false when the failing statement was already older than the current generation.
 */
export function bumpGeneration(cs: ClientStatement): boolean {
  const key = `${cs.scope}\u0000${cs.serverName}`;
  const now = generation.get(key) ?? 0;
  if (cs.gen !== now) return false;
  generation.set(key, now + 1);
  return true;
}

export function isStale(cs: ClientStatement, database: string): boolean {
  // Checked at every Bind: nothing is looked up until some DDL ran after this statement's Parse.
  if (cs.parsedAt < lastDdl && ddlChanged(cs, database)) return true;
  if (generation.size === 0 || cs.serverName === '') return false;
  return cs.gen !== (generation.get(`${cs.scope}\u0000${cs.serverName}`) ?? 0);
}

/** `cs` was found to return the columns its client was given (revalidate.ts): it counts as parsed
 *  now, so server copies prepared before are prepared again before it runs there. */
export function markRevalidated(cs: ClientStatement): void {
  cs.parsedAt = prepareSeq();
  cs.gen = generation.get(`${cs.scope}\u0000${cs.serverName}`) ?? 0;
}

/*
 * DDL seen by pgring, per database. PostgreSQL re-analyses a prepared statement after DDL on
 * anything it uses and fails its Bind with 0A000 when the result columns changed. Through
 * pgring the statement's next Bind may land on a server connection that prepares the text
 * afresh and would send rows of the new shape under the client's old RowDescription. So a
 * statement parsed before DDL that names one of the DDL's objects (or before DDL whose objects
 * are unknown) fails as PostgreSQL fails a changed one; the client re-prepares (drivers do).
 * Stricter than PostgreSQL where the shape did not change: never wrong rows.
 */
interface DdlEvent { at: number; names: Set<string> | null }
const ddlLog = new Map<string, DdlEvent[]>();
let lastDdl = 0;
const MAX_EVENTS = 64;
const MAX_NAMES = 512;

/** Unqualified object names of a DDL statement's lock objects (router/lock-scope.ts), or of the
 *  objects whose shape it may change when the planner knows them (router/ddl-shape.ts); null = unknown. */
export function ddlNames(objects: string[] | undefined, shape?: string[]): Set<string> | null {
  if (shape) objects = shape;
  else if (!objects || objects.length === 0) return null;
  const out = new Set<string>();
  for (const o of objects) {
    const i = o.indexOf(':');
    if (o.slice(0, i) === 'stmt') return null;
    const name = o.slice(i + 1);
    out.add(name.slice(name.lastIndexOf('.') + 1));
  }
  return out;
}

/** Records DDL on `database` (at its CommandComplete, and again when its transaction ends). */
export function noteDdl(database: string, names: Set<string> | null): void {
  const at = prepareSeq();
  lastDdl = at;
  let log = ddlLog.get(database);
  if (!log) ddlLog.set(database, log = []);
  log.push({ at, names });
  if (log.length > MAX_EVENTS) {
    // Bounded: the two oldest events become one (later, with both names): stricter, never looser.
    const [a, b] = log.splice(0, 2) as [DdlEvent, DdlEvent];
    let merged: Set<string> | null = a.names && b.names ? new Set([...a.names, ...b.names]) : null;
    if (merged && merged.size > MAX_NAMES) merged = null;
    log.unshift({ at: b.at, names: merged });
  }
}

function ddlChanged(cs: ClientStatement, database: string): boolean {
  const log = ddlLog.get(database);
  if (!log) return false;
  const from = Math.max(cs.parsedAt, cs.ddlChecked ?? 0);
  if (!returnsRows(cs)) { cs.ddlChecked = lastDdl; return false; }
  for (const ev of log) {
    if (ev.at <= from) continue;
    if (ev.names === null) return true;
    const ids = cs.idents ??= identifiers(cs.sql);
    for (const n of ev.names) if (ids.has(n) || (!IDENT.test(n) && cs.sql.includes(n))) return true;
  }
  cs.ddlChecked = log[log.length - 1]!.at;
  return false;
}

/** Whether a statement has result columns a DDL could change (PostgreSQL checks only those). */
function returnsRows(cs: ClientStatement): boolean {
  switch (cs.stmt.plan.command) {
    case 'select': case 'execute': case 'fetch': case 'show': case 'other': return true;
    case 'insert': case 'update': case 'delete': case 'merge': return (cs.idents ??= identifiers(cs.sql)).has('returning');
    default: return false;
  }
}

/** A name identifiers() can return; others (operator symbols) are looked for in the text. */
const IDENT = /^[a-z_\u0080-\uffff][a-z0-9_$\u0080-\uffff]*$/;

/** Identifiers of a statement text in lower case (lock-scope.ts lower-cases quoted names too;
 *  over-inclusive: words in literals count, which can only fail more statements). */
export function identifiers(sql: string): Set<string> {
  const out = new Set<string>();
  const re = /"((?:[^"]|"")*)"|([A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*)/g;
  for (let m = re.exec(sql); m; m = re.exec(sql)) out.add((m[1] !== undefined ? m[1].replace(/""/g, '"') : m[2]!).toLowerCase());
  return out;
}

const generation = new Map<string, number>();

export function registrySize(): number { return registry.size; }
