// A raw PostgreSQL wire-protocol client for tests that need exact message sequences
// (pipelines without waiting, Describe of a cursor, ...): messages built and parsed with
// the `pg-protocol` package, trust authentication only.
import * as net from 'node:net';
import { parse, serialize } from 'pg-protocol';

/** One server message, reduced to what tests compare. */
export interface WireMsg { name: string; pid?: number; code?: string; severity?: string; tag?: string; status?: string; types?: number[]; values?: (string | null)[] }

type Raw = { name: string; code?: string; text?: string; status?: string; fields?: ({ dataTypeID: number } | string | null)[] };

export class WireClient {
  private got: WireMsg[] = [];
  private rfqs = 0;
  private waiter: (() => void) | null = null;
  /** The server's BackendKeyData (for CancelRequest). */
  backendKey: { pid: number; secret: number } | null = null;
  private constructor(private readonly socket: net.Socket) {}

  static async connect(port: number, database: string, user = 'postgres', params: Record<string, string> = {}): Promise<WireClient> {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => { /* ended by the server: untilClosed() sees it */ });
    const c = new WireClient(socket);
    void parse(socket, (m) => c.onMessage(m as unknown as Raw));
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
    // pg-protocol's startup serializer appends client_encoding=UTF8 itself: with parameters of
    // our own (a client_encoding among them) the packet is built here
    if (Object.keys(params).length === 0) socket.write(serialize.startup({ user, database }));
    else {
      const body = Buffer.concat([...Object.entries({ user, database, ...params }).map(([k, v]) => Buffer.from(`${k}\0${v}\0`, 'utf8')), Buffer.from([0])]);
      const head = Buffer.alloc(8); head.writeInt32BE(8 + body.length, 0); head.writeInt32BE(196608, 4);
      socket.write(Buffer.concat([head, body]));
    }
    await c.until(1, 10000);
    return c;
  }

  private onMessage(m: Raw): void {
    if (m.name === 'backendKeyData') { const k = m as unknown as { processID: number; secretKey: number }; this.backendKey = { pid: k.processID, secret: k.secretKey }; }
    if (m.name === 'parameterStatus' || m.name === 'backendKeyData' || m.name === 'authenticationOk') return;
    const w: WireMsg = { name: m.name };
    if (m.name === 'error' || m.name === 'notice') { w.code = m.code; w.severity = (m as { severity?: string }).severity; }
    if (m.name === 'commandComplete') w.tag = m.text;
    if (m.name === 'notification') w.pid = (m as unknown as { processId: number }).processId;
    if (m.name === 'readyForQuery') w.status = m.status;
    if (m.name === 'rowDescription') w.types = (m.fields as { dataTypeID: number }[]).map((f) => f.dataTypeID);
    if (m.name === 'dataRow') w.values = m.fields as (string | null)[];
    this.got.push(w);
    if (m.name === 'readyForQuery') this.rfqs++;
    this.waiter?.();
  }

  send(msgs: Buffer[]): void { this.socket.write(Buffer.concat(msgs)); }

  /** Resolves with every message received once `rfq` ReadyForQuery messages have arrived. */
  until(rfq: number, timeoutMs: number): Promise<WireMsg[]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiter = null; reject(new Error(`timed out after ${this.got.length} messages: ${JSON.stringify(this.got.slice(-5))}`)); }, timeoutMs);
      const check = (): void => {
        if (this.rfqs < rfq) return;
        clearTimeout(timer);
        this.waiter = null;
        const out = this.got;
        this.got = [];
        this.rfqs = 0;
        resolve(out);
      };
      this.waiter = check;
      check();
    });
  }

  /** Resolves with every message received until the server closes the connection. */
  untilClosed(timeoutMs: number): Promise<WireMsg[]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not closed after ${timeoutMs} ms: ${JSON.stringify(this.got)}`)), timeoutMs);
      const done = (): void => { clearTimeout(timer); resolve(this.got); };
      if (this.socket.destroyed) done(); else this.socket.once('close', done);
    });
  }

  close(): void { this.socket.end(serialize.end()); }
}
