# metricpipe — every set-up step is a target here; all are idempotent and cache outside the repo.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export METRICPIPE_CACHE ?= $(HOME)/.cache/metricpipe
VENV_STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
# the archiver's native row maker, for the tests, the bench and the archivers they start
export METRICPIPE_ARCHIVE_NATIVE_LIB ?= $(shell bash hack/build-native.sh --path)

.PHONY: help prereqs venv stack-deps stack-up stack-down stack-status lint format unit \
        integration e2e test demo bench clean crds manifests locks demo-down images chart native

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

prereqs: ## Check (and as root, install) the system tools the project needs
	@bash hack/prereqs.sh

$(VENV_STAMP): pyproject.toml
	@bash hack/prereqs.sh
	@echo "-- creating $(VENV) (Python deps incl. pyspark; pip caches wheels in ~/.cache/pip)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(VENV_STAMP) ## Create the virtualenv with runtime and dev dependencies

images: venv ## Build the operator, consumer and pause images (cached by content in the cache)
	@bash hack/build-images.sh

native: ## Build the archiver's native row maker (consumers/native) into the cache
	@bash hack/build-native.sh >/dev/null

stack-deps: venv images native ## Build kube/etcd and fetch Kafka, HDFS, ES, OpenSearch, Prometheus, Spark connector
	@bash hack/build-go-bins.sh all
	@bash hack/fetch-deps.sh all

stack-up: stack-deps ## Start the local stack and write .stack/env
	@$(PY) -m metricpipe_devstack up --no-fetch

stack-down: ## Stop exactly the processes stack-up started
	@if [ -x $(PY) ]; then $(PY) -m metricpipe_devstack down; fi

stack-status: venv ## Version, pid, port and health of each component
	@$(PY) -m metricpipe_devstack status

crds: venv ## Regenerate crds/ from the pydantic model (the one source of truth)
	$(PY) -m metricpipe_operator.api.crd > crds/metricpipelines.metricpipe.io.yaml
	$(PY) -m metricpipe_operator.api.archive_crd > crds/logarchives.metricpipe.io.yaml

MONITORING := manifests/components/monitoring
manifests: venv ## Regenerate the monitoring objects and dashboards in manifests/ from code
	$(PY) -m metricpipe_exporters.render manifests --namespace metricpipe-system --out $(MONITORING)
	$(PY) -m metricpipe_dashboards --out $(MONITORING)/dashboards

chart: venv ## Regenerate the Helm chart charts/metricpipe from manifests/base, crds/ and the rule builders
	$(PY) hack/render_chart.py

UV := $(VENV)/bin/uv
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header --quiet
locks: venv ## Re-pin the images' Python packages with hashes (hack/images/*.lock) from pyproject.toml (the exporter's at the consumer's versions)
	@test -x $(UV) || $(PY) -m pip install -q uv==0.13.9
	$(UV) pip compile hack/images/build.in $(LOCK_FLAGS) -o hack/images/build.lock
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o hack/images/operator.lock
	$(UV) pip compile pyproject.toml --extra consumer $(LOCK_FLAGS) -o hack/images/consumer.lock
	$(UV) pip compile pyproject.toml --extra exporter -c hack/images/consumer.lock $(LOCK_FLAGS) -o hack/images/exporter.lock

lint: venv ## ruff (lint + format check), mypy --strict, and the packages' import graph
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) hack/import_graph.py

format: venv ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

unit: venv native ## Pure tests, no servers (promtool, a binary, checks the rules)
	@bash hack/fetch-deps.sh prometheus
	$(VENV)/bin/pytest tests/unit

integration: stack-deps ## Tests against the real local stack (started and stopped if not running)
	$(VENV)/bin/pytest tests/integration

e2e: stack-deps ## Closed loops on the real local stack (the ResourceManager scaling consumers)
	$(VENV)/bin/pytest tests/e2e

test: stack-deps ## Everything CI runs: lint and unit (while the stack starts), then integration and e2e
	@bash hack/test.sh

bench: stack-deps ## Benchmarks (not tests): consumer (throughput, start, memory), archiver and peek reader, exporter, ResourceManager cycle, autoscaling simulator, stream vs batch over Kafka vs batch over Redis
	$(PY) bench/consumer_throughput.py
	$(PY) bench/consumer_start.py
	$(PY) bench/consumer_memory.py
	$(PY) bench/archive_throughput.py
	$(PY) bench/exporter_scrape.py
	$(PY) bench/resource_manager_cycle.py
	$(PY) bench/autoscale_sim.py
	$(PY) bench/batch_modes.py

demo: stack-up ## The whole loop on real data: operator, exporter and consumers as containers, a burst, the log archive and a peek through the edge
	@$(PY) -m metricpipe_demo up

demo-down: ## Stop the demo's processes, delete its namespace, stop the stack
	@test ! -f .stack/env || $(PY) -m metricpipe_demo down
	@$(MAKE) --no-print-directory stack-down

clean: stack-down ## Remove the virtualenv and the stack state (the download cache stays)
	rm -rf $(VENV) .stack .mypy_cache .ruff_cache .pytest_cache
