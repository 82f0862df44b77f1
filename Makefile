# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages the project needs at run or test time: headless Chromium for the report test
# (PyAV, decord and soundfile wheels bundle their own FFmpeg and libsndfile).
APT_PACKAGES := chromium chromium-driver

.PHONY: setup system demo test test-e2e test-chaos lint clean serve deploy worker image-test microlens

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@$(MAKE) --no-print-directory system
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# constraints.txt pins every package (torch==2.14.1 included), so a fresh install resolves the same set.
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	# The musicnn wheel only carries the tagger's TF1 checkpoint; its own pins (numpy<1.17,
	# TensorFlow) are not wanted: reelsense runs a PyTorch port (extractors/musicnn.py).
	$(BIN)/python -m pip install --quiet --no-deps musicnn==0.1.0
	@touch $(STAMP)

system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: setup
	$(BIN)/reelsense demo

# The tests a change needs (every test but the end-to-end and the process-killing ones; under 12
# minutes on 2 cores).
test: setup lint
	$(BIN)/python -m pytest -m "not e2e and not chaos"

# End to end: the demo twice through the CLI, a deployment run on a real Prefect server, and the
# tests that start their own Prefect server (6 tests in 6:54 on 2 idle cores, 2026-12-05). CI runs
# them after `make test`.
test-e2e: setup
	$(BIN)/python -m pytest -m e2e

# Crash safety: extraction, feature builds, compaction and prune killed at each write point or
# from outside (SIGKILL, Ctrl-C, SIGTERM), then resumed, a SIGTERM that Prefect loses, and processes
# at once (two extractions, concurrent view refreshes). The two that also start their own Prefect
# server are e2e tests. CI runs them last.
test-chaos: setup
	$(BIN)/python -m pytest -m "chaos and not e2e"

# The README's MicroLens-50K tables in one command: ingest and extract the titles (each skips what
# is done), then every model, seed and cold-start step (about eight hours on 2 cores). Run again, it
# resumes: from the JSON, or in a fresh checkout from the committed .summary.json.
MICROLENS ?= ../shared/data/microlens-50k
MICROLENS_HOME ?= $(CURDIR)/.reelsense-microlens
microlens: setup
	$(BIN)/reelsense --home $(MICROLENS_HOME) ingest microlens $(MICROLENS)
	$(BIN)/reelsense --home $(MICROLENS_HOME) extract --config configs/microlens-text.toml
	$(BIN)/python benchmarks/microlens.py --home $(MICROLENS_HOME) --out benchmarks/results/microlens-50k.json \
		--models popularity,itemknn,bpr-mf,sasrec,sasrec-content,lstm-attn,lightgbm --seeds 0,1,2 \
		--patience 10 --max-epochs 40 --cold-max-epochs 40

# ruff (the rule set in pyproject.toml [tool.ruff.lint], and the formatter's check), then mypy on
# the storage layer and the ranker interface ([tool.mypy]).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Deployments: a local Prefect server (127.0.0.1, SQLite under ~/.prefect), then every flow served
# from one process. In another shell: PREFECT_API_URL=$(PREFECT_API) .venv/bin/prefect deployment run 'extract-items/default'
PREFECT_API := http://127.0.0.1:4200/api
export REELSENSE_HOME ?= $(CURDIR)/.reelsense

serve: setup
	@PREFECT_API_URL= $(BIN)/prefect server start --host 127.0.0.1 --port 4200 & server=$$!; \
	trap 'kill $$server 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq 120); do $(BIN)/python -c "import urllib.request as u; u.urlopen('$(PREFECT_API)/health', timeout=2)" 2>/dev/null && break; sleep 1; done; \
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/reelsense serve

# The prefect.yaml alternative: the same deployments in a process work pool, run by `make worker`.
deploy: setup
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect work-pool inspect reelsense-process >/dev/null 2>&1 || \
		PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect work-pool create reelsense-process --type process
	PREFECT_API_URL=$(PREFECT_API) REELSENSE_REPO=$(CURDIR) $(BIN)/prefect --no-prompt deploy --all

worker: setup
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect worker start --pool reelsense-process

# The CPU image built for real (buildah from a debootstrap Debian base; no Docker engine needed, root),
# `reelsense demo` run inside it and its warehouse checked; IMAGE_TEST_GPU=1 builds the GPU image too.
# Not part of `make test`: see docker/README.md for its times and sizes.
image-test:
	bash docker/image_test.sh

clean:
	rm -rf .reelsense .pytest_cache .hypothesis
