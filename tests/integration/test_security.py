"""Attacks on the trust boundary (issue 13), on the real cluster.

In each test the ordinary user ckpt-bob is the attacker, acting only through his own
`--checkpoint=10s` job and his own files; ckpt-alice's checkpointed job and her files
are the victim. Each test ends by checking that nothing was deleted, read or changed
that bob could not delete, read or change himself, that alice's job still got VALID
checkpoints on schedule, and that slurm-ckptd is alive (same pid) and healthy.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slurm_ckpt import proc
from slurm_ckpt.db.catalog import Catalog, CheckpointRecord, EventRecord
from slurm_ckpt.db.models import Checkpoint
from slurm_ckpt.db.states import CheckpointState, EventKind

from .launcher_helpers import wait_until
from .security_helpers import (
    ALICE,
    BOB,
    RESTART_REPORT,
    Attacker,
    Sampler,
    ServiceCheck,
    Victim,
    admin,
    as_user,
    bob_script,
    control_characters,
    json_of,
    remove_folder,
    root_canary_and_guard,
    service_pid,
    start_victim,
    unblock_fifo,
    user_folder,
    watch_while,
    xxh3_checksum,
)
from .slurm_helpers import SlurmTestClient

pytestmark = pytest.mark.integration

RESTART_OUTCOMES = {
    EventKind.RESTORED,
    EventKind.FELL_BACK,
    EventKind.FRESH_START,
    EventKind.RESTORE_FAILED,
}
# Long enough that a stalled sync shows on /healthz (it answers 503 once the last sync is
# older than three polls and 5 s: 11 s here).
HOLD = 14.0


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def victim(
    cluster: SlurmTestClient, service_catalog: Catalog, service_store_root: Path
) -> Iterator[Victim]:
    """alice's job for the whole module (20 minutes of work), with her canaries."""
    folder = user_folder(ALICE)
    alice = start_victim(cluster, service_catalog, service_store_root, folder)
    try:
        alice.wait_valid(1, timeout=60)
        yield alice
    finally:
        cluster.cancel(alice.job)
        remove_folder(folder)


@pytest.fixture
def fresh_victim(
    cluster: SlurmTestClient, service_catalog: Catalog, service_store_root: Path
) -> Iterator[Callable[[], Victim]]:
    """alice's job started by the test itself (when the attack needs her seq numbers low)."""
    folder = user_folder(ALICE)
    started: list[Victim] = []

    def start() -> Victim:
        alice = start_victim(cluster, service_catalog, service_store_root, folder)
        started.append(alice)
        return alice

    yield start
    for alice in started:
        cluster.cancel(alice.job)
    remove_folder(folder)


@pytest.fixture
def bob(
    cluster: SlurmTestClient, service_catalog: Catalog, service_store_root: Path
) -> Iterator[Attacker]:
    attacker = Attacker(cluster, service_catalog, service_store_root, user_folder(BOB))
    attacker.install()
    try:
        yield attacker
    finally:
        attacker.cancel_all()
        for job in attacker.jobs:
            # What bob planted stays hostile: his job folder goes (as him), swapped or not.
            jobdir = attacker.jobdir(job)
            attacker.run("rm", "-rf", str(jobdir), f"{jobdir}.away", check=False, timeout=60)
        remove_folder(attacker.folder)


@pytest.fixture
def service(cluster: SlurmTestClient) -> ServiceCheck:
    check = ServiceCheck(service_pid())
    check.assert_alive_and_healthy()  # before the attack: else an earlier test broke it
    return check


# -- shared steps --------------------------------------------------------------------------


def assert_unharmed(
    victim: Victim, snapshot: dict[int, dict[str, str]], service: ServiceCheck, since: int
) -> None:
    """The end of every attack: alice's files and images as they were, her job checkpointed
    again after `since`, the service alive and healthy."""
    victim.assert_canaries()
    victim.assert_intact(snapshot)
    victim.wait_grows(since, timeout=30)
    victim.assert_intact(snapshot)
    service.assert_alive_and_healthy()


def checkpoint_of(catalog: Catalog, job_id: int, seq: int) -> CheckpointRecord | None:
    return next((c for c in catalog.checkpoints(job_id) if c.seq == seq), None)


