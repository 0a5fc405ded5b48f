#!/usr/bin/env bash
# Starts the local stack (unless it is already up), runs every test, stops what it started.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
.venv/bin/ruff check --quiet . || { echo "ruff: lint errors (see above)" >&2; exit 1; }
.venv/bin/ruff format --check --quiet . || { echo "ruff: files not formatted: run `.venv/bin/ruff format .`" >&2; exit 1; }
# The images of the compose test build in the background while the rest runs (cached: seconds after
# the first time); the private engine they need is stopped at the end if this run started it.
engine_was_up=0
bash deploy/images/engine.sh status >/dev/null 2>&1 && engine_was_up=1
images_log=$(mktemp)
bash deploy/images/build.sh >"$images_log" 2>&1 &
images_pid=$!
started=0
if ! $PY deploy/local/stack.py status >/dev/null 2>&1; then
  $PY deploy/local/stack.py start || exit 1
  started=1
fi
cleanup() {
  kill "$images_pid" 2>/dev/null
  [ "$started" = 1 ] && $PY deploy/local/stack.py stop
  [ "$engine_was_up" = 0 ] && bash deploy/images/engine.sh stop
  rm -f "$images_log"
}
trap cleanup EXIT
# Two workers (the suite mostly waits on servers; every test has its own database, topics and ports),
# tests shared out one by one; then, alone, the tests that restart a server the others share.
export SAIS_TEST_KEEP_STACK=1
.venv/bin/pytest -m "(unit or integration or e2e) and not exclusive" -n "${SAIS_TEST_WORKERS:-2}" --dist load --durations=15 "$@"
rc=$?
# The compose test (its own engine, stack and ports) beside the exclusive tests, which restart the
# local broker it does not use.
wait "$images_pid" || { echo "make images failed (the compose test will say why):" >&2; tail -5 "$images_log" >&2; }
compose_log=$(mktemp)
.venv/bin/pytest -m compose tests/deploy "$@" >"$compose_log" 2>&1 &
compose_pid=$!
.venv/bin/pytest -m "(unit or integration or e2e) and exclusive" "$@"
rc2=$?
wait "$compose_pid"
rc3=$?
cat "$compose_log"
rm -f "$compose_log"
for r in "$rc" "$rc2" "$rc3"; do
  if [ "$r" = 5 ]; then
    echo "pytest collected no tests: treating as a failure" >&2
    exit 1
  fi
done
if [ "$rc" != 0 ]; then exit "$rc"; fi
if [ "$rc2" != 0 ]; then exit "$rc2"; fi
exit "$rc3"
