#!/usr/bin/env bash
# One-time set-up shared by `npm run demo`, `npm test` and `npm run bench`:
# installs the Debian packages pgring runs against (PostgreSQL 15, ZooKeeper,
# PgBouncer, pgBackRest), the npm dependencies, and builds the TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15 postgresql-client-15 postgresql-contrib-15)
command -v pgbench >/dev/null 2>&1 || need+=(postgresql-client-15 postgresql-contrib-15)
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
[ -f /usr/share/java/slf4j-simple.jar ] || need+=(libslf4j-java)
command -v pgbouncer >/dev/null 2>&1 || need+=(pgbouncer)
command -v pgbackrest >/dev/null 2>&1 || need+=(pgbackrest)   # backups and WAL archiving (pgring backup)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
command -v openssl >/dev/null 2>&1 || need+=(openssl)   # test certificates for TLS
command -v ss >/dev/null 2>&1 || need+=(iproute2)       # fault tests: which process owns a relayed connection
/usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1 || need+=(python3-psycopg)   # a real driver's server-side cursors (copy-out test)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's postgresql package may auto-start a cluster on 5432; we never use it.

stamp=node_modules/.pgring-installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
  touch "$stamp"
fi
# the zookeeper binding's fixes (npm ci runs this as postinstall; an existing node_modules from
# before it gets it here; a no-op once applied; a package patched by an older version of the
# script is reinstalled first)
if ! node scripts/patch-zookeeper.js --stale; then
  echo "setup: npm ci (the zookeeper package carries an older pgring patch)"
  npm ci --no-audit --no-fund
fi
node scripts/patch-zookeeper.js
echo "setup: building"
npx tsc -p tsconfig.json
