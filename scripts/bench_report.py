#!/usr/bin/env python3
"""Write docs/benchmarks.md from the benchmarks' results files.

    .venv/bin/python scripts/bench_report.py [RESULTS_DIR] [PAGE]

RESULTS_DIR (default docs/bench-results) holds what `make bench` measured, one
JSON file per benchmark (written with `--json` by each bench_*.py, see
benchlib.py). Every number and every "met"/"not met" on the page is computed
here from those files; the prose around them says what was measured and why.
A missing results file leaves its section saying which target measures it.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib

Doc = dict[str, Any]

# The targets the product set itself (issues and docs/architecture.md).
CHECKPOINT_RATIO = 1.3  # launcher checkpoint / plain CRIU dump
RESTORE_RATIO = 1.2  # launcher restore / plain CRIU restore
SUMMARY_S = 0.5  # list-jobs summary of 10,000 jobs on PostgreSQL
SYNC_CPU_S = 1.0  # one sync of 10,000 jobs
DELAY_P99_S = 2.0  # schedule delay, jitter excluded
RSS_MIB = 300.0  # service memory at 10,000 jobs


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def measured_on(doc: Doc) -> str:
    m = doc["machine"]
    return (
        f"Measured {doc['measured_at']} at commit `{doc['commit']}` on {m['cpu']} "
        f"({m['cores']} cores, {m['memory_gib']} GiB), kernel {m['kernel']}, "
        f"Python {m['python']}, load average {m['load_1min']} at the start."
    )


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def cells(row: Doc, spec: list[tuple[str, int]]) -> list[str]:
    """The row's values under `spec`'s keys, each with its number of digits."""
    return [s(row[key], digits) for key, digits in spec]


# -- sections ------------------------------------------------------------------


def checksum(doc: Doc) -> str:
    p, r = doc["params"], doc["results"]
    gib = p["size_mib"] / 1024
    rows = [
        [
            row["name"],
            s(row["warm_s"], 3),
            s(gib / row["warm_s"], 1),
            s(row["cold_s"], 3),
            "-" if row["cold_s"] is None else s(gib / row["cold_s"], 2),
        ]
        for row in r["rows"]
    ]
    warm = {row["name"]: row["warm_s"] / gib for row in r["rows"]}
    per_gib = ", ".join(
        f"{name} {warm[name]:.2f} s" for name in ("xxh3_128", "sha256", "blake2b") if name in warm
    )
    return f"""## Checksum

`scripts/bench_checksum.py` (`make bench-checksum`): a file of {p["size_mib"]} MiB of
random bytes, {p["chunk_mib"]} MiB reads, median of {p["repeat"]} runs; "warm" with the
file in the page cache (the case right after a dump), "cold" after evicting it
with `posix_fadvise(DONTNEED)` (the case of `verify` on an older image).
xxhash {r["xxhash"] or "not installed"}. {measured_on(doc)}

{table(["algorithm", "warm s", "warm GiB/s", "cold s", "cold GiB/s"], rows)}

Shipped: **{r["shipped"]}**. The budget is "hashing must not more than double
a checkpoint's time". Right after a dump the image is in the page cache, where
hashing costs per GiB: {per_gib}. Cold, the disk bounds every fast algorithm.
The checksum detects corruption (torn writes, bit rot, truncation), not
tampering: the image folder belongs to the job's user, who could rewrite a
cryptographic hash as easily as the image, so a cryptographic hash would buy
nothing. The algorithm's name is recorded in every manifest
(`checksum_algorithm`), so a later change stays readable.
"""


def jobfs(doc: Doc) -> str:
    p, r = doc["params"], doc["results"]
    per_op = {row["name"]: row["per_op_us"] for row in r["rows"]}
    rows = [[name, f"{us:.0f}"] for name, us in per_op.items()]
    shipped = per_op["thread per operation"]
    return f"""## Acting in a job's folder as its owner

`scripts/bench_jobfs.py` (`make bench-jobfs`): one operation ({p["operation"]},
through the hostile reader) repeated {p["ops"]} times, median of 5 rounds, the
three ways side by side in one run. {measured_on(doc)}

