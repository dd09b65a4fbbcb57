#!/usr/bin/env bash
# The PostgreSQL JDBC driver (pgjdbc, Debian's libpostgresql-jdbc-java) run directly against a
# PostgreSQL 15 server, through pgring (one shard, transaction pooling) and through pgring in
# session pooling, in front of the same server; every line of output that differs from the
# direct run is listed. Not part of `npm test`: a development tool for protocol fidelity, like
# scripts/drivers-libpq.sh.
#
#   bash scripts/drivers-jdbc.sh
#   PGRING_JDBC_DIR=/path   where the Java programs and the runs are kept (default /tmp/pgring-jdbc)
#
# Each *.java file in $PGRING_JDBC_DIR with a main(String[] {port, database}) is compiled
# against the pgjdbc jar and run once per target; its standard output is compared. The programs
# are not committed (see docs/ARCHITECTURE.md, "Fidelity").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ -f dist/src/cli/main.js ] || bash scripts/setup.sh
WORK=${PGRING_JDBC_DIR:-/tmp/pgring-jdbc}
mkdir -p "$WORK"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
pkgs=()
[ -f /usr/share/java/postgresql.jar ] || pkgs+=(libpostgresql-jdbc-java)
command -v javac >/dev/null || pkgs+=(default-jdk-headless)
[ ${#pkgs[@]} = 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
CP=/usr/share/java/postgresql.jar
mkdir -p "$WORK/classes"
ls "$WORK"/*.java >/dev/null 2>&1 || { echo "drivers-jdbc: no *.java in $WORK"; exit 1; }
javac -d "$WORK/classes" -cp "$CP" "$WORK"/*.java

source scripts/lib/local-pg.sh
PG_PORT=$(free_port); TX_PORT=$(free_port); SESS_PORT=$(free_port)
trap local_stop EXIT
pg_init; pg_start
pgring_start pgring-transaction "$TX_PORT" transaction 40
pgring_start pgring-session "$SESS_PORT" session 40
PSQL="psql -X -q -h 127.0.0.1 -U postgres -p $PG_PORT"

if [ -n "${PGRING_JDBC_HOLD:-}" ]; then
  echo "drivers-jdbc: holding; direct $PG_PORT, transaction $TX_PORT, session $SESS_PORT"; sleep "$PGRING_JDBC_HOLD"
fi
for f in "$WORK"/*.java; do
  prog=$(basename "$f" .java)
  for t in direct:$PG_PORT transaction:$TX_PORT session:$SESS_PORT; do
    name=${t%%:*}; port=${t##*:}
    db=$(echo "jdbc_${prog}_$name" | tr 'A-Z' 'a-z')
    $PSQL -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    timeout 300 java -cp "$WORK/classes:$CP" "$prog" "$port" "$db" > "$WORK/$prog-$name.out" 2>&1 || echo "drivers-jdbc: $prog $name exited $?"
  done
  for mode in transaction session; do
    n=$(diff "$WORK/$prog-direct.out" "$WORK/$prog-$mode.out" | grep -c '^[<>]' || true)
    echo "$prog, pgring $mode pooling: $n line(s) differ from direct ($(wc -l < "$WORK/$prog-direct.out") lines)"
    [ "$n" = 0 ] || diff "$WORK/$prog-direct.out" "$WORK/$prog-$mode.out" | grep '^[<>]' | sed 's/^/  /' | cut -c1-400
  done
done
echo "drivers-jdbc: outputs in $WORK/<program>-{direct,transaction,session}.out"
