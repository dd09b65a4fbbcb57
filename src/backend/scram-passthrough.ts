// SCRAM-SHA-256 to a server without the password: with the ClientKey a client proved during its
// own login (frontend/auth-query.ts) and the ServerKey of the stored verifier. The server's salt
// and iteration count are those of the same verifier, so they are not needed here.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AuthError } from '../protocol/auth/errors';

const hmac = (key: Buffer, data: Buffer | string) => createHmac('sha256', key).update(data).digest();

export class ScramPassthroughClient {
  private readonly nonce = randomBytes(18).toString('base64');
  private readonly clientFirstBare = `n=,r=${this.nonce}`;
  private expected: Buffer | null = null;

  constructor(private readonly keys: { clientKey: Buffer; serverKey: Buffer }) {}

  clientFirst(): Buffer { return Buffer.from(`n,,${this.clientFirstBare}`, 'latin1'); }

  handleServerFirst(data: Buffer): Buffer {
    const serverFirst = data.toString('latin1');
    const nonce = /^r=([^,]+),/.exec(serverFirst)?.[1];
    if (!nonce || !nonce.startsWith(this.nonce) || nonce.length <= this.nonce.length) throw new AuthError('invalid SCRAM response (nonce mismatch)', '08P01');
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = Buffer.from(`${this.clientFirstBare},${serverFirst},${withoutProof}`, 'latin1');
    const storedKey = createHash('sha256').update(this.keys.clientKey).digest();
    const sig = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(sig.length);
    for (let i = 0; i < sig.length; i++) proof[i] = this.keys.clientKey[i]! ^ sig[i]!;
    this.expected = hmac(this.keys.serverKey, authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'latin1');
  }

  verifyServerFinal(data: Buffer): void {
    const msg = data.toString('latin1');
    if (msg.startsWith('e=')) throw new AuthError(`error received from server in SCRAM exchange: ${msg.slice(2)}`, '28000');
    const sig = Buffer.from(/^v=([^,]+)$/.exec(msg)?.[1] ?? '', 'base64');
    if (!this.expected || sig.length !== this.expected.length || !timingSafeEqual(sig, this.expected)) throw new AuthError('incorrect server signature', '28000');
  }
}
