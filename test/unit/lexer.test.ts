import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lex, LIT_INT, LIT_NUM, LIT_STRING, renderLiteral } from '../../src/router/lexer';

const S = '\u0001', I = '\u0002', F = '\u0003';

test('standard strings with doubled quotes; backslash is literal', () => {
  const [st] = lex("SELECT 'it''s', 'a\\b'");
  assert.equal(st.shape, `SELECT ${S}, ${S}`);
  assert.deepEqual(st.literals, ["it's", 'a\\b']);
  assert.deepEqual(st.kinds, [LIT_STRING, LIT_STRING]);
});

test('E strings: escapes', () => {
  const [st] = lex("select E'a\\nb\\'c''d\\x41\\101\\u00e9\\\\'");
  assert.deepEqual(st.literals, ["a\nb'c'dAAé\\"]);
  assert.equal(st.shape, `select ${S}`);
  assert.deepEqual(lex("select e'\\''")[0].literals, ["'"]);
});

test('U& strings, with UESCAPE', () => {
  assert.deepEqual(lex("select U&'d\\0061t\\+000061'")[0].literals, ['data']);
  const [st] = lex("select U&'d!0061t' UESCAPE '!' , 1");
  assert.deepEqual(st.literals, ['dat', '1']);
  assert.equal(st.shape, `select ${S} , ${I}`);
});

test('bit strings and quoted identifiers stay verbatim', () => {
  const [st] = lex(`select B'101', X'ff', "we""ird;" from "T"`);
  assert.equal(st.shape, `select B'101', X'ff', "we""ird;" from "T"`);
  assert.deepEqual(st.literals, []);
});

test('dollar quotes, nested tags, $n params', () => {
  const [st] = lex('select $$a;b$$, $fn$ x $$ y $fn$, $1, $12, a$b from t');
  assert.deepEqual(st.literals, ['a;b', ' x $$ y ']);
  assert.equal(st.shape, `select ${S}, ${S}, $1, $12, a$b from t`);
  assert.equal(st.maxParam, 12);
});

test('comments: line, nested block, removed from shape', () => {
  const sts = lex('select /* a /* nested ; */ still ; */ 1 -- ; not a split\n, 2; select 3');
  assert.equal(sts.length, 2);
  assert.equal(sts[0].shape, `select ${I} , ${I}`);
  assert.equal(sts[1].shape, `select ${I}`);
});

test('numbers: int, decimal, exponent, radix, underscores', () => {
  const [st] = lex('select 42, 3.14, .5, 1e10, 1.5E-3, 0x1F, 0o17, 0b101, 1_000_000, 9999999999999999999');
  assert.deepEqual(st.literals, ['42', '3.14', '.5', '1e10', '1.5E-3', '31', '15', '5', '1000000', '9999999999999999999']);
  assert.deepEqual(st.kinds, [LIT_INT, LIT_NUM, LIT_NUM, LIT_NUM, LIT_NUM, LIT_INT, LIT_INT, LIT_INT, LIT_INT, LIT_INT]);
  assert.equal(st.shape, `select ${I}, ${F}, ${F}, ${F}, ${F}, ${I}, ${I}, ${I}, ${I}, ${I}`);
});

test('negative numbers: unary minus after operator/keyword/comma/paren belongs to the literal', () => {
  const [st] = lex('UPDATE t SET a = a + -42, b = -7, c = (-1) WHERE k = - 5 AND x IN (-2, -3) AND y > -0.5 LIMIT -1');
  assert.deepEqual(st.literals, ['-42', '-7', '-1', '-5', '-2', '-3', '-0.5', '-1']);
  const [b] = lex('select a-1, a - 2, 3-4, f(x)-5, t.c -6');
  assert.deepEqual(b.literals, ['1', '2', '3', '4', '5', '6']);
  assert.equal(b.shape, `select a-${I}, a - ${I}, ${I}-${I}, f(x)-${I}, t.c -${I}`);
  const [c] = lex('select x=-5, x<-5, x @-5');
  assert.deepEqual(c.literals, ['-5', '-5', '5']); // "@-" is one operator (PostgreSQL rule)
});

test('same shape for statements differing only in literals; whitespace normalized', () => {
  const a = lex("SELECT *  FROM t\n\tWHERE k = 1 AND s = 'x'")[0];
  const b = lex("SELECT * FROM t WHERE k = 99999 AND s = 'other''s'")[0];
  assert.equal(a.shape, b.shape);
  assert.notEqual(lex('select 1')[0].shape, lex('select 1.0')[0].shape);
  assert.notEqual(lex('select 1')[0].shape, lex("select '1'")[0].shape);
});

test('string continuation across newlines', () => {
  assert.deepEqual(lex("select 'foo'\n  'bar'")[0].literals, ['foobar']);
  assert.equal(lex("select 'foo' 'bar'")[0].literals.length, 2); // same line: not a continuation (syntax error in PG)
});

test('hints in comments', () => {
  const sts = lex('/* pgring: shard_key=42 */ SELECT 1; SELECT /* pgring: shard=s2 */ 2; /* plain */ select 3');
  assert.deepEqual(sts.map((s) => s.hint), [{ shardKey: '42' }, { shard: 's2' }, undefined]);
  assert.equal(sts[0].shape, `SELECT ${I}`);
  assert.deepEqual(lex("/*pgring: shard_key='a b', shard=s1*/select 1")[0].hint, { shardKey: 'a b', shard: 's1' });
});

test('statement splitting: empty statements, bounds, BEGIN ATOMIC bodies', () => {
  const q = '  BEGIN ;; END;  ';
  const sts = lex(q);
  assert.deepEqual(sts.map((s) => q.slice(s.start, s.end)), ['BEGIN', 'END']);
  assert.equal(lex('').length, 1);
  assert.equal(lex('')[0].empty, true);
  assert.equal(lex(' -- only a comment\n')[0].empty, true);
  const f = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT 5";
  const fs = lex(f);
  assert.equal(fs.length, 2);
  assert.equal(f.slice(fs[1].start, fs[1].end), 'SELECT 5');
});

test('unterminated quotes do not throw', () => {
  assert.equal(lex("select 'abc").length, 1);
  assert.equal(lex('select "abc').length, 1);
  assert.equal(lex('select $$abc').length, 1);
  assert.equal(lex('select /* abc').length, 1);
});

test('renderLiteral re-quotes', () => {
  assert.equal(renderLiteral("it's", LIT_STRING), "'it''s'");
  assert.equal(renderLiteral('a\\b', LIT_STRING), "E'a\\\\b'");
  assert.equal(renderLiteral('-42', LIT_INT), '-42');
});
