"""docs/benchmarks.md is what scripts/bench_report.py makes of docs/bench-results/."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "bench-results"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        return importlib.import_module("bench_report")
    finally:
        sys.path.remove(str(REPO / "scripts"))


def test_the_page_is_the_report_of_the_committed_results(report: ModuleType) -> None:
    page = (REPO / "docs" / "benchmarks.md").read_text()
    assert page == report.render(RESULTS), "docs/benchmarks.md: run make bench-report"


def test_every_benchmark_has_its_results_file(report: ModuleType) -> None:
    names = {name for name, _, _ in report.SECTIONS}
    # recovery-slurm-<release>.json: the recovery benchmark on each other release.
    stems = {p.stem for p in RESULTS.glob("*.json") if not p.stem.startswith("recovery-slurm-")}
    assert stems == names
    assert list(RESULTS.glob("recovery-slurm-*.json")), "make bench-recovery-releases"


def _dump_doc(checkpoint_s: float, restore_s: float) -> dict[str, object]:
    doc = json.loads((RESULTS / "dump.json").read_text())
    row = doc["results"][0]
    row.update(
        criu_dump_s=1.0,
        criu_dump_sync_s=1.0,
        launcher_checkpoint_s=checkpoint_s,
        criu_restore_s=1.0,
        launcher_restore_s=restore_s,
    )
    doc["results"] = [row]
    return doc


def test_targets_are_judged_from_the_numbers(report: ModuleType) -> None:
    page = report.dump(_dump_doc(checkpoint_s=1.25, restore_s=1.5))
    assert "checkpoint 1.25x a plain CRIU dump (met)" in page
    assert "restore 1.50x (**not met**)" in page
    page = report.dump(_dump_doc(checkpoint_s=1.4, restore_s=1.1))
    assert "checkpoint 1.40x a plain CRIU dump (**not met**)" in page
    assert "restore 1.10x (met)" in page


def test_a_missing_results_file_names_the_target_that_measures_it(
    report: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "checksum.json").write_text((RESULTS / "checksum.json").read_text())
    page = report.render(tmp_path)
    assert "Not measured yet: run `make bench-recovery`." in page
    assert "## Checksum" in page
