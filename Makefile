# slurm-ckpt: developer entry points. Run as root on Debian 12.
#   make demo     set up, run the end-to-end demo on a local 2-node cluster
#   make test     set up, run the unit and integration tests (cluster up and down)

VENV   ?= $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
REPORT := build/test-report.xml

.PHONY: help setup cluster-up cluster-down cluster-status test test-unit lint demo bench bench-dump bench-catalog bench-service bench-checksum clean

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

setup:
	scripts/setup-system.sh

cluster-up: setup
	scripts/cluster.sh up

cluster-down:
	scripts/cluster.sh down

cluster-status:
	scripts/cluster.sh status

# Unit and integration tests in one run; the integration fixtures bring the
# cluster up through scripts/cluster.sh and down again. The report check fails
# the run when integration tests were skipped or none ran.
test: setup lint
	@mkdir -p build
	$(PYTEST) -p no:cacheprovider --junitxml=$(REPORT) tests; rc=$$?; \
	$(PYTHON) scripts/check_test_report.py $(REPORT) --pytest-exit $$rc

test-unit:
	$(PYTEST) -p no:cacheprovider -m unit tests/unit

lint:
	$(VENV)/bin/ruff check slurm_ckpt tests scripts
	$(VENV)/bin/ruff format --check slurm_ckpt tests scripts
	$(VENV)/bin/mypy

demo: setup
	scripts/demo.sh

# Checkpoint and restore through the launcher against plain CRIU and dd
# (numbers in docs/benchmarks.md).
bench-dump: setup
	$(PYTHON) scripts/bench_dump.py

# The catalog's list-jobs summary and newest-valid lookup on SQLite and PostgreSQL.
bench-catalog: setup
	$(PYTHON) scripts/bench_catalog.py

# slurm-ckptd with 10,000 jobs against a fake Slurm and dump backend.
bench-service: setup
	$(PYTHON) scripts/bench_service.py

# The checksum candidates on a 1 GiB image.
bench-checksum: setup
	$(PYTHON) scripts/bench_checksum.py

# Every benchmark; the numbers in docs/benchmarks.md come from these.
bench: bench-checksum bench-dump bench-catalog bench-service

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
