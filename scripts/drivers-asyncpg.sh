#!/usr/bin/env bash
# asyncpg's own test suite (a driver with its own implementation of the wire protocol:
# extended protocol, binary formats, COPY, prepared statements, cancellation, LISTEN) run
# directly against a PostgreSQL 15 server and again through pgring (one shard) in front of
# the same server; every test whose outcome differs between the two runs is listed. Not part
# of `npm test` (it installs Debian packages and downloads asyncpg's source package): a tool
# for protocol and semantics fidelity, like scripts/regress.sh.
#
#   bash scripts/drivers-asyncpg.sh                  # transaction pooling
#   PGRING_POOL_MODE=session bash scripts/drivers-asyncpg.sh
#   PGRING_ASYNCPG_DIR=/path                         # where the source and runs are kept (default /tmp/pgring-asyncpg)
#   PGRING_ASYNCPG_ARGS="tests/test_copy.py"         # pytest arguments (default: the whole suite)
#   PGRING_ASYNCPG_TIMEOUT=60                        # seconds per test
#   PGRING_ASYNCPG_SKIP_DIRECT=1                     # reuse the last direct run
#   PGRING_DIST=dist                                 # the pgring build to run (e.g. a copy of an older one)
#
# The installed python3-asyncpg (its compiled protocol) runs the source package's tests/.
# The source package's tests are those of the newest asyncpg the mirror serves, which may be
# newer than the installed module: tests of newer APIs then fail the same way in both runs,
# and only differences count.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ -f dist/src/cli/main.js ] || bash scripts/setup.sh  # not npm ci over a shared node_modules
WORK=${PGRING_ASYNCPG_DIR:-/tmp/pgring-asyncpg}
MODE=${PGRING_POOL_MODE:-transaction}
PY=/usr/bin/python3
mkdir -p "$WORK"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# 1. The driver (Debian's build) and pytest.
if ! $PY -c 'import asyncpg, pytest, pytest_timeout, distro' 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-asyncpg python3-pytest python3-pytest-timeout python3-distro >/dev/null
fi

