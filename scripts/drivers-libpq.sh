#!/usr/bin/env bash
# Test suites of libpq-based drivers (psycopg2, Perl DBD::Pg) run directly against a
# PostgreSQL 15 server, through pgring (one shard, transaction pooling) and through pgring in
# session pooling, in front of the same server; every test whose result (ok / FAIL / ERROR /
# skip) differs from the direct run is listed. Not part of `npm test`: a development tool for
# protocol and semantics fidelity, like scripts/regress.sh.
#
#   bash scripts/drivers-libpq.sh
#   PGRING_LIBPQ_DIR=/path   where the suites and the runs are kept (default /tmp/pgring-libpq)
#   PGRING_LIBPQ_SUITES="psycopg2 dbdpg"   which suites to run (default both)
#   PGRING_LIBPQ_TARGETS="transaction session"   which targets to run again (default: direct too)
#   PSYCOPG2_TEST_REPL_DSN=dsn               for psycopg2's replication tests (default empty: the test DSN)
#
# The suites come from Debian's source packages (psycopg2, libdbd-pg-perl). Where the source
# tarball cannot be downloaded, a tests/ folder (psycopg2) or t/ folder (DBD::Pg) already
# placed in $WORK/psycopg2 or $WORK/dbdpg is used instead. Nothing of them is committed.
# The mirror no longer serves bookworm's tarballs (404), so deb-src also lists trixie and
# apt-get takes the newest source (psycopg2 2.9.10, DBD::Pg 3.18.0 on 2026-12-02): tests of
# APIs newer than the installed drivers fail alike in every run, and only differences count.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ -f dist/src/cli/main.js ] || bash scripts/setup.sh
WORK=${PGRING_LIBPQ_DIR:-/tmp/pgring-libpq}
SUITES=${PGRING_LIBPQ_SUITES:-psycopg2 dbdpg}
mkdir -p "$WORK"
want() { [[ " $SUITES " == *" $1 "* ]]; }
# DBD::Pg's t/ may also be placed directly in $WORK/t (with no Makefile.PL around it).
if [ ! -d "$WORK/dbdpg/t" ] && [ -d "$WORK/t" ]; then mkdir -p "$WORK/dbdpg" && ln -sfn "$WORK/t" "$WORK/dbdpg/t"; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# 1. The drivers from Debian, and their test suites from the source packages.
pkgs=()
/usr/bin/python3 -c 'import psycopg2' 2>/dev/null || pkgs+=(python3-psycopg2)
perl -MDBD::Pg -e 1 2>/dev/null || pkgs+=(libdbd-pg-perl)
[ ${#pkgs[@]} = 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fetch_source() { # source-package
  ls "$WORK/$1"_*.orig.tar.* >/dev/null 2>&1 && return 0
  local src_list=/etc/apt/sources.list.d/pgring-libpq-src.sources
  if [ -z "$(apt-cache showsrc "$1" 2>/dev/null)" ]; then
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | $SUDO tee "$src_list" >/dev/null
    $SUDO apt-get update -qq || true
  fi
  (cd "$WORK" && apt-get source --download-only "$1" >/dev/null 2>&1) || echo "drivers: could not download the source of $1"
  if [ -f "$src_list" ]; then $SUDO rm -f "$src_list"; $SUDO apt-get update -qq || true; fi
}
if want psycopg2 && [ ! -f "$WORK/psycopg2/tests/testconfig.py" ]; then
  fetch_source psycopg2
  t=$(ls "$WORK"/psycopg2_*.orig.tar.* 2>/dev/null | head -1 || true)
  if [ -n "$t" ]; then
    top=$(tar -tf "$t" | head -1 | cut -d/ -f1)
    tar -C "$WORK" -xf "$t" "$top/tests" && rm -rf "$WORK/psycopg2" && mkdir -p "$WORK/psycopg2" && mv "$WORK/$top/tests" "$WORK/psycopg2/tests"
  fi
fi
if want dbdpg && [ ! -d "$WORK/dbdpg/t" ]; then
  fetch_source libdbd-pg-perl
  t=$(ls "$WORK"/libdbd-pg-perl_*.orig.tar.* 2>/dev/null | head -1 || true)
  if [ -n "$t" ]; then
    top=$(tar -tf "$t" | head -1 | cut -d/ -f1)
    tar -C "$WORK" -xf "$t" && rm -rf "$WORK/dbdpg" && mv "$WORK/$top" "$WORK/dbdpg"
  fi
fi
chown -R postgres "$WORK"

# 2. One PostgreSQL server, pgring in transaction pooling and pgring in session pooling.
source scripts/lib/local-pg.sh
PG_PORT=$(free_port); TX_PORT=$(free_port); SESS_PORT=$(free_port)
trap local_stop EXIT
# wal_level logical: psycopg2's test_replication (replication connections pass through pgring).
pg_init 'wal_level = logical' 'max_replication_slots = 20' 'max_wal_senders = 20'; pg_start
pgring_start pgring-transaction "$TX_PORT" transaction 40
pgring_start pgring-session "$SESS_PORT" session 40
PSQL="psql -X -q -h 127.0.0.1 -U postgres -p $PG_PORT"

# 3. Each suite against each target; results as 'name<TAB>status' in $WORK/<suite>-<target>.res.
targets=()
for t in direct:$PG_PORT transaction:$TX_PORT session:$SESS_PORT; do
  [[ " ${PGRING_LIBPQ_TARGETS:-direct transaction session} " == *" ${t%%:*} "* ]] && targets+=("$t")
done
run_psycopg2() { # target port
  $PSQL -d postgres -c "DROP DATABASE IF EXISTS psycopg2_$1" -c "CREATE DATABASE psycopg2_$1"
  local mods
  mods=$(cd "$WORK/psycopg2" && ls tests/test_*.py | sed 's/\.py$//; s#/#.#')
  (cd "$WORK/psycopg2" && PSYCOPG2_TESTDB=psycopg2_$1 PSYCOPG2_TESTDB_HOST=127.0.0.1 PSYCOPG2_TESTDB_PORT=$2 \
    PSYCOPG2_TESTDB_USER=postgres PSYCOPG2_TEST_REPL_DSN=${PSYCOPG2_TEST_REPL_DSN-} timeout 900 /usr/bin/python3 -m unittest -v $mods > "$WORK/psycopg2-$1.log" 2>&1) || true
  # "test_x (tests.mod.Class.test_x) ... ok"; a result may follow on a later line after noise
  /usr/bin/python3 - "$WORK/psycopg2-$1.log" > "$WORK/psycopg2-$1.res" <<'PY'
import re, sys
res = {}
pending = None
for line in open(sys.argv[1], errors='replace'):
    m = re.match(r'^(test\w*) \(([\w.]+)\)', line)
    if m:
        name = m.group(2) if m.group(2).endswith(m.group(1)) else m.group(2) + '.' + m.group(1)
        pending = name
    if pending:
        s = re.search(r'\.\.\. (ok|FAIL|ERROR|skipped|expected failure|unexpected success)', line) or \
            re.match(r'^(ok|FAIL|ERROR|skipped|expected failure|unexpected success)', line)
        if s:
            res[pending] = s.group(1); pending = None
for k in sorted(res):
    print('%s\t%s' % (k, res[k]))
PY
  summary "$1" psycopg2
}
run_dbdpg() { # target port
  [ -d "$WORK/dbdpg/t" ] || return 0
  $PSQL -d postgres -c "DROP DATABASE IF EXISTS dbdpg_$1" -c "CREATE DATABASE dbdpg_$1"
  rm -f "$WORK/dbdpg/README.testdatabase"  # PGINITDB below: never initdb its own server (on fixed ports) when the DSN fails
  (cd "$WORK/dbdpg" && DBI_DSN="dbi:Pg:dbname=dbdpg_$1;host=127.0.0.1;port=$2" DBI_USER=postgres DBI_PASS= \
    PGINITDB=/nonexistent/initdb AUTHOR_TESTING= RELEASE_TESTING= timeout 900 prove -v t/ > "$WORK/dbdpg-$1.log" 2>&1) || true
  # TAP: "ok 12 - name" / "not ok 12 - name" per file
  awk '/^t\/.*\.t \.\./ { f=$1 } /^(not )?ok [0-9]+/ { st=($1=="not")?"not ok":"ok"; line=$0; sub(/^(not )?ok [0-9]+ ?-? ?/, "", line); sub(/ # SKIP.*/, "", line); if ($0 ~ /# SKIP/) st="skip"; n[f" "line]++; k=f" "line; if (n[k]>1) k=k" #"n[k]; print k"\t"st }' \
    "$WORK/dbdpg-$1.log" | sort > "$WORK/dbdpg-$1.res"
  summary "$1" dbdpg
}
summary() { # target suite
  echo "$2 $1: $(cut -f2 "$WORK/$2-$1.res" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, substr($0, index($0,$2)); sep=", "}')"
}
if want psycopg2; then for t in "${targets[@]}"; do run_psycopg2 "${t%%:*}" "${t##*:}"; done; fi
if want dbdpg; then for t in "${targets[@]}"; do run_dbdpg "${t%%:*}" "${t##*:}"; done; fi

# 4. What differs from the direct run.
for suite in $SUITES; do
  [ -f "$WORK/$suite-direct.res" ] || continue
  for mode in transaction session; do
    d=$(join -t $'\t' -a1 -a2 -e missing -o 0,1.2,2.2 "$WORK/$suite-direct.res" "$WORK/$suite-$mode.res" | awk -F'\t' '$2 != $3')
    echo "$suite, pgring $mode pooling: $( [ -z "$d" ] && echo 0 || echo "$d" | wc -l) test(s) differ from direct"
    [ -z "$d" ] || echo "$d" | awk -F'\t' '{printf "  %s: direct %s, pgring %s\n", $1, $2, $3}'
  done
done
echo "drivers: logs in $WORK/{psycopg2,dbdpg}-{direct,transaction,session}.log"
