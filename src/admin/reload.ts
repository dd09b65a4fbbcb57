// RELOAD / SIGHUP: re-reads the config file and applies what can change while
// clients stay connected. A file that fails validation is refused (the error names
// the key and the reason) and the running config stays.
//
// Applied live: users (new logins), pool.* (pool sizes and timeouts, also of the
// existing pools; pool.mode for the next transaction), logLevel (unless --log-level
// was given), locks.timeoutMs / locks.leaseMs, shutdownGraceMs.
// Needs a restart (kept at the running value, reported): listen, metrics, zookeeper, serverTls,
// shards, ring, sharding, health, locks.mode, locks.buckets, locks.forward, locks.peerPort.
import type { Config } from '../config/types';
import { loadConfig } from '../config/load';
import { PgError, SQLSTATE } from '../protocol/errors';
import type { Proxy } from '../proxy';

/** Config keys (dotted prefixes) that only take effect at start. */
export const RESTART_KEYS = ['listen', 'metrics', 'zookeeper', 'serverTls', 'shards', 'ring', 'sharding', 'health', 'locks.mode', 'locks.buckets', 'locks.forward', 'locks.peerPort'] as const;

export interface ReloadResult { file: string; applied: string[]; notApplied: string[] }

/** Flattens a config into dotted leaf paths (arrays as `[i]`). */
export function flatten(v: unknown, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (Array.isArray(v)) {
    if (v.length === 0) out.set(prefix, '[]');
    v.forEach((x, i) => flatten(x, `${prefix}[${i}]`, out));
  } else if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v as object);
    if (keys.length === 0 && prefix) out.set(prefix, '{}');
    for (const k of keys) flatten((v as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k, out);
  } else if (v !== undefined) {
    out.set(prefix, v);
  }
  return out;
}

export function isRestartKey(path: string): boolean {
  return RESTART_KEYS.some((k) => path === k || path.startsWith(`${k}.`) || path.startsWith(`${k}[`));
}

/** The changed keys between two configs, grouped for reporting (`users`, `shards`: whole lists). */
export function changedKeys(a: Config, b: Config): string[] {
  const fa = flatten(a), fb = flatten(b);
  const out = new Set<string>();
  for (const k of new Set([...fa.keys(), ...fb.keys()])) {
    if (fa.get(k) === fb.get(k)) continue;
    const m = /^(users|shards|sharding\.tables)\[/.exec(k);
    out.add(m ? m[1]! : k);
  }
  return [...out].sort();
}

/** Keeps the running values of the restart-only keys in a freshly loaded config. */
function effectiveConfig(running: Config, next: Config): Config {
  const eff: Config = { ...next };
  eff.listen = running.listen;
  eff.metrics = running.metrics;
  if (running.zookeeper) eff.zookeeper = running.zookeeper; else delete eff.zookeeper;
  eff.serverTls = running.serverTls;
  eff.shards = running.shards;
  eff.ring = running.ring;
  eff.sharding = running.sharding;
  eff.health = running.health;
  eff.locks = { ...next.locks, mode: running.locks.mode, buckets: running.locks.buckets, forward: running.locks.forward, peerPort: running.locks.peerPort };
  return eff;
}

export function reloadConfig(proxy: Proxy): ReloadResult {
  const file = proxy.opts.configFile;
  if (!file) throw new PgError(SQLSTATE.ObjectNotInPrerequisiteState, 'RELOAD: this proxy was started without a config file');
  const next = loadConfig(file); // throws ConfigError naming the key and the reason
  const running = proxy.config;
  // With ZooKeeper the sharding rules are the cluster definition's (src/cluster/definition.ts),
  // not the file's: the running config mirrors the definition, so they are not compared.
  const changed = changedKeys(running, next).filter((k) => !running.zookeeper || !/^sharding\.(tables|referenceTables|unknownTables|stated)/.test(k));
  const notApplied = changed.filter(isRestartKey);
  let applied = changed.filter((k) => !isRestartKey(k));
  if (proxy.opts.logLevel && applied.includes('logLevel')) {
    applied = applied.filter((k) => k !== 'logLevel');
    notApplied.push('logLevel (--log-level given on the command line)');
  }
  const eff = effectiveConfig(running, next);
  if (proxy.opts.logLevel) eff.logLevel = running.logLevel;

  const ctx = proxy.ctx;
  proxy.config = eff;
  ctx.config = eff;
  ctx.topology.config = eff;
  if (applied.includes('users')) ctx.paramCache.clear();
  // Existing pools take the new sizes and timeouts (new pools read them from the config).
  for (const p of ctx.topology.allPools()) {
    const user = eff.users.find((u) => (u.serverUser ?? u.name) === p.cred.user);
    const maxSize = user?.poolSize ?? eff.pool.maxSize;
    const shrink = maxSize < p.opts.maxSize;
    p.opts.maxSize = maxSize;
    p.opts.minSize = eff.pool.minSize;
    p.opts.queueTimeoutMs = eff.pool.queueTimeoutMs;
    p.opts.connectTimeoutMs = eff.pool.connectTimeoutMs;
    p.opts.idleTimeoutMs = eff.pool.idleTimeoutMs;
    if (shrink && p.size > maxSize) p.dropIdle();
  }
  // (The log level itself is applied by the caller after it logged the reload.)
  // The transaction layer may cache lock settings: let it know.
  const tx = ctx.tx as unknown as { reload?: (c: Config) => void } | undefined;
  tx?.reload?.(eff);
  return { file, applied, notApplied };
}
