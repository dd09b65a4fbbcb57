// The local cluster behind `npm run demo`, `npm test` and the benchmarks: when one part cannot
// start, the parts that did start are stopped before the error reaches the caller (a first
// `npm test` on a machine without ZooKeeper once left its PostgreSQL servers running).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalCluster } from '../../src/local/cluster';
import { freePorts } from '../../src/local/proc';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-local-cluster-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

describe('local cluster start-up', () => {
  it('ZooKeeper cannot start (its port is taken): the error names it and no PostgreSQL server is left running', async () => {
    // Something else listens on the ZooKeeper port: ZooKeeper exits at start (address in use).
    const squatter = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', () => r()));
    const zkPort = (squatter.address() as net.AddressInfo).port;
    const pgPorts = await freePorts(2);
    const cluster = new LocalCluster({ dir, zkPort, pgPorts });
    try {
      await assert.rejects(cluster.start(), /ZooKeeper (exited at start|did not answer)/);
      for (const p of pgPorts) assert.equal(await listening(p), false, `PostgreSQL on ${p} still runs`);
      assert.equal(fs.existsSync(path.join(dir, 'pg1', 'data', 'postmaster.pid')), false, 'pg1 still has a postmaster.pid');
    } finally {
      await cluster.stop().catch(() => undefined);
      squatter.close();
    }
  });
});
