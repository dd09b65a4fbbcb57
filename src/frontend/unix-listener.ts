// listen.unixSocketDir (PgBouncer's unix_socket_dir): a second listener on
// `<dir>/.s.PGSQL.<port>`, the path libpq, psql and the drivers build from host=<dir>.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

/** The socket file of a directory and port, as PostgreSQL names it. */
export function unixSocketPath(dir: string, port: number): string {
  return path.join(dir, `.s.PGSQL.${port}`);
}

/** True when something accepts connections on the socket file (a live server, not a stale file). */
function inUse(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path: file });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Listens on `<dir>/.s.PGSQL.<port>`: a stale file (no one listening) is removed first, a live
 *  one stops start-up; the file is made 0777 (PostgreSQL's unix_socket_permissions default). */
export async function listenUnix(dir: string, port: number, onSocket: (socket: net.Socket) => void): Promise<net.Server> {
  const file = unixSocketPath(dir, port);
  if (fs.existsSync(file)) {
    if (await inUse(file)) throw new Error(`listen.unixSocketDir: ${file} is in use by another server`);
    fs.rmSync(file, { force: true });
  }
  const server = net.createServer({ noDelay: true, pauseOnConnect: true }, onSocket);
  server.maxConnections = 100000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new Error(`listen.unixSocketDir: cannot listen on ${file}: ${e.message}`)));
    server.listen(file, () => resolve());
  });
  fs.chmodSync(file, 0o777);
  return server;
}

/** Closes the listener and removes its socket file. */
export async function closeUnix(server: net.Server | null, dir: string, port: number): Promise<void> {
  if (!server) return;
  await new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  fs.rmSync(unixSocketPath(dir, port), { force: true });
}
