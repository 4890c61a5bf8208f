# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.PHONY: demo test lint install bench clean browser docs

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# CPU PyTorch first, pinned, so nothing pulls a multi-GB CUDA build.
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/playnext demo

# Headless Chromium for the browser test (Debian package; Playwright's own download cannot work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: browser tests will skip"; }

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(MKDOCS) build --strict -d site  # not --quiet: it hides the warnings strict mode counts
	$(BIN)/pytest

# The site (mkdocs-material, the API reference from the docstrings) into site/; offline, no fonts fetched.
docs: $(STAMP)
	$(MKDOCS) build --strict -d site

bench: $(STAMP)
	$(BIN)/python -m benchmarks.baselines

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