# 2. asyncpg's tests from Debian's source package (downloaded once into $WORK). deb-src is
#    enabled only for the download, as in scripts/regress.sh.
if [ ! -d "$WORK/tests" ]; then
  tarball=$(ls "$WORK"/asyncpg_*.orig.tar.gz 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$tarball" ]; then
    src_list=/etc/apt/sources.list.d/pgring-asyncpg-src.sources
    if [ -z "$(apt-cache showsrc asyncpg 2>/dev/null)" ]; then
      printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | $SUDO tee "$src_list" >/dev/null
      $SUDO apt-get update -qq
    fi
    # The installed version first, then the newest; a version whose files the mirror lacks is skipped.
    installed=$(dpkg-query -W -f '${source:Version}' python3-asyncpg)
    (cd "$WORK" && for v in "$installed" $(apt-cache showsrc asyncpg | awk '/^Version:/{print $2}' | sort -rV); do
       apt-get source --download-only "asyncpg=$v" >/dev/null 2>&1 || true
       ls asyncpg_*.orig.tar.gz >/dev/null 2>&1 && break; done)
    if [ -f "$src_list" ]; then $SUDO rm -f "$src_list"; $SUDO apt-get update -qq || true; fi
    tarball=$(ls "$WORK"/asyncpg_*.orig.tar.gz | sort -V | tail -1)
  fi
  top=$(basename "$tarball" .orig.tar.gz); top=${top/_/-}
  tar -C "$WORK" -xzf "$tarball" "$top/tests"
  rm -rf "$WORK/tests"; mv "$WORK/$top/tests" "$WORK/tests"; rm -rf "$WORK/$top"
  # Outside the source tree, so `import asyncpg` is the installed, compiled module.
fi
printf '[pytest]\naddopts = --capture=no --assert=plain --tb=native --import-mode=importlib -p no:cacheprovider --continue-on-collection-errors\nfilterwarnings = default\n' > "$WORK/pytest.ini"
# Names the newer tests import from the module that the installed version lacks, so that
# their modules load (the tests that use them fail or skip alike in both runs).
cat > "$WORK/conftest.py" <<'EOF'
import unittest
from asyncpg import _testbase as tb, exceptions
if not hasattr(exceptions, 'ClientConfigurationError'):
    exceptions.ClientConfigurationError = type('ClientConfigurationError', (exceptions.InterfaceError, ValueError), {})
if not hasattr(tb, 'HotStandbyTestCase'):
    class HotStandbyTestCase(tb.ClusterTestCase):
        @classmethod
        def setUpClass(cls):
            raise unittest.SkipTest('HotStandbyTestCase is not in the installed asyncpg')
    tb.HotStandbyTestCase = HotStandbyTestCase
EOF

# 3. One PostgreSQL server (re-created for each run, so neither run sees the other's
#    leftovers) and pgring in front of it, on free loopback ports.
source scripts/lib/local-pg.sh
PG_PORT=$(free_port); PROXY_PORT=$(free_port)
trap local_stop EXIT
start_pg() { pg_init 'jit = off'; pg_start; }

# 4. The suite twice: directly, then through pgring. One pytest per test file, each under a
#    time limit, so a test that hangs costs its own file's results only (a hung test is not
#    always interrupted by pytest-timeout inside asyncpg's event loop).
run() { # name port
  rm -rf "$WORK/$1"; mkdir -p "$WORK/$1"
  local f n
  for f in ${PGRING_ASYNCPG_ARGS:-$(cd "$WORK" && ls tests/test_*.py)}; do
    n=$(basename "$f" .py)
    (cd "$WORK" && PGHOST=127.0.0.1 PGPORT="$2" PGUSER=postgres PGDATABASE=postgres \
      timeout "${PGRING_ASYNCPG_FILE_TIMEOUT:-600}" $PY -m pytest -q --timeout="${PGRING_ASYNCPG_TIMEOUT:-60}" \
      --junitxml="$WORK/$1/$n.xml" "$f" > "$WORK/$1/$n.log" 2>&1) || true
    [ -s "$WORK/$1/$n.xml" ] || echo "  $n: no result (killed after ${PGRING_ASYNCPG_FILE_TIMEOUT:-600} s?)"
  done
  summary "$WORK/$1"
}
summary() { # dir: pass/fail/skip counts over its junit files
  $PY - "$1" <<'EOF'
import sys, glob, xml.etree.ElementTree as ET
c = {'passed': 0, 'failed': 0, 'skipped': 0}
for f in glob.glob(sys.argv[1] + '/*.xml'):
    for tc in ET.parse(f).getroot().iter('testcase'):
        k = next((ch.tag for ch in tc if ch.tag in ('failure', 'error', 'skipped')), 'passed')
        c['failed' if k in ('failure', 'error') else k] += 1
print('  %(passed)d passed, %(failed)d failed, %(skipped)d skipped' % c)
EOF
}
start_pg
echo "asyncpg: directly against PostgreSQL (port $PG_PORT)"
if [ -n "${PGRING_ASYNCPG_SKIP_DIRECT:-}" ] && [ -d "$WORK/direct" ]; then summary "$WORK/direct"; else run direct "$PG_PORT"; fi
local_stop; start_pg; pgring_start pgring "$PROXY_PORT" "$MODE" 60
echo "asyncpg: through pgring, pool mode $MODE (port $PROXY_PORT)"; run "pgring-$MODE" "$PROXY_PORT"

# 5. Tests whose outcome differs (tests failing the same way directly do not count).
$PY - "$WORK/direct" "$WORK/pgring-$MODE" <<'EOF'
import sys, glob, xml.etree.ElementTree as ET
def outcomes(d):
    res = {}
    for f in glob.glob(d + '/*.xml'):
        for tc in ET.parse(f).getroot().iter('testcase'):
            name = tc.get('classname', '') + '::' + tc.get('name', '')
            k = next((ch.tag for ch in tc if ch.tag in ('failure', 'error', 'skipped')), 'passed')
            res[name] = 'failed' if k in ('failure', 'error') else k
    return res
a, b = outcomes(sys.argv[1]), outcomes(sys.argv[2])
differ = sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
for n in differ:
    print(f'  {n}: direct {a.get(n, "absent")}, pgring {b.get(n, "absent")}')
print(f'asyncpg: {len(differ)} test(s) differ through pgring (logs in {sys.argv[2]}/*.log)')
EOF
