#!/usr/bin/env node
// Small changes to the `zookeeper` package's native client (the binding src/node-zk.cpp and the
// C client deps/zookeeper-client-c/src/zookeeper.c), applied after `npm ci` (package.json
// postinstall, and scripts/setup.sh for an existing node_modules), then the binding is rebuilt
// the way the package builds it. Why (docs/ARCHITECTURE.md, "The `zookeeper` package's binding,
// patched at install"): in TPC-B the proxy's ZooKeeper thread spent about a quarter of the
// proxy's CPU, much of it in system calls made for nothing, and three defects below:
//
// 1. The C client re-resolves the server list in every zookeeper_interest() (its default
//    resolution delay is 0), which the binding calls after every I/O event: a getaddrinfo with
//    AI_ADDRCONFIG (a netlink socket: socket, bind, getsockname, sendto, 2 recvmsg, close) and a
//    /dev/urandom read, 11 system calls each. The binding does not expose
//    zoo_set_servers_resolution_delay; the patch sets it to 30 s after zookeeper_init. The C
//    client still resolves at once whenever it has no connection (see update_addrs), so a
//    reconnect after a DNS change is not delayed.
// 2. (tried and removed) Keeping yield()'s poll handle registered while nothing changed saved
//    three epoll_ctl calls per I/O event, but with it backup.test.js's test process, which opens
//    many handles one after another, got handles that never sent their handshake (the server
//    logged their connections with session 0x0; "connection timed out" every 6.7 s) in 2 of 5
//    runs, and in 0 of 4 without it. The handle is stopped and started as the package does.
//    (Those handles were most likely item 6's, which also struck without the kept handle.)
// 3. (a correctness fix in the C client, deps/zookeeper-client-c/src/zookeeper.c) Every request
//    call tries to send at once (nonblocking_send). When that send failed because the connection
//    had just been reset, the C client closed the socket and marked itself not connected without
//    telling anyone: no session event, so the binding never emitted 'connecting', pgring never saw
//    the disconnection and a proxy cut off from ZooKeeper did not fence itself (it kept writing
//    until its session expired and beyond: test/integration/zk-send-reset.test.ts loses the event
//    in about 4 of 10 rounds without this). Now a failed immediate send leaves the socket alone;
//    the next zookeeper_process() meets the same error and handles it as every other connection
//    loss (session event CONNECTING, pending requests failed with CONNECTIONLOSS, reconnect).
// 4. (the binding on the main event loop) When zookeeper_interest() fails (a timeout it found:
//    the C client closes its socket there), yield() kept its poll handle on the closed socket's
//    number and closed it only at the next reconnect, which removes that number from the
//    loop's epoll set: a socket the process opened in between with the same number went deaf.
//    The handle is now closed at once. (pgring keeps the binding in a worker thread anyway,
//    src/cluster/zk-thread.ts; this makes the main loop safe too.)
// 5. (a crash in the binding) get_acl's completion freed the ACL vector even when the request
//    failed and the C client passed none: a get_acl of a node deleted meanwhile (or refused, or
//    cut by a connection loss) killed the process with SIGSEGV (seen in zk-acl.test.ts, which
//    reads the ACL of every node it listed). pgring itself reads ACLs only in that test and in
//    operators' tools, but a crash is a crash.
//
// 6. (child processes kept pgring's ZooKeeper connections) The package configures the C client
//    without --with-sock-cloexec, so its sockets lacked close-on-exec and every process pgring or
//    a test started (pg_ctl and the postmaster it leaves running, pgbackrest, psql) inherited the
//    open ZooKeeper connections. A handle closed in pgring then stayed open in that child: the
//    server did not see the TCP connection end, and the epoll registration of the old socket
//    outlived its descriptor number in pgring's event loop, so a later handle that got the same
//    number never saw its connect complete and never sent its handshake (backup.test.js's
//    "ZooKeeper ... not reachable" after "a shard down during create", which restarts a shard
//    with pg_ctl; test/integration/zk-cloexec.test.ts reproduces it every time without this).
//
// Without the patch pgring runs, with more CPU per ZooKeeper request, the missed-disconnection
// race and the get_acl crash above; if a source does not look as expected (another package version), nothing is
// changed and a warning is printed.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const MARK = '/* pgring patch 6 */';

