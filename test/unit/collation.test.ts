import { test } from 'node:test';
import assert from 'node:assert/strict';
import { comparatorOf } from '../../src/router/collation';

const sorted = (cmp: ((a: Buffer, b: Buffer) => number) | null, words: string[]): string[] =>
  words.map((w) => Buffer.from(w)).sort(cmp ?? Buffer.compare).map((b) => b.toString());

test('C, POSIX and C.UTF-8 order text by bytes; other libc and ICU locales by the language', () => {
  for (const c of ['C', 'POSIX', 'C.UTF-8', 'C.utf8']) assert.equal(comparatorOf('c', c, null), null, c);
  const words = ['Banana', 'apple', 'cherry', 'Apple', '_x', 'éclair', 'eclair', 'Zed'];
  assert.deepEqual(sorted(null, words), ['Apple', 'Banana', 'Zed', '_x', 'apple', 'cherry', 'eclair', 'éclair']);
  const en = ['_x', 'apple', 'Apple', 'Banana', 'cherry', 'eclair', 'éclair', 'Zed'];
  assert.deepEqual(sorted(comparatorOf('c', 'en_US.UTF-8', null), words), en);
  assert.deepEqual(sorted(comparatorOf('i', 'C.UTF-8', 'en-US'), words), en);
  assert.deepEqual(sorted(comparatorOf('i', 'C.UTF-8', 'und-x-icu'), words), en);
  // strings equal to the collator still have an order (bytes), as PostgreSQL's deterministic collations
  const cmp = comparatorOf('i', 'C.UTF-8', 'en-US')!;
  assert.notEqual(cmp(Buffer.from('e\u0301'), Buffer.from('é')), 0);
});
