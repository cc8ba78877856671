"""The reliability suite: what goes wrong on a real cluster, and how nothing is lost.
Each test runs against the real cluster, CRIU and catalog, and ends by checking that
the output equals an uninterrupted run's, or that the job's state and the catalog
explain exactly what happened."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slurm_ckpt import proc
from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog, CheckpointRecord
from slurm_ckpt.db.session import open_database
from slurm_ckpt.db.states import CheckpointState, EventKind
from slurm_ckpt.store.folders import ensure_user_dir
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.verify import verify_checkpoint

from .launcher_helpers import wait_until
from .service_helpers import (
    counter_script,
    expected,
    newest_valid_seq,
    service_ctl,
    tracked,
    valid_count,
)
from .slurm_helpers import SlurmTestClient

SERVICE_DROPPED_CAPS = "cap_dac_override,cap_dac_read_search,cap_fowner"
PREFIX = Path(os.environ.get("SLURM_CKPT_PREFIX", "/opt/slurm-ckpt"))


def newest_valid(catalog: Catalog, job_id: int) -> CheckpointRecord:
    valid = catalog.valid_checkpoints(job_id)
    assert valid, "no valid checkpoint"
    return valid[0]


def test_corrupt_newest_image_falls_back_to_the_older_one(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    service_store_root: Path,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    job = cluster.submit(
        counter_script(lines=90, extra="echo $$ > main.pid\n"),
        user=test_user.pw_name,
        cwd=user_dir,
        args=["--output=job.out"],
    )
    record = tracked(service_catalog, job)
    wait_until(lambda: valid_count(service_catalog, record) >= 2, 90, "two VALID checkpoints")
    try:
        # Right after a checkpoint: flip one byte of it, then the job fails.
        seen = newest_valid(service_catalog, record.id).seq
        wait_until(
            lambda: newest_valid(service_catalog, record.id).seq > seen, 30, "a new checkpoint"
        )
        newest = newest_valid(service_catalog, record.id)
        images = JobDir(service_store_root, test_user.pw_name, job).checkpoint(newest.seq)
        pages = max(images.glob("pages-*.img"), key=lambda p: p.stat().st_size)
        with open(pages, "r+b") as f:
            f.seek(pages.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))
        os.kill(int((user_dir / "main.pid").read_text()), signal.SIGKILL)
        final = cluster.wait_for(job, {"COMPLETED"}, timeout=180, where={"Restarts": "1"})
    finally:
        cluster.cancel(job)

    assert final["ExitCode"] == "0:0"
    assert (user_dir / "counter.txt").read_text() == expected(90)
    assert (user_dir / "job.out").read_text() == expected(90)
    fell_back = wait_until(
        lambda: [e for e in service_catalog.events(record.id) if e.kind == EventKind.FELL_BACK],
        30,
        "the fallback event",
    )
    assert f"image {newest.seq}" in fell_back[0].detail
    assert "checksum" in fell_back[0].detail
    assert fell_back[0].checkpoint_seq is not None and fell_back[0].checkpoint_seq < newest.seq


@pytest.fixture
def small_store_folder(
    service_store_root: Path,
) -> Iterator[Callable[[int, pwd.struct_passwd], Path]]:
    mounted: list[Path] = []

    def mount(job_id: int, user: pwd.struct_passwd) -> Path:
        # In the user's own folder (made as slurm-ckptd makes it, if it is not there yet).
        ensure_user_dir(service_store_root, user.pw_name, user.pw_uid, user.pw_gid)
        path = JobDir(service_store_root, user.pw_name, job_id).path
        path.mkdir(mode=0o700)
        proc.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size=40m,mode=0700,uid={user.pw_uid},gid={user.pw_gid}",
                "tmpfs",
                str(path),
            ],
            timeout=30,
        )
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        proc.run(["umount", "-l", str(path)], timeout=30, check=False)


def test_full_store_fails_the_checkpoint_with_the_reason_and_nothing_else(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    service_store_root: Path,
    test_user: pwd.struct_passwd,
    user_dir: Path,
    small_store_folder: Callable[[int, pwd.struct_passwd], Path],
) -> None:
    # The job's folder is a 40 MB filesystem; after 25 s the job needs 80 MB more.
    grow = (
        "python3 -c 'import os, time; time.sleep(25); "
        "b = os.urandom(1 << 20) * 80; time.sleep(3600)' &\n"
    )
    job = cluster.submit(
        counter_script(lines=400, extra=grow),
        user=test_user.pw_name,
        cwd=user_dir,
        args=["--output=job.out", "--hold"],
    )
    small_store_folder(job, test_user)
    proc.run(["scontrol", "release", str(job)], timeout=30)
    other_dir = user_dir / "other"
    other_dir.mkdir()
    os.chown(other_dir, test_user.pw_uid, test_user.pw_gid)
    other = cluster.submit(
        counter_script(lines=400),
        user=test_user.pw_name,
        cwd=other_dir,
        args=["--output=other.out"],
    )
    try:
        record = tracked(service_catalog, job)
        wait_until(lambda: valid_count(service_catalog, record) >= 1, 60, "a VALID checkpoint")
        failed = wait_until(
            lambda: service_catalog.checkpoints(record.id, states=[CheckpointState.FAILED]),
            90,
            "a checkpoint to fail",
        )
        other_record = tracked(service_catalog, other)
        before = newest_valid_seq(service_catalog, other_record)
        wait_until(
            lambda: newest_valid_seq(service_catalog, other_record) > before,
            60,
            "the other job to be checkpointed meanwhile",
        )
        state = cluster.job(job)["JobState"]
        staging = JobDir(service_store_root, test_user.pw_name, job).staging_dir
        leftovers = list(staging.iterdir())
    finally:
        cluster.cancel(job)
        cluster.cancel(other)

    assert "space" in str(failed[0].error).lower(), failed[0].error
    assert state == "RUNNING"  # the job kept running
    for checkpoint in service_catalog.valid_checkpoints(record.id):
        verify_checkpoint(Path(str(checkpoint.store_path)), read_data=True)
    # Nothing half-written was left behind in the full filesystem.
    assert leftovers == []


def test_users_cannot_see_or_take_each_others_images(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    service_store_root: Path,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    job = cluster.submit(
        counter_script(lines=60), user=test_user.pw_name, cwd=user_dir, args=["--output=job.out"]
    )
    try:
        record = tracked(service_catalog, job)
        wait_until(lambda: valid_count(service_catalog, record) >= 1, 60, "a VALID checkpoint")
        jobdir = JobDir(service_store_root, test_user.pw_name, job)
        seq = newest_valid(service_catalog, record.id).seq

        def as_bob(*argv: str) -> proc.Completed:
            return proc.run(["runuser", "-u", "ckpt-bob", "--", *argv], timeout=30, check=False)

        # The store root is root's and 0711: bob can neither list the user names nor
        # make a folder there (another user's, ahead of their first job); alice's own
        # folder is 0700: bob can neither list it nor make a job folder in it.
        listing = as_bob("ls", str(service_store_root))
        squat = as_bob("mkdir", str(service_store_root / f"ckpt-{uuid.uuid4().hex[:8]}"))
        users = as_bob("ls", str(jobdir.user_dir))
        plant = as_bob("mkdir", str(jobdir.user_dir / str(job + 1)))
        peek = as_bob("ls", str(jobdir.path))
        steal = as_bob("cp", "-r", str(jobdir.checkpoint(seq)), "/tmp/stolen-" + uuid.uuid4().hex)
        # A request naming a path is refused by the launcher; the job goes on.
        request = {"job_id": job, "seq": 999, "path": "/etc/shadow"}
        (jobdir.path / "request.tmp").write_text(json.dumps(request))
        (jobdir.path / "request.tmp").rename(jobdir.request_file)
        proc.run(["scancel", "--signal=USR1", "--batch", str(job)], timeout=30)
        rejected = jobdir.results_dir / "rejected-request.txt"
        wait_until(rejected.exists, 30, "the request to be refused")
        state = cluster.job(job)["JobState"]
    finally:
        cluster.cancel(job)

    for attempt in (listing, squat, users, plant, peek, steal):
        assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, attempt
    assert "unknown keys: path" in rejected.read_text()
    assert state == "RUNNING"
    assert not jobdir.checkpoint(999).exists()


def test_catalog_outage_is_waited_out_without_losing_a_job(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    """The service on PostgreSQL; PostgreSQL stopped for 20 s, then started again."""
    name = f"slurm_ckpt_outage_{uuid.uuid4().hex[:8]}"
    proc.run(["runuser", "-u", "postgres", "--", "createdb", name], timeout=30)
    url = f"postgresql+psycopg://postgres@/{name}?host=/var/run/postgresql"
    migrate.upgrade(url)
    # Ports of its own (the cluster's service, stopped meanwhile, uses 9810 and 9811),
    # and root's DAC capabilities dropped, as the cluster's service runs.
    env = {
        **os.environ,
        "SLURM_CKPT_CATALOG_URL": url,
        "SLURM_CKPT_SERVICE_METRICS_PORT": "9812",
        "SLURM_CKPT_API_PORT": "9813",
    }
    service_ctl("stop-service")
    log = open(user_dir / "service.log", "wb")  # noqa: SIM115 - open for the service's life
    service = subprocess.Popen(
        ["capsh", f"--drop={SERVICE_DROPPED_CAPS}", "--", "-c", 'exec "$@"', "slurm-ckptd"]
        + [str(PREFIX / "venv/bin/slurm-ckptd")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    db = open_database(url)
    catalog = Catalog(db)
    pg_version = sorted(os.listdir("/etc/postgresql"))[-1]
    try:
        job = cluster.submit(
            counter_script(lines=120),
            user=test_user.pw_name,
            cwd=user_dir,
            args=["--output=job.out"],
        )
        record = tracked(catalog, job)
        wait_until(lambda: valid_count(catalog, record) >= 1, 60, "a VALID checkpoint")
        proc.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", pg_version, "main", "stop"], timeout=60
        )
        try:
            time.sleep(20)
            assert service.poll() is None, "the service died while the catalog was down"
        finally:
            proc.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", pg_version, "main", "start"],
                timeout=60,
            )
        after = valid_count(catalog, record)
        wait_until(lambda: valid_count(catalog, record) > after, 60, "checkpoints after the outage")
        final = cluster.wait_for(job, {"COMPLETED"}, timeout=120)
        wait_until(lambda: catalog.get_job(record.id).state == "COMPLETED", 30, "the job closed")
        left = catalog.checkpoints(record.id, states=[CheckpointState.REQUESTED])
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
        log.close()
        db.dispose()
        service_ctl("start-service")
        proc.run(
            ["runuser", "-u", "postgres", "--", "dropdb", "--if-exists", name],
            timeout=30,
            check=False,
        )

    assert final["ExitCode"] == "0:0"
    assert (user_dir / "counter.txt").read_text() == expected(120)
    output = (user_dir / "service.log").read_text()
    assert "catalog unavailable" in output  # it noticed, waited, and went on
    assert left == []


@pytest.mark.core
def test_preempted_job_takes_a_final_checkpoint_and_loses_nothing(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    service_store_root: Path,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    job = cluster.submit(
        counter_script(lines=100), user=test_user.pw_name, cwd=user_dir, args=["--output=job.out"]
    )
    node = cluster.wait_for(job, {"RUNNING"}, timeout=60)["NodeList"]
    record = tracked(service_catalog, job)
    wait_until(lambda: valid_count(service_catalog, record) >= 1, 60, "a VALID checkpoint")
    # A job of the higher-priority partition takes the whole node.
    urgent = cluster.submit(
        "#!/bin/bash\nsleep 30\n",
        user=test_user.pw_name,
        cwd=user_dir,
        args=["-p", "urgent", f"--nodelist={node}", "--exclusive", "--output=urgent.out"],
    )
    try:
        final = cluster.wait_for(job, {"COMPLETED"}, timeout=240)
    finally:
        cluster.cancel(job)
        cluster.cancel(urgent)

    assert final["ExitCode"] == "0:0"
    # Slurm 24.11 keeps the preemption's grace flag across the requeue and requeues
    # the restored run once more when it ends; the result must be the same.
    assert int(final["Restarts"]) in (1, 2), final
    assert (user_dir / "job.out").read_text() == expected(100)
    assert (user_dir / "counter.txt").read_text() == expected(100)
    # The launcher took a final checkpoint on Slurm's preemption signal, which the
    # service recorded at the number it had reserved for it...
    jobdir = JobDir(service_store_root, test_user.pw_name, job)
    finals = [c.seq for c in service_catalog.checkpoints(record.id) if c.kind == "final"]
    assert finals, [(c.seq, c.kind, c.state) for c in service_catalog.checkpoints(record.id)]
    result = json.loads(jobdir.result_file(max(finals)).read_text())
    assert result["kind"] == "final" and result["ok"], result
    # ...and the restart restored it, or one taken after it within the grace time.
    report = json.loads((jobdir.path / "restarts" / "0001.json").read_text())
    assert report["outcome"] == "restored", report
    assert report["seq"] >= max(finals), (report, finals)


@pytest.mark.timeout(900)
@pytest.mark.core
def test_walltime_chaining_runs_a_job_past_its_time_limit(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    # Two minutes of work, a one-minute time limit: three runs at least.
    job = cluster.submit(
        counter_script(lines=240),
        user=test_user.pw_name,
        cwd=user_dir,
        args=["--output=job.out", "--time=1"],
    )
    try:
        final = cluster.wait_for(job, {"COMPLETED", "TIMEOUT", "FAILED"}, timeout=600)
    finally:
        cluster.cancel(job)

    assert final["JobState"] == "COMPLETED", final
    assert int(final["Restarts"]) >= 2
    assert (user_dir / "job.out").read_text() == expected(240)
    assert (user_dir / "counter.txt").read_text() == expected(240)
    record = tracked(service_catalog, job)
    chained = [
        e
        for e in service_catalog.events(record.id)
        if e.kind == EventKind.REQUEUED and "walltime chaining" in e.detail
    ]
    assert len(chained) == int(final["Restarts"])
