# newswatch: `make run` starts everything locally, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := $(wildcard dags plugins tests bench scripts)
export NEWSWATCH_DATA_DIR ?= $(CURDIR)/.data

.PHONY: install run poll demo test test-fast test-distributed lint lock config-reference stop clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@# Bytecode compiled once here: every task, worker and test process would otherwise compile its imports
	@# again wherever PYTHONDONTWRITEBYTECODE is set.
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.txt -r requirements-dev.txt
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	$(BIN)/python -m compileall -q plugins >/dev/null
	touch $(STAMP)

run: install
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/run.sh

poll: install
	@if [ -z "$$NEWSWATCH_DATABASE_URL" ]; then $(BIN)/newswatch db start >/dev/null; fi
	$(BIN)/newswatch poll

# One offline cycle against two local copies of a French wire story: one story, one alert.
demo: install
	@if [ -z "$$NEWSWATCH_DATABASE_URL" ]; then $(BIN)/newswatch db start >/dev/null; fi
	$(BIN)/python scripts/demo.py

test: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/pytest

# The tests not marked slow (no Airflow process, no subprocess or deadline drills, no browser, no soak): under 2 min.
test-fast: install
	$(BIN)/pytest -m "not slow" -n auto

# Scale-out: Redis (Debian's redis-server), Airflow's components and two Celery workers on loopback run one cycle;
# a worker killed midway is recovered (about 4 min). Not part of `make test`; .ci/run runs it after.
test-distributed: install
	$(BIN)/pytest -m distributed tests/test_distributed.py

lint: install
	$(BIN)/ruff check $(LINT_PATHS)

# Rewrites the settings reference in docs/configuration.md from the config models.
config-reference: install
	$(BIN)/python scripts/config_reference.py

# Re-resolve the pinned requirements from requirements*.in.
lock:
	$(BIN)/uv pip compile requirements.in --python-version 3.11 -o requirements.txt
	$(BIN)/uv pip compile requirements-dev.in --python-version 3.11 -c requirements.txt -o requirements-dev.txt

# Stops what make run started: the process group it recorded, then the embedded database.
stop:
	@if [ -f "$(NEWSWATCH_DATA_DIR)/airflow.pgid" ]; then \
		kill -TERM -- -"$$(cat "$(NEWSWATCH_DATA_DIR)/airflow.pgid")" 2>/dev/null || true; \
		rm -f "$(NEWSWATCH_DATA_DIR)/airflow.pgid"; \
	fi
	-$(BIN)/newswatch db stop

clean: stop
	rm -rf $(VENV) .data .pytest_cache
