// A TCP relay the test controls, put between a proxy and ZooKeeper or a PostgreSQL shard:
// it forwards bytes both ways until told to cut. Faults it makes:
// - cut('reset'): every relayed connection is destroyed and new ones are refused (peer gone);
// - cut('drop'): connections stay open but bytes are dropped both ways (a network partition:
//   the peers only notice by their own timeouts);
// - cutWhen(pattern): the next connection whose client->server bytes match is destroyed,
//   before or after forwarding the matching chunk (a fault at an exact protocol step).
// heal() restores forwarding for new connections.
import { spawnSync } from 'node:child_process';
import * as net from 'node:net';

export type CutMode = 'reset' | 'drop';

interface Pair { client: net.Socket; server: net.Socket }

export interface CutRule {
  /** matched against each client->server chunk (latin1 text) */
  pattern: RegExp;
  /** forward the matching chunk before cutting (the server acts on it, its answer is lost) */
  after: boolean;
  /** how many connections to cut (default 1) */
  times?: number;
  /** only connections from this client port qualify (e.g. one proxy's: see pidOfLocalPort) */
  accept?: (clientPort: number) => boolean;
  /** called at each cut with the client's port (e.g. to SIGKILL the proxy at that very step) */
  onCut?: (clientPort: number) => void;
}

/** The pid of the local process that owns a loopback TCP socket with local port `port` (ss -p). */
export function pidOfLocalPort(port: number): number | null {
  const r = spawnSync('ss', ['-tnpH', `sport = :${port}`], { encoding: 'utf8' });
  return Number(/pid=(\d+)/.exec(r.stdout ?? '')?.[1] ?? NaN) || null;
}

export class TcpRelay {
  private server: net.Server | null = null;
  private pairs = new Set<Pair>();
  private mode: CutMode | null = null;
  private rules: (CutRule & { left: number })[] = [];
  /** number of connections cut by rules, and in total */
  ruleCuts = 0;
  cuts = 0;
  port = 0;

  constructor(readonly targetPort: number, readonly targetHost = '127.0.0.1') {}

  get address(): string { return `127.0.0.1:${this.port}`; }

  async start(port = 0): Promise<number> {
    this.server = net.createServer((c) => this.accept(c));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.mode === 'reset') { client.destroy(); return; }
    const server = net.connect(this.targetPort, this.targetHost);
    server.on('error', () => undefined);
    client.setNoDelay(true);
    server.setNoDelay(true);
    const pair: Pair = { client, server };
    this.pairs.add(pair);
    const end = () => { this.pairs.delete(pair); client.destroy(); server.destroy(); };
    client.on('close', end);
    server.on('close', end);
    client.on('data', (d: Buffer) => {
      if (this.mode === 'drop') return;
      const rule = this.matchRule(d, client.remotePort ?? 0);
      if (rule && !rule.after) { this.cutPair(pair); return; }
      server.write(d);
      if (rule) setImmediate(() => this.cutPair(pair));
    });
    server.on('data', (d: Buffer) => {
      if (this.mode === 'drop') return;
      client.write(d);
    });
  }

  private matchRule(d: Buffer, clientPort: number): CutRule | null {
    if (!this.rules.length) return null;
    const text = d.toString('latin1');
    const i = this.rules.findIndex((r) => r.pattern.test(text) && (!r.accept || r.accept(clientPort)));
    if (i < 0) return null;
    const r = this.rules[i]!;
    if (--r.left <= 0) this.rules.splice(i, 1);
    this.ruleCuts++;
    r.onCut?.(clientPort);
    return r;
  }

  private cutPair(p: Pair): void {
    this.cuts++;
    this.pairs.delete(p);
    p.client.destroy();
    p.server.destroy();
  }

  /** Cuts every connection now ('reset') or silences them ('drop'); new connections get the same. */
  cut(mode: CutMode = 'reset'): void {
    this.mode = mode;
    if (mode === 'reset') for (const p of [...this.pairs]) this.cutPair(p);
  }

  /** Cuts the next `times` connections whose client bytes match (see ruleCuts / pendingRules). */
  cutWhen(rule: CutRule): void {
    this.rules.push({ ...rule, left: rule.times ?? 1 });
  }

  /** Rules that have not fired yet. */
  get pendingRules(): number { return this.rules.length; }

  clearRules(): void { this.rules = []; }

  /** Forwarding again for new connections; connections silenced by 'drop' lost bytes mid-stream, so they are closed. */
  heal(): void {
    if (this.mode === 'drop') for (const p of [...this.pairs]) this.cutPair(p);
    this.mode = null;
  }

  get connections(): number { return this.pairs.size; }

  async stop(): Promise<void> {
    for (const p of [...this.pairs]) { p.client.destroy(); p.server.destroy(); }
    this.pairs.clear();
    await Promise.race([
      new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve())),
      new Promise<void>((resolve) => setTimeout(resolve, 2000).unref()),
    ]);
    this.server = null;
  }
}
