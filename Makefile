# salesledger — the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
SL     := $(VENV)/bin/salesledger

.PHONY: setup venv system demo test test-unit bench stack-up stack-down stack-status stack-logs stack-reset-test clean

# Everything a fresh machine lacks: Debian packages, the virtualenv, the Maven jars.
setup: system venv

system:
	bash deploy/local/install-system.sh

$(VENV)/.installed: pyproject.toml constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: setup
	$(SL) demo

# The whole suite against the real stack (profile test: own databases and topic prefix).
# When the stack cannot come up, the service logs are printed before failing.
test: setup
	$(SL) stack up --profile test || { $(SL) stack logs --lines 60; exit 1; }
	$(PY) -m pytest tests; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-unit: venv
	$(PY) -m pytest tests -m "not stack"

bench: setup
	$(SL) stack up
	$(SL) bench $(BENCH_ARGS)

stack-up: setup
	$(SL) stack up

stack-down: venv
	$(SL) stack down

stack-status: venv
	$(SL) stack status

stack-logs: venv
	$(SL) stack logs

# Wipe the test profile's databases, topics, groups and connectors (never the demo's).
stack-reset-test: venv
	$(SL) stack reset --profile test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
