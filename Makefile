# The two commands of the README: `make demo` and `make test`. Both install what they need,
# start real Apache Kafka, PostgreSQL and an SMTP server locally, and stop them afterwards.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never

.PHONY: install demo test test-unit stack-up stack-down stack-status samples bench

install:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	@uv sync --frozen --all-packages --python python3.11 --quiet

demo: install
	@.venv/bin/python deploy/local/demo.py

test: install
	@bash deploy/local/run-tests.sh

test-unit: install
	@.venv/bin/pytest -m unit -q

stack-up: install
	@.venv/bin/python deploy/local/stack.py start

stack-down:
	@.venv/bin/python deploy/local/stack.py stop

stack-status:
	@.venv/bin/python deploy/local/stack.py status

samples: install
	@.venv/bin/python -m sais_shared.testing.synthetic --out data/samples
