// Types shared by the client-session modules (ClientSession re-exports the public ones).
import * as tls from 'node:tls';
import type { PortalRows } from './extended-merge';
import type { InsertPart } from './insert-split';
import type { Config, KeyType } from '../config/types';
import { Fifo } from './fifo';
import { PgError } from '../protocol/errors';
import type { Pool } from '../backend/pool';
import type { ServerConnection } from '../backend/server';
import type { Topology } from '../backend/topology';
import type { Logger } from '../log';
import type { RoutedStatement } from '../router/router';
import { Router } from '../router/router';
import { ClientStatement } from './prepared';
import { ShardMap } from './routing';
import { Group } from './group';
import type { ClientSession } from './client';

/** What a client session needs from the running proxy. */
export interface ProxyContext {
  config: Config;
  /** TLS for clients (from config.tls), or null: SSLRequest answered 'N'. */
  tlsContext?: () => tls.SecureContext | null;
  topology: Topology;
  router: Router;
  shards: ShardMap;
  log: Logger;
  sessions: Map<string, ClientSession>;
  /** Server ParameterStatus values per (user, database, startup params): answers logins without a server round trip. */
  paramCache: Map<string, [string, string][]>;
  admin?: (session: ClientSession, sql: string) => Promise<Buffer[]>;
  /** Transaction hooks (locks, two-phase commit) installed by the transaction layer. */
  tx?: TransactionHooks;
  metrics?: SessionMetrics;
  paused?: Promise<void> | null;
  draining?: boolean;
  /** Router of a database whose sharded tables' columns were read from its catalog. */
  routerFor?(database: string): Router | undefined;
  learnedColumns?(database: string, table: string, columns: string[]): void;
  /** The secret of a new session's BackendKeyData (names the issuing proxy). */
  cancelSecret?(): number;
  /** A CancelRequest for a key no session here has: forward it to the proxy that issued it. */
  forwardCancel?(pid: number, secret: number): Promise<void>;
  /** A startup packet was read: false when the session was refused (maxClientConnections). */
  admit?(session: ClientSession): boolean;
  /** During a resharding migration: `sql` limited to the rows shard `shard` owns (src/reshard/read-filter.ts), else null. */
  ownedSql?(sql: string, shard: number): string | null;
  /** A table or column renamed, or columns added or dropped, through this proxy: the cluster
   *  definition follows (ZooKeeper only). */
  followInDefinition?(change: DefinitionFollow): Promise<void>;
  /** DDL through this proxy may have changed tables' columns: column lists read from the catalog are read again. */
  forgetColumns?(database: string): void;
}

/** The shard-key values a write touches; `group` (the key column) keeps unrelated keys' lock buckets apart. */
export interface WriteKeys { type: KeyType; group?: string; values: (string | null)[] }

export interface TransactionHooks {
  /** Before a write statement is forwarded: may take locks (a lock wait ends as PostgreSQL's would: 55P03, 57014, 40P01). */
  beforeWrite?(session: ClientSession, shards: number[], keys: WriteKeys | null, inBlock: boolean, table?: string, objects?: string[]): Promise<void> | void;
  /** Right before a COMMIT is forwarded (single shard) or prepared (several): an error means roll back instead. */
  beforeCommit?(session: ClientSession): PgError | null;
  /** COMMIT of a transaction that touched several shards. */
  commitMulti?(session: ClientSession, links: Link[]): Promise<void>;
  /** A CancelRequest for this session: end its lock wait, if any (57014). */
  cancelWait?(session: ClientSession): void;
  /** The transaction ended (commit, rollback, disconnect): release locks. */
  afterTransaction?(session: ClientSession, committed: boolean): void;
  /** A ReadyForQuery with status idle went to the client (autocommit statements end here). */
  afterIdle?(session: ClientSession): void;
}

export interface SessionMetrics {
  query(shard: number, us: number): void;
  transaction(shard: number, us: number): void;
  error(code: string): void;
}