function pkgDir() {
  try { return path.dirname(require.resolve('zookeeper/package.json', { paths: [path.resolve(__dirname, '..')] })); } catch { return null; }
}

function nodeGyp() {
  if (process.env.npm_config_node_gyp && fs.existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  const candidates = [
    path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  ];
  const npmRoot = spawnSync('npm', ['root', '-g'], { encoding: 'utf8' });
  if (npmRoot.status === 0) candidates.push(path.join(npmRoot.stdout.trim(), 'npm/node_modules/node-gyp/bin/node-gyp.js'));
  return candidates.find((c) => fs.existsSync(c)) ?? null;
}

const cEdits = [
  {
    // sockets close on exec (item 6): the package configures the C client without
    // --with-sock-cloexec, so every child process inherited the ZooKeeper connections
    find: `#ifdef SOCK_CLOEXEC_ENABLED
    sock_flags = SOCK_STREAM | SOCK_CLOEXEC;`,
    replace: `#if defined(SOCK_CLOEXEC_ENABLED) || defined(SOCK_CLOEXEC) ${MARK}
    sock_flags = SOCK_STREAM | SOCK_CLOEXEC;`,
    count: 2,
  },
  {
    find: `static int nonblocking_send(zhandle_t *zh, int rc)
{
    if (adaptor_send_queue(zh, 0) < 0) {
        if (zh->fd->sock != -1) {
            close_zsock(zh->fd);
            zh->state = ZOO_NOTCONNECTED_STATE;
        }
    }
    return (rc < 0) ? ZMARSHALLINGERROR : ZOK;
}`,
    replace: `static int nonblocking_send(zhandle_t *zh, int rc)
{
    ${MARK} /* a failed send is left to zookeeper_process(), which reports the lost connection */
    (void) adaptor_send_queue(zh, 0);
    return (rc < 0) ? ZMARSHALLINGERROR : ZOK;
}`,
  },
];

const edits = [
  {
    // after a successful zookeeper_init: resolve the servers at most every 30 s while connected
    find: `        zhandle = zookeeper_init(hostPort, main_watcher, session_timeout, &myid, this, 0);
        if (!zhandle) {
            LOG_ERROR("zookeeper_init returned 0!");
            return false;
        }
`,
    replace: `        zhandle = zookeeper_init(hostPort, main_watcher, session_timeout, &myid, this, 0);
        if (!zhandle) {
            LOG_ERROR("zookeeper_init returned 0!");
            return false;
        }
        ${MARK} zoo_set_servers_resolution_delay(zhandle, 30000);
`,
  },
  {
    // yield(): when zookeeper_interest fails, drop the poll handle at once (item 4 above)
    find: `        if (zk_io && uv_is_active((uv_handle_t*) zk_io)) {
            uv_poll_stop(zk_io);
        }
`,
    replace: `        if (zk_io && uv_is_active((uv_handle_t*) zk_io)) {
            uv_poll_stop(zk_io);
        }
        ${MARK}
        if (rc && zk_io) {
            /* the C client may just have closed its socket (a timeout found here): drop the poll
               handle now, while no other socket can have that number; closed later, libuv would
               remove whatever socket got the number meanwhile from the loop's epoll set */
            uv_close((uv_handle_t*) zk_io, delete_on_close);
            zk_io = NULL;
            fd = -1;
        }
`,
  },
  {
    // a failed get_acl (no such node, no permission, connection loss) completes with no ACL
    // vector: the binding freed it anyway and crashed the process (SIGSEGV)
    find: `        deallocate_ACL_vector(acl);
`,
    replace: `        if (acl != NULL) deallocate_ACL_vector(acl); ${MARK}
`,
  },
];

/** The file's text with `list` applied, or null when one of them does not match exactly `count` (default 1) times. */
function applied(text, list) {
  for (const e of list) {
    if (text.split(e.find).length !== (e.count ?? 1) + 1) return null;
    text = text.split(e.find).join(e.replace);
  }
  return text;
}

function main() {
  const dir = pkgDir();
  if (!dir) { console.log('patch-zookeeper: the zookeeper package is not installed; nothing to do'); return 0; }
  const files = [
    { path: path.join(dir, 'src/node-zk.cpp'), edits },
    { path: path.join(dir, 'deps/zookeeper-client-c/src/zookeeper.c'), edits: cEdits },
  ];
  const built = path.join(dir, 'build/Release/zookeeper.node');
  const stamp = path.join(dir, '.pgring-patched');
  const texts = files.map((f) => (fs.existsSync(f.path) ? fs.readFileSync(f.path, 'utf8') : ''));
  // sources patched by an older version of this script cannot be patched again: npm ci first
  // (scripts/setup.sh does that when `--stale` exits 1)
  const stale = texts.some((t) => t.includes('/* pgring patch ') && !t.includes(MARK));
  if (process.argv.includes('--stale')) return stale ? 1 : 0;
  if (stale) {
    console.warn('patch-zookeeper: warning: the zookeeper package was patched by an older pgring; reinstall it (npm ci) to patch it again');
    return 0;
  }
  // the stamp is written after a successful rebuild (npm ci replaces the whole package folder)
  if (texts.every((t) => t.includes(MARK)) && fs.existsSync(stamp) && fs.existsSync(built)) return 0;
  const version = require(path.join(dir, 'package.json')).version;
  const patched = texts.map((t, i) => (t.includes(MARK) ? t : applied(t, files[i].edits)));
  if (patched.some((t) => t === null)) {
    console.warn(`patch-zookeeper: warning: the sources of zookeeper ${version} are not the expected ones; the binding is left unpatched (pgring works, with more CPU per ZooKeeper request and a missed-disconnection race)`);
    return 0;
  }
  const gyp = nodeGyp();
  if (!gyp) { console.warn('patch-zookeeper: warning: node-gyp not found; the binding is left unpatched'); return 0; }
  const backup = fs.existsSync(built) ? fs.readFileSync(built) : null;
  files.forEach((f, i) => { if (patched[i] !== texts[i]) fs.writeFileSync(f.path, patched[i]); });
  console.log('patch-zookeeper: rebuilding the zookeeper binding (resolution delay, send failures reported, stale poll handle, get_acl crash, close-on-exec sockets)');
  // the headers npm builds native packages against (a machine without network has them locally)
  const env = { ...process.env, npm_config_loglevel: 'error' };
  if (!env.npm_config_nodedir) {
    const nd = spawnSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' });
    const v = nd.status === 0 ? nd.stdout.trim() : '';
    if (v && v !== 'undefined' && v !== 'null') env.npm_config_nodedir = v;
  }
  const r = spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: dir, encoding: 'utf8', env });
  if (r.status !== 0) {
    console.warn(`patch-zookeeper: warning: the rebuild failed; the binding is left unpatched\n${(r.stdout ?? '').slice(-2000)}${(r.stderr ?? '').slice(-2000)}`);
    files.forEach((f, i) => { if (patched[i] !== texts[i]) fs.writeFileSync(f.path, texts[i]); });
    if (backup) { fs.mkdirSync(path.dirname(built), { recursive: true }); fs.writeFileSync(built, backup); }
    return 0;
  }
  fs.writeFileSync(stamp, `${new Date().toISOString()}\n`);
  return 0;
}

process.exitCode = main();
