# The two commands of the README: `make demo` and `make test`. Both work on a fresh machine:
# they create .venv, install the package, and build the control plane from Go modules on first use.
# `make test` is the default tier: lint, then every behaviour of the runtime code against the real
# kube-apiserver and the emulator, in minutes; it builds etcd, kube-apiserver and kubectl only.
# `make test-all` (what CI runs) adds the slow tier (`-m slow`: other Kubernetes versions, helm and
# the chart, the image under podman, the demo, scale, chaos, failover, namespace deletion).
# `make image` writes the operator's image archive (tools/image/build.sh; Debian packages and PyPI only).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
IMAGE := build/image/rtc-recording-operator-$(VERSION).oci.tar
# What goes into the image: the runtime modules (not emulator/ or cluster/), the locks and scripts.
IMAGE_INPUTS := pyproject.toml Dockerfile $(wildcard tools/image/*) \
	$(shell find operator -name '*.py' -not -path '*/emulator/*' -not -path '*/cluster/*')

.PHONY: demo test test-all coverage lint unit binaries binaries-all image podman clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,plugin]'
	touch $(STAMP)

# What the default tier needs; binaries-all adds helm, kube-controller-manager, the other Kubernetes
# versions, gitops-health, promtool, krew and the registry (cached outside the repository: built once per machine).
binaries: $(STAMP)
	$(VENV)/bin/rtcrec build-binaries etcd kube-apiserver kubectl

binaries-all: $(STAMP)
	$(VENV)/bin/rtcrec build-binaries

image: $(IMAGE)

$(IMAGE): $(IMAGE_INPUTS) | $(STAMP)
	PIP=$(VENV)/bin/pip tools/image/build.sh

podman:
	tools/image/podman.sh

# The demo builds (once) only the binaries it needs, and shows its progress doing so.
demo: $(STAMP)
	$(VENV)/bin/rtcrec demo

# -rs: a skipped test says why (the container test skips only where podman cannot run).
# PYTEST_ARGS: more options, e.g. CI's --durations=30 --junitxml=build/junit.xml.
test: lint binaries
	$(VENV)/bin/pytest -q -rs -m "not slow" $(PYTEST_ARGS)

test-all: lint binaries-all image podman
	$(VENV)/bin/pytest -q -rs $(PYTEST_ARGS)

# Line coverage of the runtime package (the wheel: emulator/ and cluster/ left out), the operator
# and receiver subprocesses included (coverage's subprocess patch), for the default tier alone and
# for both tiers. Config: pyproject.toml.
COV := $(VENV)/bin/coverage
COVDIR := build/coverage
coverage: binaries-all image podman
	rm -rf $(COVDIR) && mkdir -p $(COVDIR)/default $(COVDIR)/slow $(COVDIR)/all
	-COVERAGE_FILE=$(COVDIR)/default/.coverage $(COV) run -m pytest -q -m "not slow" -p no:cacheprovider
	-COVERAGE_FILE=$(COVDIR)/slow/.coverage $(COV) run -m pytest -q -m slow -p no:cacheprovider
	$(COV) combine --data-file=$(COVDIR)/default/.coverage $(COVDIR)/default >/dev/null
	$(COV) combine --data-file=$(COVDIR)/slow/.coverage $(COVDIR)/slow >/dev/null
	$(COV) combine --keep --data-file=$(COVDIR)/all/.coverage $(COVDIR)/default/.coverage $(COVDIR)/slow/.coverage >/dev/null
	@echo "runtime line coverage, default tier: $$($(COV) report --data-file=$(COVDIR)/default/.coverage --format=total)%"
	@echo "runtime line coverage, both tiers:   $$($(COV) report --data-file=$(COVDIR)/all/.coverage --format=total)%"

# Lint: ruff's rules and its formatting (line length 120), mypy with the pydantic plugin over
# rtc_recording (emulator and cluster included), and the import contracts. Config: pyproject.toml.
LINT_PATHS := operator tests benchmarks tools
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The unit tables (the executor and the receiver over in-memory fakes, the pure decisions):
# no server, no network beyond loopback, a few seconds.
unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

# Benchmarks (BENCHMARKS.md): times, memory and CPU, never part of `make test`. About 40 minutes
# on 2 cores; `make bench SCENARIOS=a,b` runs a selection, RUNS=5 more runs each.
# `make bench SCENARIOS=c SCHEDULES=100` runs the restart with 100 RtcRecordingSchedules present
# (SCHEDULES_FIRING=5: five of them due every minute), recorded apart as "(c) with schedules".
SCENARIOS ?= a,b,c,d,e,f
RUNS ?= 3
# (Or BENCH_SCHEDULES / BENCH_SCHEDULES_FIRING in the environment.)
bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.run --scenarios $(SCENARIOS) --runs $(RUNS) \
		$(if $(SCHEDULES),--schedules $(SCHEDULES)) $(if $(SCHEDULES_FIRING),--schedules-firing $(SCHEDULES_FIRING))

clean:
	rm -rf $(VENV) build

# kubectl rtcrec for krew: build/krew/rtcrec-<os>-<arch>.tar.gz (linux and darwin, amd64 and arm64, each with
# the wheels of Python 3.11 to 3.14) and the manifest build/krew/rtcrec.yaml with their sha256
# (tools/krew/build.py: PyPI only; about 4 minutes).
.PHONY: krew
krew: $(STAMP)
	$(VENV)/bin/python tools/krew/build.py

# The chart as an OCI package: `make chart CHART_REGISTRY=registry.example.com/charts` lints it, writes
# build/chart/rtc-recording-operator-<version>.tgz and pushes it (tools/chart/publish.sh, with the helm built
# from Go modules; CHART_PUSH_FLAGS=--plain-http for a registry without TLS).
.PHONY: chart
chart: $(STAMP)
	HELM=$$($(VENV)/bin/rtcrec build-binaries helm | sed -n 's/^helm: //p') && test -n "$$HELM" && \
		HELM="$$HELM" CHART_REGISTRY=$(CHART_REGISTRY) CHART_PUSH_FLAGS='$(CHART_PUSH_FLAGS)' tools/chart/publish.sh
