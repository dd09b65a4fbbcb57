// A real standalone Apache ZooKeeper 3.8 (Debian package) on a loopback port.
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { sleep, spawnDetached } from './proc';

export interface LocalZooKeeperOptions { dir: string; port: number }

export class LocalZooKeeper {
  private child: ChildProcess | null = null;
  constructor(readonly opts: LocalZooKeeperOptions) {}
  get port(): number { return this.opts.port; }
  get connectString(): string { return `127.0.0.1:${this.opts.port}`; }

  async start(timeoutMs = 120000): Promise<void> {
    const dataDir = path.join(this.opts.dir, 'data');
    fs.mkdirSync(dataDir, { recursive: true });
    const cfg = path.join(this.opts.dir, 'zoo.cfg');
    fs.writeFileSync(cfg, [
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
      '-cp', cp, 'org.apache.zookeeper.server.quorum.QuorumPeerMain', cfg,
    ], { logFile: path.join(this.opts.dir, 'zookeeper.log'), detached: false });
    const child = this.child;
    let exited = false;
    child.once('exit', () => { exited = true; if (this.child === child) this.child = null; });
    const deadline = Date.now() + timeoutMs;
    while (!(await this.ruok())) {
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

  get pid(): number | undefined { return this.child?.pid; }

  /** Lets the Node process exit while ZooKeeper runs (tests that run standalone). */
  unref(): void { this.child?.unref(); }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
      setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, 5000).unref();
    });
    this.child = null;
  }
}
