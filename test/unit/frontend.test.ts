// Pure pieces of the frontend: COPY field extraction, array literals, command tag
// sums, session state replay, startup options, message framing.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { csvField, textField } from '../../src/frontend/copy';
import { parseArrayLiteral } from '../../src/frontend/client';
import { sumTags } from '../../src/frontend/group';
import { SessionState } from '../../src/frontend/session-state';
import { Fifo } from '../../src/frontend/fifo';
import { parseOptions, parseStartup } from '../../src/protocol/startup';
import { MessageReader, ProtocolViolation } from '../../src/protocol/reader';
import { Writer, renameBind, decodeBind, renameParse, decodeParse, parseMsg } from '../../src/protocol/messages';

const spec = { delimiter: '\t', null: '\\N', table: 't', quote: '"', escape: '"' };

describe('COPY fields', () => {
  it('reads text-format fields with escapes and NULL', () => {
    const line = Buffer.from('1\ta\\tb\t\\N\tx\\\\y\t\\101\\x42');
    assert.equal(textField(line, 0, spec), '1');
    assert.equal(textField(line, 1, spec), 'a\tb');
    assert.equal(textField(line, 2, spec), null);
    assert.equal(textField(line, 3, spec), 'x\\y');
    assert.equal(textField(line, 4, spec), 'AB');
    assert.throws(() => textField(line, 9, spec), /missing data/);
  });
  it('reads CSV fields with quotes, doubled quotes and unquoted NULL', () => {
    const c = { ...spec, delimiter: ',', null: '' };
    const line = Buffer.from('7,"a,b","say ""hi""",,""');
    assert.equal(csvField(line, 0, c), '7');
    assert.equal(csvField(line, 1, c), 'a,b');
    assert.equal(csvField(line, 2, c), 'say "hi"');
    assert.equal(csvField(line, 3, c), null);
    assert.equal(csvField(line, 4, c), '');
  });
});

describe('array literals for key = ANY(...)', () => {
  it('splits elements, quotes and NULL', () => {
    assert.deepEqual(parseArrayLiteral('{1,2, 3}'), ['1', '2', '3']);
    assert.deepEqual(parseArrayLiteral('{"a b","c\\"d",NULL,"NULL"}'), ['a b', 'c"d', null, 'NULL']);
    assert.deepEqual(parseArrayLiteral('{}'), []);
    assert.throws(() => parseArrayLiteral('1,2'), /malformed array literal/);
  });
});

describe('command tags of several shards', () => {
  it('adds counts of the same command', () => {
    assert.equal(sumTags(['UPDATE 3', 'UPDATE 4']), 'UPDATE 7');
    assert.equal(sumTags(['INSERT 0 1', 'INSERT 0 2']), 'INSERT 0 3');
    assert.equal(sumTags(['SELECT 5', 'SELECT 0']), 'SELECT 5');
    assert.equal(sumTags(['CREATE TABLE', 'CREATE TABLE']), 'CREATE TABLE');
  });
});

describe('session state', () => {
  it('replays SETs in order of last change and resets another client\'s state first', () => {
    const a = SessionState.empty.withSet('search_path', 'SET search_path = x').withSet('work_mem', "SET work_mem = '8MB'").withSet('search_path', 'SET search_path = y');
    assert.equal(a.replaySql(null), "SET work_mem = '8MB'; SET search_path = y");
    const b = SessionState.empty.withSet('timezone', "SET timezone = 'UTC'");
    assert.equal(a.replaySql(b), "RESET ALL; SET work_mem = '8MB'; SET search_path = y");
    assert.equal(a.withReset('work_mem').withReset('search_path'), SessionState.empty);
  });
});

describe('startup', () => {
  it('parses libpq options with -c and escaped spaces', () => {
    assert.deepEqual(parseOptions('-c statement_timeout=5s --work-mem=8MB -capp.x=a\\ b').settings, [['statement_timeout', '5s'], ['work_mem', '8MB'], ['app.x', 'a b']]);
  });
  it('rejects a startup packet without user and protocol 2', () => {
    const noUser = new Writer().int32(196608).cstr('database').cstr('x').int8(0).packet();
    assert.throws(() => parseStartup(noUser), /no PostgreSQL user name/);
    const v2 = Buffer.from([0, 0, 0, 8, 0, 2, 0, 0]);
    assert.throws(() => parseStartup(v2), /unsupported frontend protocol 2\.0/);
  });
});

