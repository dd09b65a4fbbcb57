// HAVING of a cross-shard GROUP BY, evaluated by the merger on the merged groups (pure). The
// shards group without HAVING (its aggregates ride along as hidden columns); the condition is a
// small expression tree over result columns, constants and bind parameters: comparisons,
// + - *, AND / OR / NOT, IS [NOT] NULL, with SQL's three-valued logic. Numbers compare exactly
// as decimals; text compares by bytes (C collation, as the merger sorts).
import { addDec, cmpDec, parseDec, type Dec } from './merge';

export type HExpr =
  | { k: 'col'; c: number }
  | { k: 'const'; v: string | null; num: boolean }
  | { k: 'param'; i: number }
  | { k: 'op'; op: string; a: HExpr; b: HExpr }
  | { k: 'and' | 'or'; args: HExpr[] }
  | { k: 'not'; a: HExpr }
  | { k: 'isnull'; a: HExpr; not: boolean };

export type HVal = { num: Dec } | { str: string } | null;

/** Column indexes in `e` mapped through `fix` (hidden-column markers to positions). */
export function mapColumns(e: HExpr, fix: (c: number) => number): HExpr {
  switch (e.k) {
    case 'col': return { k: 'col', c: fix(e.c) };
    case 'op': return { ...e, a: mapColumns(e.a, fix), b: mapColumns(e.b, fix) };
    case 'and': case 'or': return { ...e, args: e.args.map((x) => mapColumns(x, fix)) };
    case 'not': case 'isnull': return { ...e, a: mapColumns(e.a, fix) };
    default: return e;
  }
}

function asNum(v: HVal): Dec | null {
  if (v === null) return null;
  if ('num' in v) return v.num;
  return /^\s*[-+]?(\d+\.?\d*|\.\d+)\s*$/.test(v.str) ? parseDec(v.str.trim().replace(/^\+/, '')) : null;
}

function mulDec(a: Dec, b: Dec): Dec { return { v: a.v * b.v, scale: a.scale + b.scale }; }

/** The value of `e` for one merged row; `col` decodes a result column, `params` are the Bind values as text. */
export function evalHaving(e: HExpr, col: (c: number) => HVal, params: (string | null)[] | undefined): HVal | boolean {
  switch (e.k) {
    case 'col': return col(e.c);
    case 'const': return e.v === null ? null : e.num ? { num: parseDec(e.v) } : { str: e.v };
    case 'param': { const t = params?.[e.i]; return t === undefined || t === null ? null : { str: t }; }
    case 'isnull': { const v = evalHaving(e.a, col, params); return (v === null) !== e.not; }
    case 'not': { const v = evalHaving(e.a, col, params); return v === null ? null : !truth(v); }
    case 'and': case 'or': {
      let sawNull = false;
      for (const x of e.args) {
        const v = evalHaving(x, col, params);
        if (v === null) { sawNull = true; continue; }
        if (truth(v) === (e.k === 'or')) return e.k === 'or';
      }
      return sawNull ? null : e.k === 'and';
    }
    case 'op': {
      const a = evalHaving(e.a, col, params), b = evalHaving(e.b, col, params);
      if (a === null || b === null || typeof a === 'boolean' || typeof b === 'boolean') return null;
      if (e.op === '+' || e.op === '-' || e.op === '*') {
        const x = asNum(a), y = asNum(b);
        if (!x || !y) return null;
        if (e.op === '*') return { num: mulDec(x, y) };
        return { num: addDec(x, e.op === '-' ? { ...y, v: -y.v } : y) };
      }
      let r: number;
      if ('str' in a && 'str' in b) r = Buffer.compare(Buffer.from(a.str), Buffer.from(b.str));
      else { const x = asNum(a), y = asNum(b); if (!x || !y) return null; r = cmpDec(x, y); }
      switch (e.op) {
        case '<': return r < 0; case '<=': return r <= 0; case '>': return r > 0; case '>=': return r >= 0;
        case '=': return r === 0; default: return r !== 0;
      }
    }
  }
}

function truth(v: HVal | boolean): boolean { return v === true || (v !== null && v !== false && typeof v === 'object' && 'str' in v && (v.str === 't' || v.str === 'true')); }
