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
# The package: one folder, every tool sees it.
PACKAGE := src/wheelwright
# What the deployment tests run beside the farm, each in a venv of its own: index hosts of other
# kinds to publish to, and the Crossbar router several masters share.
SERVICES := tests/.cache/services

# Debian packages a local farm needs (`wheelwright doctor` checks them): bubblewrap, the sandbox
# every build's own code runs in; patch for packages' patches; gcc for C extensions; git for
# sources from repositories; graphviz for the dashboard's tree pictures.
FARM_PACKAGES := bubblewrap patch gcc git graphviz
# And those the tests need besides: the container engine for the latent-worker tests (podman, with
# runc and catatonit) and debootstrap to make their worker image; ninja and patchelf for
# meson-python; chromium for the browser tests; qemu-user-static, which runs the emulated aarch64
# pool's workers; postgresql, the production database the deployment tests run a server of
# (tests/postgres.py); libyaml-dev, a system library a test's C extension links (repair).
SYSTEM_PACKAGES := $(FARM_PACKAGES) podman runc catatonit debootstrap ninja-build patchelf \
	chromium chromium-driver qemu-user-static postgresql libyaml-dev
BINFMT := /proc/sys/fs/binfmt_misc

.PHONY: up down test install install-test farm-packages system-packages emulation bench lint

# The farm's own venv: the master side for `make up`, the test tools besides for `make test`.
$(VENV)/.master: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[master]'
	touch $@

$(VENV)/.test: $(VENV)/.master
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Our code's bytecode, written once here: an editable install compiles nothing, and a machine that
# sets PYTHONDONTWRITEBYTECODE would compile it again at every `wheelwright` command's start.
install: $(VENV)/.master
	$(BIN)/python -m compileall -q $(PACKAGE) >/dev/null

install-test: install $(VENV)/.test

up: farm-packages install
	$(BIN)/wheelwright --state $(STATE) up $(UP_ARGS)
	$(BIN)/wheelwright --state $(STATE) status

down:
	$(BIN)/wheelwright --state $(STATE) down

# The sdists the tests build, and the real-world corpus (tests/corpus.txt), fetched once.
$(SDIST_CACHE)/.done: Makefile tests/corpus.txt tests/fetch_corpus.py
	$(BIN)/python tests/fetch_corpus.py $(SDIST_CACHE) --corpus tests/corpus.txt $(TEST_SDISTS)
	touch $@

# Debian's packages that are not installed yet, installed (root, as on a fresh machine).
apt_install = missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi

farm-packages:
	@$(call apt_install,$(FARM_PACKAGES))

system-packages:
	@$(call apt_install,$(SYSTEM_PACKAGES))

# The kernel hands aarch64 programs to qemu (farm/emulation.py): binfmt_misc mounted, and
# qemu-user-static's entry (with the F flag) registered once.
emulation: system-packages
	@mountpoint -q $(BINFMT) || mount -t binfmt_misc binfmt_misc $(BINFMT)
	@[ -e $(BINFMT)/qemu-aarch64 ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > $(BINFMT)/register

$(SERVICES)/.done: Makefile
	$(PYTHON) -m venv $(SERVICES)/pypiserver
	$(SERVICES)/pypiserver/bin/pip install --quiet pypiserver passlib
	$(PYTHON) -m venv $(SERVICES)/devpi
	$(SERVICES)/devpi/bin/pip install --quiet devpi-server devpi-client
	$(PYTHON) -m venv $(SERVICES)/crossbar
	$(SERVICES)/crossbar/bin/pip install --quiet crossbar
	touch $@

# The formatting, the lint rules and the types.
lint: install-test
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy -p wheelwright

test: system-packages emulation install-test lint $(SDIST_CACHE)/.done $(SERVICES)/.done
	$(BIN)/python -m pytest --durations=25 $(PYTEST_ARGS)

# Benchmarks (not tests): farm against bare pip, publishing at scale; BENCH_ARGS=--quick for a smoke run.
bench: install-test $(SDIST_CACHE)/.done
	$(BIN)/python bench/run.py $(BENCH_ARGS)
