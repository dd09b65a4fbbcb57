// Pure authentication logic (no sockets): md5 and SCRAM-SHA-256, client and server sides.
export { AuthError } from './errors';
export { isMd5Hash, md5PasswordHash, md5Response, verifyMd5 } from './md5';
export { saslprep } from './saslprep';
export {
  SCRAM_SHA_256, SCRAM_DEFAULT_ITERATIONS, ScramClient, ScramServer, isScramVerifier, parseScramVerifier,
  scramVerifier, scramCacheSize, clearScramCache,
} from './scram';
export type { ScramClientOptions, ScramFinalResult, ScramKeys, ScramServerOptions } from './scram';
