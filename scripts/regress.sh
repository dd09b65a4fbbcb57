#!/usr/bin/env bash
# PostgreSQL's own regression suite (pg_regress, parallel schedule) run directly against a
# PostgreSQL 15 server and again through pgring (one shard, transaction pooling) in front of
# the same server; every test whose output differs between the two runs is listed, with the
# diff in $WORK/through-pgring.diff. Not part of `npm test` (it downloads the PostgreSQL
# source package, ~25 MB, and takes ~5 minutes): a tool for protocol and semantics fidelity.
#
#   npm run regress            # or: bash scripts/regress.sh
#   PGRING_REGRESS_DIR=/path   # where the source and the runs are kept (default /tmp/pgring-regress)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/setup.sh
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

# 2. One PostgreSQL server and pgring in front of it, on free loopback ports.
source scripts/lib/local-pg.sh
PG_PORT=$(free_port); PROXY_PORT=$(free_port)
rm -rf "$WORK/out-direct" "$WORK/out-pgring"
trap local_stop EXIT
pg_init; pg_start
pgring_start pgring "$PROXY_PORT" transaction 40

# 3. The same schedule twice: directly, then through pgring.
run() { # outdir port
  mkdir -p "$WORK/$1"; chown postgres "$WORK/$1"
  (cd "$WORK/regress" && runuser -u postgres -- /usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
    --inputdir=. --outputdir="$WORK/$1" --bindir=/usr/lib/postgresql/15/bin --dlpath=. \
    --host=127.0.0.1 --port="$2" --user=postgres --dbname=regression \
    --schedule=parallel_schedule --max-connections=8 > "$WORK/$1/run.log" 2>&1) || true
  tail -n 4 "$WORK/$1/run.log" | grep -E 'tests (passed|failed)' || true
}
echo "regress: directly against PostgreSQL (port $PG_PORT)"; run out-direct "$PG_PORT"
echo "regress: through pgring (port $PROXY_PORT)"; run out-pgring "$PROXY_PORT"

# 4. What differs between the two runs (tests that fail the same way directly do not count).
: > "$WORK/through-pgring.diff"
differ=()
for f in "$WORK"/out-direct/results/*.out; do
  b=$(basename "$f")
  if ! cmp -s "$f" "$WORK/out-pgring/results/$b"; then
    differ+=("${b%.out}")
    diff -u "$f" "$WORK/out-pgring/results/$b" >> "$WORK/through-pgring.diff" || true
  fi
done
echo "regress: ${#differ[@]} test(s) differ through pgring: ${differ[*]:-none}"
echo "regress: diff in $WORK/through-pgring.diff"

# 5. libpq_pipeline: every test, through pgring (each passes directly).
if [ -x "$WORK/libpq_pipeline/libpq_pipeline" ]; then
  failed=()
  for t in $("$WORK/libpq_pipeline/libpq_pipeline" tests); do
    timeout 120 "$WORK/libpq_pipeline/libpq_pipeline" "$t" "host=127.0.0.1 port=$PROXY_PORT user=postgres dbname=postgres" \
      > "$WORK/libpq_pipeline-$t.log" 2>&1 || failed+=("$t")
  done
  echo "libpq_pipeline through pgring: ${#failed[@]} failed: ${failed[*]:-none} (logs in $WORK/libpq_pipeline-*.log)"
fi