def settled(catalog: Catalog, job_id: int, seq: int, timeout: float) -> CheckpointRecord | None:
    """The checkpoint once it is no longer REQUESTED (None if it still is after `timeout`)."""
    try:
        return wait_until(
            lambda: (
                (c := checkpoint_of(catalog, job_id, seq)) is not None
                and c.state != CheckpointState.REQUESTED
                and c
            ),
            timeout,
            f"checkpoint {seq} to complete",
        )
    except AssertionError:
        return None


def restart_events(catalog: Catalog, job_id: int) -> list[EventRecord]:
    return [e for e in catalog.events(job_id) if e.kind in RESTART_OUTCOMES]


def bob_newest(catalog: Catalog, job_id: int) -> int:
    newest = catalog.newest_valid(job_id)
    return newest.seq if newest is not None else 0


# -- 1. staging/ (or the job folder) swapped for a symlink, then the job stops ----------------


@pytest.mark.parametrize(
    ("target", "ending"),
    [
        ("alice-folder", "ends"),
        ("alice-job-checkpoints", "cancelled"),
        ("store-root", "ends"),
        ("state-dir", "cancelled"),
        ("job-folder-to-alice-folder", "ends"),
    ],
)
def test_staging_symlink_deletes_nothing_of_others_when_the_job_stops(
    target: str,
    ending: str,
    victim: Victim,
    bob: Attacker,
    service: ServiceCheck,
    service_catalog: Catalog,
    service_store_root: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        root_canary = None
        if target == "store-root":
            root_canary = stack.enter_context(root_canary_and_guard(service_store_root))
            link = str(service_store_root)
        elif target == "state-dir":
            root_canary = stack.enter_context(root_canary_and_guard(service_store_root.parent))
            link = str(service_store_root.parent)
        elif target == "alice-job-checkpoints":
            link = str(victim.jobdir / "checkpoints")
        else:
            link = str(victim.canaries)
        if target == "job-folder-to-alice-folder":
            attack = f'mv "$JOBDIR" "$JOBDIR.away"\nln -s {link} "$JOBDIR"\n'
        else:
            attack = f'rm -rf "$JOBDIR/staging"\nln -s {link} "$JOBDIR/staging"\n'
        script = bob_script(
            bob.store_root,
            before_loop="until [ -e go ]; do sleep 0.2; done\n"
            + attack
            + "touch attacked\n"
            + ("exit 0\n" if ending == "ends" else ""),
        )
        job = bob.submit(script)
        record = bob.running(job)
        snapshot = victim.snapshot()
        since = victim.newest()
        bob.run("touch", str(bob.folder / "go"))
        wait_until((bob.folder / "attacked").exists, 30, "bob's job to swap its folder")
        if ending == "cancelled":
            bob.run("scancel", str(job))
        wait_until(
            lambda: service_catalog.get_job(record.id).state != "RUNNING",
            30,
            "the service to see bob's job stop",
        )
        time.sleep(3)  # the sync pass that saw it stop cleans its staging folder
        root_canary_kept = root_canary is None or root_canary.exists()

    assert root_canary_kept, f"root's file {root_canary} was deleted through bob's {link}"
    assert_unharmed(victim, snapshot, service, since)


# -- 2. checkpoints/ swapped for alice's between publish and retention -------------------------


@pytest.mark.timeout(300)
def test_checkpoints_swapped_after_publish_deletes_none_of_another_jobs_images(
    fresh_victim: Callable[[], Victim],
    bob: Attacker,
    service: ServiceCheck,
    service_catalog: Catalog,
) -> None:
    job = bob.submit(bob_script(bob.store_root))
    record = bob.running(job)
    wait_until(lambda: bob_newest(service_catalog, record.id) >= 2, 60, "bob's 2nd checkpoint")
    alice = fresh_victim()
    alice.wait_valid(1, timeout=40)
    # bob's next VALID checkpoint N (= his newest + 1) makes retention give up N - 3: with
    # bob one or two checkpoints ahead of alice, that is her newest or the one before.
    wait_until(
        lambda: (
            bob_newest(service_catalog, record.id) >= 3
            and alice.newest() + 1 <= bob_newest(service_catalog, record.id) <= alice.newest() + 2
        ),
        60,
        "bob's checkpoints one or two ahead of alice's",
    )
    snapshot = alice.snapshot()
    since = alice.newest()
    watcher = bob.start(
        "swap-on-publish", str(bob.jobdir(job)), str(alice.jobdir / "checkpoints"), "3", "30"
    )
    try:
        swapped = watcher.line(35)
        restored = watcher.line(10)
    finally:
        watcher.stop()
    assert swapped == "swapped", f"bob's next checkpoint was never published ({swapped})"
    assert restored == "restored"
    assert_unharmed(alice, snapshot, service, since)


# -- 2b. gc through a swapped checkpoints/ folder ------------------------------------------------


def test_gc_through_a_swapped_checkpoints_folder_deletes_none_of_another_jobs_images(
    fresh_victim: Callable[[], Victim],
    bob: Attacker,
    service: ServiceCheck,
    service_catalog: Catalog,
) -> None:
    alice = fresh_victim()
    attack = (
        f'rm -rf "$JOBDIR/checkpoints"\nln -s {alice.jobdir}/checkpoints "$JOBDIR/checkpoints"\n'
    )
    # bob's checkpoints then fail; retention gives failed ones up, by seq, under his folder.
    job = bob.submit(bob_script(bob.store_root, before_loop="sleep 1\n" + attack))
    record = bob.running(job)

    def overlap() -> set[int]:
        failed = {
            c.seq for c in service_catalog.checkpoints(record.id, states=[CheckpointState.FAILED])
        }
        return failed & alice.valid_seqs()

    wait_until(overlap, 60, "a FAILED seq of bob's that is a VALID one of alice's")
    snapshot = alice.snapshot()
    since = alice.newest()
    gc = admin("gc", "--yes", "--wait", "--timeout", "60s", timeout=90)
    assert gc.returncode in (0, 6), gc  # DONE, or FAILED naming what it could not delete
    assert_unharmed(alice, snapshot, service, since)


# -- 3. a stopped launcher and a planted file: nobody else must wait ---------------------------

DEEP = b"[" * 65536


@pytest.mark.parametrize(
    "variant",
    [
        "result-fifo",
        "result-deep-nesting",
        "manifest-fifo",
        "manifest-deep-nesting",
        "adopted-final-manifest-fifo",
    ],
)
def test_a_planted_file_stalls_neither_other_jobs_nor_the_service(
    variant: str,
    victim: Victim,
    bob: Attacker,
    service: ServiceCheck,
    service_catalog: Catalog,
) -> None:
    job = bob.submit(bob_script(bob.store_root))
    record = bob.running(job)
    jobdir = bob.jobdir(job)
    fifos: list[Path] = []
    planted: list[Path] = []
    try:
        if variant == "adopted-final-manifest-fifo":
            # A "final checkpoint" at the reserved number: recorded when the job stops.
            wait_until(lambda: bob_newest(service_catalog, record.id) >= 1, 40, "bob's first")
            seq = bob.reserved(job)
        else:
            bob.stop_launcher()
            seq = bob.wait_request(job)
        result = jobdir / "results" / f"{seq:06d}.json"
        folder = jobdir / "checkpoints" / f"{seq:06d}"
        planted += [result, folder]
        deep = bob.write_file("deep.json", DEEP)
        snapshot = victim.snapshot()
        since = victim.newest()
        with Sampler(service.pid) as sampler:
            if variant == "result-fifo":
                bob.run("mkfifo", "-m", "600", str(result))
                fifos.append(result)
            elif variant == "result-deep-nesting":
                bob.do("put", str(result), str(deep))
            else:
                bob.run("mkdir", "-m", "700", str(folder))
                if variant == "manifest-deep-nesting":
                    bob.do("put", str(folder / "manifest.json"), str(deep))
                else:
                    bob.run("mkfifo", "-m", "600", str(folder / "manifest.json"))
                    fifos.append(folder / "manifest.json")
                bob.do("result", str(jobdir), str(seq), "ok", "-")
                if variant == "adopted-final-manifest-fifo":
                    bob.run("scancel", str(job))
            newest = watch_while(sampler, victim, since, at_least=HOLD)
        unhealthy = sampler.unhealthy()
    finally:
        for fifo in fifos:
            unblock_fifo(fifo)
        for path in planted:
            bob.run("rm", "-rf", str(path), check=False)
        bob.cancel_all()
        for fifo in fifos:
            unblock_fifo(fifo)

    assert newest > since and not unhealthy, (
        f"while bob's {variant} was in place ({sampler.elapsed():.0f}s): alice's newest VALID "
        f"seq {since} -> {newest}; /healthz not 200 at (s, code): {unhealthy[:3]}"
        f"{'...' if len(unhealthy) > 3 else ''}"
    )
    assert_unharmed(victim, snapshot, service, newest)


# -- 3b. a result symlinked to a file only root (and alice) may read ------------------------


def test_a_result_symlink_to_another_users_file_is_not_read(
    victim: Victim,
    bob: Attacker,
    service: ServiceCheck,
    service_catalog: Catalog,
) -> None:
    job = bob.submit(bob_script(bob.store_root))
    record = bob.running(job)
    jobdir = bob.jobdir(job)
    bob.stop_launcher()
    seq = bob.wait_request(job)
    secret = f"alice-secret-{uuid.uuid4().hex}"
    # alice's private file, which happens to look like a failed result of bob's.
    private = victim.folder / f"private-{seq}.json"
    as_user(
        ALICE,
        "bash",
        "-ec",
        f"umask 077; echo '{json.dumps({'seq': seq, 'ok': False, 'error': secret})}' > {private}",
    )
    before = private.read_bytes()
    snapshot = victim.snapshot()
    since = victim.newest()
    try:
        bob.run("ln", "-s", str(private), str(jobdir / "results" / f"{seq:06d}.json"))
        time.sleep(3)  # a dozen collect passes
        bob.continue_launcher()
        bob.run("scancel", str(job))
        # However the service treats the link, the request ends once the job is gone.
        done = settled(service_catalog, record.id, seq, timeout=20)
        shown = admin("checkpoints", str(job))
    finally:
        bob.run("rm", "-f", str(jobdir / "results" / f"{seq:06d}.json"), check=False)
        bob.cancel_all()

    assert done is not None, f"bob's checkpoint {seq} still REQUESTED after his job ended"
    errors = [str(c.error) for c in service_catalog.checkpoints(record.id)]
    assert not any(secret in e for e in errors), f"alice's file was read for bob: {errors}"
    assert secret not in shown.stdout, "alice's file is shown as bob's checkpoint error"
    assert private.read_bytes() == before
    assert_unharmed(victim, snapshot, service, since)


# -- 3c. a forged manifest's strings, bounded before the catalog -------------------------------


def test_a_forged_manifests_long_criu_version_is_bounded_before_the_catalog(
    victim: Victim,
    bob: Attacker,
    service: ServiceCheck,
    service_catalog: Catalog,
) -> None:
    limit = Checkpoint.__table__.c.criu_version.type.length  # type: ignore[attr-defined]
    job = bob.submit(bob_script(bob.store_root))
    record = bob.running(job)
    jobdir = bob.jobdir(job)
    source = wait_until(lambda: bob_newest(service_catalog, record.id), 40, "bob's first VALID")
    bob.stop_launcher()
    seq = bob.wait_request(job)
    snapshot = victim.snapshot()
    since = victim.newest()
    try:
        bob.do("forge", str(jobdir), str(source), str(seq), "4.1" + "x" * 10_000, "0")
        with Sampler(service.pid) as sampler:
            bob.do("result", str(jobdir), str(seq), "ok", "-")
            done = settled(service_catalog, record.id, seq, timeout=15)
            newest = watch_while(sampler, victim, since, at_least=3)
        shown = admin("checkpoints", str(job), "--json")
    finally:
        bob.cancel_all()

    assert done is not None, f"bob's checkpoint {seq} was never completed"
    length = len(done.criu_version or "") if done.state == CheckpointState.VALID else 0
    assert length <= limit, (
        f"a {length}-character criu_version reached the catalog (column {limit})"
    )
    json_of(shown)
    assert not sampler.unhealthy(), sampler.unhealthy()
    assert_unharmed(victim, snapshot, service, newest)


# -- 4. a hostile restart report --------------------------------------------------------------


def requeue_and_watch(
    bob: Attacker,
    catalog: Catalog,
    record_id: int,
    job: int,
    restart: int,
    victim: Victim,
    service: ServiceCheck,
) -> tuple[Sampler, list[EventRecord], int, int]:
    """Requeue bob's job held (its restart count goes up, the service reads the report at
    once; the launcher never starts again to replace it) and watch the service meanwhile."""
    since = victim.newest()
    with Sampler(service.pid, rss_every=0.01) as sampler:
        proc.run(["scontrol", "requeuehold", str(job)], timeout=30)
        wait_until(
            lambda: catalog.get_job(record_id).restart_count >= restart,
            20,
            f"the service to see restart {restart} of bob's job",
        )
        with contextlib.suppress(AssertionError):
            wait_until(
                lambda: len(restart_events(catalog, record_id)) >= restart,
                8,
                "the restart to be recorded",
            )
        newest = watch_while(sampler, victim, since, at_least=HOLD)
    return sampler, restart_events(catalog, record_id), since, newest


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "variant", ["json-array", "huge-integers", "deep-nesting", "big-file-then-dev-zero"]
)
def test_a_hostile_restart_report_is_read_bounded_and_stops_nothing(
    variant: str,
    victim: Victim,
    bob: Attacker,
    service: ServiceCheck,
    service_catalog: Catalog,
) -> None:
    job = bob.submit(bob_script(bob.store_root))
    record = bob.running(job)
    jobdir = bob.jobdir(job)
    report = jobdir / RESTART_REPORT.format(1)
    bob.run("mkdir", "-p", "-m", "700", str(report.parent))
    if variant == "json-array":
        bob.do("put", str(report), str(bob.write_file("r.json", b'[{"outcome": "restored"}]')))
    elif variant == "huge-integers":
        doc = {"outcome": "fell_back", "seq": 2**64 + 1, "attempts": [{"seq": 2**70, "error": "x"}]}
        bob.do("put", str(report), str(bob.write_file("r.json", json.dumps(doc).encode())))
    elif variant == "deep-nesting":
        bob.do("put", str(report), str(bob.write_file("r.json", DEEP)))
    else:
        # A 512 MiB file (sparse: no disk used), then a symlink to /dev/zero. The first tells
        # whether the report is read whole before it is cut; only then is the second tried,
        # since a service that reads /dev/zero whole exhausts this machine's memory.
        bob.run("truncate", "-s", "512M", str(report))
    snapshot = victim.snapshot()
    try:
        sampler, events, since, newest = requeue_and_watch(
            bob, service_catalog, record.id, job, 1, victim, service
        )
        growth = sampler.memory_growth_mib()
        assert growth < 200, f"slurm-ckptd grew by {growth:.0f} MiB reading bob's restart report"
        assert not sampler.unhealthy(), f"/healthz not 200: {sampler.unhealthy()}"
        assert newest > since, f"alice got no VALID checkpoint meanwhile (newest {newest})"
        if variant != "big-file-then-dev-zero":
            assert events, "bob's restart went unrecorded (the report stopped the sync)"
            for event in events:
                assert event.checkpoint_seq is None or 1 <= event.checkpoint_seq <= 999_999
        else:
            proc.run(["scontrol", "release", str(job)], timeout=30)
            wait_until(
                lambda: service_catalog.get_job(record.id).state == "RUNNING",
                60,
                "bob's job running again",
            )
            second = jobdir / RESTART_REPORT.format(2)
            bob.run("rm", "-f", str(second))
            bob.run("ln", "-s", "/dev/zero", str(second))
            sampler, events, since, newest = requeue_and_watch(
                bob, service_catalog, record.id, job, 2, victim, service
            )
            growth = sampler.memory_growth_mib()
            assert growth < 200, f"slurm-ckptd grew by {growth:.0f} MiB reading /dev/zero"
            assert not sampler.unhealthy(), f"/healthz not 200: {sampler.unhealthy()}"
            assert newest > since, f"alice got no VALID checkpoint meanwhile (newest {newest})"
    finally:
        bob.cancel_all()
    assert_unharmed(victim, snapshot, service, newest)


