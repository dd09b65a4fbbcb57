// Public types of the statement router.
import type { HExpr } from './having';

export type KeyType = import('../config/types').KeyType;

export interface ShardedTable { name: string; column: string; type: KeyType; columns?: string[] }
/** Table names match unqualified or public.-qualified, case-insensitively per PostgreSQL identifier
 *  rules: a configured name is folded to lower case unless written in double quotes. */
export interface RouterSchema {
  tables: ShardedTable[];
  /** reference tables of the cluster definition */
  reference?: string[];
  /** what a table in neither list is (default 'reference': anything not sharded is a reference table) */
  unknownTables?: 'reference' | 'reject';
}

/** A shard key: a literal slot of the statement, a bind parameter (0-based: $1 -> 0), or a value.
 *  `array: true` marks an array (`key = ANY('{1,2}')`, `= ANY($1)`): it resolves to its elements. */
export type KeyRef =
  | { kind: 'literal'; slot: number; array?: boolean }
  | { kind: 'param'; index: number; array?: boolean }
  | { kind: 'value'; text: string | null; array?: boolean };

export type Command = 'select' | 'insert' | 'update' | 'delete' | 'copy_from' | 'copy_to' | 'ddl' | 'begin' | 'commit'
  | 'rollback' | 'savepoint' | 'release' | 'rollback_to' | 'prepare_transaction' | 'commit_prepared'
  | 'rollback_prepared' | 'set' | 'reset' | 'show' | 'discard' | 'listen' | 'unlisten' | 'notify' | 'prepare'
  | 'execute' | 'deallocate' | 'declare_cursor' | 'fetch' | 'close_cursor' | 'lock' | 'merge' | 'other' | 'empty';

export interface InsertSplit { head: string; rows: { sql: string; key: KeyRef }[]; tail: string }

export interface CopySpec {
  table: string; columns: string[] | null; keyColumnIndex: number | null;
  format: 'text' | 'csv' | 'binary'; delimiter: string; header: boolean; null: string; quote: string; escape: string;
}

/** A column index >= 0 is a position in the row as sent by the shards; < 0 counts from the end of
 *  that row (-1 = last column; used for hidden columns after a `*`). */
/** FETCH / MOVE: direction and count (FETCH ALL: Infinity). */
export interface FetchSpec { direction: 'forward' | 'backward' | 'absolute' | 'relative'; count: number; move: boolean }

export interface MergeSpec {
  shardSql?: string;
  /** bytes: the key is written `COLLATE "C"` (or POSIX): byte order whatever the database's collation */
  orderBy: { column: number; desc: boolean; nullsFirst: boolean; bytes?: true }[];
  limit: number | null | { param: number };     // param: 0-based bind parameter index
  offset: number | null | { param: number };
  groupBy: number[];
  /** count_distinct: the shards ran array_agg(DISTINCT x) in its place; the merger counts the union */
  aggregates: {
    column: number; fn: 'count' | 'sum' | 'min' | 'max' | 'avg' | 'count_distinct' | 'sum_distinct' | 'avg_distinct' | 'string_agg' | 'array_agg' | 'var' | 'jsonb_agg' | 'json_agg' | 'ordered_agg' | 'json_object_agg' | 'jsonb_object_agg' | 'regr' | 'percentile' | 'bit_and' | 'bit_or' | 'bit_xor'; sumColumn?: number; countColumn?: number;
    /** json_agg: the hidden column `json_typeof(to_json(x)) || ':' || pg_typeof(x)` (arrays and composites are separated by ", \n ") */
    catColumn?: number;
    /** ordered_agg: string_agg or array_agg with ORDER BY inside; the shards return array_agg(x ORDER BY …) in
     *  `column` and array_agg(k ORDER BY …) per sort key in `keyColumns` (hidden) */
    list?: 'string' | 'array'; keyColumns?: number[]; keyOrder?: { desc: boolean; nullsFirst: boolean }[];
    /** ordered_agg with DISTINCT inside: the shards return array_agg(DISTINCT x), the elements are their own key */
    distinct?: boolean;
    /** regr: which of corr / covar_* / regr_*; the shards' regr_sxy is the visible column, with hidden
     *  regr_count (countColumn), regr_sxx (sqColumn), regr_syy (syyColumn), regr_avgx (avgColumn), regr_avgy (avgyColumn) */
    regr?: string; syyColumn?: number; avgyColumn?: number;
    /** percentile (regr: percentile_cont / percentile_disc / mode): the fraction, a constant, an ARRAY of
     *  constants (the result is an array) or a bind parameter */
    fraction?: number | number[] | { param: number };
    /** var (variance / stddev families): which one; the shards' var_pop(x) is the visible column (its
     *  type is the result type), with hidden count(x), sum(x), sum(x::numeric * x::numeric), avg(x) */
    variance?: { pop: boolean; sqrt: boolean }; sqColumn?: number; avgColumn?: number;
    /** min / max of a cast aggregate (max(x)::text): the hidden column of the uncast aggregate that decides which row wins */
    byColumn?: number;
    /** string_agg's separator: its text, or the bind parameter holding it */
    sep?: string | { param: number };
  }[];
  hiddenColumns: number;
  /** SELECT DISTINCT: one row per distinct visible row */
  distinct?: boolean;
  /** DISTINCT ON: key columns; the first row of each key in ORDER BY order */
  distinctOn?: number[];
  /** HAVING, evaluated on the merged groups (router/having.ts) */
  having?: HExpr;
}

