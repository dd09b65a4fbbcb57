// A throw-away certificate authority for the demo and tests (openssl CLI): a CA and a server
// certificate it signed for 127.0.0.1 (IP SAN, so verify-full checks it), owned by the
// postgres user with the key at mode 0600, as PostgreSQL requires of ssl_key_file.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chownPostgres } from './proc';

export interface LocalCerts { dir: string; caFile: string; certFile: string; keyFile: string }

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Makes (or reuses) `dir`/ca.crt, server.crt and server.key; `name` goes into the subjects. */
export function makeLocalCerts(dir: string, name = 'pgring-local'): LocalCerts {
  const out: LocalCerts = { dir, caFile: path.join(dir, 'ca.crt'), certFile: path.join(dir, 'server.crt'), keyFile: path.join(dir, 'server.key') };
  if (fs.existsSync(out.caFile) && fs.existsSync(out.certFile) && fs.existsSync(out.keyFile)) return out;
  fs.mkdirSync(dir, { recursive: true });
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '3650', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', `/CN=${name} CA`], dir);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '3650', '-sha256', '-extfile', 'san.ext', '-out', 'server.crt'], dir);
  fs.chmodSync(out.keyFile, 0o600);
  fs.chmodSync(path.join(dir, 'ca.key'), 0o600);
  chownPostgres(dir);
  return out;
}

/** A client certificate for `user` (its CN, what pg_hba `cert` checks) signed by the CA in `dir`. */
export function makeClientCert(dir: string, user: string): { certFile: string; keyFile: string } {
  const certFile = path.join(dir, `client-${user}.crt`), keyFile = path.join(dir, `client-${user}.key`);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', keyFile, '-out', `client-${user}.csr`, '-subj', `/CN=${user}`], dir);
  openssl(['x509', '-req', '-in', `client-${user}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '3650', '-sha256', '-out', certFile], dir);
  fs.chmodSync(keyFile, 0o600);
  return { certFile, keyFile };
}
