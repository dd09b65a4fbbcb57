// SASLprep (RFC 4013) applied the lenient way PostgreSQL applies it to SCRAM
// passwords (src/common/saslprep.c, pg_saslprep):
//   - a pure-ASCII password is used as is (no mapping, no checks);
//   - otherwise the string is mapped (non-ASCII spaces -> U+0020, "commonly mapped
//     to nothing" characters removed), NFKC-normalized and checked for prohibited
//     characters; if any check fails the raw UTF-8 bytes are used instead of failing.
//
// Limitations (documented on purpose):
//   - NFKC comes from the JS engine (a current Unicode version) while stringprep is
//     pinned to Unicode 3.2; for characters whose decomposition changed or that were
//     unassigned in 3.2 the result can differ from PostgreSQL's.
//   - The unassigned-code-point check (RFC 3454 table A.1) and the bidi
//     (RandALCat/LCat) rule are not implemented. PostgreSQL falls back to the raw
//     bytes for such passwords; we normalize them. Passwords containing them may
//     therefore not interoperate with a PostgreSQL-computed verifier.
//   - For ordinary non-ASCII passwords that are already NFKC-normalized (the usual
//     case) the result is exactly the raw UTF-8, matching PostgreSQL.

// RFC 3454 C.1.2 non-ASCII space characters.
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g;
// RFC 3454 B.1 commonly mapped to nothing.
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/g;
// Prohibited output (RFC 4013 section 2.3): C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9.
const PROHIBITED = new RegExp(
  '[' +
    '\\u00A0\\u1680\\u2000-\\u200B\\u202F\\u205F\\u3000' + // C.1.2
    '\\u0000-\\u001F\\u007F' + // C.2.1
    '\\u0080-\\u009F\\u06DD\\u070F\\u180E\\u200C\\u200D\\u2028\\u2029\\u2060-\\u2063\\u206A-\\u206F\\uFEFF\\uFFF9-\\uFFFC' + // C.2.2 (BMP)
    '\\u{1D173}-\\u{1D17A}' + // C.2.2 (astral)
    '\\uE000-\\uF8FF\\u{F0000}-\\u{FFFFD}\\u{100000}-\\u{10FFFD}' + // C.3 private use
    '\\uFDD0-\\uFDEF\\uFFFE\\uFFFF' + // C.4 non-characters (BMP part)
    '\\u{1FFFE}\\u{1FFFF}\\u{2FFFE}\\u{2FFFF}\\u{3FFFE}\\u{3FFFF}\\u{4FFFE}\\u{4FFFF}\\u{5FFFE}\\u{5FFFF}' +
    '\\u{6FFFE}\\u{6FFFF}\\u{7FFFE}\\u{7FFFF}\\u{8FFFE}\\u{8FFFF}\\u{9FFFE}\\u{9FFFF}\\u{AFFFE}\\u{AFFFF}' +
    '\\u{BFFFE}\\u{BFFFF}\\u{CFFFE}\\u{CFFFF}\\u{DFFFE}\\u{DFFFF}\\u{EFFFE}\\u{EFFFF}\\u{FFFFE}\\u{FFFFF}\\u{10FFFE}\\u{10FFFF}' +
    '\\uD800-\\uDFFF' + // C.5 surrogates (lone ones only survive in JS strings)
    '\\uFFF9-\\uFFFD' + // C.6
    '\\u2FF0-\\u2FFB' + // C.7
    '\\u0340\\u0341\\u200E\\u200F\\u202A-\\u202E\\u206A-\\u206F' + // C.8
    '\\u{E0001}\\u{E0020}-\\u{E007F}' + // C.9
  ']',
  'u',
);

/** Returns the bytes PostgreSQL would feed to PBKDF2 for this password. */
export function saslprep(password: string | Buffer): Buffer {
  const raw = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  let ascii = true;
  for (const b of raw) if (b >= 0x80) { ascii = false; break; }
  if (ascii) return raw;
  // Invalid UTF-8 -> raw (PostgreSQL does the same).
  let s: string;
  try { s = new TextDecoder('utf-8', { fatal: true }).decode(raw); } catch { return raw; }
  const mapped = s.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '').normalize('NFKC');
  if (PROHIBITED.test(mapped)) return raw;
  return Buffer.from(mapped, 'utf8');
}
