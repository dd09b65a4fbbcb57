// Session state a client builds with SET, kept by pgring so that it follows the
// client from one pooled server connection to the next (transaction pooling).
// Immutable: every change makes a new object, so "which state does this server
// connection carry" is a cheap identity comparison.

export class SessionState {
  private constructor(readonly sets: ReadonlyMap<string, string>) {}
  static readonly empty = new SessionState(new Map());

  /** `SET name ...` succeeded: remember the statement text to replay it elsewhere. */
  withSet(name: string, sql: string): SessionState {
    const m = new Map(this.sets);
    m.delete(name); // keep replay order = order of last change
    m.set(name, sql);
    return new SessionState(m);
  }
  withReset(name: string): SessionState {
    if (!this.sets.has(name)) return this;
    const m = new Map(this.sets);
    m.delete(name);
    return m.size ? new SessionState(m) : SessionState.empty;
  }
  /** `RESET ALL` succeeded. PostgreSQL's RESET ALL leaves the role and the session
   *  authorization alone (GUC_NO_RESET_ALL), so they stay in the state. */
  afterResetAll(): SessionState {
    const m = new Map<string, string>();
    for (const [k, v] of this.sets) if (NOT_RESET_BY_ALL.has(k)) m.set(k, v);
    return m.size ? new SessionState(m) : SessionState.empty;
  }
  get isEmpty(): boolean { return this.sets.size === 0; }

  /** SQL that brings a connection carrying `from` (null = startup baseline) to this state. */
  replaySql(from: SessionState | null): string {
    const parts: string[] = [];
    // RESET ALL would keep another client's role: reset the identity first.
    if (from && (from.sets.has('role') || from.sets.has('session_authorization'))) parts.push('RESET SESSION AUTHORIZATION');
    if (from && !from.isEmpty) parts.push('RESET ALL');
    for (const sql of this.sets.values()) parts.push(sql);
    return parts.join('; ');
  }
}

const NOT_RESET_BY_ALL = new Set(['role', 'session_authorization']);

/** Why a client is pinned to its server connection(s) in transaction pooling. */
export type PinReason = 'temp_table' | 'advisory_lock' | 'listen' | 'prepare' | 'cursor_hold' | 'copy';
