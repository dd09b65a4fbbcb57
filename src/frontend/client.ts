// One client connection: startup, authentication, then the query loop.
//
// ClientSession is the facade the rest of pgring sees (the proxy, the admin console, the
// transaction layer, the server connections through ServerOwner). The work is done by one
// collaborator per concern, each in its own file; they share one state object (the fields of
// SessionShared, shared.ts, each documented with the module that owns it):
//
//   dispatch.ts          client bytes in, message framing, the ordered inbox (pump)
//   connection.ts        SSL/TLS, startup packet, cancel, authentication, close
//   response-queue.ts    the Pending queue that keeps responses in PostgreSQL's order (pure)
//   responses.ts         server messages -> the Pending entry they answer -> the client
//   links.ts             server connections attached to this client (acquire, replay, release)
//   simple.ts            Query (simple protocol)
//   session-route.ts     which shards a statement runs on
//   extended.ts          Parse/Bind/Describe/Execute/Close/Sync/Flush, client portals
//   server-statements.ts statements pgring prepared on server connections
//   transaction.ts       BEGIN/COMMIT/ROLLBACK, distributed commit, session-state book-keeping
//   tx-decision.ts       what a BEGIN/COMMIT/ROLLBACK does given the transaction state (pure)
//   scatter.ts           statements over several shards, multi-statement strings
//   copy-in.ts           COPY FROM STDIN (forwarded or split across shards)
//
// Client messages are handled strictly in order (an inbox drained by `pump`,
// which only awaits when a server connection must be acquired). Every request
// sent to a server gets a Pending entry in two queues: the client's (response
// order) and the server link's (which response belongs to what). Responses of
// the entry at the head of the client queue stream straight to the client;
// later entries buffer until they reach the head. Entries pgring answers itself
// (synthetic ParseComplete, ReadyForQuery, errors) sit in the same queue, so the
// client always sees responses in exactly the order PostgreSQL would send them.
import type * as net from 'node:net';
import type { PgError } from '../protocol/errors';
import type { ServerConnection, ServerOwner } from '../backend/server';
import { Dispatch } from './dispatch';
import { ConnectionLifecycle } from './connection';
import { Responses } from './responses';
import { ServerLinks } from './links';
import { SimpleQuery } from './simple';
import { SessionRouting } from './session-route';
import { ExtendedProtocol } from './extended';
import { ServerStatements } from './server-statements';
import { SqlPrepared } from './sql-prepared';
import { TransactionControl } from './transaction';
import { Scatter } from './scatter';
import { CopyIn } from './copy-in';
import { Cursors } from './cursors';
import { SessionShared } from './shared';
import type { Link, ProxyContext } from './session-types';

export type { Link, Pending, ProxyContext, SessionMetrics, TransactionHooks, WriteKeys } from './session-types';
export { parseArrayLiteral } from './session-util';

export class ClientSession extends SessionShared implements ServerOwner {
  // Collaborators, one concern each (created before the socket delivers anything).
  readonly dispatch = new Dispatch(this);
  readonly lifecycle = new ConnectionLifecycle(this);
  readonly responses = new Responses(this);
  readonly servers = new ServerLinks(this);
  readonly simple = new SimpleQuery(this);
  readonly routing = new SessionRouting(this);
  readonly ext = new ExtendedProtocol(this);
  readonly prepared = new ServerStatements(this);
  readonly sqlPrepared = new SqlPrepared(this);
  readonly transaction = new TransactionControl(this);
  readonly scatter = new Scatter(this);
  readonly copy = new CopyIn(this);
  readonly cursors = new Cursors(this);

  constructor(socket: net.Socket, ctx: ProxyContext, opts: { unixSocket?: boolean } = {}) {
    super(socket, ctx);
    this.unixSocket = opts.unixSocket === true;
    this.lifecycle.accept(socket);
  }

  /** Sends a FATAL error and closes this client only. */
  fatal(e: PgError): void { this.lifecycle.fatal(e); }
  close(): void { this.lifecycle.close(); }
  cancelRunning(): Promise<void> { return this.lifecycle.cancelRunning(); }
  /** Runs one SQL string on each link (internal, swallowed); rejects with the first server error. */
  runOnLinks(links: Link[], sql: string): Promise<void> { return this.servers.runOnLinks(links, sql); }

  // ServerOwner: the server connections attached to this client report here.
  onServerMessage(conn: ServerConnection, type: number, msg: Buffer): void { this.responses.onServerMessage(conn, type, msg); }
  onServerBatchEnd(): void { this.flush(); }
  onServerClose(conn: ServerConnection, err: PgError): void { this.servers.onServerClose(conn, err); }
}