# -- 5. manifest.json swapped right after the service verified it -----------------------------


@pytest.mark.parametrize("swap_to", ["symlink-to-etc-shadow", "fifo"])
def test_manifest_swapped_after_verification_is_neither_hashed_nor_waited_on(
    swap_to: str,
    victim: Victim,
    bob: Attacker,
    service: ServiceCheck,
    service_catalog: Catalog,
) -> None:
    shadow = xxh3_checksum(Path("/etc/shadow"))
    job = bob.submit(bob_script(bob.store_root))
    record = bob.running(job)
    jobdir = bob.jobdir(job)
    source = wait_until(lambda: bob_newest(service_catalog, record.id), 40, "bob's first VALID")
    bob.stop_launcher()
    seq = bob.wait_request(job)
    folder = jobdir / "checkpoints" / f"{seq:06d}"
    replacement = jobdir / "swap-manifest"
    # Padding files widen the time between reading the manifest and hashing it again.
    bob.do("forge", str(jobdir), str(source), str(seq), "-", "3000")
    if swap_to == "fifo":
        bob.run("mkfifo", "-m", "600", str(replacement))
    else:
        bob.run("ln", "-s", "/etc/shadow", str(replacement))
    snapshot = victim.snapshot()
    since = victim.newest()
    watcher = bob.start("swap-on-read", str(folder), "manifest.json", str(replacement), "20")
    try:
        with Sampler(service.pid) as sampler:
            bob.do("result", str(jobdir), str(seq), "ok", "-")
            swapped = watcher.line(20)
            if swap_to == "fifo":
                newest = watch_while(sampler, victim, since, at_least=HOLD)
            else:
                settled(service_catalog, record.id, seq, timeout=15)
                newest = watch_while(sampler, victim, since, at_least=1)
        shown = admin("checkpoints", str(job), "--json")
        row = checkpoint_of(service_catalog, record.id, seq)
    finally:
        watcher.stop()
        unblock_fifo(folder / "manifest.json")
        bob.cancel_all()
        unblock_fifo(folder / "manifest.json")

    assert swapped == "swapped", f"the service never read bob's manifest ({swapped})"
    assert row is not None
    assert row.manifest_checksum != shadow, "the service hashed /etc/shadow for bob"
    assert shadow.split(":")[1] not in shown.stdout, "/etc/shadow's checksum is shown to bob"
    unhealthy = sampler.unhealthy()
    assert newest > since and not unhealthy, (
        f"after bob's manifest became a {swap_to}: alice's newest VALID seq {since} -> "
        f"{newest}; /healthz not 200 at (s, code): {unhealthy[:3]}"
    )
    assert_unharmed(victim, snapshot, service, newest)


