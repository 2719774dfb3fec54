# Siegel: `make serve` runs the server on embedded defaults, `make test` runs the whole suite.
# Both install what is missing first (Debian packages as root, a .venv with the pinned dependencies).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.siegel-installed

# Debian packages: what the server needs, and what the test suite needs on top.
APT_SERVE := softhsm2 opensc openssl fonts-dejavu-core libcairo2
APT_TEST := $(APT_SERVE) slapd ldap-utils postgresql xmlsec1 poppler-utils qpdf chromium \
            libnss3-tools jaxws default-jdk-headless mono-devel libbcprov-java libbcpkix-java libbcutil-java

.PHONY: serve test bench fuzz soak init deps-serve deps-test venv clean-var portal-assets

serve: deps-serve venv portal-assets
	$(BIN)/siegel serve

init: deps-serve venv
	$(BIN)/siegel init

test: deps-test venv portal-assets
	$(BIN)/python -m pytest

# Every benchmark, then docs/performance.md and its chart from bench/results/*.json.
bench: deps-test venv
	$(BIN)/python -m bench
	$(BIN)/python -m bench.performance

# Long fuzzing runs: the hypothesis harnesses with the "long" profile (FUZZ_EXAMPLES per target), then
# atheris on every target (or FUZZ_TARGETS) for FUZZ_SECONDS each; corpora and crashes under var/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_EXAMPLES ?= 5000
FUZZ_TARGETS ?= $(shell $(BIN)/python -m tests.fuzz.atheris_main --list 2>/dev/null)
fuzz: deps-test venv
	HYPOTHESIS_PROFILE=long FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/fuzz -q -p no:cacheprovider
	@for target in $(FUZZ_TARGETS); do \
	  echo "atheris: $$target for $(FUZZ_SECONDS) s"; \
	  $(BIN)/python -m tests.fuzz.atheris_main $$target -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

deps-serve:
	@./.ci/apt-ensure $(APT_SERVE)

deps-test:
	@./.ci/apt-ensure $(APT_TEST)

venv: $(STAMP)

# The portal's front-end packages (pdf.js) come from npm (package-lock.json) and are copied into the folder
# the portal serves; nothing is fetched by a browser from elsewhere at run time.
PORTAL_VENDOR := server/web/portal/static/vendor/pdfjs
portal-assets: $(PORTAL_VENDOR)/.installed

$(PORTAL_VENDOR)/.installed: package.json package-lock.json
	@./.ci/apt-ensure nodejs
	@command -v npm >/dev/null || ./.ci/apt-ensure npm
	npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf $(PORTAL_VENDOR) && mkdir -p $(PORTAL_VENDOR)
	cp node_modules/pdfjs-dist/build/pdf.min.mjs node_modules/pdfjs-dist/build/pdf.worker.min.mjs \
	   node_modules/pdfjs-dist/LICENSE $(PORTAL_VENDOR)/
	cp -r node_modules/pdfjs-dist/standard_fonts $(PORTAL_VENDOR)/
	touch $@

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || ./.ci/apt-ensure python3-venv python3-dev
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[test]'
	touch $(STAMP)

# The load benchmark at length: 200 clients on two nodes (SOAP Sign, REST sign, Verify) for SOAK_SECONDS.
SOAK_SECONDS ?= 600
soak: deps-test venv
	SIEGEL_LOAD_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m bench load
