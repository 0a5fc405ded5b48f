#!/usr/bin/env bash
# A private Docker engine for building the stand-in images and running the compose test:
#   deploy/images/engine.sh start|stop|status|env
# It listens on its own socket (never /var/run/docker.sock, so nothing else on the machine starts
# using it by accident) and keeps its images in a cache folder, so they survive between runs.
# `eval "$(deploy/images/engine.sh env)"` points the docker CLI at it.
set -euo pipefail
RUN_DIR=${SAIS_ENGINE_RUN:-/run/sais-engine}
DATA_DIR=${SAIS_ENGINE_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/sais/engine}
SOCK=$RUN_DIR/docker.sock
PIDFILE=$RUN_DIR/dockerd.pid
LOG=$RUN_DIR/dockerd.log

say() { echo "[engine] $*" >&2; }

install_engine() {
  command -v dockerd >/dev/null && command -v mmdebstrap >/dev/null && command -v iptables >/dev/null && return
  [ "$(id -u)" = 0 ] || { say "dockerd, mmdebstrap and iptables are needed (apt-get install docker.io containerd runc iptables mmdebstrap)"; exit 1; }
  say "installing Debian's docker.io, containerd, runc, iptables and mmdebstrap (once)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io containerd runc iptables mmdebstrap >/dev/null
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  install_engine
  if running; then return; fi
  mkdir -p "$RUN_DIR/exec" "$DATA_DIR"
  say "starting a private dockerd on unix://$SOCK (images in $DATA_DIR)"
  # The daemon's own containerd, exec root and pid file: nothing shared with a system engine.
  setsid dockerd --host "unix://$SOCK" --data-root "$DATA_DIR" --exec-root "$RUN_DIR/exec" \
    --pidfile "$PIDFILE" --storage-driver overlay2 --log-level warn >"$LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 300); do
    if DOCKER_HOST="unix://$SOCK" docker info >/dev/null 2>&1; then return; fi
    sleep 0.1
  done
  say "dockerd did not answer in 30 s; its log:"; tail -20 "$LOG" >&2; exit 1
}

stop() {
  running || return 0
  local pid; pid=$(cat "$PIDFILE")
  say "stopping the private dockerd (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running && echo "running: unix://$SOCK" || { echo "stopped"; exit 1; } ;;
  env) echo "export DOCKER_HOST=unix://$SOCK DOCKER_CONFIG=${SAIS_DOCKER_CONFIG:-${XDG_CACHE_HOME:-$HOME/.cache}/sais/docker-config}" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
