// PostgreSQL errors as pgring produces and relays them.
import { buildError } from './messages';

/** SQLSTATE codes pgring itself raises. */
export const SQLSTATE = {
  ProtocolViolation: '08P01',
  ConnectionFailure: '08006',
  ConnectionException: '08000',
  SqlclientUnableToEstablish: '08001',
  InvalidPassword: '28P01',
  InvalidAuthorization: '28000',
  InvalidCatalogName: '3D000',
  FeatureNotSupported: '0A000',
  InsufficientPrivilege: '42501',
  SyntaxError: '42601',
  DuplicatePreparedStatement: '42P05',
  UndefinedPreparedStatement: '26000',
  InvalidCursorName: '34000',
  QueryCanceled: '57014',
  LockNotAvailable: '55P03',
  AdminShutdown: '57P01',
  CannotConnectNow: '57P03',
  TooManyConnections: '53300',
  DeadlockDetected: '40P01',
  SerializationFailure: '40001',
  InvalidTransactionState: '25000',
  InFailedTransaction: '25P02',
  NoActiveSqlTransaction: '25P01',
  InternalError: 'XX000',
  ConfigFileError: 'F0000',
  InvalidParameterValue: '22023',
  InvalidTextRepresentation: '22P02',
  ObjectNotInPrerequisiteState: '55000',
} as const;

export interface ErrorFields {
  severity?: 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** An error pgring reports to a client as an ErrorResponse. */
export class PgError extends Error {
  constructor(readonly code: string, message: string, readonly opts: { detail?: string; hint?: string; severity?: ErrorFields['severity']; file?: string; routine?: string } = {}) {
    super(message);
  }
  get severity(): NonNullable<ErrorFields['severity']> { return this.opts.severity ?? 'ERROR'; }
  toMessage(): Buffer {
    return buildError({ severity: this.severity, code: this.code, message: this.message, detail: this.opts.detail, hint: this.opts.hint, file: this.opts.file, routine: this.opts.routine });
  }
  static fatal(code: string, message: string, opts: { detail?: string; hint?: string } = {}): PgError {
    return new PgError(code, message, { ...opts, severity: 'FATAL' });
  }
}

/** Decodes the fields of an ErrorResponse / NoticeResponse message. */
export function parseErrorFields(msg: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let off = 5;
  while (off < msg.length) {
    const t = msg[off]!;
    if (t === 0) break;
    const end = msg.indexOf(0, off + 1);
    out[String.fromCharCode(t)] = msg.toString('utf8', off + 1, end);
    off = end + 1;
  }
  return out;
}