export interface Hint { shard?: string; shardKey?: string; /** reads=primary|replica|any (read routing) */ reads?: string }

export interface Plan {
  command: Command;
  /** SAVEPOINT / RELEASE / ROLLBACK TO: the savepoint's name (as the server folds it) */
  savepoint?: string;
  /** COMMIT / ROLLBACK PREPARED: the transaction's identifier (routed to the shard that holds it). */
  gid?: string;
  /** DEALLOCATE name: the statement's name (as the server folds it); absent for DEALLOCATE ALL */
  deallocate?: string;
  /** EXECUTE name: the statement's name (as the server folds it) */
  execute?: string;
  /** DROP DATABASE, ALTER DATABASE … RENAME, CREATE DATABASE … TEMPLATE: a database that must have
   *  no other sessions, so pgring closes its own idle server connections to it first */
  freeDatabase?: string;
  /** COMMIT / ROLLBACK AND CHAIN: a new transaction with the same characteristics follows */
  chain?: boolean;
  write: boolean;
  /** DDL that PostgreSQL runs inside a transaction block (router/ddl-tx.ts): outside a transaction
   *  pgring runs it on several shards as one distributed transaction */
  ddlTx?: boolean;
  /** DDL that may create a sequence (router/ddl-tx.ts): on several shards each shard's new bigint
   *  sequences get a range of their own (frontend/sequences.ts) */
  createsSequence?: boolean;
  /** INSERT ... (columns without the shard key) VALUES ...: in the simple protocol pgring evaluates
   *  the key column's default and adds the values (frontend/key-default.ts) */
  keyDefault?: boolean;
  /** ALTER TABLE ... RENAME [COLUMN]: what the cluster definition must follow once it committed */
  renames?: { table: string; to: string; column?: string };
  /** ALTER TABLE ... ADD / DROP COLUMN: a column list the cluster definition states must follow */
  columnChanges?: { table: string; add: string[]; drop: string[] };
  /** CREATE TABLE ... PARTITION OF / INHERITS a sharded table, ALTER TABLE ... ATTACH PARTITION to
   *  one: the child holds rows of the parent, so the definition shards it by the parent's key */
  shardedLike?: { table: string; sharded: { column: string; type: KeyType }; view?: true };
  /** DROP VIEW of views the definition shards (a view is registered by CREATE VIEW; forgotten here) */
  dropsViews?: string[];
  target: 'sharded' | 'reference' | 'none';
  table?: string;
  keyType?: KeyType;
  /** the key column of the sharded table (lower case): the lock group of its keys */
  keyColumn?: string;
  /** what a write without usable keys locks (router/lock-scope.ts); [] for temporary objects only */
  lockObjects?: string[];
  /** DDL: the objects whose result columns it may change (router/ddl-shape.ts), when fewer than lockObjects */
  shapeObjects?: string[];
  keys: KeyRef[] | null;
  insertSplit?: InsertSplit;
  copy?: CopySpec;
  /** DECLARE / FETCH / MOVE / CLOSE: the cursor's name (null: FETCH without one is impossible, CLOSE ALL) */
  cursor?: string | null;
  /** DECLARE ... WITH HOLD / BINARY */
  cursorHold?: boolean;
  cursorBinary?: boolean;
  /** FETCH / MOVE: what it asks for */
  fetch?: FetchSpec;
  /** COPY ... TO STDOUT: the output format (several shards' streams are merged by it) */
  copyOut?: { binary: boolean; header: boolean };
  /** COPY (SELECT … ORDER BY / GROUP BY / LIMIT …) TO STDOUT over several shards: the SELECT runs
   *  merged (as a plain SELECT would) and pgring writes its rows in the COPY's format (frontend/copy-merged.ts) */
  copyMerged?: CopyMergedSpec;
  merge?: MergeSpec;
  /** A SELECT whose aggregates the merge combines but not the expressions over them (`round(avg(x), 2)`,
   *  HAVING / ORDER BY over aggregates, windows over groups): over several shards pgring answers an
   *  inner query through the merge and a server evaluates the rest over its rows (router/finalize.ts).
   *  The text is the form's name, for the refusal where that cannot be done (extended protocol, a
   *  multi-statement string). */
  finalize?: string;
  /** A statement with a subquery over sharded tables not joined to it on the shard key: over several
   *  shards pgring runs the subqueries first and writes their rows in (router/subqueries.ts); the
   *  text is the form's name, for the refusal where that cannot be done. */
  subqueries?: string;
  /** With `subqueries`: a plain SELECT that no merge answers across shards; as a last resort pgring
   *  reads its derived and sharded tables first and runs it on one shard over their rows (router/materialize.ts). */
  materialize?: boolean;
  unsupported?: string;
  /** Set when the statement gives wrong results if it runs on more than one shard (names the form).
   *  The caller must answer 0A000 "pgring: <this> is not supported" when the route has more than one
   *  shard (before sending a write anywhere); a one-shard route is fine. When the statement has no
   *  keys (always scatters), `unsupported` holds the same text. */
  scatterUnsupported?: string;
  setVar?: { name: string; value: string | null; local: boolean };
  sessionState?: 'temp_table' | 'advisory_lock' | 'listen' | 'prepare' | 'cursor_hold' | null;
  /** reads pg_prepared_statements, which pgring answers with the client's own statements (frontend/prepared-view.ts) */
  preparedView?: boolean;
  /** calls an advisory lock function or pg_notify(): without sharded tables it runs on the shard every session's advisory locks and LISTENs meet on */
  advisory?: boolean;
  /** INSERT INTO sharded SELECT … that shards cannot run where they are (the key is computed, the
   *  rows come from elsewhere): pgring reads the rows and inserts them by key (frontend/insert-select.ts).
   *  `n`: the SELECT's column count; `keyIdx`: the key's position among the target columns. */
  insertVia?: { n: number; keyIdx: number };
  /** `SELECT pg_notify(a, b) [, …]` and nothing else: in a transaction over several shards it is held
   *  until the commit, as NOTIFY is (columns: their names and (channel, payload) arguments) */
  notifyCalls?: { name: string; args: [NotifyArg, NotifyArg] }[];
  hint?: Hint;
  /** CREATE TABLE (AS) / SELECT INTO of a permanent table: its name, to register it in the cluster definition */
  createsTable?: string;
  /** set when the PostgreSQL parser rejected the statement (forward it to one server as is) */
  parseError?: string;
}