# -- 6. terminal escape sequences in error texts ----------------------------------------------

ESCAPES = "\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J\x1b[1;1H\x1b[31mFAKE ROW\r\x9b2J\x7f\x08 tail"


@pytest.mark.parametrize("where", ["result-error", "restart-report"])
def test_error_texts_reach_the_admin_without_control_characters(
    where: str,
    victim: Victim,
    bob: Attacker,
    service: ServiceCheck,
    service_catalog: Catalog,
) -> None:
    job = bob.submit(bob_script(bob.store_root))
    record = bob.running(job)
    jobdir = bob.jobdir(job)
    snapshot = victim.snapshot()
    since = victim.newest()
    try:
        if where == "result-error":
            bob.stop_launcher()
            seq = bob.wait_request(job)
            error = bob.write_file("error.txt", ESCAPES.encode())
            bob.do("result", str(jobdir), str(seq), "fail", str(error))
            done = settled(service_catalog, record.id, seq, timeout=15)
            assert done is not None and done.state == CheckpointState.FAILED, done
            recorded = str(done.error)
        else:
            report = jobdir / RESTART_REPORT.format(1)
            doc = {
                "outcome": "fell_back",
                "seq": 1,
                "attempts": [{"seq": 2, "error": ESCAPES}],
                "launcher_seconds": 0.5,
            }
            bob.run("mkdir", "-p", "-m", "700", str(report.parent))
            bob.do("put", str(report), str(bob.write_file("r.json", json.dumps(doc).encode())))
            proc.run(["scontrol", "requeuehold", str(job)], timeout=30)
            events = wait_until(
                lambda: restart_events(service_catalog, record.id), 20, "bob's restart recorded"
            )
            recorded = events[0].detail
        outputs = {
            "checkpoints": admin("checkpoints", str(job)),
            "show": admin("show", str(job)),
            "list-jobs": admin("list-jobs"),
        }
    finally:
        bob.cancel_all()

    assert "FAKE ROW" in recorded, recorded  # bob's text did reach the catalog
    for command, done in outputs.items():
        assert done.returncode == 0, (command, done.stderr)
        bad = control_characters(done.stdout + done.stderr)
        assert not bad, f"ckpt-admin {command} printed control characters {sorted(set(bad))}"
    assert_unharmed(victim, snapshot, service, since)
