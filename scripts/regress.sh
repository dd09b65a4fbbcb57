#!/usr/bin/env bash
# PostgreSQL's own regression suite (pg_regress, parallel schedule) run directly against a
# PostgreSQL 15 server and again through pgring (one shard, transaction pooling) in front of
# the same server, three times: without ZooKeeper, with ZooKeeper and locks.mode all, and the
# same with locks.singleShard (ZooKeeper write locks on one shard too); for each, every test
# whose output differs from the direct run is listed, with the diff in $WORK/out-<variant>.diff.
# Not part of `npm test` (it downloads the PostgreSQL source package, ~25 MB, and takes ~15
# minutes): a tool for protocol and semantics fidelity.
#
#   npm run regress            # or: bash scripts/regress.sh
#   PGRING_REGRESS_DIR=/path   # where the source and the runs are kept (default /tmp/pgring-regress)
#   SKIP_SETUP=1               # do not run scripts/setup.sh (dist/ already built)
#   REGRESS_ONLY="pgring-zk"   # only these pgring variants (pgring, pgring-zk, pgring-zk-locks)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# SKIP_SETUP=1: dist/ is built already; do not touch packages or node_modules
[ -n "${SKIP_SETUP:-}" ] || bash scripts/setup.sh
WORK=${PGRING_REGRESS_DIR:-/tmp/pgring-regress}
mkdir -p "$WORK"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# 1. The regression suite and libpq's pipeline test of the installed server's version, from
#    Debian's source package (downloaded once into $WORK).
if [ ! -d "$WORK/regress/sql" ] || [ ! -d "$WORK/libpq_pipeline" ]; then
  [ -d /usr/include/postgresql/15/server ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-server-dev-15 >/dev/null
  tarball=$(ls "$WORK"/postgresql-15_*.orig.tar.bz2 2>/dev/null | head -1 || true)
  if [ -z "$tarball" ]; then
    src_list=/etc/apt/sources.list.d/pgring-regress-src.sources
    if [ -z "$(apt-cache showsrc postgresql-15 2>/dev/null)" ]; then
      printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | $SUDO tee "$src_list" >/dev/null
      $SUDO apt-get update -qq
    fi
    (cd "$WORK" && for v in $(apt-cache showsrc postgresql-15 | awk '/^Version:/{print $2}'); do
       apt-get source --download-only "postgresql-15=$v" >/dev/null 2>&1 && break; done)
    if [ -f "$src_list" ]; then $SUDO rm -f "$src_list"; $SUDO apt-get update -qq || true; fi
    tarball=$(ls "$WORK"/postgresql-15_*.orig.tar.bz2 | head -1)
  fi
  version=$(basename "$tarball" .orig.tar.bz2); version=${version#postgresql-15_}
  top="postgresql-$version"
  if [ ! -d "$WORK/regress/sql" ]; then
    tar -C "$WORK" -xjf "$tarball" "$top/src/test/regress"
    rm -rf "$WORK/regress"; mv "$WORK/$top/src/test/regress" "$WORK/regress"
    gcc -O1 -fPIC -shared -I/usr/include/postgresql/15/server -I/usr/include/postgresql \
      "$WORK/regress/regress.c" -o "$WORK/regress/regress.so"
  fi
  if [ ! -d "$WORK/libpq_pipeline" ]; then
    tar -C "$WORK" -xjf "$tarball" "$top/src/test/modules/libpq_pipeline"
    mv "$WORK/$top/src/test/modules/libpq_pipeline" "$WORK/libpq_pipeline"
  fi
fi

# libpq's pipeline-mode test program (extended protocol without waiting, aborted pipelines).
if [ ! -x "$WORK/libpq_pipeline/libpq_pipeline" ] && [ -d "$WORK/libpq_pipeline" ]; then
  gcc -O1 -I/usr/include/postgresql -I/usr/include/postgresql/15/server -I/usr/include/postgresql/internal \
    "$WORK/libpq_pipeline/libpq_pipeline.c" -o "$WORK/libpq_pipeline/libpq_pipeline" \
    -lpq -L/usr/lib/postgresql/15/lib -lpgcommon -lpgport -lm
fi
chown -R postgres "$WORK"

# 2. One PostgreSQL server, and a ZooKeeper for the variants that use one, on free loopback ports.
source scripts/lib/local-pg.sh
PG_PORT=$(free_port); ZK_PORT=$(free_port)
trap local_stop EXIT
pg_init; pg_start
zk_start "$ZK_PORT"

run() { # outdir port
  rm -rf "$WORK/$1"; mkdir -p "$WORK/$1"; chown postgres "$WORK/$1"
  (cd "$WORK/regress" && runuser -u postgres -- /usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
    --inputdir=. --outputdir="$WORK/$1" --bindir=/usr/lib/postgresql/15/bin --dlpath=. \
    --host=127.0.0.1 --port="$2" --user=postgres --dbname=regression \
    --schedule=parallel_schedule --max-connections=8 > "$WORK/$1/run.log" 2>&1) || true
  echo "regress: $1: $(grep -E 'tests (passed|failed)' "$WORK/$1/run.log" | tail -1 | xargs)"
}

# What differs from the direct run (tests that fail the same way directly do not count).
compare() { # outdir
  : > "$WORK/$1.diff"
  local differ=() f b
  for f in "$WORK"/out-direct/results/*.out; do
    b=$(basename "$f")
    if [ ! -f "$WORK/$1/results/$b" ]; then
      differ+=("${b%.out}(not-run)")
    elif ! cmp -s "$f" "$WORK/$1/results/$b"; then
      differ+=("${b%.out}")
      diff -u "$f" "$WORK/$1/results/$b" >> "$WORK/$1.diff" || true
    fi
  done
  echo "regress: $1: ${#differ[@]} test(s) differ from the direct run: ${differ[*]:-none} (diff in $WORK/$1.diff)"
}

# A run through pgring can leave a prepared transaction behind (`temp` prepares one that
# PostgreSQL refuses, when pgring's reused backend has no temporary namespace yet): it would
# make the next run's DROP DATABASE regression fail, so it is rolled back and reported.
rollback_prepared() { # name
  local db gid
  while IFS='|' read -r db gid; do
    [ -n "$gid" ] || continue
    echo "regress: $1 left prepared transaction '$gid' in $db; rolled back"
    runuser -u postgres -- "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -d "$db" -c "ROLLBACK PREPARED '$gid'" >/dev/null
  done < <(runuser -u postgres -- "$PG_BIN/psql" -X -At -h 127.0.0.1 -p "$PG_PORT" -d postgres \
             -c "SELECT database, gid FROM pg_prepared_xacts")
}

# libpq_pipeline: every test, through pgring (each passes directly).
pipeline() { # name port
  [ -x "$WORK/libpq_pipeline/libpq_pipeline" ] || return 0
  local failed=() t
  for t in $("$WORK/libpq_pipeline/libpq_pipeline" tests); do
    timeout 120 "$WORK/libpq_pipeline/libpq_pipeline" "$t" "host=127.0.0.1 port=$2 user=postgres dbname=postgres" \
      > "$WORK/libpq_pipeline-$1-$t.log" 2>&1 || failed+=("$t")
  done
  echo "libpq_pipeline through $1: ${#failed[@]} failed: ${failed[*]:-none} (logs in $WORK/libpq_pipeline-$1-*.log)"
}

# 3. The schedule directly, then through pgring (one shard, transaction pooling) in three set-ups,
#    one pgring at a time (a previous one's pooled connections would block DROP DATABASE):
#      pgring            no ZooKeeper (no write locks)
#      pgring-zk         ZooKeeper, locks.mode all: one shard, so writes take no ZooKeeper lock
#      pgring-zk-locks   the same with locks.singleShard: every DDL and write takes its locks
echo "regress: directly against PostgreSQL (port $PG_PORT)"; run out-direct "$PG_PORT"
zk='"zookeeper": {"connect": "127.0.0.1:'$ZK_PORT'", "cluster": "CLUSTER"}'
variants=("pgring|" "pgring-zk|${zk/CLUSTER/regress-zk}, \"locks\": {\"mode\": \"all\"}"
          "pgring-zk-locks|${zk/CLUSTER/regress-zk-locks}, \"locks\": {\"mode\": \"all\", \"singleShard\": true}")
for v in "${variants[@]}"; do
  name=${v%%|*}; extra=${v#*|}
  [ -z "${REGRESS_ONLY:-}" ] || [[ " $REGRESS_ONLY " == *" $name "* ]] || continue
  port=$(free_port)
  pgring_start "$name" "$port" transaction 40 '' "$extra"
  echo "regress: through $name (port $port)"; run "out-$name" "$port"
  compare "out-$name"
  pipeline "$name" "$port"
  pgring_stop
  rollback_prepared "$name"
done
