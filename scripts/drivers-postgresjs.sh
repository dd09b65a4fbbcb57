#!/usr/bin/env bash
# postgres.js's own test suite (tests/index.js of github.com/porsager/postgres) run directly
# against a PostgreSQL 15 server, through pgring (one shard, transaction pooling) and through
# pgring in session pooling, in front of the same server; every test whose result differs from
# the direct run is listed. Not part of `npm test`: a development tool for protocol fidelity,
# like scripts/drivers-*.sh and scripts/regress.sh.
#
#   PGRING_PGJS_SRC=/path/to/postgres   a checkout of porsager/postgres (src/ and tests/); required
#   PGRING_PGJS_DIR=/path               where the runs are kept (default /tmp/pgring-postgresjs)
#   PGRING_PGJS_TARGETS="direct transaction session sharded"   which targets to run (default all four)
#
# sharded: pgring over two shards (this server and a second one on 127.0.0.1:5433, which the
# suite's "Multiple hosts" test also wants), ZooKeeper, locks.mode all, transaction pooling: the
# suite's tables are unknown to the ring, so they are reference tables (every write on both
# servers in one distributed transaction, reads on one).
#
# The suite stops at its first failure; the copy run here is patched to run every test (each
# starting without the table "test", which a failed test leaves behind) and to
# print one line per test. A run whose failed tests leave connections open is ended after 300 s.
# Unhandled rejections only warn: "Connection destroyed with query before" (sql.end({ timeout: 0 })
# while the connection's first query runs) leaves one unhandled in postgres.js itself when the
# start-up is as quick as pgring's in transaction pooling (it answers authentication at once). The server listens on 127.0.0.1:5432 (some tests name that port) with
# the suite's pg_hba.conf, TLS on, wal_level logical. Its users are created as the suite's
# tests/bootstrap.js does, directly on the server, before each run (the suite's own bootstrap
# is not run: it would go through pgring).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ -f dist/src/cli/main.js ] || bash scripts/setup.sh
SRC=${PGRING_PGJS_SRC:?set PGRING_PGJS_SRC to a checkout of porsager/postgres}
WORK=${PGRING_PGJS_DIR:-/tmp/pgring-postgresjs}
TARGETS=${PGRING_PGJS_TARGETS:-direct transaction session sharded}
mkdir -p "$WORK"

# 1. A copy of the suite that runs every test and reports each one.
rm -rf "$WORK/pgjs" && mkdir -p "$WORK/pgjs" && cp -r "$SRC/src" "$SRC/tests" "$SRC/package.json" "$WORK/pgjs/"
node - "$WORK/pgjs/tests" <<'EOF'
const fs = require('fs'); const dir = process.argv[2];
let t = fs.readFileSync(dir + '/test.js', 'utf8');
t = t.replace('failed\n      ? (ignored++, ignore)\n      : fn()', 'fn()');
// a test that fails leaves its table behind and every later test that creates it fails too:
// each test starts without one (through the target, so on every shard)
t = t.replace('promise = promise.then(() => Promise.race([', 'promise = promise.then(cleanup).then(() => Promise.race([');
t = "import { cleanup } from './exec.js'\n" + t;
t = t.replace("tests[line].succeeded = true\n", "tests[line].succeeded = true\n      console.log('\\nRESULT\\t' + line + '\\tok\\t' + name)\n");
t = t.replace("tests[line].error = err instanceof Error ? err : new Error(util.inspect(err))\n",
  "tests[line].error = err instanceof Error ? err : new Error(util.inspect(err))\n      console.log('\\nRESULT\\t' + line + '\\tFAIL\\t' + name + '\\t' + String(tests[line].error.message).split('\\n')[0].slice(0, 200))\n");
