#!/usr/bin/env python3
"""Judge a pytest JUnit report: the run passes only if pytest passed, every test
tier ran and passed, and nothing was skipped (a skipped integration test is not a
pass) but the one allowed skip: the pyslurm adapter's contract tests where
pyslurm does not import.

A test's tier is the "tier" property tests/conftest.py writes into the report
(the contract suites' backends carry their own tier, so the folder alone cannot
say); a case without it, a collection error say, takes its folder's under tests/.

usage: check_test_report.py REPORT.xml --pytest-exit RC [--tiers T,...]

--tiers names the tiers that must have run (all three by default; a release
leg of make test runs only integration tests).
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter

TIERS = ("unit", "local", "integration")
NO_TESTS_COLLECTED = 5
# The pyslurm parameters of the Slurm adapter contract, skipped with their import error.
ALLOWED_SKIP = re.compile(r"tests\.contract\.test_slurm_adapters::test_\w+\[pyslurm\]")
ALLOWED_SKIP_REASON = "pyslurm does not import: "


def tier_of(case: ET.Element) -> str:
    for prop in case.iterfind("properties/property"):
        if prop.get("name") == "tier":
            return prop.get("value") or "other"
    parts = case.get("classname", "").split(".")
    if len(parts) > 1 and parts[0] == "tests" and parts[1] in TIERS:
        return parts[1]
    return "other"


def outcome_of(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def case_id(case: ET.Element) -> str:
    return f"{case.get('classname')}::{case.get('name')}"


def allowed_skip(case: ET.Element) -> bool:
    skipped = case.find("skipped")
    return (
        skipped is not None
        and ALLOWED_SKIP.fullmatch(case_id(case)) is not None
        and skipped.get("message", "").startswith(ALLOWED_SKIP_REASON)
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("report")
    parser.add_argument("--pytest-exit", type=int, required=True)
    parser.add_argument("--tiers", default=",".join(TIERS), help="tiers that must have run")
    args = parser.parse_args()
    required = tuple(t for t in args.tiers.split(",") if t)
    unknown = [t for t in required if t not in TIERS]
    if not required or unknown:
        parser.error(f"--tiers: choose among {', '.join(TIERS)}")

    if args.pytest_exit == NO_TESTS_COLLECTED:
        print("test report: pytest collected no tests", file=sys.stderr)
        return 1
    try:
        cases = list(ET.parse(args.report).getroot().iter("testcase"))
    except (OSError, ET.ParseError) as exc:
        print(f"test report: cannot read {args.report}: {exc}", file=sys.stderr)
        return 1

    counts: Counter[tuple[str, str]] = Counter()
    problems: list[str] = []
    allowed: list[str] = []
    for case in cases:
        tier, outcome = tier_of(case), outcome_of(case)
        counts[tier, outcome] += 1
        if tier not in TIERS:
            problems.append(f"no tier: {case_id(case)}")
        if outcome == "skipped":
            if allowed_skip(case):
                allowed.append(case_id(case))
            else:
                problems.append(f"skipped: {case_id(case)}")

    for tier in TIERS:
        summary = ", ".join(
            f"{counts[tier, o]} {o}" for o in ("passed", "failure", "error", "skipped")
        )
        print(f"test report: {tier}: {summary}")
    if allowed:
        print(f"test report: {len(allowed)} allowed skips (pyslurm does not import here)")

    missing = [f"no {tier} test ran" for tier in required if counts[tier, "passed"] == 0]
    problems = missing + problems
    problems += [
        f"{tier}: {counts[tier, o]} {o}"
        for tier in TIERS
        for o in ("failure", "error")
        if counts[tier, o]
    ]
    if args.pytest_exit != 0:
        problems.append(f"pytest exited with {args.pytest_exit}")
    for problem in problems:
        print(f"test report: FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
