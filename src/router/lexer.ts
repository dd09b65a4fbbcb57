// Fast single-pass SQL scanner (PostgreSQL quoting rules, standard_conforming_strings on).
//
// lex(sql) splits a query string into statements at top-level ';' and gives, per statement, a
// *shape*: the statement with every string / numeric literal replaced by a one-character marker,
// whitespace runs and comments collapsed to one space. Statements that differ only in literal
// values have the same shape, so the routing plan can be cached by shape. Literal values (already
// unescaped) are returned in order; the i-th marker in the shape is literal slot i.
//
// Markers: LIT_MARK[kind] where kind is LIT_STRING / LIT_INT / LIT_NUM. They are control
// characters that cannot appear in valid SQL outside quoted text.
// B'..' / X'..' bit strings, quoted identifiers, $n parameters are kept verbatim in the shape.

export const LIT_STRING = 0;
export const LIT_INT = 1;
export const LIT_NUM = 2;
export type LitKind = 0 | 1 | 2;
export const LIT_MARK = ['\u0001', '\u0002', '\u0003'];

export interface Hint { shard?: string; shardKey?: string; /** reads=primary|replica|any (read routing) */ reads?: string }

export interface LexedStatement {
  /** statement text bounds in the input (leading whitespace and the ';' excluded) */
  start: number;
  end: number;
  shape: string;
  literals: string[];
  kinds: LitKind[];
  /** highest $n parameter number used (0 if none) */
  maxParam: number;
  hint?: Hint;
  /** true when the statement has no tokens (only comments / whitespace) */
  empty: boolean;
  /** a quoted string runs to the end of the input (PostgreSQL: "unterminated quoted string") */
  unterminated?: boolean;
}

// character classes
const C_SPACE = 1, C_IDSTART = 2, C_DIGIT = 4, C_OP = 8, C_IDCONT = 16;
const CLS = new Uint8Array(128);
(() => {
  for (const c of ' \t\n\r\f\v') CLS[c.charCodeAt(0)] |= C_SPACE;
  for (let c = 65; c <= 90; c++) CLS[c] |= C_IDSTART | C_IDCONT;
  for (let c = 97; c <= 122; c++) CLS[c] |= C_IDSTART | C_IDCONT;
  CLS[95] |= C_IDSTART | C_IDCONT; // _
  for (let c = 48; c <= 57; c++) CLS[c] |= C_DIGIT | C_IDCONT;
  CLS[36] |= C_IDCONT; // $
  for (const c of '+-*/<>=~!@#%^&|`?') CLS[c.charCodeAt(0)] |= C_OP;
})();
function isSpace(c: number): boolean { return c < 128 && (CLS[c] & C_SPACE) !== 0; }
function isIdStart(c: number): boolean { return c >= 128 || (CLS[c] & C_IDSTART) !== 0; }
function isIdCont(c: number): boolean { return c >= 128 || (CLS[c] & C_IDCONT) !== 0; }
function isDigit(c: number): boolean { return c >= 48 && c <= 57; }
function isOpChar(c: number): boolean { return c < 128 && (CLS[c] & C_OP) !== 0; }

// previous-token classes (for deciding whether '-' before a number is unary)
const P_NONE = 0, P_OPEN = 1, P_CLOSE = 2, P_WORD = 3;

/** keywords after which a '-' is a unary minus (they cannot end an expression) */
const UNARY_AFTER = new Set([
  'select', 'where', 'and', 'or', 'not', 'when', 'then', 'else', 'set', 'values', 'returning', 'by',
  'limit', 'offset', 'in', 'between', 'like', 'ilike', 'case', 'on', 'having', 'to', 'fetch', 'is',
  'return', 'any', 'some', 'all', 'distinct', 'default', 'with', 'symmetric', 'similar', 'escape',
  'row', 'array', 'first', 'next', 'absolute', 'relative', 'forward', 'backward', 'increment',
  'minvalue', 'maxvalue', 'start', 'restart', 'cache', 'if', 'elsif', 'over', 'filter',
]);

export class LexError extends Error {}

