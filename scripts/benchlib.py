"""What every benchmark script shares: the `--json` option and the results file.

Each benchmark prints a table for the person running it and, with `--json PATH`,
writes its numbers and the machine they were measured on to PATH.
`scripts/bench_report.py` turns those files into docs/benchmarks.md, so the
page never holds a number that no run produced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The Slurm the set-up selected (SLURM_RELEASE, scripts/slurm.sh) answers every
# command a benchmark runs, as under make's targets.
_SLURM = Path(os.environ.get("SLURM_CKPT_PREFIX", "/opt/slurm-ckpt")) / "slurm" / "current"
os.environ["PATH"] = f"{_SLURM}/bin:{_SLURM}/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}"


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write the results to PATH"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    """The conditions a number was measured under: the page shows them beside it."""
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_1min": round(os.getloadavg()[0], 2),
    }


def write_results(path: Path | None, name: str, params: dict[str, Any], results: Any) -> None:
    """Write one benchmark's results with when, where and from which commit."""
    if path is None:
        return
    document = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": machine(),
        "params": params,
        "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    print(f"results written to {path}")


def main(argv: list[str]) -> int:
    """`benchlib.py wrap NAME RAW OUT`: give a test's raw numbers the machine and commit."""
    if len(argv) != 5 or argv[1] != "wrap":
        print("usage: benchlib.py wrap NAME RAW.json OUT.json", file=sys.stderr)
        return 2
    raw = json.loads(Path(argv[3]).read_text())
    write_results(Path(argv[4]), argv[2], raw["params"], raw["results"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
