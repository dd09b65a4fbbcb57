#!/usr/bin/env bash
# The Go driver pgx's own test suite (jackc/pgconn, pgx/v4, pgx/v4/pgxpool, pgx/v4/stdlib from
# Debian's golang-*-dev packages; jackc/pgtype, whose test helpers the -dev package lacks, from
# Debian's source package) run directly against a PostgreSQL 15 server and again through
# pgring (one shard) in front of the same server; every test whose result differs is listed.
# Not part of `npm test` (installs Go packages, ~5 minutes): a tool for protocol fidelity.
#
#   bash scripts/drivers-pgx.sh
#   PGRING_PGX_DIR=/path         where builds and runs are kept (default /tmp/pgring-pgx)
#   PGRING_POOL_MODE=session     pool mode of pgring (default transaction)
#   PGRING_PGX_PKGS="pgconn pgx" which test binaries to run (default: all five)
#   PGRING_PGX_RUN=regexp        passed to -test.run
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ -n "${PGRING_PGX_NOSETUP:-}" ] || [ -f dist/src/cli/main.js ] || bash scripts/setup.sh
WORK=${PGRING_PGX_DIR:-/tmp/pgring-pgx}
MODE=${PGRING_POOL_MODE:-transaction}
PKGS=${PGRING_PGX_PKGS:-pgconn pgx pgxpool stdlib pgtype}
mkdir -p "$WORK/bin"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# 1. Go and the driver's source (its *_test.go files are in the -dev packages), built offline
#    in GOPATH mode; semver/v3 is linked under its module path in a private GOPATH.
GOSRC=/usr/share/gocode/src/github.com
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d $GOSRC/jackc/pgx/v4 ] || need+=(golang-github-jackc-pgx-v4-dev)
[ -d $GOSRC/jackc/pgconn ] || need+=(golang-github-jackc-pgconn-dev)
[ -d $GOSRC/jackc/pgmock ] || need+=(golang-github-jackc-pgmock-dev)
[ -d $GOSRC/Masterminds/semver ] || need+=(golang-github-masterminds-semver-dev)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
mkdir -p "$WORK/gopath/src/github.com/Masterminds/semver"
ln -sfn $GOSRC/Masterminds/semver "$WORK/gopath/src/github.com/Masterminds/semver/v3"
if [[ " $PKGS " == *" pgtype "* ]] && [ ! -d "$WORK/gopath/src/github.com/jackc/pgtype/testutil" ]; then
  # pgtype's tests need its testutil package: the whole source from Debian's source package.
  mkdir -p "$WORK/src" && cd "$WORK/src"
  if ! ls golang-github-jackc-pgtype_*.orig.tar.gz >/dev/null 2>&1; then
    src_list=/etc/apt/sources.list.d/pgring-pgx-src.sources
    if [ -z "$(apt-cache showsrc golang-github-jackc-pgtype 2>/dev/null)" ]; then
      printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | $SUDO tee "$src_list" >/dev/null
      $SUDO apt-get update -qq
    fi
    apt-get source --download-only golang-github-jackc-pgtype >/dev/null 2>&1 || true
    if [ -f "$src_list" ]; then $SUDO rm -f "$src_list"; $SUDO apt-get update -qq || true; fi
  fi
  tar xzf golang-github-jackc-pgtype_*.orig.tar.gz
  mkdir -p "$WORK/gopath/src/github.com/jackc"
  ln -sfn "$WORK/src/$(ls -d pgtype-*/ | head -1)" "$WORK/gopath/src/github.com/jackc/pgtype"
  cd "$ROOT"
fi
pkgpath() { case $1 in pgconn) echo github.com/jackc/pgconn;; pgtype) echo github.com/jackc/pgtype;;
  pgx) echo github.com/jackc/pgx/v4;; *) echo "github.com/jackc/pgx/v4/$1";; esac; }
pkgdir() { if [ "$1" = pgtype ]; then echo "$WORK/gopath/src/github.com/jackc/pgtype/"; else echo "/usr/share/gocode/src/$(pkgpath "$1")"; fi; }
for p in $PKGS; do
  [ -x "$WORK/bin/$p.test" ] || (cd "$WORK" && GO111MODULE=off GOPATH="$WORK/gopath:/usr/share/gocode" GOPROXY=off \
    GOFLAGS= go test -c -o "$WORK/bin/$p.test" "$(pkgpath "$p")")