function parseHint(body: string): Hint | undefined {
  const m = /^\s*pgring\s*:(.*)$/is.exec(body);
  if (!m) return undefined;
  const hint: Hint = {};
  const re = /([A-Za-z_]+)\s*=\s*('(?:[^']|'')*'|"(?:[^"]|"")*"|[^\s,]+)/g;
  let mm: RegExpExecArray | null;
  while ((mm = re.exec(m[1]))) {
    let v = mm[2];
    if (v.length >= 2 && (v[0] === "'" || v[0] === '"') && v[v.length - 1] === v[0]) {
      v = v.slice(1, -1).split(v[0] + v[0]).join(v[0]);
    }
    const k = mm[1].toLowerCase();
    if (k === 'shard_key' || k === 'shardkey' || k === 'key') hint.shardKey = v;
    else if (k === 'shard') hint.shard = v;
    else if (k === 'reads') hint.reads = v.toLowerCase();
  }
  return hint.shard !== undefined || hint.shardKey !== undefined || hint.reads !== undefined ? hint : undefined;
}

function normalizeNumber(raw: string): string {
  // strip underscores, convert 0x / 0o / 0b integers to decimal
  let s = raw.indexOf('_') >= 0 ? raw.split('_').join('') : raw;
  if (s.length > 2 && s.charCodeAt(0) === 48) {
    const c = s.charCodeAt(1) | 32;
    if (c === 120 /* x */ || c === 111 /* o */ || c === 98 /* b */) s = BigInt(s.toLowerCase()).toString();
  }
  return s;
}

/** decode escapes of an E'' string body */
function decodeE(body: string): string {
  if (body.indexOf('\\') < 0 && body.indexOf("''") < 0) return body;
  let out = '';
  const n = body.length;
  for (let i = 0; i < n; i++) {
    const c = body.charCodeAt(i);
    if (c === 39 /* ' */) { out += "'"; i++; continue; } // '' -> '
    if (c !== 92 || i + 1 >= n) { out += body[i]; continue; }
    const d = body[++i];
    switch (d) {
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'x': {
        let j = i + 1, v = 0, k = 0;
        while (k < 2 && j < n && /[0-9a-fA-F]/.test(body[j])) { v = v * 16 + parseInt(body[j], 16); j++; k++; }
        if (k === 0) { out += 'x'; break; }
        out += String.fromCharCode(v); i = j - 1; break;
      }
      case 'u': case 'U': {
        const len = d === 'u' ? 4 : 8;
        const hex = body.slice(i + 1, i + 1 + len);
        if (hex.length === len && /^[0-9a-fA-F]+$/.test(hex)) { out += String.fromCodePoint(parseInt(hex, 16)); i += len; }
        else out += d;
        break;
      }
      default:
        if (d >= '0' && d <= '7') {
          let j = i, v = 0, k = 0;
          while (k < 3 && j < n && body[j] >= '0' && body[j] <= '7') { v = v * 8 + (body.charCodeAt(j) - 48); j++; k++; }
          out += String.fromCharCode(v & 0xff); i = j - 1;
        } else out += d;
    }
  }
  return out;
}

function decodeU(body: string, esc: string): string {
  // body still has '' doubled quotes
  const s = body.split("''").join("'");
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== esc) { out += s[i]; continue; }
    if (s[i + 1] === esc) { out += esc; i++; continue; }
    if (s[i + 1] === '+') { out += String.fromCodePoint(parseInt(s.slice(i + 2, i + 8), 16)); i += 7; continue; }
    out += String.fromCodePoint(parseInt(s.slice(i + 1, i + 5), 16)); i += 4;
  }
  return out;
}

/** Render a literal value back as SQL text. */
export function renderLiteral(value: string, kind: LitKind): string {
  if (kind !== LIT_STRING) return value;
  const q = value.indexOf("'") >= 0 ? value.split("'").join("''") : value;
  if (value.indexOf('\\') >= 0) return "E'" + q.split('\\').join('\\\\') + "'";
  return "'" + q + "'";
}

/** Split and shape a query string. Never throws on odd input: an unterminated quote or comment
 *  simply runs to the end of the string (the server will report the error). */
export function lex(sql: string): LexedStatement[] {
  return new Lexer(sql).run();
}

/**
 * One pass over a query string: statements split at top-level ';', literals replaced by slot
 * marks in each statement's shape. The state is per statement (reset by finish()); each token
 * class has its own method, which returns the index after the token.
 */