{table(["how", "µs per operation"], rows)}

Shipped: **thread per operation** (`store/jobfs.py`), {shipped:.0f} µs. The service
does about five such operations per checkpoint and none per tracked job and
poll, so even at the admission cap this is far below a percent of a core, and
the 10,000-job service benchmark above stays within its targets. A worker
process per user answers faster, but it is a long-lived process running as the
user, who may ptrace it, stop it or kill it (and so make the service wait on,
or believe, whatever it says); one stuck folder would stall all of that user's
jobs, and a site with 10,000 users would hold as many processes. A thread per
operation holds nothing between operations, and a stuck one costs one thread
of one job (quarantined, see docs/security.md).
"""


def files(doc: Doc) -> str:
    p = doc["params"]
    # The order of the page: the shipped way's two phases, the alternatives, the baselines.
    order = ["changed blocks, frozen", "fill, running", "whole copy, frozen", "checksum only"]
    order += ["dd bs=1M", "plain criu dump"]
    names = [n for n in order if n in doc["results"][0]["seconds"]]
    rows = [
        [f"{r['mib']} MiB", f"{r['block_bytes'] >> 20} MiB", f"{r['changed_bytes'] >> 20} MiB"]
        + [f"{r['seconds'][n]:.3f}" for n in names]
        + [f"{r['ratio_whole_to_dd']:.2f}", f"{r['ratio_changed_to_criu']:.2f}"]
        for r in doc["results"]
    ]
    head = ["file", "block", "changed", *(f"{n} s" for n in names)]
    return f"""## Keeping data files exact

`scripts/bench_files.py` (`make bench-files`): a file held open for writing,
{p["changed_fraction"]:.0%} of its blocks overwritten in place between two
checkpoints, median of {p["rounds"]} rounds, everything in one run. "frozen" rows
add to the time the job is stopped; "fill, running" happens after it runs again;
plain CRIU copies no file, so its dump is the freeze without them. {measured_on(doc)}

{table([*head, "whole / dd", "changed / criu"], rows)}

