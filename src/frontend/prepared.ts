// Named prepared statements in transaction pooling. A client's statement name maps
// to a process-wide server-side name derived from the statement's text and
// parameter types, so any server connection that already prepared the same text
// is reused, and one that has not gets the Parse injected before the Bind. A copy
// prepared before the client's own Parse is prepared again (PostgreSQL analyses a
// statement at Parse: a copy from before a schema change or another search_path would
// fail with "cached plan must not change result type" where PostgreSQL would not).
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
  gen: number;                 // generation of serverName when the client parsed it
  scope: string;               // database (and user) of the client: where DDL changes it
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

export function makeStatement(clientName: string, sql: string, types: number[], stmt: RoutedStatement, rawParse: Buffer, scope = ''): ClientStatement {
  const parsedAt = prepareSeq();
  if (clientName === '') return { clientName, serverName: '', sql, types, parse: rawParse, stmt, parsedAt, gen: 0, scope };
  const serverName = serverStatementName(sql, types);
  return { clientName, serverName, sql, types, parse: parseMsg(serverName, sql, types), stmt, parsedAt, gen: generation.get(`${scope}\u0000${serverName}`) ?? 0, scope };
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

export function isStale(cs: ClientStatement): boolean {
  // Checked at every Bind: no key string is built until some DDL has changed a statement.
  if (generation.size === 0 || cs.serverName === '') return false;
  return cs.gen !== (generation.get(`${cs.scope}\u0000${cs.serverName}`) ?? 0);
}

const generation = new Map<string, number>();

export function registrySize(): number { return registry.size; }