class Lexer {
  private readonly out: LexedStatement[] = [];
  private readonly n: number;
  // per-statement state
  private stStart = -1;      // first token start
  private shape = '';
  private seg = -1;          // start of pending verbatim segment
  private pendingSpace = false;
  private literals: string[] = [];
  private kinds: LitKind[] = [];
  private maxParam = 0;
  private hint: Hint | undefined;
  private prev = P_NONE;
  private prevWordStart = 0;
  private prevWordEnd = 0;
  private atomicDepth = 0;   // inside BEGIN ATOMIC ... END
  private lastWordLower = '';
  private unterminated = false; // a quoted string ran to the end of the input (only the last statement)

  constructor(private readonly sql: string) { this.n = sql.length; }

  run(): LexedStatement[] {
    const sql = this.sql, n = this.n;
    let i = 0;
    while (i < n) {
      const c = sql.charCodeAt(i);
      if (isSpace(c)) { i = this.space(i, c); continue; }
      if (isIdStart(c)) { i = this.word(i, c); continue; }
      if (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) {
        const j = this.scanNumber(i);
        this.lit(i, normalizeNumber(sql.slice(i, j)), this.numKind(i, j));
        i = j; continue;
      }
      const j = this.punct(i, c);
      if (j >= 0) { i = j; continue; }
      if (isOpChar(c)) { i = this.operator(i, c); continue; }
      // other punctuation: . : etc
      this.verb(i);
      this.prev = P_OPEN;
      if (c === 58 && sql.charCodeAt(i + 1) === 58) { i += 2; continue; }   // ::
      this.lastWordLower = '';
      i++;
    }
    this.finish(n);
    if (this.out.length === 0) this.out.push({ start: 0, end: 0, shape: '', literals: [], kinds: [], maxParam: 0, empty: true });
    return this.out;
  }

  private finish(end: number): void {
    const sql = this.sql;
    if (this.seg >= 0) { this.shape += sql.slice(this.seg, end); this.seg = -1; }
    let e = end;
    while (e > 0 && isSpace(sql.charCodeAt(e - 1))) e--;
    if (this.shape.length > 0 && this.shape.charCodeAt(this.shape.length - 1) === 32) this.shape = this.shape.slice(0, -1);
    if (this.stStart >= 0 || this.hint) {
      this.out.push({
        start: this.stStart >= 0 ? this.stStart : e, end: Math.max(e, this.stStart), shape: this.shape, literals: this.literals,
        kinds: this.kinds, maxParam: this.maxParam, hint: this.hint, empty: this.stStart < 0, ...(this.unterminated ? { unterminated: true } : {}),
      });
    }
    this.stStart = -1; this.shape = ''; this.pendingSpace = false; this.literals = []; this.kinds = []; this.maxParam = 0; this.hint = undefined;
    this.prev = P_NONE; this.atomicDepth = 0; this.lastWordLower = '';
  }

  /** starts a verbatim token at position p */
  private verb(p: number): void {
    if (this.stStart < 0) this.stStart = p;
    if (this.seg < 0) {
      if (this.pendingSpace && this.shape.length > 0) this.shape += ' ';
      this.pendingSpace = false;
      this.seg = p;
    }
  }

  /** whitespace / comment at p */
  private gap(p: number): void {
    if (this.seg >= 0) { this.shape += this.sql.slice(this.seg, p); this.seg = -1; }
    this.pendingSpace = true;
  }

  private lit(p: number, value: string, kind: LitKind): void {
    if (this.stStart < 0) this.stStart = p;
    if (this.seg >= 0) { this.shape += this.sql.slice(this.seg, p); this.seg = -1; }
    if (this.pendingSpace && this.shape.length > 0) this.shape += ' ';
    this.pendingSpace = false;
    this.shape += LIT_MARK[kind];
    this.literals.push(value);
    this.kinds.push(kind);
    this.prev = P_CLOSE;
  }

