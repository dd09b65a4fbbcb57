// The `zookeeper` package's ZooKeeper class, loaded once per thread that uses it, with the
// package's pass-through methods going straight to the binding.
//
// Why: the package's class formats the arguments of every call with util.inspect for a debug
// log that is off (about a sixth of the ZooKeeper thread's CPU in TPC-B, Buffers included). The
// methods that convert (ACLs, a_get's encoding) keep their conversion. (Tried in sessions 7 and
// 11 and reverted because a proxy cut off from ZooKeeper then sometimes kept writing: faster
// sends made the C client's silent close after a failed send more likely, fixed since in the C
// client by scripts/patch-zookeeper.js, test/integration/zk-send-reset.test.ts.)
export type NativeHandle = Record<string, (...args: unknown[]) => unknown> & {
  on(ev: string, f: (...a: unknown[]) => void): void;
  client_id: unknown; client_password: unknown; timeout: unknown;
};
export type NativeHandleCtor = { new (config: Record<string, unknown>): NativeHandle };

let loaded: NativeHandleCtor | null = null;

export function loadBinding(): NativeHandleCtor {
  if (loaded) return loaded;
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const ctor = require('zookeeper') as NativeHandleCtor;
  const base = Object.getPrototypeOf(ctor.prototype) as Record<string, unknown>;
  for (const m of ['a_create', 'a_exists', 'aw_exists', 'a_get_children', 'aw_get_children', 'a_get_children2', 'aw_get_children2', 'a_set', 'a_delete_']) {
    if (typeof base[m] !== 'function') continue;
    base[m] = function (this: { native: Record<string, (...a: unknown[]) => unknown> }, ...a: unknown[]) { return this.native[m]!(...a); };
  }
  for (const m of ['a_get', 'aw_get']) {
    if (typeof base[m] !== 'function') continue;
    base[m] = function (this: { native: Record<string, (...a: unknown[]) => unknown>; encoding?: BufferEncoding }, p: unknown, w: unknown, cb: (rc: number, err: unknown, stat: unknown, data: unknown) => unknown) {
      return this.native[m]!(p, w, (rc: number, err: unknown, stat: unknown, data: unknown) =>
        cb(rc, err, stat, data && this.encoding ? (data as Buffer).toString(this.encoding) : data));
    };
  }
  loaded = ctor;
  return ctor;
}
