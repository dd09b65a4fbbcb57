// socket-reader: accepted sockets and outgoing connections read into pgring's own
// buffer, and every chunk handed out is a copy (the shared buffer is reused).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { onreadOption, readAccepted } from '../../src/protocol/socket-reader';

function listen(onSocket: (s: net.Socket) => void): Promise<net.Server> {
  const srv = net.createServer({ pauseOnConnect: true }, onSocket);
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

describe('socket-reader', () => {
  it('reads accepted sockets without data events, and chunks stay intact after later reads', async () => {
    const chunks: Buffer[] = [];
    let fast: boolean | null = null;
    let dataEvents = 0;
    const got = new Promise<void>((resolve) => {
      void listen((s) => {
        s.on('data', () => { dataEvents++; });
        fast = readAccepted(s, (c) => { chunks.push(c); if (Buffer.concat(chunks).length >= 6) resolve(); });
      }).then((srv) => {
        const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1', () => {
          c.write('abc');
          setTimeout(() => c.write('xyz'), 50); // a second read overwrites the shared buffer
        });
        void got.then(() => { c.destroy(); srv.close(); });
      });
    });
    await got;
    assert.equal(fast, true, 'Node.js internals changed: accepted sockets fell back to data events');
    assert.equal(dataEvents, 0);
    assert.equal(Buffer.concat(chunks).toString(), 'abcxyz');
    assert.equal(chunks[0]!.toString(), 'abc', 'the first chunk was overwritten by the second read');
  });

  it('onreadOption delivers copies on outgoing connections', async () => {
    const srv = await listen((s) => { s.resume(); s.write('hello'); setTimeout(() => s.end('world'), 50); });
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve) => {
      const c = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', onread: onreadOption(() => (b) => chunks.push(b)) });
      c.on('close', () => resolve());
      c.on('end', () => c.destroy());
    });
    srv.close();
    assert.equal(Buffer.concat(chunks).toString(), 'helloworld');
    assert.equal(chunks[0]!.toString(), 'hello');
  });
});