  /** a quoted string body after the opening quote at q: the index after the closing quote
   *  (backslash: whether backslash escapes the next char, E strings) */
  private scanQuoted(q: number, backslash: boolean): number {
    const sql = this.sql, n = this.n;
    let j = q + 1;
    for (;;) {
      if (j >= n) { this.unterminated = true; return n; }
      const c = sql.charCodeAt(j);
      if (c === 39) {
        if (j + 1 < n && sql.charCodeAt(j + 1) === 39) { j += 2; continue; }
        return j + 1;
      }
      if (backslash && c === 92) { j += 2; continue; }
      j++;
    }
  }

  /** after a string ending at j: whitespace containing a newline followed by ' continues the string */
  private continuation(j: number): number {
    const sql = this.sql, n = this.n;
    let k = j, nl = false;
    while (k < n) {
      const c = sql.charCodeAt(k);
      if (c === 10 || c === 13) { nl = true; k++; }
      else if (isSpace(c)) k++;
      else if (c === 45 && nl && sql.charCodeAt(k + 1) === 45) { while (k < n && sql.charCodeAt(k) !== 10) k++; }
      else break;
    }
    return nl && k < n && sql.charCodeAt(k) === 39 ? k : -1;
  }

  /** one or more continued quoted strings starting at quote q: [end, raw body joined] */
  private stringParts(q: number, backslash: boolean): [number, string] {
    const sql = this.sql, n = this.n;
    let end = this.scanQuoted(q, backslash);
    let body = sql.slice(q + 1, end < n || sql.charCodeAt(n - 1) === 39 ? end - 1 : end);
    for (;;) {
      const k = this.continuation(end);
      if (k < 0) break;
      const e2 = this.scanQuoted(k, backslash);
      body += sql.slice(k + 1, e2 - 1);
      end = e2;
    }
    return [end, body];
  }

