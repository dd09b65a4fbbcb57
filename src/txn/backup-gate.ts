// The proxy's side of a backup cut (see src/cluster/backups.ts and docs/ARCHITECTURE.md,
// "Backups"). While backups/barrier exists, no new two-phase-commit decision is written:
// a multi-shard COMMIT that has prepared on every shard waits here, right before its decision,
// until the barrier goes. Everything else (single-shard commits, reads, the phase two of
// transactions already decided) goes on. Once this proxy has seen the barrier and no decision
// write of its own is in flight, it acknowledges (ephemeral ack znode): from then on the set of
// decisions it can have written is fixed until the barrier is released.
//
// Until the barrier state has been read in the current ZooKeeper session it counts as
// "barrier present": a proxy that just (re)registered cannot slip a decision past a cut
// whose coordinator did not list it.
import type { Logger } from '../log';
import type { Layout } from '../cluster/layout';
import type { ZkSession } from '../cluster/session';
import type { Zk } from '../cluster/zk';
import { BarrierData, readBarrier, writeAck } from '../cluster/backups';
import { PgError, SQLSTATE } from '../protocol/errors';

/** How long past the barrier's own maxPauseMs a held commit waits before it rolls back. */
const HOLD_GRACE_MS = 1000;

export class BackupGate {
  private known: { session: string; barrier: BarrierData | null } | null = null;
  private inflight = 0;
  private acked = '';
  private waiters = new Set<() => void>();
  private reading = false;
  private again = false;
  private stopped = false;
  held = 0;

  constructor(readonly session: ZkSession, readonly layout: Layout, readonly proxyId: string, readonly log: Logger) {}

  start(): void {
    this.session.on('connected', () => { this.known = null; this.refresh(); });
    this.refresh();
  }

  stop(): void { this.stopped = true; this.wake(); }

  /** The barrier as last read (for SHOW BACKUPS). */
  get barrier(): BarrierData | null | undefined { return this.known ? this.known.barrier : undefined; }

  /**
   * Right before a decision is written with `zk`: resolves to null when it may be written
   * (call leave() after), or to the error to roll the transaction back with.
   */
  enter(zk: Zk): Promise<PgError | null> | null {
    if (this.known && this.known.session === zk.sessionId && !this.known.barrier) { this.inflight++; return null; }
    return this.waitOpen(zk);
  }

  leave(): void {
    this.inflight--;
    this.maybeAck();
  }

  private async waitOpen(zk: Zk): Promise<PgError | null> {
    const t0 = Date.now();
    this.held++;
    try {
      for (;;) {
        const k = this.known;
        if (this.stopped) return new PgError(SQLSTATE.AdminShutdown, 'pgring is shutting down');
        if (k && k.session === zk.sessionId && !k.barrier) { this.inflight++; return null; }
        if (!zk.connected) return new PgError(SQLSTATE.ConnectionFailure, 'pgring: ZooKeeper session lost while a backup cut held the commit; transaction rolled back');
        const limit = (k?.barrier?.maxPauseMs ?? 5000) + HOLD_GRACE_MS;
        const left = t0 + limit - Date.now();
        if (left <= 0) {
          return new PgError(SQLSTATE.SerializationFailure, `pgring: a backup cut held this distributed commit for more than ${limit} ms; transaction rolled back`, { hint: 'Retry the transaction.' });
        }
        if (!k || k.session !== zk.sessionId) this.refresh();
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, Math.min(left, 250));
          function done() { clearTimeout(t); resolve(); }
          this.waiters.add(done);
        });
      }
    } finally { this.held--; }
  }

  private wake(): void {
    const w = [...this.waiters]; this.waiters.clear();
    for (const f of w) f();
  }

  /** Re-reads the barrier with a watch (coalesces concurrent calls). */
  private refresh(): void {
    if (this.stopped) return;
    if (this.reading) { this.again = true; return; }
    const zk = this.session.handle();
    if (!zk || !zk.connected) return;   // the next 'connected' re-reads
    this.reading = true;
    this.again = false;
    readBarrier(zk, this.layout, () => this.refresh()).then((b) => {
      this.known = { session: zk.sessionId, barrier: b };
      if (b) this.log.info({ cut: b.cutId, backup: b.name }, 'backup cut: holding new two-phase-commit decisions');
      this.maybeAck();
      this.wake();
    }, (e: Error) => {
      this.log.warn({ err: e.message }, 'backup cut: could not read the barrier; retrying');
      setTimeout(() => this.refresh(), 200).unref();
    }).finally(() => {
      this.reading = false;
      if (this.again) this.refresh();
    });
  }

  private maybeAck(): void {
    const k = this.known;
    if (!k?.barrier || this.inflight > 0 || this.acked === `${k.session}/${k.barrier.cutId}`) return;
    const zk = this.session.handle();
    if (!zk || zk.sessionId !== k.session) return;
    const key = `${k.session}/${k.barrier.cutId}`;
    this.acked = key;
    writeAck(zk, this.layout, k.barrier.cutId, this.proxyId).catch((e: Error) => {
      this.log.warn({ err: e.message }, 'backup cut: could not acknowledge the barrier');
      if (this.acked === key) this.acked = '';
    });
  }
}
