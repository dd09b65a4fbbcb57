// TLS from pgring to PostgreSQL servers, as libpq's sslmode: the settings of a backend
// (config `serverTls`, overridden field by field by a backend's own `tls`), and the
// SSLRequest negotiation over a freshly connected socket.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Config, ServerTlsConfig, SslMode } from '../config/types';

export interface ServerTls {
  mode: SslMode;
  /** Options for tls.connect (CA, client certificate and key read once), null when mode is disable. */
  connect: tls.ConnectionOptions | null;
  /** Certificates are checked against the CA (verify-ca / verify-full, or any mode with a CA file, as libpq). */
  verify: boolean;
}

const files = new Map<string, Buffer>();
function readOnce(file: string, what: string): Buffer {
  let b = files.get(file);
  if (!b) {
    try { b = fs.readFileSync(file); } catch (e) { throw new Error(`could not read ${what} "${file}": ${(e as Error).message}`); }
    files.set(file, b);
  }
  return b;
}

/** Forgets cached certificate files (a reload or restart reads them again). */
export function clearServerTlsFiles(): void { files.clear(); }

/** The settings for backend host:port: serverTls, overridden by that backend's `tls` in the shards config. */
export function serverTlsSettings(config: Config, host: string, port: number): ServerTlsConfig {
  let own: Partial<ServerTlsConfig> | undefined;
  for (const s of config.shards) for (const b of s.backends) if (b.host === host && b.port === port && b.tls) own = b.tls;
  return { ...(config.serverTls ?? { sslmode: 'prefer' }), ...own } as ServerTlsConfig;
}

const cache = new WeakMap<Config, Map<string, ServerTls>>();

/** Resolved TLS for backend host:port (files read once per config; throws naming an unreadable file). */
export function serverTlsFor(config: Config, host: string, port: number): ServerTls {
  let m = cache.get(config);
  if (!m) cache.set(config, m = new Map());
  const key = `${host}:${port}`;
  let t = m.get(key);
  if (!t) m.set(key, t = resolve(serverTlsSettings(config, host, port), host));
  return t;
}

function resolve(s: ServerTlsConfig, host: string): ServerTls {
  const mode = s.sslmode;
  if (mode === 'disable') return { mode, connect: null, verify: false };
  const opts: tls.ConnectionOptions = {};
  if (s.caFile) opts.ca = readOnce(s.caFile, 'server CA file');
  if (s.certFile) opts.cert = readOnce(s.certFile, 'client certificate file');
  if (s.keyFile) opts.key = readOnce(s.keyFile, 'client key file');
  // libpq: verify-ca / verify-full check the chain; so does any mode once a root CA file is
  // given. Only verify-full checks that the certificate names the host (IP SANs for addresses).
  const verify = mode === 'verify-ca' || mode === 'verify-full' || s.caFile !== undefined;
  opts.rejectUnauthorized = verify;
  // the name checked is the backend's host as configured (IP SANs for addresses)
  opts.checkServerIdentity = mode === 'verify-full' ? (_name, cert) => tls.checkServerIdentity(host, cert) : () => undefined;
  if (!net.isIP(host)) opts.servername = host; // SNI takes names only
  return { mode, connect: opts, verify };
}

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
export const sslRequest = (): Buffer => SSL_REQUEST;

/** What the server answered to SSLRequest: go on with TLS, go on in the clear, or fail. */
export function sslAnswer(t: ServerTls, byte: number): 'tls' | 'plain' | string {
  if (byte === 0x53) return 'tls';
  if (byte === 0x4e) return t.mode === 'prefer' ? 'plain' : 'server does not support SSL, but SSL was required';
  if (byte === 0x45) return 'server sent an error response during SSL exchange';
  return `received invalid response to SSL negotiation: ${String.fromCharCode(byte)}`;
}

/** `ssl` option of the `pg` driver for pgring's own checks (heartbeats, recovery): undefined = plain.
 *  pg has no fallback to plain, so `prefer` connects in the clear there. */
export function pgSslOption(t: ServerTls): tls.ConnectionOptions | undefined {
  if (t.mode === 'disable' || t.mode === 'prefer' || !t.connect) return undefined;
  return { ...t.connect };
}
