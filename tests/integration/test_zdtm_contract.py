"""CRIU's own test suite as the contract of transparency: every static zdtm test that
plain unprivileged CRIU checkpoints and restores here must pass through the launcher's
whole path too (request, dump, SIGKILL of the tree, restart, restore, the test's own
verdict). The run writes its table to docs/zdtm.md."""

from __future__ import annotations

import json
from pathlib import Path

from slurm_ckpt import proc

from .slurm_helpers import REPO

CONTRACT = REPO / "scripts" / "zdtm" / "contract.py"
TABLE = REPO / "docs" / "zdtm.md"
PYTHON = REPO / ".venv" / "bin" / "python"


def test_the_launcher_passes_every_zdtm_test_plain_criu_passes(
    root: None, criu_unpriv: Path, tmp_path: Path
) -> None:
    results = tmp_path / "zdtm.json"
    done = proc.run(
        [str(PYTHON), str(CONTRACT), "--json", str(results), "--markdown", str(TABLE), "--clean"],
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(results.read_text())
    rows = {row["test"]: row for row in doc["results"]}
    assert len(rows) >= 100, f"only {len(rows)} tests ran: is scripts/zdtm/tests.txt whole?"
    plain = {name for name, row in rows.items() if row["plain"]["status"] == "PASS"}
    launcher = {name for name, row in rows.items() if row["launcher"]["status"] == "PASS"}
    assert len(plain) >= 100, doc["meta"]["counts"]
    missing = {name: rows[name]["launcher"]["reason"] for name in sorted(plain - launcher)}
    assert not missing, f"plain CRIU passes, the launcher does not: {missing}"
    print(f"zdtm contract: plain {len(plain)}, launcher {len(launcher)} of {len(rows)}")
