# The two commands a fresh machine needs:
#   make up     install and run the farm (sqlite, local worker processes, the index on localhost)
#   make test   install and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
STATE ?= farm
BIN := $(VENV)/bin
# The build backends the end-to-end tests build from source first, as a fresh farm would.
TEST_SDISTS := setuptools==80.9.0 flit_core==3.12.0
SDIST_CACHE := tests/.cache/sdists

.PHONY: up down test install

$(BIN)/wheelwright: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/wheelwright

up: install
	$(BIN)/wheelwright --state $(STATE) up $(UP_ARGS)
	$(BIN)/wheelwright --state $(STATE) status

down:
	$(BIN)/wheelwright --state $(STATE) down

$(SDIST_CACHE)/.done: Makefile
	mkdir -p $(SDIST_CACHE)
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: --dest $(SDIST_CACHE) $(TEST_SDISTS)
	touch $@

test: install $(SDIST_CACHE)/.done
	$(BIN)/python -m pytest $(PYTEST_ARGS)
