// Reading sockets without the stream machinery. By default every read allocates a
// 64 kB buffer, wraps it, pushes it through a Readable stream and schedules a
// process.nextTick; at two reads per transaction that is a good part of a proxy's
// CPU. Node's `onread` option instead reads into one buffer we own and calls us
// directly. All sockets share that buffer (reads are handled one at a time), so the
// callback gets a *copy* of the bytes: nothing pgring keeps can ever be overwritten.
//
// Client sockets come from net.Server, which has no `onread` option; they are
// accepted paused and switched to the same mode through the two symbols the
// Socket constructor uses for `onread` (found at start-up). If that ever fails
// (another Node.js version), sockets fall back to 'data' events.
import * as net from 'node:net';

export type ChunkHandler = (chunk: Buffer) => void;

const shared = Buffer.allocUnsafe(65536);

/** `onread` option for net.connect(): copies of what arrives go to `onChunk`. */
export function onreadOption(onChunk: () => ChunkHandler): net.OnReadOpts {
  return { buffer: shared, callback: (n: number, buf: Uint8Array) => { onChunk()(copy(buf, n)); return true; } };
}

// Views of the shared buffer's first n bytes, made once per size: subarray per read costs a
// typed-array allocation and a C++ call (its .buffer). Small reads only: at most 2,048 views,
// in an array filled up front (setting index 150 of an empty array would make it a dictionary).
const VIEW_MAX = 2048;
const views: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(VIEW_MAX + 1).fill(undefined);

function copy(buf: Uint8Array, n: number): Buffer {
  const out = Buffer.allocUnsafe(n); // small reads come from Node's shared pool: no allocation of their own
  out.set(buf === shared && n <= VIEW_MAX ? (views[n] ??= shared.subarray(0, n)) : buf.subarray(0, n));
  return out;
}

interface Keys { buffer: symbol; callback: symbol }
let keys: Keys | null | undefined;

function discover(): Keys | null {
  const marker = () => undefined;
  const probe = new net.Socket({ onread: { buffer: shared, callback: marker } } as net.SocketConstructorOpts);
  const rec = probe as unknown as Record<symbol, unknown>;
  let buffer: symbol | undefined;
  let callback: symbol | undefined;
  for (const s of Object.getOwnPropertySymbols(probe)) {
    if (rec[s] === shared) buffer = s;
    else if (rec[s] === marker) callback = s;
  }
  probe.destroy();
  return buffer && callback ? { buffer, callback } : null;
}

/**
 * Starts reading an accepted socket (accepted with pauseOnConnect) into `onChunk`; also a
 * connected socket read through 'data' events so far (with nothing buffered), whose 'data'
 * listeners were removed (a server that answered SSLRequest with 'N').
 * Returns false when it fell back to 'data' events (or `dataEvents` asked for them: a socket
 * that may be handed to TLS must be read the ordinary way).
 */
export function readAccepted(socket: net.Socket, onChunk: ChunkHandler, dataEvents = false): boolean {
  if (keys === undefined) keys = discover();
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  if (!dataEvents && keys && handle && typeof handle.useUserBuffer === 'function') {
    const rec = socket as unknown as Record<symbol, unknown>;
    rec[keys.buffer] = shared;
    rec[keys.callback] = (n: number, buf: Uint8Array) => { onChunk(copy(buf, n)); };
    handle.useUserBuffer(shared);
    socket.resume();
    return true;
  }
  socket.on('data', onChunk);
  socket.resume();
  return false;
}
