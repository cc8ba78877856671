#!/usr/bin/env python3
"""Judge a pytest JUnit report: the run passes only if pytest passed, both test
tiers ran, and nothing was skipped (a skipped integration test is not a pass).

usage: check_test_report.py REPORT.xml --pytest-exit RC
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter

TIERS = ("unit", "integration")
NO_TESTS_COLLECTED = 5


def tier_of(classname: str) -> str:
    parts = classname.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "tests" else "other"


def outcome_of(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("report")
    parser.add_argument("--pytest-exit", type=int, required=True)
    args = parser.parse_args()

    if args.pytest_exit == NO_TESTS_COLLECTED:
        print("test report: pytest collected no tests", file=sys.stderr)
        return 1
    try:
        cases = ET.parse(args.report).getroot().iter("testcase")
    except (OSError, ET.ParseError) as exc:
        print(f"test report: cannot read {args.report}: {exc}", file=sys.stderr)
        return 1

    counts: Counter[tuple[str, str]] = Counter()
    skipped: list[str] = []
    for case in cases:
        tier, outcome = tier_of(case.get("classname", "")), outcome_of(case)
        counts[tier, outcome] += 1
        if outcome == "skipped":
            skipped.append(f"{case.get('classname')}::{case.get('name')}")

    for tier in TIERS:
        summary = ", ".join(
            f"{counts[tier, o]} {o}" for o in ("passed", "failure", "error", "skipped")
        )
        print(f"test report: {tier}: {summary}")

    problems = [f"no {tier} test ran" for tier in TIERS if counts[tier, "passed"] == 0]
    problems += [f"skipped: {name}" for name in skipped]
    if args.pytest_exit != 0:
        problems.append(f"pytest exited with {args.pytest_exit}")
    for problem in problems:
        print(f"test report: FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
