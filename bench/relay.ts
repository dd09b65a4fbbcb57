// Reference target N: the least a Node.js proxy can do. Every client connection gets
// its own server connection and the bytes are copied both ways with the public
// net.Socket API, no parsing, no pooling. Its TPS and CPU per transaction show how
// much of pgring's cost is Node.js itself (event loop, streams, system calls) rather
// than pgring's routing and pooling.
//
//   node dist/bench/relay.js <listen port> <server port>
import * as net from 'node:net';

const [listenPort, serverPort] = process.argv.slice(2).map(Number);
if (!listenPort || !serverPort) {
  console.error('usage: relay.js <listen port> <server port>');
  process.exit(2);
}

net.createServer({ noDelay: true }, (client) => {
  const server = net.connect({ host: '127.0.0.1', port: serverPort!, noDelay: true });
  client.on('data', (d) => server.write(d));
  server.on('data', (d) => client.write(d));
  client.on('close', () => server.destroy());
  server.on('close', () => client.destroy());
  client.on('error', () => server.destroy());
  server.on('error', () => client.destroy());
}).listen(listenPort, '127.0.0.1');

process.on('SIGTERM', () => process.exit(0));