if (!t.includes("console.log('\\nRESULT")) throw new Error('could not patch tests/test.js');
fs.writeFileSync(dir + '/test.js', t);
let i = fs.readFileSync(dir + '/index.js', 'utf8');
i = i.replace("import { exec } from './bootstrap.js'", "import { exec } from './exec.js'");
fs.writeFileSync(dir + '/index.js', i);
// exec: psql and friends straight to the server (the suite toggles ssl with ALTER SYSTEM)
fs.writeFileSync(dir + '/exec.js', `import { spawnSync } from 'child_process'
export function exec(cmd, args) {
  const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: process.env.PGJS_SERVER_PORT, PGUSER: 'postgres' }
  const { stderr } = spawnSync(cmd, args, { stdio: 'pipe', encoding: 'utf8', env })
  if (stderr && !stderr.includes('already exists') && !stderr.includes('does not exist') && !stderr.includes('WARNING:')) throw stderr
}
export function cleanup() {
  spawnSync('psql', ['-X', '-q', '-c', 'drop table if exists test cascade', 'postgres_js_test'], { stdio: 'pipe', env: { ...process.env, PGHOST: '127.0.0.1', PGUSER: 'postgres', PGSSLMODE: 'disable' } })
}
`);
EOF
chown -R postgres "$WORK"

# 2. The server (port 5432, TLS, the suite's pg_hba.conf) and pgring in both pool modes.
source scripts/lib/local-pg.sh
PG_PORT=5432; TX_PORT=$(free_port); SESS_PORT=$(free_port)
trap 'PGDATA=$PGDATA1; local_stop; second_pg stop' EXIT
PGDATA1=$PGDATA; PGDATA2=$WORK/pgdata2
pg_init 'wal_level = logical' 'max_replication_slots = 20' 'max_wal_senders = 20' 'max_prepared_transactions = 100' 'ssl = on'
sed -i "s/^listen_addresses.*/listen_addresses = '127.0.0.1'/" "$PGDATA/postgresql.conf"
openssl req -new -x509 -nodes -days 30 -subj "/CN=localhost" -keyout "$PGDATA/server.key" -out "$PGDATA/server.crt" >/dev/null 2>&1
chown postgres "$PGDATA/server.key" "$PGDATA/server.crt"; chmod 600 "$PGDATA/server.key"
# samehost in the suite's pg_hba.conf; 127.0.0.1 lines for what pgring itself opens
{ cat "$SRC/tests/pg_hba.conf"; printf 'host all all 127.0.0.1/32 trust\n'; } > "$PGDATA/pg_hba.conf"
pg_start
# the second server (port 5433) for the sharded target
second_pg() { # init|stop
  local saved_port=$PG_PORT saved_data=$PGDATA
  PG_PORT=5433; PGDATA=$PGDATA2
  case $1 in
    init) pg_init 'wal_level = logical' 'max_prepared_transactions = 100' 'ssl = on'
          cp "$PGDATA1/server.key" "$PGDATA1/server.crt" "$PGDATA1/pg_hba.conf" "$PGDATA/"
          chown postgres "$PGDATA/server.key" "$PGDATA/server.crt" "$PGDATA/pg_hba.conf"
          runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres2.log" -w start >/dev/null ;;
    stop) [ -f "$PGDATA/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true ;;
  esac
  PG_PORT=$saved_port; PGDATA=$saved_data
}
PSQL="psql -X -q -h 127.0.0.1 -p $PG_PORT -U postgres"
USERS='[{"name": "postgres", "auth": "trust", "admin": true}, {"name": "postgres_js_test", "auth": "trust"},
  {"name": "postgres_js_test_md5", "auth": "md5", "password": "postgres_js_test_md5"},
  {"name": "postgres_js_test_scram", "auth": "scram-sha-256", "password": "postgres_js_test_scram"}]'
# pgring with TLS for clients (the suite's ssl tests) and a Unix-domain socket in $WORK (PGSOCKET)
cp "$PGDATA/server.crt" "$PGDATA/server.key" "$WORK/"
TLS='"tls": {"certFile": "'$WORK/server.crt'", "keyFile": "'$WORK/server.key'"}'
pgring_start pgring-transaction "$TX_PORT" transaction 40 "$USERS" "$TLS, \"listen\": {\"host\": \"127.0.0.1\", \"port\": $TX_PORT, \"unixSocketDir\": \"$WORK\"}"
pgring_start pgring-session "$SESS_PORT" session 40 "$USERS" "$TLS, \"listen\": {\"host\": \"127.0.0.1\", \"port\": $SESS_PORT, \"unixSocketDir\": \"$WORK\"}"

