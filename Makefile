# slurm-ckpt: developer entry points. Run as root on Debian 12 or 13.
#   make demo     set up, run the end-to-end demo on a local 2-node cluster
#   make test     set up, run every tier of tests (cluster up and down)
#   make bench    run every benchmark and write docs/benchmarks.md (about 20 minutes)

# SLURM_RELEASE=24.11 make ... builds and runs that Slurm instead of Debian's
# (README "Slurm releases"); its commands come first on PATH for every target.
SLURM_HOME := $(or $(SLURM_CKPT_PREFIX),/opt/slurm-ckpt)/slurm/current
export PATH := $(SLURM_HOME)/bin:$(SLURM_HOME)/sbin:$(PATH)

VENV   ?= $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
REPORT := build/test-report.xml

.PHONY: help setup cluster-up cluster-down cluster-status test test-unit test-local lint demo bench bench-dump bench-recovery bench-recovery-releases bench-catalog bench-service bench-checksum bench-jobfs bench-files bench-load bench-report zdtm clean

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
# Then the end-to-end core (tests marked core) on each of TEST_RELEASES but the
# selected one (Debian's by default), built from Debian's source archive once and kept
# (scripts/test-releases.sh): 24.11 on Debian 12, 22.05 on Debian 13.
TEST_RELEASES ?= 22.05 24.11

test: setup lint
	@mkdir -p build
	$(PYTEST) -p no:cacheprovider --junitxml=$(REPORT) tests; rc=$$?; \
	$(PYTHON) scripts/check_test_report.py $(REPORT) --pytest-exit $$rc
	scripts/test-releases.sh $(TEST_RELEASES)

test-unit:
	$(PYTEST) -p no:cacheprovider -m unit tests/unit

# The unit and local tiers: every test that needs nothing beyond the venv (no root,
# cluster, CRIU or PostgreSQL), the contract suites' fakes included; in seconds.
test-local:
	$(PYTEST) -p no:cacheprovider -m "unit or local" tests/unit tests/local tests/contract

# The zdtm contract alone (make test runs it too): CRIU's static tests through plain
# CRIU and through the launcher; the table goes to docs/zdtm.md.
zdtm: setup
	@mkdir -p build
	$(PYTHON) scripts/zdtm/contract.py --json build/zdtm.json --markdown docs/zdtm.md --clean

lint:
	$(VENV)/bin/ruff check slurm_ckpt tests scripts
	$(VENV)/bin/ruff format --check slurm_ckpt tests scripts
	$(VENV)/bin/mypy

demo: setup
	scripts/demo.sh

# Benchmarks: each writes its numbers to $(RESULTS)/<name>.json; `make bench`
# runs them all and writes docs/benchmarks.md from those files.
RESULTS := docs/bench-results

# Checkpoint and restore through the launcher against plain CRIU and dd.
bench-dump: setup
	$(PYTHON) scripts/bench_dump.py --json $(RESULTS)/dump.json

# Node failure on the local cluster: Slurm's detection, our restore, the work lost.
bench-recovery: setup
	$(PYTHON) scripts/bench_recovery.py --json $(RESULTS)/recovery.json

# The same on each other release of TEST_RELEASES (built once, as make test does).
bench-recovery-releases: setup
	scripts/bench-releases.sh $(TEST_RELEASES)

# The catalog's list-jobs summary and newest-valid lookup on SQLite and PostgreSQL.
bench-catalog: setup
	$(PYTHON) scripts/bench_catalog.py --json $(RESULTS)/catalog.json

# slurm-ckptd with 10,000 jobs against a fake Slurm and dump backend.
bench-service: setup
	$(PYTHON) scripts/bench_service.py --json $(RESULTS)/service.json

# One operation in a job's folder as its owner: thread per operation, worker process, none.
bench-jobfs: setup
	$(PYTHON) scripts/bench_jobfs.py --json $(RESULTS)/jobfs.json

# Keeping a data file exact per checkpoint: whole copy, changed blocks, checksum, against dd and plain CRIU.
bench-files: setup
	$(PYTHON) scripts/bench_files.py --json $(RESULTS)/files.json

# The checksum candidates on a 1 GiB image.
bench-checksum: setup
	$(PYTHON) scripts/bench_checksum.py --json $(RESULTS)/checksum.json

# 40 checkpointed jobs on the local cluster for 5 minutes (the load test).
bench-load: setup
	@mkdir -p build
	SLURM_CKPT_LOAD_RESULTS=$(CURDIR)/build/load.json SLURM_CKPT_LOAD_SECONDS=300 \
	    $(PYTEST) -p no:cacheprovider -q -s tests/integration/test_load.py
	$(PYTHON) scripts/benchlib.py wrap load build/load.json $(RESULTS)/load.json

# docs/benchmarks.md from the results files, without measuring again.
bench-report:
	$(PYTHON) scripts/bench_report.py $(RESULTS) docs/benchmarks.md

# Every benchmark (about 20 minutes), then the page.
bench: bench-checksum bench-jobfs bench-files bench-dump bench-catalog bench-service bench-recovery bench-recovery-releases bench-load
	$(MAKE) bench-report

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
