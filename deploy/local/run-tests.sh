#!/usr/bin/env bash
# Starts the local stack (unless it is already up), runs every test, stops what it started.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
.venv/bin/ruff check --quiet . || { echo "ruff: lint errors (see above)" >&2; exit 1; }
.venv/bin/ruff format --check --quiet . || { echo 'ruff: files not formatted: run .venv/bin/ruff format .' >&2; exit 1; }
engine_was_up=0
bash deploy/images/engine.sh status >/dev/null 2>&1 && engine_was_up=1
compose_pid=""
compose_log=$(mktemp)
images_log=$(mktemp)
images_pid=""
started=0
tools_pid=""
npm_pid=""
mypy_pid=""
mypy_log=$(mktemp)
prep_log=$(mktemp)
cleanup() {
  for pid in $tools_pid $npm_pid $mypy_pid; do kill "$pid" 2>/dev/null; done
  [ -n "$images_pid" ] && kill "$images_pid" 2>/dev/null && wait "$images_pid" 2>/dev/null
  [ -n "$compose_pid" ] && kill "$compose_pid" 2>/dev/null
  [ "$started" = 1 ] && $PY deploy/local/stack.py stop
  [ "$engine_was_up" = 0 ] && bash deploy/images/engine.sh stop
  rm -f "$compose_log" "$images_log" "$prep_log" "$mypy_log" "${kustomize_lock:-}" "${npm_lock:-}"
}
trap cleanup EXIT
# What the tests need besides the servers, fetched and built in the background (each is up to a minute
# of network and compiling on a new machine, seconds after): kustomize (`make tools`, for the manifest
# tests) and the official AsyncAPI parser's node_modules (for the contract test). The tests start as soon
# as the stack is up: each job holds a lock (flock) on its file until it has finished, and the tests
# that need one take that lock first (tests/helpers.py, after_background_build), so nobody polls.
# The type check (mypy, about 20 s on a new clone) runs beside the stack's start and the tests; its
# verdict counts like theirs.
nice -n 5 .venv/bin/mypy >"$mypy_log" 2>&1 &
mypy_pid=$!
kustomize_lock=$(mktemp)
npm_lock=$(mktemp)
export SAIS_TEST_KUSTOMIZE_LOCK=$kustomize_lock SAIS_TEST_NPM_LOCK=$npm_lock
exec {lock_fd}>"$kustomize_lock"
flock -x "$lock_fd"
make -s tools >"$prep_log" 2>&1 &  # inherits the locked file: the lock goes when the job ends
tools_pid=$!
exec {lock_fd}>&-
if command -v npm >/dev/null 2>&1 && [ ! -d docs/asyncapi/validate/node_modules/@asyncapi/parser ]; then
  exec {lock_fd}>"$npm_lock"
  flock -x "$lock_fd"
  (cd docs/asyncapi/validate && npm ci --no-audit --no-fund --silent) >>"$prep_log" 2>&1 &
  npm_pid=$!
  exec {lock_fd}>&-
fi
if ! $PY deploy/local/stack.py status >/dev/null 2>&1; then
  started=1  # stopped at the end, also when it fails half-way
  $PY deploy/local/stack.py start || exit 1
fi
# The compose test's images, built beside the main suite: minutes on a machine that has none (a Debian
# base, Kafka's jars, Mailpit from its Go module), seconds when they are cached. Started once the stack
# is up (both may fetch Kafka's jars and use apt), niced so the tests' own servers come first; the
# compose test waits for them.
nice -n 10 bash deploy/images/build.sh >"$images_log" 2>&1 &
images_pid=$!
# Two workers (every test has its own database, topics and ports; a third worker, or the compose test
# beside them, made the run slower: the CPU-bound tests then take two to four times as long on two
# cores). Work stealing, not `--dist load`: load hands each worker a quarter of the suite up front, in
# file order, so one worker ran the e2e and heavy integration tests for 6 minutes while the other had
# finished the rest in 2.5 and waited; a worker that runs dry now takes tests from the other's queue.
export SAIS_TEST_KEEP_STACK=1
.venv/bin/pytest -m "(unit or integration or e2e or deploy) and not exclusive" -n "${SAIS_TEST_WORKERS:-2}" --dist worksteal --durations=15 "$@"
rc=$?
mypy_rc=0
if ! wait "$mypy_pid"; then
  echo "mypy: type errors:" >&2; cat "$mypy_log" >&2; mypy_rc=1
fi
mypy_pid=""
tools_rc=0
if ! wait "$tools_pid"; then
  echo "make tools failed:" >&2; tail -20 "$prep_log" >&2; tools_rc=1
fi
tools_pid=""
if [ -n "$npm_pid" ] && ! wait "$npm_pid"; then  # the contract test said why it could not run
  echo "npm ci for the AsyncAPI parser failed:" >&2; tail -20 "$prep_log" >&2
fi
npm_pid=""
# Then, alone, the tests that restart a server the others share; beside them the compose test, which
# shares nothing with them: its own private engine, images (built by its fixture; cached, seconds after
# the first time), compose project, networks and kernel-chosen host ports. The engine is stopped at
# the end if this run started it.
if ! wait "$images_pid"; then  # the compose test builds them again and says why they fail (or skips)
  echo "building the container images failed:" >&2
  tail -20 "$images_log" >&2
fi
.venv/bin/pytest -m compose tests/deploy "$@" >"$compose_log" 2>&1 &
compose_pid=$!
.venv/bin/pytest -m "(unit or integration or e2e) and exclusive" "$@"
rc2=$?
wait "$compose_pid"
rc3=$?
cat "$compose_log"
for r in "$rc" "$rc2" "$rc3"; do
  if [ "$r" = 5 ]; then
    echo "pytest collected no tests: treating as a failure" >&2
    exit 1
  fi
done
if [ "$rc" != 0 ]; then exit "$rc"; fi
if [ "$tools_rc" != 0 ]; then exit "$tools_rc"; fi
if [ "$mypy_rc" != 0 ]; then exit "$mypy_rc"; fi
if [ "$rc2" != 0 ]; then exit "$rc2"; fi
exit "$rc3"
