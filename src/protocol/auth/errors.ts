// Errors raised by the pure authentication state machines (no I/O here).
// `code` is the SQLSTATE a frontend should put in its ErrorResponse; `message`
// and `detail` follow PostgreSQL's wording so clients see familiar errors.

export class AuthError extends Error {
  override readonly name = 'AuthError';
  constructor(
    message: string,
    /** SQLSTATE: 08P01 protocol_violation, 0A000 feature_not_supported, 28P01 invalid_password, 28000. */
    readonly code: string = '08P01',
    readonly detail?: string,
  ) {
    super(message);
  }
}
