#!/usr/bin/env bash
# Starts the local stack (unless it is already up), runs every test, stops what it started.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
.venv/bin/ruff check --quiet . || { echo "ruff: lint errors (see above)" >&2; exit 1; }
.venv/bin/ruff format --check --quiet . || { echo "ruff: files not formatted: run `.venv/bin/ruff format .`" >&2; exit 1; }
started=0
if ! $PY deploy/local/stack.py status >/dev/null 2>&1; then
  $PY deploy/local/stack.py start || exit 1
  started=1
fi
cleanup() { [ "$started" = 1 ] && $PY deploy/local/stack.py stop; }
trap cleanup EXIT
# Two workers (the suite mostly waits on servers; every test has its own database, topics and ports),
# tests shared out one by one; then, alone, the tests that restart a server the others share.
export SAIS_TEST_KEEP_STACK=1
.venv/bin/pytest -m "(unit or integration or e2e) and not exclusive" -n "${SAIS_TEST_WORKERS:-2}" --dist load "$@"
rc=$?
.venv/bin/pytest -m "(unit or integration or e2e) and exclusive" "$@"
rc2=$?
for r in "$rc" "$rc2"; do
  if [ "$r" = 5 ]; then
    echo "pytest collected no tests: treating as a failure" >&2
    exit 1
  fi
done
if [ "$rc" != 0 ]; then exit "$rc"; fi
exit "$rc2"
