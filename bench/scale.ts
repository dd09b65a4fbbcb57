// Connection scale: many idle clients, each a raw socket that does the startup
// handshake (trust auth) and waits for ReadyForQuery, then stays open and silent.
import * as net from 'node:net';

function startupMessage(user: string, database: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0${database}\0application_name\0pgring-bench\0\0`, 'utf8');
  const msg = Buffer.alloc(8 + body.length);
  msg.writeInt32BE(msg.length, 0);
  msg.writeInt32BE(196608, 4); // protocol 3.0
  body.copy(msg, 8);
  return msg;
}

/** Connects one idle client; resolves once ReadyForQuery arrives. */
export function idleClient(port: number, database: string, timeoutMs = 60000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    let buf = Buffer.alloc(0);
    let done = false;
    const fail = (e: Error) => { if (done) return; done = true; clearTimeout(timer); s.destroy(); reject(e); };
    const timer = setTimeout(() => fail(new Error('timed out waiting for ReadyForQuery')), timeoutMs);
    s.on('error', fail);
    s.on('close', () => fail(new Error('connection closed during startup')));
    s.on('connect', () => s.write(startupMessage('postgres', database)));
    s.on('data', (chunk) => {
      if (done) return; // idle: later ParameterStatus/notices are ignored
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 5) {
        const type = String.fromCharCode(buf[0]!);
        const len = buf.readInt32BE(1);
        if (buf.length < 1 + len) break;
        const body = buf.subarray(5, 1 + len);
        buf = buf.subarray(1 + len);
        if (type === 'E') {
          const m = /M([^\0]*)/.exec(body.toString('utf8'));
          fail(new Error(`server error at startup: ${m?.[1] ?? body.toString('utf8')}`));
          return;
        }
        if (type === 'R' && body.readInt32BE(0) !== 0) { fail(new Error(`server asked for authentication (${body.readInt32BE(0)}); trust expected`)); return; }
        if (type === 'Z') {
          done = true;
          clearTimeout(timer);
          s.removeAllListeners('close');
          s.removeAllListeners('error');
          s.on('error', () => { /* counted as closed below */ });
          resolve(s);
          return;
        }
      }
    });
  });
}

export interface IdleSet { sockets: net.Socket[]; ms: number; closedEarly(): number; close(): Promise<void> }

/** Opens `n` idle clients in batches of `batch` concurrent handshakes. */
export async function openIdleClients(port: number, database: string, n: number, batch = 100, onProgress?: (k: number) => void): Promise<IdleSet> {
  const sockets: net.Socket[] = [];
  const t0 = Date.now();
  try {
    while (sockets.length < n) {
      const k = Math.min(batch, n - sockets.length);
      const settled = await Promise.allSettled(Array.from({ length: k }, () => idleClient(port, database)));
      for (const r of settled) if (r.status === 'fulfilled') sockets.push(r.value);
      const bad = settled.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
      if (bad) throw new Error(`after ${sockets.length} idle clients: ${(bad.reason as Error).message}`);
      onProgress?.(sockets.length);
    }
  } catch (e) {
    for (const s of sockets) s.destroy();
    throw e;
  }
  const ms = Date.now() - t0;
  return {
    sockets, ms,
    closedEarly: () => sockets.filter((s) => s.destroyed || s.readyState !== 'open').length,
    async close() {
      const terminate = Buffer.from([0x58, 0, 0, 0, 4]); // Terminate
      await Promise.all(sockets.map((s) => new Promise<void>((resolve) => {
        if (s.destroyed) { resolve(); return; }
        s.once('close', () => resolve());
        s.end(terminate);
        setTimeout(() => { s.destroy(); resolve(); }, 5000).unref();
      })));
    },
  };
}
