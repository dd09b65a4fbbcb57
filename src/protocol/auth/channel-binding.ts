// tls-server-end-point channel binding (RFC 5929 section 4.1), as PostgreSQL computes it
// (be_tls_get_certificate_hash): the hash of the server certificate's DER encoding, with
// the hash function of the certificate's signature algorithm, SHA-256 when that is MD5 or
// SHA-1. Node 20 does not expose the signature algorithm, so its OID is read from the DER.
import { createHash } from 'node:crypto';

// signature algorithm OID -> hash used for the binding
const HASH_BY_OID: Record<string, string> = {
  '1.2.840.113549.1.1.4': 'sha256',  // md5WithRSAEncryption
  '1.2.840.113549.1.1.5': 'sha256',  // sha1WithRSAEncryption
  '1.2.840.113549.1.1.14': 'sha224', // sha224WithRSAEncryption
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384', // sha384WithRSAEncryption
  '1.2.840.113549.1.1.13': 'sha512', // sha512WithRSAEncryption
  '1.2.840.10045.4.1': 'sha256',     // ecdsa-with-SHA1
  '1.2.840.10045.4.3.1': 'sha224',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.10040.4.3': 'sha256',     // dsa-with-sha1
  '2.16.840.1.101.3.4.3.2': 'sha256', // dsa-with-sha256
};

/** One DER element at `off`: [content start, content end]. */
function element(der: Buffer, off: number, tag: number): [number, number] {
  if (der[off] !== tag) throw new Error('unexpected DER tag');
  let len = der[off + 1]!;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 4) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  if (start + len > der.length) throw new Error('truncated DER');
  return [start, start + len];
}

function oidText(b: Buffer): string {
  const parts = [Math.floor(b[0]! / 40), b[0]! % 40];
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if (!(b[i]! & 0x80)) { parts.push(v); v = 0; }
  }
  return parts.join('.');
}

/** The signature algorithm OID of an X.509 certificate (Certificate ::= SEQUENCE { tbs, sigAlg, sig }). */
export function signatureAlgorithmOid(der: Buffer): string {
  const [certStart] = element(der, 0, 0x30);
  const [, tbsEnd] = element(der, certStart, 0x30);
  const [algStart] = element(der, tbsEnd, 0x30);
  const [oidStart, oidEnd] = element(der, algStart, 0x06);
  return oidText(der.subarray(oidStart, oidEnd));
}

/** The tls-server-end-point binding data for this DER certificate, or null when its
 *  signature algorithm has no single hash (RSASSA-PSS, Ed25519: PostgreSQL cannot bind either). */
export function tlsServerEndPoint(der: Buffer): Buffer | null {
  let hash: string | undefined;
  try { hash = HASH_BY_OID[signatureAlgorithmOid(der)]; } catch { return null; }
  return hash ? createHash(hash).update(der).digest() : null;
}
