// The pure parts of a COPY into a reference table whose left-out defaults pgring evaluates once
// (src/frontend/copy-reference.ts): which defaults, the COPY with the columns added, rows cut and
// extended, and a chunk's error line made the line of the client's data.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../../src/router/router';
import { appendFields, copyField, copyWithColumns, divergentDefaults, isEndMarker, ReferenceCopy, shiftCopyLine, type ChunkRunner } from '../../src/frontend/copy-reference';
import { RowCutter } from '../../src/frontend/copy';
import { PgError } from '../../src/protocol/errors';
import { parseErrorFields } from '../../src/protocol/errors';

before(async () => { await Router.init(); });

const text = { format: 'text' as const, delimiter: '\t', null: '\\N', quote: '"', escape: '"' };
const csv = { format: 'csv' as const, delimiter: ',', null: '', quote: '"', escape: '"' };

describe('copy-reference', () => {
  it('leaves constants and sequences to the shards, evaluates the rest', () => {
    const col = (name: string, expr: string | null, identity = '') => ({ name, identity, expr, type: 'text' });
    const cols = [col('id', "nextval('t_id_seq'::regclass)"), col('g', null, 'd'), col('u', 'gen_random_uuid()'), col('c', "'x'::text"), col('n', '0'), col('at', 'now()'), col('v', null), col('listed', 'random()')];
    assert.deepEqual(divergentDefaults(cols, ['v', 'listed']).map((c) => c.name), ['u', 'at']);
  });

  it('adds columns to the COPY column list, whatever the table name looks like', () => {
    assert.equal(copyWithColumns('COPY t (a, b) FROM STDIN', ['u', 'at']), 'COPY t (a, b, "u", "at") FROM STDIN');
    assert.equal(copyWithColumns('copy "s(1)"."T x" ("a)", b) from stdin with (format csv)', ['U']), 'copy "s(1)"."T x" ("a)", b, "U") from stdin with (format csv)');
    assert.equal(copyWithColumns('COPY t FROM STDIN', ['u']), null);
    assert.equal(copyWithColumns('COPY t (a) TO STDOUT', ['u']), null);
  });

  it('cuts rows: escaped newlines in text, quoted ones in CSV, across chunks', () => {
    const t = new RowCutter(text);
    assert.deepEqual(t.push(Buffer.from('a\\\nb\tc\nd')).map(String), ['a\\\nb\tc\n']);
    assert.deepEqual(t.push(Buffer.from('e\n')).map(String), ['de\n']);
    assert.equal(t.end(), null);
    const c = new RowCutter(csv);
    assert.deepEqual(c.push(Buffer.from('"x\n""y""",1\nz,2')).map(String), ['"x\n""y""",1\n']);
    assert.equal(String(c.end()), 'z,2');
    const e = new RowCutter({ format: 'csv', quote: '"', escape: '\\' });
    assert.deepEqual(e.push(Buffer.from('"a\\"\nb",1\n')).map(String), ['"a\\"\nb",1\n']);
  });

  it('encodes values as fields and appends them before the line end', () => {
    assert.equal(copyField('a\tb\\c\nd\re', text), 'a\\tb\\\\c\\nd\\re');
    assert.equal(copyField(null, text), '\\N');
    assert.equal(copyField('say "hi"', csv), '"say ""hi"""');
    assert.equal(copyField(null, csv), '');
    assert.equal(copyField('a\\b', { ...csv, escape: '\\' }), '"a\\\\b"');
    assert.equal(String(appendFields(Buffer.from('a\r\n'), Buffer.from('\tx'))), 'a\tx\r\n');
    assert.equal(String(appendFields(Buffer.from('a'), Buffer.from('\tx'))), 'a\tx\n');
    assert.equal(isEndMarker(Buffer.from('\\.\r\n')), true);
    assert.equal(isEndMarker(Buffer.from('\\.x\n')), false);
  });

  it('makes a chunk\'s error line the line of the client\'s data', () => {
    const err = new PgError('22P02', 'invalid input syntax for type integer: "x"').toMessage();
    // add a context field as PostgreSQL sends it
    const withW = Buffer.concat([err.subarray(0, err.length - 1), Buffer.from('WCOPY t, line 3, column n: "x"\0\0')]);
    withW.writeInt32BE(withW.length - 1, 1);
    assert.equal(parseErrorFields(shiftCopyLine(withW, 10000)).W, 'COPY t, line 10003, column n: "x"');
    assert.equal(shiftCopyLine(withW, 0), withW);
  });

  it('runs chunks in order with one evaluation each, and counts what the shards copied', async () => {
    const calls: string[] = [];
    const run: ChunkRunner = {
      evaluate: async (n) => { calls.push(`eval ${n}`); return Array.from({ length: n }, (_, i) => [`v${i}`]); },
      copy: async (data) => { const rows = Buffer.concat(data).toString().split('\n').filter(Boolean); calls.push(`copy ${rows[0]}..${rows.length}`); return { count: rows.length - (rows[0]!.startsWith('name') ? 1 : 0) }; },
      fail: async () => { calls.push('fail'); },
      encode: (s) => Buffer.from(s),
    };
    const spec = { table: 't', columns: ['name'], keyColumnIndex: null, header: true, ...text };
    const rc = new ReferenceCopy(spec, [{ name: 'u', identity: '', expr: 'gen_random_uuid()', type: 'uuid' }], run);
    const lines = ['name\n', ...Array.from({ length: 5001 }, (_, i) => `r${i}\n`), '\\.\n', 'ignored\n'];
    for (const l of lines) rc.data(Buffer.from(l));
    const done = await rc.done();
    assert.deepEqual(calls, ['eval 4999', 'copy name\tu..5000', 'eval 2', 'copy r4999\tv0..2']);
    assert.equal(done.toString('latin1', 5, done.length - 1), 'COPY 5001');
    assert.deepEqual(calls, ['eval 4999', 'copy name\tu..5000', 'eval 2', 'copy r4999\tv0..2']);
  });
});
