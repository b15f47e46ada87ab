# The two commands of the README: `make demo` and `make test`. Both work on a fresh machine:
# they create .venv, install the package, and build the control plane from Go modules on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test binaries clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

binaries: $(STAMP)
	$(VENV)/bin/rtcrec build-binaries

# The demo builds (once) only the binaries it needs, and shows its progress doing so.
demo: $(STAMP)
	$(VENV)/bin/rtcrec demo

test: binaries
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV)
