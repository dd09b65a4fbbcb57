// Client encodings (protocol/encoding.ts): PostgreSQL's names and aliases, SET statements.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { codecFor, encodingOfSet } from '../../src/protocol/encoding';

test('PostgreSQL encoding names and aliases map to codecs; UTF8 and SQL_ASCII keep the UTF8 reading', () => {
  for (const n of ['UTF8', 'utf-8', 'Unicode', 'SQL_ASCII', 'no such encoding']) assert.equal(codecFor(n), null, n);
  assert.equal(codecFor('latin1')!.name, 'LATIN1');
  assert.equal(codecFor('ISO-8859-1')!.name, 'LATIN1');
  assert.equal(codecFor('iso8859_15')!.name, 'LATIN9');
  assert.equal(codecFor('WIN')!.name, 'WIN1251');
  assert.equal(codecFor('windows-1252')!.name, 'WIN1252');
  assert.equal(codecFor('Shift_JIS')!.name, 'SJIS');
  assert.equal(codecFor('LATIN1')!.decode(Buffer.from([0x63, 0x61, 0x66, 0xe9])), 'café');
  assert.deepEqual(codecFor('WIN1252')!.encode('€ café'), Buffer.from([0x80, 0x20, 0x63, 0x61, 0x66, 0xe9]));
  assert.equal(codecFor('WIN1252')!.decode(Buffer.from([0x41, 0x80, 0x42]), 1, 2), '€');
  assert.equal(codecFor('SJIS')!.decode(codecFor('SJIS')!.encode('日本')), '日本');
});

test('the value of SET client_encoding / SET NAMES', () => {
  assert.equal(encodingOfSet("SET client_encoding TO 'LATIN1'"), 'LATIN1');
  assert.equal(encodingOfSet('set client_encoding = win1252;'), 'win1252');
  assert.equal(encodingOfSet("SET NAMES 'UTF8'"), 'UTF8');
  assert.equal(encodingOfSet('SET SESSION client_encoding TO "LATIN9"'), 'LATIN9');
});