export const enum K {
  Query = 1, Internal, InternalRows, InternalDescribe, Parse, InternalParse, InternalClose, Bind, Describe, Execute, Close, Sync, ExecSimple, Synth, Rfq, GroupResult,
  /** BEGIN injected into an extended-protocol unit (Bind + Execute of pgring's own statement). */
  InternalBegin,
  /** Rows of pgring's own statement run inside an extended-protocol unit (Bind + Execute, no Sync). */
  InternalExtRows,
  /** pgring's own extended-protocol exchange ending in Sync: every message to onRow (frontend/finalize.ts). */
  InternalRaw,
}

export interface Pending {
  kind: K;
  link: Link | null;
  out: Buffer[] | null;
  done: boolean;
  /** Extended-protocol entry: an ErrorResponse makes the server skip to Sync. */
  ext: boolean;
  plans?: RoutedStatement[];
  planIdx?: number;
  group?: Group;
  member?: number;
  onError?: (msg?: Buffer) => void;
  /** Bind of a shared server statement: a "result type changed" error marks it stale. */
  cs?: ClientStatement;
  onDone?: () => void;
  rows?: (string | null)[][];
  /** Receives a RowDescription (internal / rewritten Describe). */
  onRow?: (msg: Buffer) => void;
  /** Receives the CommandComplete of an internal query (pgring's own COPY: its row count). */
  onCommand?: (msg: Buffer) => void;
  /** Start time (ms) of a query / execute, for statistics. */
  t0?: number;
}

export interface Link {
  shard: number;
  conn: ServerConnection;
  pool: Pool;
  queue: Fifo<Pending>;
  /** Extended messages sent since the last Sync (the server is inside an implicit transaction). */
  unsynced: boolean;
  /** The server failed an extended-protocol request and skips everything up to the next Sync. */
  skipping: boolean;
  /** Prepared the client's unnamed statement (identity of the ClientStatement). */
  unnamed: ClientStatement | null;
  txStart: number;
  bytesIn0: number;
  bytesOut0: number;
  /** The implicit transaction (ClientSession.implicitSeq) this link got the BEGIN of. */
  joinedImplicit?: number;
}

export type Portal = { shards: number[]; cs: ClientStatement; virtual: boolean; params?: (Buffer | null)[]; formats?: number[]; fetch?: PortalRows; parts?: InsertPart[];
  /** SELECT pg_notify(...) held until the commit (held-notify.ts): the SQL to run then, or the call's error; result formats */
  notify?: { sql: string | null; error: PgError | null; formats: number[]; ran: boolean };
  /** DECLARE over several shards through the extended protocol (cursors.ts): the DECLARE with the
   *  bound values written in, run at Execute */
  declare?: { sql: string; route: import('./routing').Route };
  /** an expression over aggregates over several shards (finalize.ts): its text with the values
   *  written in, its route, the client's result formats */
  finalize?: { sql: string; route: import('./routing').Route; formats: number[] };
  /** a portal bound to pgring's rewrite of the client's statement (subqueries.ts): Describe of the
   *  portal answers with the client's statement's description, in these result formats */
  describeAs?: { cs: ClientStatement; formats: number[] };
  /** FETCH / MOVE / CLOSE of a cursor pgring keeps (cursors.ts), answered at Execute */
  cursorOp?: boolean };

/** A committed DDL change the cluster definition follows: a rename (to, and column for a column)
 *  or columns added / dropped (add, drop). */
export interface DefinitionFollow { table: string; to?: string; column?: string; add?: string[]; drop?: string[]; sharded?: { column: string; type: KeyType }; view?: true; forget?: true }

/** Work the commit of the open transaction does after it: a NOTIFY pgring held, or a DDL change
 *  the cluster definition follows; `depth`: savepoints open when it was recorded (ROLLBACK TO
 *  drops what came after the savepoint, as PostgreSQL undoes it). */
export interface AfterCommit { depth: number; notify?: string; follow?: DefinitionFollow }
