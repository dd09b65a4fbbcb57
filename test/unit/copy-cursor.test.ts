// Pure parts of COPY TO over several shards (the stream merge) and of cursors pgring keeps
// (the DECLARE's query, PostgreSQL's cursor positions).
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { CopyOutMerge } from '../../src/frontend/copy-out';
import { cursorQuery, fetchStep } from '../../src/frontend/cursors';

const d = (payload: Buffer | string): Buffer => {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const m = Buffer.alloc(5 + p.length);
  m[0] = 0x64; m.writeInt32BE(4 + p.length, 1); p.copy(m, 5);
  return m;
};
const H = Buffer.from([0x48, 0, 0, 0, 7, 0, 0, 0]);
const DONE = Buffer.from([0x63, 0, 0, 0, 4]);
const HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
const TRAILER = Buffer.from([0xff, 0xff]);
const row = (v: number) => { const b = Buffer.alloc(10); b.writeInt16BE(1, 0); b.writeInt32BE(4, 2); b.writeInt32BE(v, 6); return b; };
const payloads = (msgs: Buffer[]) => msgs.filter((m) => m[0] === 0x64).map((m) => m.subarray(5));

describe('CopyOutMerge', () => {
  it('text: one CopyOutResponse, every row, one CopyDone after the last shard', () => {
    const m = new CopyOutMerge({ binary: false, header: false }, 2);
    const out = [...m.message(0, 0x48, H), ...m.message(1, 0x48, H), ...m.message(1, 0x64, d('b\n')), ...m.message(0, 0x64, d('a\n')), ...m.message(0, 0x63, DONE)];
    assert.equal(out.filter((x) => x[0] === 0x48).length, 1);
    assert.equal(out.filter((x) => x[0] === 0x63).length, 0);
    const end = m.message(1, 0x63, DONE);
    assert.deepEqual(payloads(out).map(String), ['b\n', 'a\n']);
    assert.deepEqual(end, [DONE]);
  });

  it('csv HEADER: the header line of the first shard only', () => {
    const m = new CopyOutMerge({ binary: false, header: true }, 2);
    const out = [...m.message(0, 0x64, d('h\n')), ...m.message(1, 0x64, d('h\n')), ...m.message(1, 0x64, d('2\n')), ...m.message(0, 0x64, d('1\n'))];
    assert.deepEqual(payloads(out).map(String), ['h\n', '2\n', '1\n']);
  });

  it('binary: one header before the first row, shards\' trailers dropped, one trailer at the end', () => {
    const m = new CopyOutMerge({ binary: true, header: false }, 3);
    const out = [
      ...m.message(2, 0x64, d(Buffer.concat([HEADER, TRAILER]))),   // a shard without rows
      ...m.message(0, 0x64, d(Buffer.concat([HEADER, row(1)]))),
      ...m.message(1, 0x64, d(Buffer.concat([HEADER, row(2)]))),
      ...m.message(0, 0x64, d(row(3))), ...m.message(0, 0x64, d(TRAILER)), ...m.message(1, 0x64, d(TRAILER)),
      ...m.message(0, 0x63, DONE), ...m.message(1, 0x63, DONE), ...m.message(2, 0x63, DONE),
    ];
    assert.equal(m.bad, null);
    assert.deepEqual(Buffer.concat(payloads(out)), Buffer.concat([HEADER, row(1), row(2), row(3), TRAILER]));
    assert.deepEqual(out[0]!.subarray(5), Buffer.concat([HEADER, row(1)]), 'the header travels with the first row');
  });

  it('binary with no rows anywhere: header and trailer in one message', () => {
    const m = new CopyOutMerge({ binary: true, header: false }, 2);
    const out = [...m.message(0, 0x64, d(Buffer.concat([HEADER, TRAILER]))), ...m.message(1, 0x64, d(Buffer.concat([HEADER, TRAILER]))), ...m.message(0, 0x63, DONE), ...m.message(1, 0x63, DONE)];
    assert.deepEqual(payloads(out), [Buffer.concat([HEADER, TRAILER])]);
  });

  it('a binary stream without its header is reported, not passed on', () => {
    const m = new CopyOutMerge({ binary: true, header: false }, 2);
    assert.deepEqual(m.message(0, 0x64, d(row(1))), []);
    assert.match(String(m.bad), /header/);
  });
});

describe('cursors kept by pgring', () => {
  it('cursorQuery finds the query of every DECLARE form', () => {
    assert.equal(cursorQuery('DECLARE c CURSOR FOR SELECT 1'), 'SELECT 1');
    assert.equal(cursorQuery('declare "my ""cur""" binary no scroll cursor with hold for select * from t'), 'select * from t');
    assert.equal(cursorQuery('DECLARE _psql_cursor NO SCROLL CURSOR FOR\nSELECT a FROM t'), 'SELECT a FROM t');
    assert.equal(cursorQuery('DECLARE x INSENSITIVE SCROLL CURSOR WITHOUT HOLD FOR values (1)'), 'values (1)');
    assert.equal(cursorQuery('SELECT 1'), null);
  });

  it('fetchStep follows PostgreSQL\'s positions (0 before the first row, n + 1 after the last)', () => {
    const f = (direction: 'forward' | 'backward' | 'absolute' | 'relative', count: number) => ({ direction, count, move: false });
    assert.deepEqual(fetchStep(0, 3, f('forward', Infinity)), { rows: [1, 2, 3], pos: 4 });
    assert.deepEqual(fetchStep(4, 3, f('backward', 1)), { rows: [3], pos: 3 });
    assert.deepEqual(fetchStep(3, 3, f('backward', Infinity)), { rows: [2, 1], pos: 0 });
    assert.deepEqual(fetchStep(2, 3, f('forward', 0)), { rows: [2], pos: 2 });
    assert.deepEqual(fetchStep(0, 3, f('forward', 0)), { rows: [], pos: 0 });
    assert.deepEqual(fetchStep(1, 3, f('forward', -1)), { rows: [], pos: 0 });
    assert.deepEqual(fetchStep(0, 3, f('absolute', -1)), { rows: [3], pos: 3 });
    assert.deepEqual(fetchStep(0, 3, f('absolute', -5)), { rows: [], pos: 0 });
    assert.deepEqual(fetchStep(0, 3, f('absolute', 7)), { rows: [], pos: 4 });
    assert.deepEqual(fetchStep(1, 3, f('relative', 2)), { rows: [3], pos: 3 });
    assert.deepEqual(fetchStep(3, 3, f('relative', 1)), { rows: [], pos: 4 });
    assert.deepEqual(fetchStep(2, 3, f('relative', 0)), { rows: [2], pos: 2 });
  });
});