  private scanNumber(p: number): number {
    const sql = this.sql, n = this.n;
    let j = p;
    const c0 = sql.charCodeAt(j);
    if (c0 === 48 && j + 1 < n) {
      const c1 = sql.charCodeAt(j + 1) | 32;
      if (c1 === 120 || c1 === 111 || c1 === 98) {
        j += 2;
        while (j < n && (isIdCont(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36)) j++;
        return j;
      }
    }
    while (j < n && (isDigit(sql.charCodeAt(j)) || (sql.charCodeAt(j) === 95 && isDigit(sql.charCodeAt(j + 1))))) j++;
    if (j < n && sql.charCodeAt(j) === 46 && sql.charCodeAt(j + 1) !== 46) {
      j++;
      while (j < n && (isDigit(sql.charCodeAt(j)) || (sql.charCodeAt(j) === 95 && isDigit(sql.charCodeAt(j + 1))))) j++;
    }
    if (j < n && (sql.charCodeAt(j) | 32) === 101) {
      let k = j + 1;
      if (sql.charCodeAt(k) === 43 || sql.charCodeAt(k) === 45) k++;
      if (isDigit(sql.charCodeAt(k))) {
        j = k;
        while (j < n && isDigit(sql.charCodeAt(j))) j++;
      }
    }
    return j;
  }

  private numKind(a: number, b: number): LitKind {
    const sql = this.sql;
    if (b - a > 2 && sql.charCodeAt(a) === 48) {
      const c1 = sql.charCodeAt(a + 1) | 32;
      if (c1 === 120 || c1 === 111 || c1 === 98) return LIT_INT;
    }
    for (let k = a; k < b; k++) {
      const c = sql.charCodeAt(k);
      if (c === 46 || (c | 32) === 101) return LIT_NUM;
    }
    return LIT_INT;
  }

  private space(i: number, c: number): number {
    const sql = this.sql, n = this.n;
    if (c === 32 && this.seg >= 0 && i + 1 < n && !isSpace(sql.charCodeAt(i + 1)) && sql.charCodeAt(i + 1) !== 45 && sql.charCodeAt(i + 1) !== 47 && sql.charCodeAt(i + 1) !== 59) {
      return i + 1; // single space inside a verbatim run: keep it in the segment
    }
    this.gap(i);
    while (i < n && isSpace(sql.charCodeAt(i))) i++;
    return i;
  }

  /** a quoted identifier whose opening quote is at q: the index after it */
  private quotedIdent(q: number): number {
    const sql = this.sql, n = this.n;
    let j = q + 1;
    for (;;) { if (j >= n) break; if (sql.charCodeAt(j) === 34) { if (sql.charCodeAt(j + 1) === 34) { j += 2; continue; } j++; break; } j++; }
    return j;
  }

  /** identifiers, keywords and prefixed strings (E'', B'', X'', N'', U&'', U&"") */
  private word(i: number, c: number): number {
    const sql = this.sql, n = this.n;
    const c1 = i + 1 < n ? sql.charCodeAt(i + 1) : 0;
    const lc = c | 32;
    if (c1 === 39) {
      if (lc === 101) { // E'..'
        const [end, body] = this.stringParts(i + 1, true);
        this.lit(i, decodeE(body), LIT_STRING); return end;
      }
      if (lc === 98 || lc === 120) { // B'..' X'..' kept verbatim
        this.verb(i); const j = this.scanQuoted(i + 1, false); this.prev = P_CLOSE; return j;
      }
      if (lc === 110) { // N'..' : keep the N, the string is a literal
        this.verb(i);
        const [end, body] = this.stringParts(i + 1, false);
        this.lit(i + 1, body.indexOf("''") >= 0 ? body.split("''").join("'") : body, LIT_STRING); return end;
      }
    }
    if (lc === 117 && c1 === 38 && i + 2 < n) { // U&'..' / U&".."
      const c2 = sql.charCodeAt(i + 2);
      if (c2 === 39) {
        const [end, body] = this.stringParts(i + 2, false);
        let esc = '\\';
        let j = end;
        // optional UESCAPE 'c'
        const m = /^\s+uescape\s*'(.)'/i.exec(sql.slice(end, end + 40));
        if (m) { esc = m[1]; j = end + m[0].length; }
        this.lit(i, decodeU(body, esc), LIT_STRING); return j;
      }
      if (c2 === 34) { // U&"ident"
        this.verb(i); this.prev = P_CLOSE; return this.quotedIdent(i + 2);
      }
    }
    this.verb(i);
    let j = i + 1;
    while (j < n && isIdCont(sql.charCodeAt(j))) j++;
    this.prev = P_WORD; this.prevWordStart = i; this.prevWordEnd = j;
    // BEGIN ATOMIC ... END bodies contain ';'
    const len = j - i;
    if (len === 6 || len === 5 || len === 4 || len === 3) {
      const w = sql.slice(i, j).toLowerCase();
      if (w === 'atomic' && this.lastWordLower === 'begin') this.atomicDepth++;
      else if (this.atomicDepth > 0 && w === 'case') this.atomicDepth++;
      else if (this.atomicDepth > 0 && w === 'end') this.atomicDepth--;
      this.lastWordLower = w;
    } else this.lastWordLower = '';
    return j;
  }

  /** $n parameters and $tag$ strings */
  private dollar(i: number): number {
    const sql = this.sql, n = this.n;
    const c1 = sql.charCodeAt(i + 1);
    if (isDigit(c1)) {
      this.verb(i); let j = i + 1, v = 0;
      while (j < n && isDigit(sql.charCodeAt(j))) { v = v * 10 + sql.charCodeAt(j) - 48; j++; }
      if (v > this.maxParam) this.maxParam = v;
      this.prev = P_CLOSE; return j;
    }
    let j = i + 1;
    if (c1 !== 36) {
      if (!isIdStart(c1)) { this.verb(i); this.prev = P_OPEN; return i + 1; }
      while (j < n && isIdCont(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36) j++;
      if (sql.charCodeAt(j) !== 36) { this.verb(i); this.prev = P_WORD; return j; }
    }
    const tag = sql.slice(i, j + 1);
    const close = sql.indexOf(tag, j + 1);
    this.lit(i, sql.slice(j + 1, close < 0 ? n : close), LIT_STRING);
    return close < 0 ? n : close + tag.length;
  }

  /** a block comment at i (nested), which may be a pgring hint */
  private blockComment(i: number): number {
    const sql = this.sql, n = this.n;
    this.gap(i);
    let depth = 1, j = i + 2;
    while (j < n && depth > 0) {
      const d = sql.charCodeAt(j);
      if (d === 42 && sql.charCodeAt(j + 1) === 47) { depth--; j += 2; }
      else if (d === 47 && sql.charCodeAt(j + 1) === 42) { depth++; j += 2; }
      else j++;
    }
    let k = i + 2;
    while (k < j && isSpace(sql.charCodeAt(k))) k++;
    if ((sql.charCodeAt(k) | 32) === 112 && sql.slice(k, k + 6).toLowerCase() === 'pgring') {
      const h = parseHint(sql.slice(i + 2, depth === 0 ? j - 2 : j));
      if (h) this.hint = this.hint ? { ...this.hint, ...h } : h;
    }
    return j;
  }

  /** quotes, parameters, comments, ';' and brackets: the index after the token, or -1 */
  private punct(i: number, c: number): number {
    const sql = this.sql, n = this.n;
    switch (c) {
      case 39: { // '..'
        const [end, body] = this.stringParts(i, false);
        this.lit(i, body.indexOf("''") >= 0 ? body.split("''").join("'") : body, LIT_STRING);
        return end;
      }
      case 34: // "ident"
        this.verb(i); this.prev = P_CLOSE; this.lastWordLower = '';
        return this.quotedIdent(i);
      case 36:
        return this.dollar(i);
      case 45: // -- comment
        if (sql.charCodeAt(i + 1) !== 45) return -1;
        this.gap(i);
        while (i < n && sql.charCodeAt(i) !== 10 && sql.charCodeAt(i) !== 13) i++;
        return i;
      case 47: // /* comment */
        return sql.charCodeAt(i + 1) === 42 ? this.blockComment(i) : -1;
      case 59: // ;
        if (this.atomicDepth > 0) { this.verb(i); this.prev = P_OPEN; return i + 1; }
        this.finish(i);
        return i + 1;
      case 40: case 44: case 91: // ( , [
        this.verb(i); this.prev = P_OPEN; this.lastWordLower = ''; return i + 1;
      case 41: case 93: // ) ]
        this.verb(i); this.prev = P_CLOSE; this.lastWordLower = ''; return i + 1;
      default:
        return -1;
    }
  }

  /**
   * An operator run, PostgreSQL's rules: stop at a comment start; trailing + / - trimmed unless
   * the operator contains one of ~ ! @ # % ^ & | ` ?; a unary minus before a number joins it.
   */
  private operator(i: number, c: number): number {
    const sql = this.sql, n = this.n;
    let j = i;
    let special = false;
    while (j < n && isOpChar(sql.charCodeAt(j))) {
      const d = sql.charCodeAt(j);
      if (j > i && ((d === 45 && sql.charCodeAt(j - 1) === 45) || (d === 42 && sql.charCodeAt(j - 1) === 47))) { j--; break; }
      if (d === 126 || d === 33 || d === 64 || d === 35 || d === 37 || d === 94 || d === 38 || d === 124 || d === 96 || d === 63) special = true;
      j++;
    }
    if (j > i + 1 && (sql.charCodeAt(j - 1) === 45 && sql.charCodeAt(j - 2) === 45)) j--; // "x--" never
    if (!special) {
      while (j > i + 1 && (sql.charCodeAt(j - 1) === 43 || sql.charCodeAt(j - 1) === 45)) j--;
    }
    if (j === i) j = i + 1;
    if (j === i + 1 && c === 45) {
      let unary = this.prev === P_NONE || this.prev === P_OPEN;
      if (!unary && this.prev === P_WORD) unary = UNARY_AFTER.has(sql.slice(this.prevWordStart, this.prevWordEnd).toLowerCase());
      if (unary) {
        let k = j;
        while (k < n && isSpace(sql.charCodeAt(k))) k++;
        const d = sql.charCodeAt(k);
        if (isDigit(d) || (d === 46 && isDigit(sql.charCodeAt(k + 1)))) {
          const e = this.scanNumber(k);
          const v = normalizeNumber(sql.slice(k, e));
          this.lit(i, v === '0' ? v : '-' + v, this.numKind(k, e));
          return e;
        }
      }
    }
    this.verb(i); this.prev = P_OPEN; this.lastWordLower = '';
    return j;
  }
}

// ---------------------------------------------------------------------------------------------
// A simple tokenizer used at plan time (not on the hot path) to find clause boundaries.

export type TokType = 'word' | 'qident' | 'string' | 'number' | 'param' | 'op' | 'punct';
export interface Token { type: TokType; start: number; end: number; text: string; lower: string; depth: number }

export function tokenize(sql: string): Token[] {
  const toks: Token[] = [];
  const n = sql.length;
  let i = 0, depth = 0;
  const push = (type: TokType, s: number, e: number): void => {
    const text = sql.slice(s, e);
    toks.push({ type, start: s, end: e, text, lower: type === 'word' ? text.toLowerCase() : text, depth });
  };
  const quoted = (q: number, bs: boolean, quote: number): number => {
    let j = q + 1;
    while (j < n) {
      const c = sql.charCodeAt(j);
      if (c === quote) { if (sql.charCodeAt(j + 1) === quote) { j += 2; continue; } return j + 1; }
      if (bs && c === 92) { j += 2; continue; }
      j++;
    }
    return n;
  };
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (isSpace(c)) { i++; continue; }
    if (c === 45 && sql.charCodeAt(i + 1) === 45) { while (i < n && sql.charCodeAt(i) !== 10) i++; continue; }
    if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      let d = 1, j = i + 2;
      while (j < n && d > 0) {
        if (sql.charCodeAt(j) === 42 && sql.charCodeAt(j + 1) === 47) { d--; j += 2; }
        else if (sql.charCodeAt(j) === 47 && sql.charCodeAt(j + 1) === 42) { d++; j += 2; } else j++;
      }
      i = j; continue;
    }
    if (isIdStart(c)) {
      const c1 = sql.charCodeAt(i + 1), lc = c | 32;
      if (c1 === 39 && (lc === 101 || lc === 98 || lc === 120 || lc === 110)) { const e = quoted(i + 1, lc === 101, 39); push('string', i, e); i = e; continue; }
      if (lc === 117 && c1 === 38 && (sql.charCodeAt(i + 2) === 39 || sql.charCodeAt(i + 2) === 34)) {
        const q = sql.charCodeAt(i + 2); const e = quoted(i + 2, false, q); push(q === 39 ? 'string' : 'qident', i, e); i = e; continue;
      }
      let j = i + 1; while (j < n && isIdCont(sql.charCodeAt(j))) j++;
      push('word', i, j); i = j; continue;
    }
    if (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) {
      let j = i + 1;
      while (j < n && (isIdCont(sql.charCodeAt(j)) || sql.charCodeAt(j) === 46 ||
        ((sql.charCodeAt(j) === 43 || sql.charCodeAt(j) === 45) && (sql.charCodeAt(j - 1) | 32) === 101 && !/[xX]/.test(sql.slice(i, j))))) j++;
      push('number', i, j); i = j; continue;
    }
    if (c === 39) { const e = quoted(i, false, 39); push('string', i, e); i = e; continue; }
    if (c === 34) { const e = quoted(i, false, 34); push('qident', i, e); i = e; continue; }
    if (c === 36) {
      if (isDigit(sql.charCodeAt(i + 1))) { let j = i + 1; while (j < n && isDigit(sql.charCodeAt(j))) j++; push('param', i, j); i = j; continue; }
      let j = i + 1; while (j < n && isIdCont(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36) j++;
      if (sql.charCodeAt(j) === 36) {
        const tag = sql.slice(i, j + 1); const close = sql.indexOf(tag, j + 1);
        const e = close < 0 ? n : close + tag.length; push('string', i, e); i = e; continue;
      }
    }
    if (c === 40 || c === 91) { push('punct', i, i + 1); depth++; i++; continue; }
    if (c === 41 || c === 93) { depth--; push('punct', i, i + 1); i++; continue; }
    if (isOpChar(c)) {
      let j = i; while (j < n && isOpChar(sql.charCodeAt(j)) && !(sql.charCodeAt(j) === 45 && sql.charCodeAt(j + 1) === 45) && !(sql.charCodeAt(j) === 47 && sql.charCodeAt(j + 1) === 42)) j++;
      if (j === i) j = i + 1;
      push('op', i, j); i = j; continue;
    }
    if (c === 58 && sql.charCodeAt(i + 1) === 58) { push('punct', i, i + 2); i += 2; continue; }
    push('punct', i, i + 1); i++;
  }
  return toks;
}
