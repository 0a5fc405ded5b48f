# The two commands of the README: `make demo` and `make test`. Both install what they need,
# start real Apache Kafka, PostgreSQL and an SMTP server locally, and stop them afterwards.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
# Debian's own Python 3.11 where there is one: its interpreter linked into the binary and built with
# Debian's optimisation, it ran this project's hot paths 22-28 % faster than a default source build
# first on PATH (pyenv's: a shared libpython), and the whole pipeline 7-14 % faster end to end
# (bench/interpreters.py; docs/performance.md). The images run the same Debian Python.
SAIS_PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || echo python3.11)

.PHONY: install demo lint test test-unit test-compose test-containers images stack-up stack-down stack-status samples tools

install:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	@uv sync --frozen --all-packages --python $(SAIS_PYTHON) --quiet --compile-bytecode
	@# Bytecode for the project's own packages too: where PYTHONDONTWRITEBYTECODE is set (as on these
	@# machines) Python never caches it, and every CLI call and service start would compile from source.
	@.venv/bin/python -m compileall -q -j 0 shared/src services src tests deploy bench >/dev/null

demo: install
	@.venv/bin/python deploy/local/demo.py

# ruff (lint and format) and mypy (types, with the pydantic plugin); make test runs the same first.
lint: install
	@.venv/bin/ruff check --quiet . && .venv/bin/ruff format --check --quiet . && .venv/bin/mypy

test: install
	@bash deploy/local/run-tests.sh  # builds the tools (make tools) while the stack starts

test-unit: install
	@.venv/bin/pytest -m unit -q

# The compose stack on a private Docker engine, with the stand-in images (deploy/images/README.md).
images: install
	@bash deploy/images/build.sh

# The integration tests on the testcontainers path (Kafka and PostgreSQL in containers on the private
# engine, instead of the local runner's processes), so that both paths stay true.
test-containers: images
	@# (tests/conftest.py has testcontainers reach the published ports on 127.0.0.1.)
	@eval "$$(bash deploy/images/engine.sh env)" && TESTCONTAINERS_RYUK_DISABLED=true \
	  .venv/bin/pytest -m "integration and not exclusive" tests/integration -q; rc=$$?; \
	  bash deploy/images/engine.sh stop; exit $$rc

test-compose: images
	@.venv/bin/pytest -m compose tests/deploy -q; rc=$$?; bash deploy/images/engine.sh stop; exit $$rc

stack-up: install
	@.venv/bin/python deploy/local/stack.py start

stack-down:
	@.venv/bin/python deploy/local/stack.py stop

stack-status:
	@.venv/bin/python deploy/local/stack.py status

samples: install
	@.venv/bin/python -m tests.synthetic --out data/samples

# Tools the tests use that are not Python packages: kustomize (built from the Go module proxy, once).
KUSTOMIZE_VERSION := v5.6.0
# Built into ~/.cache/sais once per machine, linked into .tools/bin for this checkout.
KUSTOMIZE_CACHE := $(HOME)/.cache/sais/bin/kustomize-$(KUSTOMIZE_VERSION)
tools: .tools/bin/kustomize
.tools/bin/kustomize: $(KUSTOMIZE_CACHE)
	@mkdir -p .tools/bin && ln -sf $(KUSTOMIZE_CACHE) .tools/bin/kustomize
$(KUSTOMIZE_CACHE):
	@command -v go >/dev/null || { echo "Go is needed to build kustomize (apt-get install golang)"; exit 1; }
	@echo "building kustomize $(KUSTOMIZE_VERSION) (once)"
	@mkdir -p $(dir $(KUSTOMIZE_CACHE)) && tmp=$$(mktemp -d) && GOBIN=$$tmp GOFLAGS=-mod=mod go install \
	  sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION) && mv $$tmp/kustomize $(KUSTOMIZE_CACHE) && rmdir $$tmp