done

# 2. One PostgreSQL server and pgring in front of it, on free loopback ports.
source scripts/lib/local-pg.sh
PG_PORT=$(free_port); PROXY_PORT=$(free_port)
trap local_stop EXIT
pg_init
# The password users of pgx's CI set-up, each with its authentication method.
cat > "$PGDATA/pg_hba.conf" <<EOF
local all all trust
host all pgx_md5 127.0.0.1/32 md5
host all pgx_pw 127.0.0.1/32 password
host all pgx_scram 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
EOF
pg_start
PSQL="psql -X -q -h 127.0.0.1 -p $PG_PORT -U postgres -v ON_ERROR_STOP=1"
$PSQL -d postgres -c 'create database pgx_test'
$PSQL -d pgx_test >/dev/null <<'EOF'
create extension hstore;
create extension ltree;
create domain uint64 as numeric(20,0);
set password_encryption = 'md5';
create user pgx_md5 superuser password 'secret';
create user pgx_pw superuser password 'secret';
set password_encryption = 'scram-sha-256';
create user pgx_scram superuser password 'secret';
EOF
pgring_start pgring "$PROXY_PORT" "$MODE" 60 '[{"name": "postgres", "auth": "trust", "admin": true},
  {"name": "pgx_md5", "auth": "md5", "password": "secret"},
  {"name": "pgx_pw", "auth": "cleartext", "password": "secret"},
  {"name": "pgx_scram", "auth": "scram-sha-256", "password": "secret"}]'

# 3. Every test binary twice: directly, then through pgring. Unix-socket and TLS variants are
#    left out (pgring listens on TCP only here), so both runs see the same set of tests.
run() { # name port
  local cs="host=127.0.0.1 port=$2 dbname=pgx_test sslmode=disable" # lib/pq (pgtype) needs sslmode
  mkdir -p "$WORK/out-$1"
  for p in $PKGS; do
    (cd "$(pkgdir "$p")"
     PGX_TEST_DATABASE="$cs user=postgres" PGX_TEST_CONN_STRING="$cs user=postgres" \
     PGX_TEST_TCP_CONN_STRING="$cs user=postgres" PGX_TEST_PGBOUNCER_CONN_STRING="$cs user=postgres" \
     PGX_TEST_MD5_PASSWORD_CONN_STRING="$cs user=pgx_md5 password=secret" \
     PGX_TEST_PLAIN_PASSWORD_CONN_STRING="$cs user=pgx_pw password=secret" \
     PGX_TEST_SCRAM_PASSWORD_CONN_STRING="$cs user=pgx_scram password=secret" \
     timeout 900 "$WORK/bin/$p.test" -test.v -test.count=1 -test.timeout=840s ${PGRING_PGX_RUN:+-test.run "$PGRING_PGX_RUN"} \
       > "$WORK/out-$1/$p.log" 2>&1) || true
    # "--- PASS: TestX/sub (0.01s)" -> "pgx TestX/sub PASS"
    sed -nE "s/^ *--- (PASS|FAIL|SKIP): ([^ ]+).*/$p \2 \1/p" "$WORK/out-$1/$p.log"
  done | sort > "$WORK/out-$1/results.txt"
  awk '{n[$3]++} END {printf "  pass %d, fail %d, skip %d\n", n["PASS"], n["FAIL"], n["SKIP"]}' "$WORK/out-$1/results.txt"
}
echo "pgx: directly against PostgreSQL (port $PG_PORT)"; run direct "$PG_PORT"
echo "pgx: through pgring, pool mode $MODE (port $PROXY_PORT)"; run pgring "$PROXY_PORT"

# 4. What differs (tests that fail the same way directly do not count).
join -a1 -a2 -e MISSING -o 0,1.2,2.2 <(awk '{print $1"/"$2, $3}' "$WORK/out-direct/results.txt") \
  <(awk '{print $1"/"$2, $3}' "$WORK/out-pgring/results.txt") | awk '$2 != $3' > "$WORK/differ.txt" || true
echo "pgx: $(wc -l < "$WORK/differ.txt") test(s) differ through pgring (test direct pgring):"
cat "$WORK/differ.txt"
echo "pgx: logs in $WORK/out-direct and $WORK/out-pgring"
