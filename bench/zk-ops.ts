// CPU per ZooKeeper request, client (this Node.js process, through src/cluster/zk.ts) and server
// (the local ZooKeeper's JVM), for the request shapes the lock and commit paths use.
//
//   node dist/bench/zk-ops.js [--ops 20000]
//
// Used to choose the local ZooKeeper's thread settings (src/local/zookeeper.ts) and to measure
// the facade's cost per call. Prints one line per shape; CPU time is charged only while a process
// runs, so the figures hold up better than wall time on a busy machine.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalZooKeeper } from '../src/local/zookeeper';
import { freePort } from '../src/local/proc';
import { Zk } from '../src/cluster/zk';
import { cpuSeconds } from './procstat';

async function main(): Promise<void> {
  const i = process.argv.indexOf('--ops');
  const ops = i > 0 ? Number(process.argv[i + 1]) : 20000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-zkops-'));
  const zkd = new LocalZooKeeper({ dir, port: await freePort() });
  await zkd.start();
  const zk = await Zk.connect({ connect: zkd.connectString, sessionTimeoutMs: 10000 });
  try {
    await zk.mkdirp('/b');
    const run = async (label: string, n: number, conc: number, fn: () => Promise<unknown>) => {
      const c0 = process.cpuUsage(), z0 = cpuSeconds(zkd.pid) ?? 0, t0 = Date.now();
      let k = 0;
      await Promise.all(Array.from({ length: conc }, async () => { while (k < n) { k++; await fn(); } }));
      const c = process.cpuUsage(c0), dz = (cpuSeconds(zkd.pid) ?? 0) - z0;
      console.log(`${label} (${n} × concurrency ${conc}): ${((Date.now() - t0) * 1000 / n).toFixed(0)} µs wall, client CPU ${((c.user + c.system) / n).toFixed(0)} µs, ZooKeeper CPU ${(dz * 1e6 / n).toFixed(0)} µs per operation`);
    };
    for (let r = 0; r < 2; r++) {
      await run('exists', ops, 8, () => zk.exists('/b'));
      await run('create + delete (ephemeral sequential)', ops / 4, 8, async () => { const p = await zk.create('/b/x-', 'd', 'ephemeral_sequential'); await zk.delete(p, -1); });
      await run('exists, one at a time', ops / 4, 1, () => zk.exists('/b'));
    }
  } finally {
    await zk.close();
    await zkd.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((e) => { console.error(e); process.exit(1); });