describe('message framing', () => {
  it('splits messages across chunk boundaries and rejects bad lengths', () => {
    const m1 = new Writer().cstr('SELECT 1').msg(0x51);
    const m2 = new Writer().cstr('SELECT 22').msg(0x51);
    const all = Buffer.concat([m1, m2]);
    const seen: string[] = [];
    const r = new MessageReader();
    for (let i = 0; i < all.length; i += 3) r.feed(all.subarray(i, i + 3), (_t, m) => seen.push(m.toString('utf8', 5, m.length - 1)));
    assert.deepEqual(seen, ['SELECT 1', 'SELECT 22']);
    assert.throws(() => new MessageReader().feed(Buffer.from([0x51, 0, 0, 0, 1]), () => undefined), ProtocolViolation);
  });
  it('renames statements in Parse and Bind without touching the rest', () => {
    const bind = new Writer().cstr('p1').cstr('S_1').int16(1).int16(1).int16(2).int32(4).int32(42).int32(-1).int16(0).msg(0x42);
    const renamed = renameBind(bind, 'pgring_7');
    const d = decodeBind(renamed);
    assert.equal(d.portal, 'p1');
    assert.equal(d.statement, 'pgring_7');
    assert.deepEqual(d.paramFormats, [1]);
    assert.equal(d.params[0]!.readInt32BE(0), 42);
    assert.equal(d.params[1], null);
    const parse = parseMsg('S_1', 'SELECT $1', [23]);
    assert.deepEqual(decodeParse(renameParse(parse, 'x')), { name: 'x', sql: 'SELECT $1', types: [23] });
  });
});

describe('Fifo (the per-client and per-link request queues)', () => {
  it('keeps order through pushes, shifts and compaction, and removes from the middle', () => {
    const q = new Fifo<number>();
    const model: number[] = [];
    for (let i = 0; i < 5000; i++) {
      q.push(i); model.push(i);
      if (i % 3 === 0) assert.equal(q.shift(), model.shift());
      if (i % 97 === 0) { const k = q.indexOf(model[1]!); if (k >= 0) { q.removeAt(k); model.splice(1, 1); } }
    }
    assert.equal(q.length, model.length);
    assert.equal(q.first(), model[0]);
    assert.equal(q.indexOf(model[10]!), 10);
    assert.ok(q.every((x) => x >= 0));
    while (model.length) assert.equal(q.shift(), model.shift());
    assert.equal(q.length, 0);
    assert.equal(q.shift(), undefined);
    assert.equal(q.first(), undefined);
  });
});

describe('session state and identity', () => {
  it('RESET ALL keeps role and session authorization; replay resets them before RESET ALL', () => {
    const s = SessionState.empty.withSet('role', 'SET ROLE r').withSet('work_mem', "SET work_mem = '8MB'");
    const after = s.afterResetAll();
    assert.deepEqual([...after.sets.keys()], ['role']);
    assert.equal(SessionState.empty.replaySql(s), 'RESET SESSION AUTHORIZATION; RESET ALL');
    assert.equal(SessionState.empty.replaySql(SessionState.empty.withSet('work_mem', 'x')), 'RESET ALL');
  });
});

describe('replication connections: which shard (replication.ts)', () => {
  it('the only shard, or the one named with -c pgring.shard; several shards without a name: FATAL naming the option', async () => {
    const { replicationShard, replicationValue, shardOption } = await import('../../src/frontend/replication');
    assert.equal(shardOption('-c pgring.shard=s2'), 's2');
    assert.equal(shardOption('-c statement_timeout=5 --pgring.shard=s3'), 's3');
    assert.equal(shardOption('-c statement_timeout=5'), null);
    assert.equal(replicationShard(['s1'], undefined), 0);
    assert.equal(replicationShard(['s1', 's2'], '-c pgring.shard=s2'), 1);
    const none = replicationShard(['s1', 's2'], undefined);
    assert.ok(typeof none !== 'number' && none.code === '0A000' && /pgring\.shard/.test(none.message));
    const bad = replicationShard(['s1', 's2'], '-cpgring.shard=s9');
    assert.ok(typeof bad !== 'number' && /shard "s9"/.test(bad.message));
    assert.equal(replicationValue(new Map([['replication', 'database']])), 'database');
    assert.equal(replicationValue(new Map([['replication', 'false']])), null);
    assert.equal(replicationValue(new Map()), null);
  });
});
