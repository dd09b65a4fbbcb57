# Sourced by scripts/regress.sh and scripts/drivers-*.sh: one PostgreSQL 15 server and pgring
# instances in front of it, on free loopback ports, for comparing a client's behaviour directly
# and through pgring. Before sourcing, set ROOT (the repository, with dist/ built) and WORK (a
# directory the postgres user may write; the server's data, socket and logs go there).
#
#   PG_PORT=$(free_port)
#   pg_init [postgresql.conf line ...]    initdb $PGDATA (default $WORK/pgdata), trust auth, C.UTF-8
#   pg_start                              start it (after editing pg_hba.conf, if needed)
#   pgring_start NAME PORT MODE MAXSIZE [USERS] [EXTRA]
#                                         pgring on PORT in pool MODE, one shard (this server);
#                                         config $WORK/NAME.json, log $WORK/NAME.log; USERS is the
#                                         JSON list of users (default: postgres, trust, admin);
#                                         EXTRA: more top-level config members ('"locks": {...}')
#   pgring_stop                           stop every pgring started here
#   zk_start PORT                         a standalone ZooKeeper on PORT (data and log in $WORK/zk)
#   local_stop                            stop every pgring started here, ZooKeeper, then the server
#   trap local_stop EXIT
PG_BIN=/usr/lib/postgresql/15/bin
PGDATA=${PGDATA:-$WORK/pgdata}
PGRING_PIDS=()
ZK_PID=""

free_port() { node -e "require('$ROOT/dist/src/local/proc').freePort().then((p) => console.log(p))"; }
wait_port() { node -e "require('$ROOT/dist/src/local/proc').waitForPort($1, 20000).then(() => process.exit(0), () => process.exit(1))"; }

pg_init() {
  rm -rf "$PGDATA"; chown postgres "$WORK"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
  {
    printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n" "$PG_PORT" "$WORK"
    printf 'max_prepared_transactions = 50\nmax_connections = 200\nfsync = off\n'
    local line; for line in "$@"; do printf '%s\n' "$line"; done
  } >> "$PGDATA/postgresql.conf"
}

pg_start() { runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null; }

pgring_start() { # name port mode maxSize [users-json] [extra members]
  local users=${5:-'[{"name": "postgres", "auth": "trust", "admin": true}]'}
  local extra=${6:+$6,}
  cat > "$WORK/$1.json" <<EOF
{"listen": {"host": "127.0.0.1", "port": $2}, "metrics": {"enabled": false}, "logLevel": "warn", $extra
 "pool": {"mode": "$3", "maxSize": $4},
 "users": $users,
 "shards": [{"name": "s1", "backends": [{"host": "127.0.0.1", "port": $PG_PORT}]}]}
EOF
  node "${PGRING_DIST:-$ROOT/dist}/src/cli/main.js" proxy --config "$WORK/$1.json" > "$WORK/$1.log" 2>&1 &
  PGRING_PIDS+=($!)
  wait_port "$2"
}

pgring_stop() {
  local p; for p in "${PGRING_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PGRING_PIDS=()
}

# The same server as src/local/zookeeper.ts starts (Debian's zookeeper package), standalone.
zk_start() { # port
  local dir="$WORK/zk"; rm -rf "$dir"; mkdir -p "$dir/data"
  printf 'tickTime=500\nminSessionTimeout=1000\nmaxSessionTimeout=30000\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\nforceSync=no\n' \
    "$dir/data" "$1" > "$dir/zoo.cfg"
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dzookeeper.admin.enableServer=false \
    -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-simple.jar \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" > "$dir/zookeeper.log" 2>&1 &
  ZK_PID=$!
  wait_port "$1"
}

zk_stop() {
  [ -n "$ZK_PID" ] || return 0
  kill "$ZK_PID" 2>/dev/null || true; wait "$ZK_PID" 2>/dev/null || true; ZK_PID=""
}

local_stop() {
  pgring_stop
  zk_stop
  [ -f "$PGDATA/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
}