Shipped (`launcher/filesaver.py`): **changed blocks**. Each checkpoint reads and
hashes every block of each writable file while the tree is frozen, writes the
changed ones, and fills the rest from the previous image's copy once the tree
runs again, so every image holds a whole copy (retention may delete any older
one) and the freeze grows with the file's size read from the page cache, not
with a second write of it. The first checkpoint of a file copies it whole
(about `dd`'s time). Files over `launcher.copy_max_bytes` (1 GiB) keep only a
content checksum: cheapest, but a restore must refuse the image once the job
changed the file in place. Reflinks (FICLONE) would make the copy free on XFS
or btrfs; the store here is ext4, which has none, and the job's files and the
store are rarely on one filesystem, which reflinks need.
"""


def dump(doc: Doc) -> str:
    rows, verdicts, overhead = [], [], []
    for r in doc["results"]:
        lc, cd, cs = r["launcher_checkpoint_s"], r["criu_dump_s"], r["criu_dump_sync_s"]
        lr, cr = r["launcher_restore_s"], r["criu_restore_s"]
        rows.append(
            [
                f"{r['mib']} MiB",
                f"{r['image_bytes'] / 2**20:.0f} MiB",
                f"{lc:.2f} s",
                f"{cd:.2f} s",
                f"{cs:.2f} s",
                f"{lc / cd:.2f}x / {lc / cs:.2f}x",
                f"{r['dd_fsync_s']:.2f} s",
                f"{lr:.2f} s",
                f"{cr:.2f} s",
                f"{lr / cr:.2f}x",
            ]
        )
        verdicts.append(
            f"- {r['mib']} MiB: checkpoint {lc / cd:.2f}x a plain CRIU dump "
            f"({met(lc / cd <= CHECKPOINT_RATIO)}), {lc / cs:.2f}x a dump made as durable "
            f"({met(lc / cs <= CHECKPOINT_RATIO)}); restore {lr / cr:.2f}x "
            f"({met(lr / cr <= RESTORE_RATIO)})."
        )
        overhead.append(
            f"{r['mib']} MiB: the dump took {r['launcher_dump_s']:.2f} s (frozen "
            f"{r['launcher_frozen_s']:.2f} s) of a {lc:.2f} s checkpoint; verify, roll-back "
            f"and CRIU's restore {r['launcher_criu_restore_s']:.2f} s of a {lr:.2f} s restore"
        )
    head = [
        "workload",
        "image",
        "launcher checkpoint",
        "criu dump",
        "criu dump + sync",
        "ratio (plain / + sync)",
        "dd + fsync",
        "launcher restore",
        "criu restore",
        "ratio",
    ]
    p = doc["params"]
    criu = p["criu"].removeprefix("Version:").strip()
    return f"""## Checkpoint and restore

`scripts/bench_dump.py` (`make bench-dump`), as the test user, on workloads of
resident, incompressible memory (one Python process), median of {p["repeat"]},
images in `{p["dir"]}`, `sync` before each timed step; CRIU {criu}.
{measured_on(doc)}

- launcher checkpoint: SIGUSR1 with a request file to the launcher, until its
  result file exists: CRIU dump through `criu swrk` (`--leave-running`,
  unprivileged), open files recorded while frozen, every file hashed, fsynced,
  manifest written, folder renamed into place;
- launcher restore: a new launcher with `SLURM_RESTART_COUNT=1`, until its
  restart report exists: Python start-up, full re-hash of the image,
  credential check from the CRIU images, roll-back, `criu restore`;
- plain CRIU: `criu-unpriv dump --leave-running` and `criu-unpriv restore -d`
  on the same workload, and the same dump followed by `sync -f` (an image as
  durable as the launcher's);
- `dd` writing as many bytes with `conv=fsync` (the disk's own speed).

{table(head, rows)}

Targets: a checkpoint within {CHECKPOINT_RATIO}x of plain CRIU, a restore within
{RESTORE_RATIO}x.

{chr(10).join(verdicts)}

Inside the launcher ({"; ".join(overhead)}). The rest of a checkpoint is
hashing and fsync: an image that is not on disk must not be marked VALID, so
the fsync stays even where a plain dump's pages may still sit in the page
cache. What a restore adds to CRIU's is mostly fixed: starting Python,
importing pycriu's image readers, and reading every byte of the image again
to verify it, which is what detects a corrupt image and falls back to an
older one. A restore
happens once per requeue, after Slurm has spent seconds to minutes noticing
the failure (next section).

Incremental dumps (pre-dump with memory dirty tracking and parent images)
would cut the checkpoint of a mostly idle job to its changed pages; they need
the kernel's soft-dirty tracking (`criu check --feature mem_dirty_track`),
which this kernel lacks, so every checkpoint is a full dump.
"""


def recovery(doc: Doc) -> str:
    rows, p = doc["results"], doc["params"]

    def col(key: str) -> list[float]:
        return [float(r[key]) for r in rows]

    def stats(key: str, digits: int = 1) -> list[str]:
        values = col(key)
        return [
            s(statistics.median(values), digits),
            s(min(values), digits),
            s(max(values), digits),
        ]

    steps = [
        ("Slurm: the node DOWN", "node_down_s", 1),
        ("Slurm: the job requeued", "requeued_s", 1),
        ("Slurm: the launcher started on the other node", "launched_s", 1),
        ("ours: the launcher's start to the job restored", "ours_s", 2),
        ("ours: of which verify, roll back and CRIU restore", "restore_s", 2),
        ("the job working again", "restored_s", 1),
        ("work lost (done after the restored image, done again)", "lost_work_s", 1),
    ]
    summary = table(
        ["step", "median s", "min s", "max s"],
        [[name, *stats(key, digits)] for name, key, digits in steps],
    )
    per_round = table(
        ["round", "DOWN", "requeued", "launcher started", "restored", "ours", "lost work", "image"],
        [
            [
                str(i + 1),
                *cells(r, [(k, 1) for k in ("node_down_s", "requeued_s", "launched_s")]),
                *cells(r, [("restored_s", 1), ("ours_s", 2), ("lost_work_s", 1)]),
                f"{r['image_bytes'] / 1024:.0f} KiB",
            ]
            for i, r in enumerate(rows)
        ],
    )
    total = statistics.median(col("restored_s"))
    ours = statistics.median(col("ours_s"))
    slurm = statistics.median(col("launched_s"))
    lost = statistics.mean(col("lost_work_s"))
    return f"""## Node failure to running again, and the work lost

`scripts/bench_recovery.py` (`make bench-recovery`) on the local cluster with
slurm-ckptd: one job with `--checkpoint={p["interval_s"]}s` counts in steps of
{p["step_s"]} s; {p["rounds"]} times, at a random moment after a checkpoint of its
current run, its node is killed (slurmd, slurmstepd and the job, as in a power
loss) and the bench times each step from the kill. Afterwards the job must end
COMPLETED with the output of an uninterrupted run (it did, or the bench would
have failed). Cluster settings: `SlurmdTimeout={p.get("SlurmdTimeout", "?")}`,
`MessageTimeout={p.get("MessageTimeout", "?")}`, `AuthInfo={p.get("AuthInfo", "?")}`.
{measured_on(doc)}

{summary}

Per round (seconds after the kill):

{per_round}

Of the {total:.1f} s from the kill to the job working again, Slurm takes
{slurm:.1f} s (median): noticing the node is gone (`SlurmdTimeout`), requeuing,
and holding the requeued job back for the credential lifetime
(`cred_expire`), and starting the batch step; ours is {ours:.2f} s, from the
launcher's start to the restored process working (the interpreter's
start-up, verifying the image, rolling back the output files, CRIU's
restore), as the launcher's restart report records it. On a production cluster
(`SlurmdTimeout=300` by default) Slurm's share is minutes.

The work lost is measured from the moment the restored image was taken (its
dump and commit counted as lost: an upper bound) to the kill: {lost:.1f} s on
average with a {p["interval_s"]} s interval. A kill at a random moment loses on
average half an interval plus the time a checkpoint takes; a shorter interval
loses less and costs more dumps (previous section).
"""


def catalog(doc: Doc) -> str:
    p, dbs = doc["params"], doc["results"]
    rows = [
        [
            r["version"],
            *cells(r, [("summary_cold_s", 3), ("summary_median_s", 3), ("summary_max_s", 3)]),
            *cells(r, [("newest_valid_median_ms", 2), ("newest_valid_p95_ms", 2), ("fill_s", 1)]),
        ]
        for r in dbs.values()
    ]
    pg = dbs.get("postgresql")
    verdict = (
        f"Target: the summary of {p['jobs']:,} jobs in under {SUMMARY_S} s on PostgreSQL: "
        f"{met(pg['summary_max_s'] < SUMMARY_S)} (worst timed run {pg['summary_max_s']:.3f} s)."
        if pg
        else "PostgreSQL was not measured in this run."
    )
    head = [
        "database",
        "summary: cold s",
        "median s",
        "max s",
        "newest valid: median ms",
        "p95 ms",
        "fill s",
    ]
    return f"""## Catalog

`scripts/bench_catalog.py` (`make bench-catalog`): a fresh catalog per database,
migrated with the project's migrations, filled with {p["jobs"]:,} running jobs and
{p["per_job"]} checkpoints each ({p["jobs"] * p["per_job"]:,} rows: per job mostly
DELETED, one FAILED, a few VALID, a REQUESTED newest for one job in ten), then
`ANALYZE`. Timed through the public `Catalog` API, as the service and
`ckpt-admin` call it (a transaction, the query, turning rows into records):

- summary: `job_summaries()`, every job with its last valid checkpoint time,
  number valid, their bytes and restarts, in one query; one untimed warm-up,
  then the first timed run ("cold") and the median and maximum of
  {p["repeat"]} more;
- newest valid: `newest_valid(job)` for {p["lookups"]:,} random jobs, one
  transaction per lookup.

PostgreSQL over local TCP with default server settings (a database with a
random name, dropped afterwards); SQLite in WAL mode, a file in /tmp;
SQLAlchemy {p["sqlalchemy"]}. {measured_on(doc)}

{table(head, rows)}

{verdict} The summary's cost is mostly per-row Python work (UTC datetimes,
enums, records), so it grows linearly with the number of jobs; the
newest-valid lookup reads the index `ix_checkpoints_job_id_state_seq`.
"""


def service(doc: Doc) -> str:
    p, r = doc["params"], doc["results"]
    rows = [
        [
            "first sync (tracks every job)",
            f"{r['first_sync_cpu_s']:.2f} s CPU, {r['first_sync_wall_s']:.2f} s wall",
            "",
        ],
        [
            "steady sync, median of 5",
            f"{r['steady_sync_cpu_s']:.2f} s CPU, {r['steady_sync_wall_s']:.2f} s wall",
            f"under {SYNC_CPU_S:.0f} s CPU: {met(r['steady_sync_cpu_s'] < SYNC_CPU_S)}",
        ],
        ["checkpoints due in the run / started", f"{r['due']} / {r['started']}", ""],
        [
            "schedule delay p50 / p99 / max",
            f"{s(r['delay_p50_s'])} / {s(r['delay_p99_s'])} / {s(r['delay_max_s'])} s",
            f"p99 under {DELAY_P99_S:.0f} s: "
            + met(r["delay_p99_s"] is not None and r["delay_p99_s"] < DELAY_P99_S),
        ],
        ["service CPU during the run", f"{r['cpu_fraction'] * 100:.0f} % of one core", ""],
        [
            "resident memory (max)",
            f"{r['max_rss_mib']:.0f} MiB",
            f"under {RSS_MIB:.0f} MiB: {met(r['max_rss_mib'] < RSS_MIB)}",
        ],
    ]
    per_job_us = r["steady_sync_cpu_s"] / p["jobs"] * 1e6
    return f"""## The service at {p["jobs"]:,} jobs

`scripts/bench_service.py` (`make bench-service`): slurm-ckptd's own code (sync,
per-job schedules, admission, request -> result, retention) with the real
APScheduler and a real SQLite catalog, against a fake Slurm holding
{p["jobs"]:,} running jobs and the fake dump backend playing the launcher (it
commits a small image through the real store code: hashing, manifest, fsync,
rename). Every job has a {p["interval_s"] // 60}-minute interval; their due times
are spread so that {p["due_per_second"]:g} fall due per second during a
{p["seconds"]:.0f} s run. The first sync tracks every job in one transaction and
schedules it; the steady ones change nothing. The schedule delay is measured
by the service itself (`slurm_ckpt_schedule_delay_seconds`): from the time a
checkpoint was due (its jitter included) to the request being sent.
{measured_on(doc)}

{table(["measure", "value", "target"], rows)}

A sync costs about {per_job_us:.0f} µs of CPU per job, mostly turning Slurm's
answer and the catalog rows into records. A request that admission refuses
(too many checkpoints in flight, cluster-wide or into one store) waits in a
queue: each completed checkpoint, seen by the collect task four times a
second, hands its slot at once to the job waiting longest, and a retry every
second covers the rest; the delay's tail is that wait.
"""


def load(doc: Doc) -> str:
    p, r = doc["params"], doc["results"]
    rows = [
        [
            "checkpoints per job",
            f"{r['min_checkpoints']}"
            + (f"-{r['max_checkpoints']}" if r["max_checkpoints"] != r["min_checkpoints"] else ""),
        ],
        [
            "longest gap between two checkpoints of a job",
            f"{r['worst_gap_s']:.1f} s (bound {r['gap_bound_s']:.1f} s)",
        ],
        [
            "checkpoints in flight at once (peak)",
            f"{r['peak_in_flight']:.0f} (cap {r['cap']}, per store {r['per_store_cap']})",
        ],
        ["failed checkpoints (each with its reason)", str(r["failed"])],
        *(["reason", f"`{reason}`".replace("|", "\\|")] for reason in r.get("failed_reasons", [])),
        ["service CPU", f"{r['cpu_fraction'] * 100:.1f} % of one core"],
        ["service resident memory", f"{r['rss_mib']:.0f} MiB"],
    ]
    return f"""## Load on the local cluster

`tests/integration/test_load.py` (part of `make test` for 2 minutes; `make
bench-load` runs it alone for 5 and keeps its numbers): {p["jobs"]} checkpointed
jobs running at once on the two local nodes, `--checkpoint={p["interval_s"]}s`,
for {p["run_s"]} s, with the real
service, launcher and CRIU. The test fails when a job's gap exceeds the bound
(interval, jitter and admission), when in-flight checkpoints exceed the cap,
or when a failed checkpoint has no reason. {measured_on(doc)}

{table(["measure", "value"], rows)}
"""


def recovery_by_release(docs: list[Doc]) -> str:
    """Medians of `make bench-recovery` on each Slurm release (recovery*.json)."""
    keys = [
        ("node_down_s", 1),
        ("requeued_s", 1),
        ("launched_s", 1),
        ("ours_s", 2),
        ("restored_s", 1),
        ("lost_work_s", 1),
    ]
    rows = [
        [
            str(doc["params"].get("slurm", "?")),
            str(len(doc["results"])),
            *[s(statistics.median(float(r[k]) for r in doc["results"]), d) for k, d in keys],
            doc["measured_at"][:10],
        ]
        for doc in sorted(docs, key=lambda d: str(d["params"].get("slurm", "")))
    ]
    head = ["Slurm", "rounds", "DOWN", "requeued", "launcher started", "ours", "working again"]
    return f"""## Node failure to running again, by Slurm release

`make bench-recovery` on each release (`make bench-recovery-releases` for the
others, `docs/bench-results/recovery-slurm-<release>.json`): the medians of its
rounds, seconds after the kill. 25.11 and later hold a requeued job back for
`requeue_delay` as well as the credential lifetime (`cred_expire`, 10 s here).

{table([*head, "lost work", "measured"], rows)}
"""


SECTIONS: list[tuple[str, str, Callable[[Doc], str]]] = [
    ("dump", "make bench-dump", dump),
    ("recovery", "make bench-recovery", recovery),
    ("service", "make bench-service", service),
    ("catalog", "make bench-catalog", catalog),
    ("load", "make bench-load", load),
    ("checksum", "make bench-checksum", checksum),
    ("jobfs", "make bench-jobfs", jobfs),
    ("files", "make bench-files", files),
]


def render(results: Path) -> str:
    shown = results.relative_to(benchlib.REPO) if results.is_relative_to(benchlib.REPO) else results
    parts = [
        "# Benchmarks\n\n"
        "Written by `make bench` (`scripts/bench_report.py`) from the results in\n"
        f"`{shown}/`, one file per benchmark: edit the script, not this page.\n"
        "Each section names the script that measures it, the commit and the machine.\n"
        "`make bench-report` rewrites the page from the files without measuring again.\n"
    ]
    for name, target, section in SECTIONS:
        path = results / f"{name}.json"
        if path.exists():
            parts.append(section(json.loads(path.read_text())))
        else:
            parts.append(f"## {name}\n\nNot measured yet: run `{target}`.\n")
        if name == "recovery":
            releases = sorted(results.glob("recovery-slurm-*.json"))
            if releases:
                docs = [json.loads(f.read_text()) for f in [path, *releases] if f.exists()]
                parts.append(recovery_by_release(docs))
            else:
                parts.append(
                    "## Node failure to running again, by Slurm release\n\n"
                    "Not measured yet: run `make bench-recovery-releases`.\n"
                )
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    results = Path(argv[1]) if len(argv) > 1 else benchlib.REPO / "docs" / "bench-results"
    page = Path(argv[2]) if len(argv) > 2 else benchlib.REPO / "docs" / "benchmarks.md"
    if not results.is_dir():
        print(f"bench-report: {results} does not exist: run make bench first", file=sys.stderr)
        return 2
    page.write_text(render(results))
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
