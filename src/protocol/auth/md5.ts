// PostgreSQL MD5 password authentication (AuthenticationMD5Password).
//   stored hash:    'md5' + hex(md5(password + user))
//   client answer:  'md5' + hex(md5(hex(md5(password + user)) + salt))
import { createHash, timingSafeEqual } from 'node:crypto';

const MD5_HASH_RE = /^md5[0-9a-f]{32}$/;

/** True for a string shaped like a PostgreSQL md5 hash ('md5' + 32 lowercase hex digits). */
export function isMd5Hash(s: string): boolean {
  return s.length === 35 && MD5_HASH_RE.test(s);
}

function md5hex(...parts: (string | Buffer)[]): string {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** What PostgreSQL stores in pg_authid.rolpassword with password_encryption = md5. */
export function md5PasswordHash(user: string, password: string): string {
  return 'md5' + md5hex(Buffer.from(password, 'utf8'), Buffer.from(user, 'utf8'));
}

/**
 * The PasswordMessage payload a client sends for AuthenticationMD5Password.
 * `passwordOrStoredHash` may be the plain password or an already hashed 'md5…' value.
 */
export function md5Response(user: string, passwordOrStoredHash: string, salt: Buffer): string {
  if (salt.length !== 4) throw new RangeError(`md5 salt must be 4 bytes, got ${salt.length}`);
  const stored = isMd5Hash(passwordOrStoredHash) ? passwordOrStoredHash : md5PasswordHash(user, passwordOrStoredHash);
  return 'md5' + md5hex(stored.slice(3), salt);
}

/**
 * Checks a client's md5 PasswordMessage against the stored secret (plain password or
 * 'md5…' hash) in constant time. A SCRAM verifier cannot be used for md5 and gives false.
 */
export function verifyMd5(user: string, storedPasswordOrHash: string, salt: Buffer, clientResponse: string): boolean {
  if (storedPasswordOrHash.startsWith('SCRAM-SHA-256$')) return false;
  if (salt.length !== 4) return false;
  const expected = Buffer.from(md5Response(user, storedPasswordOrHash, salt), 'utf8');
  const got = Buffer.from(clientResponse, 'utf8');
  if (got.length !== expected.length) {
    timingSafeEqual(expected, expected); // keep timing independent of the response length
    return false;
  }
  return timingSafeEqual(expected, got);
}
