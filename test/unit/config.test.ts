// The config is strictly validated: unknown keys and wrong types stop start-up with
// the key's path; proxy.example.json shows every key and is valid.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load';
import { configSchema } from '../../src/config/schema';

const example = path.resolve(__dirname, '../../../proxy.example.json');

describe('config', () => {
  it('accepts proxy.example.json, which names every key of the schema', () => {
    const cfg = loadConfig(example);
    assert.equal(cfg.listen.port, 6432);
    const raw = JSON.parse(fs.readFileSync(example, 'utf8'));
    const missing: string[] = [];
    const walk = (schema: { properties?: Record<string, unknown>; items?: unknown }, obj: unknown, at: string) => {
      if (schema.properties) {
        for (const [k, sub] of Object.entries(schema.properties)) {
          if (k === '$schema') continue;
          const v = (obj as Record<string, unknown> | undefined)?.[k];
          if (v === undefined) { missing.push(`${at}${k}`); continue; }
          walk(sub as never, v, `${at}${k}.`);
        }
      } else if (schema.items && Array.isArray(obj)) {
        // every key must appear in at least one element: check the union of the elements
        if (obj.length && typeof obj[0] === 'object') walk(schema.items as never, Object.assign({}, ...obj), `${at}[].`);
      }
    };
    walk(configSchema as never, raw, '');
    assert.deepEqual([...new Set(missing)], []);
  });

  it('rejects unknown keys and wrong types with the path and the reason', () => {
    assert.throws(() => parseConfig({ users: [{ name: 'a' }], shards: [{ name: 's1', backends: [{ port: 1 }] }], pool: { maxSize: 'ten', mode: 'statement' }, listne: {} }), (e: ConfigError) => {
      assert.match(e.message, /listne: unknown key/);
      assert.match(e.message, /pool\.maxSize: must be integer/);
      assert.match(e.message, /pool\.mode: must be one of "transaction", "session"/);
      return true;
    });
    assert.throws(() => parseConfig({ users: [{ name: 'a', auth: 'md5' }], shards: [{ name: 's1', backends: [{ port: 1 }] }] }), /users\[0\]\.password: required/);
    assert.throws(() => parseConfig({ users: [{ name: 'a' }], shards: [{ name: 's1', backends: [{ port: 1, hots: 'x' }] }] }), /shards\[0\]\.backends\[0\]\.hots: unknown key/);
    assert.throws(() => parseConfig({ users: [{ name: 'a' }] }), /shards: at least one shard/);
  });

  it('fills defaults', () => {
    const cfg = parseConfig({ users: [{ name: 'a' }], shards: [{ name: 's1', backends: [{ port: 5 }] }] });
    assert.equal(cfg.pool.mode, 'transaction');
    assert.equal(cfg.locks.mode, 'all');
    assert.equal(cfg.shards[0]!.backends[0]!.host, '127.0.0.1');
    assert.equal(cfg.resharding.maxWritePauseMs, 5000);
    assert.throws(() => parseConfig({ users: [{ name: 'a' }], shards: [{ name: 's1', backends: [{ port: 5 }] }], resharding: { maxWritePauseMs: 10 } }), /resharding\.maxWritePauseMs: must be >= 100/);
  });

  it('tls.enabled false switches the section off (files not needed); auth.query gets its default query', () => {
    const cfg = parseConfig({ users: [{ name: 'a' }], shards: [{ name: 's1', backends: [{ port: 5 }] }], tls: { enabled: false, certFile: 'x', keyFile: 'y' }, auth: { user: 'lookup' } });
    assert.equal(cfg.tls, undefined);
    assert.equal(cfg.auth!.query, 'SELECT usename, passwd FROM pg_shadow WHERE usename=$1');
    assert.equal(parseConfig({ users: [{ name: 'a' }], shards: [{ name: 's1', backends: [{ port: 5 }] }], tls: { certFile: 'x', keyFile: 'y' } }).tls!.certFile, 'x');
  });
});
