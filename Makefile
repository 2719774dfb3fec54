# Siegel: `make serve` runs the server on embedded defaults, `make test` runs the whole suite.
# Both install what is missing first (Debian packages as root, a .venv with the pinned dependencies).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.siegel-installed

# Debian packages: what the server needs, and what the test suite needs on top.
APT_SERVE := softhsm2 opensc openssl fonts-dejavu-core
APT_TEST := $(APT_SERVE) slapd ldap-utils postgresql xmlsec1 poppler-utils qpdf chromium \
            libnss3-tools jaxws default-jdk-headless mono-devel

.PHONY: serve test bench init deps-serve deps-test venv clean-var

serve: deps-serve venv
	$(BIN)/siegel serve

init: deps-serve venv
	$(BIN)/siegel init

test: deps-test venv
	$(BIN)/python -m pytest

bench: deps-test venv
	$(BIN)/python -m bench

deps-serve:
	@./.ci/apt-ensure $(APT_SERVE)

deps-test:
	@./.ci/apt-ensure $(APT_TEST)

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || ./.ci/apt-ensure python3-venv python3-dev
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[test]'
	touch $(STAMP)