export interface RoutedStatement {
  /** the statement text (without the terminating ';') */
  sql: string;
  /** shared with the plan cache: do not mutate */
  plan: Plan;
  /** literal values of the statement, in order (strings unescaped, numbers normalized to decimal) */
  literals: string[];
  /** parallel to literals: 0 = string, 1 = integer, 2 = other numeric */
  literalKinds: number[];
  hint?: Hint;
  /** an INSERT into a reference table whose defaults pgring has looked at (frontend/reference-defaults.ts) */
  defaultsChecked?: boolean;
  /** a write to a reference table whose functions were checked for volatility (frontend/volatile-writes.ts) */
  volatileChecked?: boolean;
  /** a read pgring rewrote (its tables read first): the RowDescription PostgreSQL gives for the
   *  client's own text, sent in place of the rewritten statement's (frontend/subqueries.ts) */
  rowDescription?: Buffer;
}

/** An argument of a held pg_notify(): a constant (null: SQL NULL), a literal slot of the statement
 *  (the plan is shared by statements that differ in constants) or a Bind parameter (0-based). */
export type NotifyArg = { text: string | null } | { slot: number } | { param: number };

/** The output options of a COPY … TO that pgring writes itself (text or CSV). */
export interface CopyMergedSpec {
  /** the SELECT inside COPY ( … ) */
  query: string;
  csv: boolean; header: boolean; delimiter: string; null: string; quote: string; escape: string;
  /** FORCE_QUOTE: column names, or true for * */
  forceQuote: string[] | true | null;
}
