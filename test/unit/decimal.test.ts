// Exact decimal helpers the merger uses for variance and standard deviation across shards (pure).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fmtDec, parseDec, roundDecTo, sqrtDec } from '../../src/router/decimal';

describe('decimal', () => {
  it('sqrtDec rounds the square root at the scale asked for', () => {
    assert.equal(fmtDec(sqrtDec(parseDec('2'), 16)), '1.4142135623730950');   // 1.41421356237309504880...
    assert.equal(fmtDec(sqrtDec(parseDec('6.25'), 2)), '2.50');
    assert.equal(fmtDec(sqrtDec(parseDec('0.0001'), 4)), '0.0100');
    assert.equal(fmtDec(sqrtDec(parseDec('3'), 0)), '2');                       // 1.73 rounds up
    assert.equal(fmtDec(sqrtDec(parseDec('2.25'), 0)), '2');                    // 1.5 rounds half away from zero
    assert.equal(fmtDec(sqrtDec(parseDec('0'), 3)), '0.000');
    const big = parseDec('1' + '0'.repeat(400));
    assert.equal(fmtDec(sqrtDec(big, 1)), '1' + '0'.repeat(200) + '.0');
    assert.equal(sqrtDec(parseDec('NaN'), 2).special, 'NaN');
  });
  it('roundDecTo pads or rounds half away from zero', () => {
    assert.equal(fmtDec(roundDecTo(parseDec('1.5'), 3)), '1.500');
    assert.equal(fmtDec(roundDecTo(parseDec('-2.345'), 2)), '-2.35');
    assert.equal(fmtDec(roundDecTo(parseDec('2.344'), 2)), '2.34');
  });
});
