"""The test tiers (tests/conftest.py) and the report check make test ends with
(scripts/check_test_report.py), run on reports written here and on one pytest
writes for a few real tests."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from slurm_ckpt import proc
from tests.conftest import SLOW, TESTS, is_slow, tier_of

REPO = TESTS.parent
CHECK = REPO / "scripts" / "check_test_report.py"
PYSLURM_SKIP = "pyslurm does not import: No module named 'pyslurm'"


# -- the tier rule -----------------------------------------------------------------


@dataclass
class Item:
    """As much of a pytest item as the tier rule reads."""

    path: Path
    markers: set[str] = field(default_factory=set)
    nodeid: str = "tests/x.py::test_x"

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None


@pytest.mark.parametrize("tier", ["unit", "local", "integration"])
def test_the_tier_is_the_folder(tier: str) -> None:
    assert tier_of(Item(TESTS / tier / "test_x.py")) == tier  # type: ignore[arg-type]


def test_a_tier_marker_wins_over_the_folder() -> None:
    item = Item(TESTS / "contract" / "test_x.py", {"integration"})
    assert tier_of(item) == "integration"  # type: ignore[arg-type]
    item = Item(TESTS / "unit" / "test_x.py", {"local"})
    assert tier_of(item) == "local"  # type: ignore[arg-type]


def test_a_test_without_a_tier_or_with_two_is_refused() -> None:
    with pytest.raises(pytest.UsageError, match="no tier"):
        tier_of(Item(TESTS / "contract" / "test_x.py"))  # type: ignore[arg-type]
    with pytest.raises(pytest.UsageError, match="more than one tier"):
        tier_of(Item(TESTS / "unit" / "test_x.py", {"unit", "integration"}))  # type: ignore[arg-type]


def test_slow_names_a_module_or_one_test_and_nothing_else() -> None:
    module = "tests/integration/test_load.py"
    assert module in SLOW and is_slow(f"{module}::test_anything")
    assert not is_slow("tests/integration/test_load_other.py::test_x")
    one = next(s for s in SLOW if "::" in s)
    assert is_slow(one) and is_slow(f"{one}[param]")
    assert not is_slow(f"{one}_and_more")


def test_every_slow_entry_names_a_test_that_exists() -> None:
    for entry in SLOW:
        path, _, name = entry.partition("::")
        source = REPO / path
        assert source.is_file(), entry
        if name:
            tests = {
                node.name
                for node in ast.walk(ast.parse(source.read_text()))
                if isinstance(node, ast.FunctionDef)
            }
            assert name in tests, entry


# -- the report check --------------------------------------------------------------


def case(classname: str, name: str, tier: str | None, outcome: str = "", message: str = "") -> str:
    props = f'<properties><property name="tier" value="{tier}"/></properties>' if tier else ""
    body = f'<{outcome} message="{message}"/>' if outcome else ""
    return f'<testcase classname="{classname}" name="{name}">{props}{body}</testcase>'


EVERY_TIER = [
    case("tests.unit.test_a", "test_a", "unit"),
    case("tests.local.test_b", "test_b", "local"),
    case("tests.integration.test_c", "test_c", "integration"),
    case("tests.contract.test_slurm_adapters", "test_lists[fake]", "unit"),
    case("tests.contract.test_slurm_adapters", "test_lists[cli]", "integration"),
    case(
        "tests.contract.test_slurm_adapters",
        "test_lists[pyslurm]",
        "integration",
        "skipped",
        PYSLURM_SKIP,
    ),
]


def check(tmp_path: Path, cases: list[str], pytest_exit: int = 0, *options: str) -> proc.Completed:
    report = tmp_path / "report.xml"
    report.write_text(f"<testsuites><testsuite>{''.join(cases)}</testsuite></testsuites>")
    return proc.run(
        [sys.executable, CHECK, report, "--pytest-exit", str(pytest_exit), *options],
        timeout=30,
        check=False,
    )


def test_every_tier_passed_with_the_pyslurm_skip_passes(tmp_path: Path) -> None:
    done = check(tmp_path, EVERY_TIER)
    assert done.returncode == 0, done.stderr
    assert "unit: 2 passed" in done.stdout and "integration: 2 passed" in done.stdout
    assert "1 allowed skips" in done.stdout


@pytest.mark.parametrize("tier", ["unit", "local", "integration"])
def test_a_tier_that_did_not_run_fails(tmp_path: Path, tier: str) -> None:
    cases = [c for c in EVERY_TIER if f'value="{tier}"' not in c]
    done = check(tmp_path, cases)
    assert done.returncode == 1
    assert f"FAIL: no {tier} test ran" in done.stderr


def test_a_release_leg_needs_only_its_integration_tests(tmp_path: Path) -> None:
    integration = [c for c in EVERY_TIER if 'value="integration"' in c]
    assert check(tmp_path, integration, 0, "--tiers", "integration").returncode == 0
    broken = [*integration, case("tests.integration.test_d", "test_d", "integration", "failure")]
    failed = check(tmp_path, broken, 1, "--tiers", "integration")
    assert failed.returncode == 1 and "FAIL: integration: 1 failure" in failed.stderr
    none_ran = check(tmp_path, EVERY_TIER[:2], 0, "--tiers", "integration")
    assert none_ran.returncode == 1
    assert "FAIL: no integration test ran" in none_ran.stderr
    assert check(tmp_path, integration, 0, "--tiers", "bogus").returncode == 2


def test_the_contract_tiers_come_from_the_property_not_the_folder(tmp_path: Path) -> None:
    # Only contract tests: the unit and integration tiers ran, the local one did not.
    done = check(tmp_path, [c for c in EVERY_TIER if "tests.contract" in c])
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["test report: FAIL: no local test ran"]


def test_a_case_without_the_property_takes_its_folder_or_has_no_tier(tmp_path: Path) -> None:
    cases = [
        case("tests.unit.test_a", "test_a", None),
        case("tests.local.test_b", "test_b", None),
        case("tests.integration.test_c", "test_c", None),
    ]
    assert check(tmp_path, cases).returncode == 0
    done = check(tmp_path, [*cases, case("tests.contract.test_d", "test_d", None)])
    assert done.returncode == 1
    assert "FAIL: no tier: tests.contract.test_d::test_d" in done.stderr


@pytest.mark.parametrize(
    ("classname", "name", "message"),
    [
        ("tests.integration.test_c", "test_c", "needs the cluster"),
        ("tests.contract.test_slurm_adapters", "test_lists[pyslurm]", "cluster is down"),
        ("tests.contract.test_slurm_adapters", "test_lists[cli]", PYSLURM_SKIP),
        ("tests.contract.test_dumpers", "test_dump[pyslurm]", PYSLURM_SKIP),
        ("tests.unit.test_a", "test_a", "unit"),
    ],
)
def test_any_other_skip_fails(tmp_path: Path, classname: str, name: str, message: str) -> None:
    skipped = case(classname, name, "integration", "skipped", message)
    done = check(tmp_path, [*EVERY_TIER, skipped])
    assert done.returncode == 1
    assert f"FAIL: skipped: {classname}::{name}" in done.stderr


def test_failures_errors_and_pytests_exit_fail(tmp_path: Path) -> None:
    failed = case("tests.local.test_b", "test_e", "local", "failure", "boom")
    done = check(tmp_path, [*EVERY_TIER, failed], pytest_exit=1)
    assert done.returncode == 1
    assert "FAIL: local: 1 failure" in done.stderr and "pytest exited with 1" in done.stderr
    assert check(tmp_path, EVERY_TIER, pytest_exit=5).returncode == 1
    assert check(tmp_path, EVERY_TIER, pytest_exit=2).returncode == 1


def test_an_unreadable_report_fails(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text("<testsuites>")
    done = proc.run([sys.executable, CHECK, report, "--pytest-exit", "0"], timeout=30, check=False)
    assert done.returncode == 1 and "cannot read" in done.stderr


def test_a_real_report_carries_each_tests_tier(tmp_path: Path) -> None:
    # pytest itself, on a few real tests of each folder and a contract suite's fake.
    report = tmp_path / "report.xml"
    proc.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-m",
            "unit or local",
            f"--junitxml={report}",
            f"--basetemp={tmp_path / 'nested'}",
            "tests/unit/test_intervals.py",
            "tests/local/test_proc.py::test_input_reaches_stdin",
            "tests/contract/test_slurm_adapters.py::test_node_states_lists_every_node",
        ],
        timeout=120,
        cwd=REPO,
    )
    tiers = {
        (c.get("classname"), c.get("name")): tier
        for c in ET.parse(report).getroot().iter("testcase")
        for tier in [p.get("value") for p in c.iterfind("properties/property")]
    }
    assert tiers[("tests.local.test_proc", "test_input_reaches_stdin")] == "local"
    contract = ("tests.contract.test_slurm_adapters", "test_node_states_lists_every_node[fake]")
    assert tiers[contract] == "unit"
    assert {t for (cls, _), t in tiers.items() if cls == "tests.unit.test_intervals"} == {"unit"}
    done = proc.run([sys.executable, CHECK, report, "--pytest-exit", "0"], timeout=30, check=False)
    assert done.stderr.splitlines() == ["test report: FAIL: no integration test ran"]
