// Loads and strictly validates proxy.json. Errors name the JSON path and the reason.
import Ajv from 'ajv';
import * as fs from 'node:fs';
import { configSchema } from './schema';
import type { Config } from './types';

export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`invalid config ${file}: ${problems.join('; ')}`);
  }
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true });
const validate = ajv.compile(configSchema);

function pathOf(instancePath: string): string {
  const p = instancePath.replace(/^\//, '').split('/').filter(Boolean)
    .map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`)).join('');
  return p.replace(/^\./, '') || '(root)';
}

/** Validates a parsed object; fills defaults in place. */
export function parseConfig(raw: unknown, file = '<config>'): Config {
  const obj = structuredClone(raw);
  if (!validate(obj)) {
    const problems = (validate.errors ?? []).map((e) => {
      const at = pathOf(e.instancePath);
      if (e.keyword === 'additionalProperties') {
        const key = (e.params as { additionalProperty: string }).additionalProperty;
        return `${at === '(root)' ? key : `${at}.${key}`}: unknown key`;
      }
      if (e.keyword === 'enum') return `${at}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
      return `${at}: ${e.message}`;
    });
    throw new ConfigError(file, [...new Set(problems)]);
  }
  const cfg = obj as unknown as Config;
  const rawSharding = (raw as { sharding?: Record<string, unknown> } | null)?.sharding;
  // Not enumerable: not a key of the file (SHOW CONFIG, RELOAD's comparison do not list it).
  Object.defineProperty(cfg.sharding, 'stated', { value: !!rawSharding && ['tables', 'referenceTables', 'unknownTables'].some((k) => rawSharding[k] !== undefined), enumerable: false, writable: true });
  if (cfg.tls?.enabled === false) delete cfg.tls; // shown but switched off: no TLS, files not read
  if ((cfg.serverTls as { enabled?: boolean } | undefined)?.enabled === false) cfg.serverTls = { sslmode: 'prefer' } as Config['serverTls']; // likewise: libpq's default, no files
  for (const sh of cfg.shards) for (const b of sh.backends) if ((b as { tls?: { enabled?: boolean } }).tls?.enabled === false) delete (b as { tls?: unknown }).tls;
  const problems: string[] = [];
  const names = new Set<string>();
  cfg.shards.forEach((s, i) => {
    if (names.has(s.name)) problems.push(`shards[${i}].name: duplicate shard name "${s.name}"`);
    names.add(s.name);
  });
  cfg.users.forEach((u, i) => {
    if (u.auth !== 'trust' && u.password === undefined) problems.push(`users[${i}].password: required for auth "${u.auth}"`);
  });
  const tables = new Set<string>();
  cfg.sharding.tables.forEach((t, i) => {
    if (tables.has(t.name)) problems.push(`sharding.tables[${i}].name: duplicate table "${t.name}"`);
    tables.add(t.name);
  });
  (cfg.sharding.referenceTables ?? []).forEach((t, i) => {
    if (tables.has(t)) problems.push(`sharding.referenceTables[${i}]: table "${t}" is also a sharded table or listed twice`);
    tables.add(t);
  });
  const zk = cfg.zookeeper;
  if (zk?.selfFenceMs !== undefined && zk.selfFenceMs >= zk.sessionTimeoutMs) {
    problems.push(`zookeeper.selfFenceMs: must be shorter than zookeeper.sessionTimeoutMs (${zk.sessionTimeoutMs}): a proxy must stop writing before its session can expire`);
  }
  if (cfg.shards.length === 0 && !cfg.zookeeper) problems.push('shards: at least one shard is required when zookeeper is not configured');
  if (problems.length) throw new ConfigError(file, problems);
  return cfg;
}

export function loadConfig(file: string): Config {
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) {
    throw new ConfigError(file, [`cannot read: ${(e as Error).message}`]);
  }
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (e) {
    throw new ConfigError(file, [`not valid JSON: ${(e as Error).message}`]);
  }
  return parseConfig(raw, file);
}
