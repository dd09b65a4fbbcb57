// The `zookeeper` package's native handles live in this worker thread, never on the main
// event loop (src/cluster/zk-thread.ts is the main side; the why is there). The worker
// owns every handle of the process; the main thread talks to them by message:
//   main -> worker  {t:'new', h, cfg} | {t:'auth', h, scheme, auth} | {t:'close', h}
//                   {t:'call', id, h, m (method), a (args), w (index of the watch callback, or -1), wid}
//   worker -> main  {t:'ev', h, ev:'connect'|'connecting'|'close', ...} | {t:'res', id, ok, r | msg}
//                   {t:'watch', wid, type, state, path}
import { parentPort, workerData } from 'node:worker_threads';
import { loadBinding, NativeHandle } from './zk-binding';

const NativeCtor = loadBinding();

export type ToWorker =
  | { t: 'new'; h: number; cfg: Record<string, unknown> }
  | { t: 'auth'; h: number; scheme: string; auth: string }
  | { t: 'close'; h: number }
  | { t: 'closeAll' }
  | { t: 'call'; id: number; h: number; m: string; a: unknown[]; w: number; wid: number };
export type FromWorker =
  | { t: 'ev'; h: number; ev: 'connect'; id: string; pw: string; to: number }
  | { t: 'ev'; h: number; ev: 'connecting' }
  | { t: 'ev'; h: number; ev: 'close'; code: number }
  | { t: 'res'; id: number; ok: true; r: unknown }
  | { t: 'res'; id: number; ok: false; msg: string }
  | { t: 'watch'; wid: number; type: number; state: number; path: string };

const port = parentPort;
if (port) {
  const handles = new Map<number, NativeHandle>();
  const post = (m: FromWorker) => {
    try { port.postMessage(m); } catch (e) {
      // a result that cannot be cloned: the call fails rather than never answering
      if (m.t === 'res') port.postMessage({ t: 'res', id: m.id, ok: false, msg: `unexpected result from the ZooKeeper client: ${(e as Error).message}` });
    }
  };
  // Buffers arrive as plain Uint8Arrays: the native client wants Buffers.
  const asBuffer = (v: unknown) => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v);

  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'new': {
        const n = new NativeCtor(m.cfg);
        handles.set(m.h, n);
        n.on('connect', () => post({ t: 'ev', h: m.h, ev: 'connect', id: String(n.client_id), pw: String(n.client_password), to: Number(n.timeout) }));
        n.on('connecting', () => post({ t: 'ev', h: m.h, ev: 'connecting' }));
        n.on('close', (_self: unknown, code: unknown) => {
          handles.delete(m.h);
          post({ t: 'ev', h: m.h, ev: 'close', code: typeof code === 'number' ? code : 0 });
        });
        n.init({});
        return;
      }
      case 'auth': {
        const n = handles.get(m.h);
        try { n?.add_auth!(m.scheme, m.auth, () => undefined); } catch { /* closed: its calls fail */ }
        return;
      }
      case 'close': {
        const n = handles.get(m.h);
        if (!n) return;
        handles.delete(m.h);
        try { n.close!(); } catch { /* already closed */ }
        return;
      }
      case 'closeAll': {
        // The process is exiting (zk-thread.ts waits for this): a worker whose loop still has
        // the binding's handles open when it is torn down aborts the process (uv_loop_close).
        for (const n of handles.values()) { try { n.close!(); } catch { /* already closed */ } }
        handles.clear();
        const flag = (workerData as { exitFlag?: Int32Array } | undefined)?.exitFlag;
        // Two loop turns: the handles' close callbacks run after this turn's check phase.
        setImmediate(() => setImmediate(() => { if (flag) { Atomics.store(flag, 0, 1); Atomics.notify(flag, 0); } }));
        return;
      }
      case 'call': {
        const n = handles.get(m.h);
        // (the message text the facade parses: as the binding's refused call)
        if (!n) { post({ t: 'res', id: m.id, ok: false, msg: 'result: "ZINVALIDSTATE -9" (handle closed)' }); return; }
        const args = m.a.map(asBuffer);
        if (m.w >= 0) {
          const wid = m.wid;
          args[m.w] = (type: number, state: number, path: string) => post({ t: 'watch', wid, type, state, path });
        }
        try {
          Promise.resolve(n[m.m]!(...args)).then(
            (r) => post({ t: 'res', id: m.id, ok: true, r }),
            (e: unknown) => post({ t: 'res', id: m.id, ok: false, msg: e instanceof Error ? e.message : String(e) }),
          );
        } catch (e) {
          post({ t: 'res', id: m.id, ok: false, msg: e instanceof Error ? e.message : String(e) });
        }
        return;
      }
    }
  });
}
