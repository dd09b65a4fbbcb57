// A real Apache ZooKeeper 3.8 (Debian package) on loopback: a standalone server, or a member of
// an ensemble (LocalZooKeeperEnsemble: server.N lines, a myid file per member).
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { trackStarted, trackStopped } from './exit-cleanup';
import { freePorts, sleep, spawnDetached } from './proc';

export interface EnsemblePeer { id: number; clientPort: number; quorumPort: number; electionPort: number }
export interface LocalZooKeeperOptions {
  dir: string; port: number;
  /** member `id` of an ensemble of `peers` (absent: standalone) */
  ensemble?: { id: number; peers: EnsemblePeer[] };
}

export class LocalZooKeeper {
  private child: ChildProcess | null = null;
  constructor(readonly opts: LocalZooKeeperOptions) {}
  get port(): number { return this.opts.port; }
  get connectString(): string { return `127.0.0.1:${this.opts.port}`; }

  async start(timeoutMs = 120000): Promise<void> {
    const dataDir = path.join(this.opts.dir, 'data');
    fs.mkdirSync(dataDir, { recursive: true });
    const cfg = path.join(this.opts.dir, 'zoo.cfg');
    const ens = this.opts.ensemble;
    if (ens) fs.writeFileSync(path.join(dataDir, 'myid'), `${ens.id}\n`);
    const quorum = ens ? [
      'initLimit=10', 'syncLimit=5', 'standaloneEnabled=false', 'reconfigEnabled=false',
      ...ens.peers.map((p) => `server.${p.id}=127.0.0.1:${p.quorumPort}:${p.electionPort}`),
    ] : [];
    fs.writeFileSync(cfg, [
      ...quorum,
      'tickTime=500',
      'minSessionTimeout=1000',
      'maxSessionTimeout=30000',
      `dataDir=${dataDir}`,
      `clientPort=${this.opts.port}`,
      'clientPortAddress=127.0.0.1',
      'maxClientCnxns=0',
      '4lw.commands.whitelist=ruok,srvr,stat,cons',
      'admin.enableServer=false',
      'forceSync=no',
      '',
    ].join('\n'));
    const cp = ['/etc/zookeeper/conf', '/usr/share/java/zookeeper.jar', '/usr/share/java/slf4j-api.jar', '/usr/share/java/slf4j-simple.jar'].join(':');
    this.child = spawnDetached('java', [
      '-Xmx256m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Dzookeeper.admin.enableServer=false', '-Dzookeeper.4lw.commands.whitelist=*',
      // Requests handled in the selector and commit threads themselves rather than handed to
      // worker pools: on a few shared cores each hand-off costs more than the work (about half
      // of ZooKeeper's CPU per request, measured with bench/zk-ops.ts).
      '-Dzookeeper.nio.numSelectorThreads=1', '-Dzookeeper.nio.numWorkerThreads=0', '-Dzookeeper.commitProcessor.numWorkerThreads=0',
      '-cp', cp, 'org.apache.zookeeper.server.quorum.QuorumPeerMain', cfg,
    ], { logFile: path.join(this.opts.dir, 'zookeeper.log'), detached: false });
    const child = this.child;
    let exited = false;
    child.once('exit', () => { exited = true; if (this.child === child) this.child = null; });
    trackStarted(this);
    const deadline = Date.now() + timeoutMs;
    while (!(ens ? await this.serving() : await this.ruok())) {
      if (exited) throw new Error(`ZooKeeper exited at start; see ${path.join(this.opts.dir, 'zookeeper.log')}`);
      if (Date.now() > deadline) throw new Error(`ZooKeeper did not answer on ${this.connectString} within ${timeoutMs} ms`);
      await sleep(150);
    }
  }

  /** Sends the four-letter `ruok`; true once the server answers `imok`. */
  ruok(): Promise<boolean> {
    return new Promise((resolve) => {
      const s = net.connect(this.opts.port, '127.0.0.1');
      let data = '';
      s.setTimeout(1000);
      s.on('connect', () => s.write('ruok'));
      s.on('data', (d) => { data += d.toString(); });
      s.on('end', () => resolve(data === 'imok'));
      s.on('error', () => resolve(false));
      s.on('timeout', () => { s.destroy(); resolve(false); });
    });
  }

  /** `srvr` four-letter word: the server's mode (leader, follower, standalone), null when not serving. */
  mode(): Promise<string | null> {
    return new Promise((resolve) => {
      const s = net.connect(this.opts.port, '127.0.0.1');
      let data = '';
      s.setTimeout(1000);
      s.on('connect', () => s.write('srvr'));
      s.on('data', (d) => { data += d.toString(); });
      s.on('end', () => resolve(/^Mode: (\w+)/m.exec(data)?.[1] ?? null));
      s.on('error', () => resolve(null));
      s.on('timeout', () => { s.destroy(); resolve(null); });
    });
  }

  /** True once the server serves clients (in an ensemble: it has joined a quorum). */
  async serving(): Promise<boolean> { return (await this.mode()) !== null; }

  get running(): boolean { return this.child !== null; }

  get pid(): number | undefined { return this.child?.pid; }

  /** Lets the Node process exit while ZooKeeper runs (tests that run standalone). */
  unref(): void { this.child?.unref(); }

  /** SIGKILL, synchronous (exit cleanup). */
  stopNow(): void { try { this.child?.kill('SIGKILL'); } catch { /* gone */ } }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    trackStopped(this);
    const child = this.child;
    if (!child) return;
    if (child.exitCode !== null || child.signalCode !== null) { this.child = null; return; }   // no 'exit' event will come
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
      setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, 5000).unref();
    });
    this.child = null;
  }
}

/** A ZooKeeper ensemble of `size` members on loopback (fault tests: kill a member, kill the leader). */
export class LocalZooKeeperEnsemble {
  members: LocalZooKeeper[] = [];
  constructor(readonly opts: { dir: string; size?: number }) {}

  get connectString(): string { return this.members.map((m) => m.connectString).join(','); }

  async start(timeoutMs = 120000): Promise<void> {
    const n = this.opts.size ?? 3;
    const ports = await freePorts(3 * n);
    const peers: EnsemblePeer[] = [];
    for (let i = 0; i < n; i++) peers.push({ id: i + 1, clientPort: ports[3 * i]!, quorumPort: ports[3 * i + 1]!, electionPort: ports[3 * i + 2]! });
    this.members = peers.map((p) => new LocalZooKeeper({ dir: path.join(this.opts.dir, `zk${p.id}`), port: p.clientPort, ensemble: { id: p.id, peers } }));
    await Promise.all(this.members.map((m) => m.start(timeoutMs)));
  }

  /** Index of the member that is leader now (waits for an election up to timeoutMs). */
  async leader(timeoutMs = 30000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const modes = await Promise.all(this.members.map((m) => (m.running ? m.mode() : Promise.resolve(null))));
      const i = modes.indexOf('leader');
      if (i >= 0) return i;
      if (Date.now() > deadline) throw new Error(`no ZooKeeper leader within ${timeoutMs} ms (modes: ${modes.join(', ')})`);
      await sleep(200);
    }
  }

  /** Kills member i (SIGKILL: no clean shutdown). */
  kill(i: number): Promise<void> { return this.members[i]!.stop('SIGKILL'); }

  /** Restarts member i with its data; resolves once it serves again. */
  restart(i: number, timeoutMs = 120000): Promise<void> { return this.members[i]!.start(timeoutMs); }

  async stop(): Promise<void> { await Promise.all(this.members.map((m) => m.stop('SIGKILL'))); }
}
