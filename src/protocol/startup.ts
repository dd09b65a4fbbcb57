// The first packet of a connection: SSLRequest, GSSENCRequest, CancelRequest or StartupMessage.
import { CANCEL_REQUEST, GSSENC_REQUEST, PROTOCOL_V3, SSL_REQUEST } from './codes';
import { ProtocolViolation } from './reader';

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'startup'; params: Map<string, string> };

export function parseStartup(packet: Buffer): StartupPacket {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST && packet.length === 8) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST && packet.length === 8) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST) {
    if (packet.length !== 16) throw new ProtocolViolation('invalid length of cancel request packet');
    return { kind: 'cancel', pid: packet.readInt32BE(8), secret: packet.readInt32BE(12) };
  }
  const major = code >>> 16;
  if (major !== 3) throw new ProtocolViolation(`unsupported frontend protocol ${major}.${code & 0xffff}: server supports 3.0 to 3.0`);
  if (code !== PROTOCOL_V3 && (code & 0xffff) > 0) {
    // 3.x minor versions: accepted as 3.0 (we answer NegotiateProtocolVersion elsewhere if needed).
  }
  const params = new Map<string, string>();
  let off = 8;
  while (off < packet.length) {
    if (packet[off] === 0) { off++; break; }
    const kEnd = packet.indexOf(0, off);
    if (kEnd < 0) throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte');
    const key = packet.toString('utf8', off, kEnd);
    const vEnd = packet.indexOf(0, kEnd + 1);
    if (vEnd < 0) throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte');
    params.set(key, packet.toString('utf8', kEnd + 1, vEnd));
    off = vEnd + 1;
  }
  if (off !== packet.length) throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte');
  if (!params.get('user')) throw new ProtocolViolation('no PostgreSQL user name specified in startup packet');
  return { kind: 'startup', params };
}

/** Splits a libpq `options` string into -c name=value pairs (backslash escapes spaces). */
export function parseOptions(options: string): { settings: [string, string][]; unsupported: string[] } {
  const words: string[] = [];
  let cur = '';
  let escaped = false;
  let has = false;
  for (const ch of options) {
    if (escaped) { cur += ch; escaped = false; has = true; continue; }
    if (ch === '\\') { escaped = true; continue; }
    if (/\s/.test(ch)) { if (has) { words.push(cur); cur = ''; has = false; } continue; }
    cur += ch; has = true;
  }
  if (has) words.push(cur);
  const settings: [string, string][] = [];
  const unsupported: string[] = [];
  for (let i = 0; i < words.length; i++) {
    let w = words[i]!;
    let kv: string | undefined;
    if (w === '-c') kv = words[++i];
    else if (w.startsWith('-c')) kv = w.slice(2);
    else if (w.startsWith('--')) kv = w.slice(2);
    else { unsupported.push(w); continue; }
    if (!kv) { unsupported.push(w); continue; }
    const eq = kv.indexOf('=');
    if (eq <= 0) { unsupported.push(kv); continue; }
    settings.push([kv.slice(0, eq).replace(/-/g, '_'), kv.slice(eq + 1)]);
  }
  return { settings, unsupported };
}