bootstrap() { # as tests/bootstrap.js, on the server (and the second one when it runs)
  local port; for port in $PG_PORT ${PG2_RUNNING:+5433}; do bootstrap_on "psql -X -q -h 127.0.0.1 -p $port -U postgres"; done
}
bootstrap_on() {
  local PSQL=$1
  $PSQL -c 'drop database if exists postgres_js_test with (force)' >/dev/null
  $PSQL >/dev/null 2>&1 <<'EOF'
alter system set ssl = on;
drop user if exists postgres_js_test; create user postgres_js_test;
set password_encryption = md5;
drop user if exists postgres_js_test_md5; create user postgres_js_test_md5 with password 'postgres_js_test_md5';
set password_encryption = 'scram-sha-256';
drop user if exists postgres_js_test_scram; create user postgres_js_test_scram with password 'postgres_js_test_scram';
select pg_reload_conf();
EOF
  $PSQL -c 'create database postgres_js_test owner postgres_js_test' >/dev/null
}

# 3. The suite against each target; results as 'line<TAB>status<TAB>name' in $WORK/<target>.res.
if [[ " $TARGETS " == *" sharded "* ]]; then
  second_pg init; PG2_RUNNING=1
  ZK_PORT=$(free_port); zk_start "$ZK_PORT"
  SHARD_PORT=$(free_port)
  cat > "$WORK/pgring-sharded.json" <<EOF
{"listen": {"host": "127.0.0.1", "port": $SHARD_PORT, "unixSocketDir": "$WORK"}, "metrics": {"enabled": false}, "logLevel": "warn", $TLS,
 "zookeeper": {"connect": "127.0.0.1:$ZK_PORT", "cluster": "pgjs"}, "locks": {"mode": "all"},
 "pool": {"mode": "transaction", "maxSize": 40}, "users": $USERS,
 "shards": [{"name": "s1", "backends": [{"host": "127.0.0.1", "port": $PG_PORT}]}, {"name": "s2", "backends": [{"host": "127.0.0.1", "port": 5433}]}]}
EOF
  node "${PGRING_DIST:-$ROOT/dist}/src/cli/main.js" proxy --config "$WORK/pgring-sharded.json" > "$WORK/pgring-sharded.log" 2>&1 &
  PGRING_PIDS+=($!)
  wait_port "$SHARD_PORT"
fi
for target in $TARGETS; do
  case $target in direct) port=$PG_PORT ;; transaction) port=$TX_PORT ;; session) port=$SESS_PORT ;; sharded) port=$SHARD_PORT ;; esac
  bootstrap
  echo "postgres.js: $target (port $port)"
  (cd "$WORK/pgjs/tests" && PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGSOCKET=$WORK PGJS_SERVER_PORT=$PG_PORT \
    timeout 300 node --unhandled-rejections=warn index.js > "$WORK/$target.out" 2>&1 || true)
  grep -a '^RESULT' "$WORK/$target.out" | cut -f2- | sort -n > "$WORK/$target.res" || true
  echo "  $(grep -c $'\tok\t' "$WORK/$target.res") ok, $(grep -c $'\tFAIL\t' "$WORK/$target.res") failed"
done

# 4. What differs from the direct run.
if [ -f "$WORK/direct.res" ]; then
  for target in $TARGETS; do
    [ "$target" = direct ] && continue
    echo "== differs from direct: $target"
    join -t $'\t' -a1 -a2 -e MISSING -o 0,1.2,2.2,2.3,2.4 <(cut -f1-2 "$WORK/direct.res") <(cut -f1-4 "$WORK/$target.res") \
      | awk -F'\t' '$2 != $3 { print "  line " $1 ": direct " $2 ", through pgring " $3 ": " $4 "  " $5 }'
  done
fi
