"""deploy/ansible: the playbook passes its syntax check and ansible-lint, a check-mode run
changes nothing, and a real run on this machine (ansible_connection=local) installs slurm-ckpt
on top of the local test cluster; a second run changes nothing, and a --checkpoint job
submitted through the deployed install gets a VALID checkpoint from the deployed service,
started with the capabilities its unit leaves it (none of root's DAC overrides).

The deployment goes into its own prefix (PREFIX), so the cluster's /opt/slurm-ckpt is never
touched; the files it writes are where the cluster reads them (/etc/slurm, /etc/slurm-ckpt).
Every file and folder under WATCHED is backed up first and put back afterwards, then
`scripts/cluster.sh up` checks the cluster is as before.
"""

from __future__ import annotations

import grp
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from slurm_ckpt import proc
from slurm_ckpt.config import load_settings
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.session import open_database
from slurm_ckpt.store.verify import verify_checkpoint

from .launcher_helpers import wait_until
from .slurm_helpers import REPO, SlurmTestClient

# The deployment (a CRIU build, two runs) happens in the first test that needs it.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ANSIBLE_DIR = REPO / "deploy" / "ansible"
VENV_BIN = REPO / ".venv" / "bin"
PREFIX = Path("/opt/slurm-ckpt-deploy")
# Kept between runs so a rebuild of CRIU downloads nothing.
CRIU_CACHE = Path("/var/cache/slurm-ckpt-deploy-test/criu")
CLUSTER_CONFIG = Path("/etc/slurm-ckpt/config.toml")
UNIT = Path("/etc/systemd/system/slurm-ckptd.service")
CRIU_GROUP = "slurm-ckpt-criu"  # the roles' default slurm_ckpt_criu_group
# What root may not do on a root-squashed store; the unit removes them from the service.
SQUASHED_CAPS = {"dac_override": 1, "dac_read_search": 2, "fowner": 3}
# Everything the roles may write outside PREFIX, with the folders the state lives in.
WATCHED = (
    Path("/etc/slurm"),
    Path("/etc/slurm-ckpt"),
    UNIT,
    Path("/var/lib/slurm-ckpt"),
)
# Inside the watched folders but not the deployment's: the catalog and the job folders
# change under the running cluster.
UNWATCHED = (Path("/var/lib/slurm-ckpt/store"),)
UNWATCHED_NAMES = re.compile(r"catalog\.db(-journal|-wal|-shm)?$")
RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


# -- backing up and restoring what the playbook touches ---------------------------------------


@dataclass(frozen=True)
class Entry:
    kind: str  # "file", "dir" or "link"
    mode: int
    uid: int
    gid: int
    data: bytes = b""  # file content or link target


def _entry(path: Path) -> Entry:
    st = path.lstat()
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return Entry("link", mode, st.st_uid, st.st_gid, os.readlink(path).encode())
    if stat.S_ISDIR(st.st_mode):
        return Entry("dir", mode, st.st_uid, st.st_gid)
    return Entry("file", mode, st.st_uid, st.st_gid, path.read_bytes())


def snapshot() -> dict[Path, Entry]:
    """Every file, folder and link under WATCHED (the roots themselves included)."""
    found: dict[Path, Entry] = {}
    for root in WATCHED:
        if not root.exists() and not root.is_symlink():
            continue
        found[root] = _entry(root)
        if not root.is_dir() or root.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            base = Path(dirpath)
            for name in dirnames + filenames:
                if not UNWATCHED_NAMES.match(name):
                    found[base / name] = _entry(base / name)
            # The folder itself is watched (owner, mode), not what the cluster puts in it.
            dirnames[:] = [d for d in dirnames if base / d not in UNWATCHED]
    return found


def differences(before: dict[Path, Entry], after: dict[Path, Entry]) -> list[str]:
    changed = [f"changed {p}" for p in before if p in after and after[p] != before[p]]
    added = [f"added {p}" for p in after if p not in before]
    removed = [f"removed {p}" for p in before if p not in after]
    return sorted(changed + added + removed)


def restore(before: dict[Path, Entry]) -> list[str]:
    """Put every watched path back as it was; return what had to be put back."""
    now = snapshot()
    diffs = differences(before, now)
    # New paths, deepest first.
    for path in sorted((p for p in now if p not in before), key=lambda p: -len(p.parts)):
        if now[path].kind == "dir":
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    # Changed or removed ones, shallowest first.
    for path in sorted(before, key=lambda p: len(p.parts)):
        want = before[path]
        if now.get(path) == want:
            continue
        if want.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
        else:
            if path.is_symlink() or path.is_file():
                path.unlink()
            if want.kind == "link":
                path.symlink_to(want.data.decode())
                continue
            path.write_bytes(want.data)
        os.chown(path, want.uid, want.gid)
        os.chmod(path, want.mode)
    return diffs


# -- running ansible --------------------------------------------------------------------------


def ansible_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "SLURM_CKPT_"))}
    env.update(
        PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PY_COLORS="0",
    )
    return env


def run_ansible(argv: list[str], timeout: float) -> proc.Completed:
    return proc.run(argv, timeout=timeout, check=False, env=ansible_env(), cwd=ANSIBLE_DIR)


def recap(done: proc.Completed) -> dict[str, dict[str, int]]:
    """PLAY RECAP counts per host."""
    return {
        host: {"ok": int(ok), "changed": int(ch), "unreachable": int(un), "failed": int(fa)}
        for host, ok, ch, un, fa in RECAP.findall(done.stdout)
    }


def tail(done: proc.Completed, lines: int = 60) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


def copy_sources(dest: Path) -> None:
    """A snapshot of the checkout's deployable parts: others edit the checkout meanwhile,
    and the second run must see the same sources as the first."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("slurm_ckpt", "db", "plugins"):
        shutil.copytree(REPO / name, dest / name, symlinks=True, ignore=skip)


def inventory_vars(source: Path) -> dict[str, object]:
    """Role variables that put the deployment where the cluster reads its files, with the
    cluster's own settings (same catalog, store, cluster name), only in PREFIX."""
    settings = load_settings(CLUSTER_CONFIG)
    raw = tomllib.loads(CLUSTER_CONFIG.read_text())
    extra = {k: v for k, v in raw.items() if k not in ("paths", "criu", "catalog")}
    return {
        "slurm_ckpt_prefix": str(PREFIX),
        "slurm_ckpt_source_dir": str(source),
        "slurm_ckpt_state_dir": str(settings.paths.state_dir),
        "slurm_ckpt_store_root": str(settings.paths.store_root),
        "slurm_ckpt_catalog_url": settings.catalog.url,
        "slurm_ckpt_cluster_name": settings.slurm.cluster,
        "slurm_ckpt_min_interval": int(settings.checkpoint.min_interval.total_seconds()),
        "slurm_ckpt_settings": extra,
        "slurm_ckpt_node_criu_cache_dir": str(CRIU_CACHE),
        # No systemd here: the test starts the service from the unit's ExecStart.
        "slurm_ckpt_controller_service_manage": False,
    }


def write_inventory(path: Path, variables: dict[str, object]) -> None:
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    groups = ("slurm_ckpt_controller", "slurm_ckpt_nodes", "slurm_ckpt_submit_hosts")
    inventory = {
        "all": {
            "hosts": {"localhost": local},
            "children": {group: {"hosts": {"localhost": None}} for group in groups},
            "vars": variables,
        }
    }
    path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML


@dataclass
class Deployment:
    inventory: Path
    check: proc.Completed | None = None
    check_diffs: list[str] = field(default_factory=list)
    check_created_prefix: bool = False
    first: proc.Completed | None = None
    first_seconds: float = 0.0
    second: proc.Completed | None = None
    second_seconds: float = 0.0

    def playbook(self, *extra: str, timeout: float = 900) -> proc.Completed:
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), "site.yml"]
        return run_ansible([*argv, *extra], timeout)


def _cluster(*args: str) -> proc.Completed:
    return proc.run([str(REPO / "scripts" / "cluster.sh"), *args], timeout=300, check=False)


@pytest.fixture(scope="module")
def deployment(cluster: SlurmTestClient) -> Iterator[Deployment]:
    before = snapshot()
    saved_prefix = PREFIX.with_name(PREFIX.name + ".before-test")
    if PREFIX.exists():
        shutil.rmtree(saved_prefix, ignore_errors=True)
        PREFIX.rename(saved_prefix)
    work = Path(tempfile.mkdtemp(prefix="slurm-ckpt-ansible-"))
    try:
        copy_sources(work / "src")
        write_inventory(work / "inventory.yml", inventory_vars(work / "src"))
        deployment = Deployment(inventory=work / "inventory.yml")

        deployment.check = deployment.playbook("--check", "--diff")
        deployment.check_diffs = differences(before, snapshot())
        deployment.check_created_prefix = PREFIX.exists()
        if deployment.check.returncode == 0:
            started = time.monotonic()
            deployment.first = deployment.playbook()
            deployment.first_seconds = time.monotonic() - started
            if deployment.first.returncode == 0:
                started = time.monotonic()
                deployment.second = deployment.playbook()
                deployment.second_seconds = time.monotonic() - started
        print(
            f"ansible: first run {deployment.first_seconds:.0f}s, "
            f"second run {deployment.second_seconds:.0f}s"
        )
        yield deployment
    finally:
        put_back = restore(before)
        left = differences(before, snapshot())
        if any(p.endswith("/etc/slurm/slurm.conf") for p in put_back):
            proc.run(["scontrol", "reconfigure"], timeout=60, check=False)
        shutil.rmtree(PREFIX, ignore_errors=True)
        if saved_prefix.exists():
            saved_prefix.rename(PREFIX)
        shutil.rmtree(work, ignore_errors=True)
        # The cluster as its own script wants it (which may differ from `before` when
        # scripts/cluster.sh changed meanwhile), its slurm-ckptd started again so that
        # it reads the restored settings, not the deployment's.
        _cluster("stop-service")
        up = _cluster("up")
        print(f"restored after the deployment: {put_back}")
        assert up.returncode == 0, f"cluster.sh up after the restore failed: {up.stderr}"
        assert not left, f"not restored: {left}"


# -- the tests --------------------------------------------------------------------------------


def test_playbook_passes_the_syntax_check() -> None:
    inventory = ANSIBLE_DIR / "inventory" / "example" / "hosts.yml"
    done = run_ansible(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "site.yml", "--syntax-check"],
        timeout=120,
    )
    assert done.returncode == 0, tail(done)
    listed = run_ansible(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "site.yml", "--list-tasks"],
        timeout=120,
    )
    assert listed.returncode == 0, tail(listed)
    plays = re.findall(r"play #\d+ \((\S+)\)", listed.stdout)
    # Nodes before the controller: job_submit.lua must not send jobs to a missing launcher.
    assert plays == ["slurm_ckpt_nodes", "slurm_ckpt_submit_hosts", "slurm_ckpt_controller"]
    for task in (
        "Create the group that may run CRIU",
        "Give the copy cap_checkpoint_restore",
        "Build and install the SPANK plugin",
    ):
        assert task in listed.stdout, f"no task {task!r} in the playbook"


def test_roles_pass_ansible_lint() -> None:
    done = run_ansible([str(VENV_BIN / "ansible-lint"), "--offline", "--nocolor"], timeout=300)
    assert done.returncode == 0, tail(done)
    assert "0 failure(s), 0 warning(s)" in done.stdout + done.stderr, tail(done)


def test_check_mode_run_changes_nothing(deployment: Deployment) -> None:
    assert deployment.check is not None
    assert deployment.check.returncode == 0, tail(deployment.check)
    counts = recap(deployment.check)
    assert counts and all(c["failed"] == 0 for c in counts.values()), counts
    # On a fresh prefix a check run reports the changes a real run would make ...
    assert counts["localhost"]["changed"] > 0, counts
    # ... and makes none of them.
    assert not deployment.check_created_prefix, f"--check created {PREFIX}"
    assert deployment.check_diffs == [], deployment.check_diffs


def test_first_run_installs_everything(deployment: Deployment) -> None:
    assert deployment.first is not None, "the check-mode run failed; no real run"
    assert deployment.first.returncode == 0, tail(deployment.first)
    counts = recap(deployment.first)
    assert counts["localhost"]["failed"] == 0 and counts["localhost"]["changed"] > 0, counts

    # CRIU, new enough, and its unprivileged copy with exactly one capability, which only
    # the group may run (its capability survived the chown: set after it).
    version = proc.run([str(PREFIX / "sbin" / "criu"), "--version"], timeout=30).stdout
    assert re.search(r"Version: (4\.([1-9]|\d\d)|[5-9]\.)", version), version
    unpriv = PREFIX / "bin" / "criu-unpriv"
    caps = proc.run(["getcap", str(unpriv)], timeout=30).stdout.split()
    assert caps[-1] == "cap_checkpoint_restore=ep", caps
    st = unpriv.stat()
    assert (st.st_uid, st.st_gid) == (0, grp.getgrnam(CRIU_GROUP).gr_gid), (st.st_uid, st.st_gid)
    assert stat.S_IMODE(st.st_mode) == 0o750, oct(st.st_mode)
    assert (PREFIX / "lib" / "python" / "pycriu" / "rpc_pb2.py").is_file()

    # The launcher, runnable by a job's user; the SPANK plugin, listed.
    launcher = PREFIX / "venv" / "bin" / "slurm-ckpt-launch"
    proc.run(["runuser", "-u", "ckpt-alice", "--", "test", "-x", str(launcher)], timeout=30)
    proc.run(
        [
            "runuser",
            "-u",
            "ckpt-alice",
            "--",
            str(PREFIX / "venv" / "bin" / "python"),
            "-c",
            "import pycriu, slurm_ckpt",
        ],
        timeout=60,
    )
    spank = PREFIX / "lib" / "slurm-ckpt" / "spank" / "slurm_ckpt.so"
    assert spank.is_file()
    entry = Path("/etc/slurm/plugstack.conf.d/slurm-ckpt.conf").read_text()
    assert f"required {spank}" in entry.splitlines()

    # The controller's side.
    submit = Path("/etc/slurm/slurm-ckpt-submit.conf").read_text()
    assert f"launcher = {launcher}" in submit.splitlines()
    assert "min_interval = 10" in submit.splitlines()
    assert re.search(
        r"(?m)^JobSubmitPlugins=(.*,)?lua(,|$)", Path("/etc/slurm/slurm.conf").read_text()
    )
    assert Path("/etc/slurm/job_submit.lua").read_text().startswith("-- slurm-ckpt job_submit.lua")
    settings = load_settings(CLUSTER_CONFIG)
    assert settings.criu.binary == unpriv and settings.criu.root_binary == PREFIX / "sbin" / "criu"
    # The store root: root's, users pass through it to their own folder and can neither
    # write there (make another user's folder) nor list the user names.
    st = settings.paths.store_root.lstat()
    assert stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) == (0, 0), (st.st_uid, st.st_gid)
    assert stat.S_IMODE(st.st_mode) == 0o711, oct(st.st_mode)
    assert settings.criu.group == CRIU_GROUP
    assert "ExecStart=" in UNIT.read_text()
    assert (
        "CapabilityBoundingSet=~CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER"
        in UNIT.read_text().splitlines()
    )
    print(f"first run: {deployment.first_seconds:.0f}s, {counts['localhost']['changed']} changed")


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    assert deployment.second is not None, "the first run failed; no second run"
    assert deployment.second.returncode == 0, tail(deployment.second)
    counts = recap(deployment.second)
    assert counts, tail(deployment.second)
    changed = {host: c["changed"] for host, c in counts.items()}
    assert all(n == 0 for n in changed.values()), (changed, tail(deployment.second, 200))
    print(f"second run: {deployment.second_seconds:.0f}s, nothing changed")


def exec_start(unit: Path) -> list[str]:
    """The ExecStart command line of a systemd unit, as an argv."""
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ExecStart":
            return shlex.split(value.strip())
    raise AssertionError(f"{unit} has no ExecStart")


def capability_drops(unit: Path) -> list[str]:
    """What a unit's `CapabilityBoundingSet=~...` removes, named as setpriv names them."""
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "CapabilityBoundingSet":
            assert value.startswith("~"), line
            return [cap.lower().removeprefix("cap_") for cap in value[1:].split()]
    return []


def bounding_set(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no CapBnd for pid {pid}")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


COUNTER = (
    "#!/bin/bash\n"
    "exec 3>>counter.txt\n"
    "for i in $(seq 1 120); do\n"
    '    echo "line $i"; echo "line $i" >&3\n'
    "    sleep 0.5\n"
    "done\n"
)


def test_deployed_install_checkpoints_a_job(
    deployment: Deployment, cluster: SlurmTestClient, user_dir: Path
) -> None:
    assert deployment.second is not None, "the deployment failed"
    settings = load_settings(CLUSTER_CONFIG)
    port = settings.service.metrics_port
    argv = exec_start(UNIT)
    assert argv[0] == str(PREFIX / "venv" / "bin" / "slurm-ckptd"), argv
    drops = capability_drops(UNIT)
    assert sorted(drops) == sorted(SQUASHED_CAPS), drops
    # As systemd starts it: without what root lacks on a root-squashed store.
    argv = [
        "setpriv",
        "--bounding-set=" + ",".join(f"-{cap}" for cap in drops),
        "--inh-caps=-all",
        "--",
        *argv,
    ]

    db = open_database(settings.catalog.url)
    catalog = Catalog(db)
    log = (PREFIX / "slurm-ckptd-test.log").open("ab")
    stopped = _cluster("stop-service")
    assert stopped.returncode == 0, stopped.stderr
    service: subprocess.Popen[bytes] | None = None
    job: int | None = None
    try:
        wait_until(lambda: not healthy(port), 30, "the cluster's slurm-ckptd to stop")
        service = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        wait_until(lambda: healthy(port) or service.poll() is not None, 30, "slurm-ckptd")
        assert service.poll() is None, "the deployed slurm-ckptd exited; see its log"
        assert not bounding_set(service.pid) & sum(1 << bit for bit in SQUASHED_CAPS.values())

        job = cluster.submit(
            COUNTER,
            user="ckpt-alice",
            cwd=user_dir,
            args=["--checkpoint=10s", "--output=job.out"],
        )
        first_line = cluster.batch_script(job).splitlines()[0]
        assert first_line.startswith(f"#!{PREFIX}/venv/bin/slurm-ckpt-launch "), first_line
        record = wait_until(
            lambda: catalog.find_job(settings.slurm.cluster, job), 30, f"job {job} tracked"
        )
        valid = wait_until(lambda: catalog.valid_checkpoints(record.id), 90, "a VALID checkpoint")
        checkpoint = valid[0]
        assert checkpoint.store_path is not None
        manifest = verify_checkpoint(Path(checkpoint.store_path), read_data=True)
        assert manifest.job_id == job

        doctor = proc.run(
            [str(PREFIX / "venv" / "bin" / "ckpt-admin"), "doctor", "--json"],
            timeout=120,
            check=False,
            env={**ansible_env(), "SLURM_CKPT_CONFIG": str(CLUSTER_CONFIG)},
        )
        failed = [c for c in json.loads(doctor.stdout)["checks"] if not c["ok"]]
        assert doctor.returncode == 0 and not failed, failed
    finally:
        if job is not None:
            cluster.cancel(job)
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(30)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait(10)
        log.close()
        db.dispose()
        started = _cluster("start-service")
        assert started.returncode == 0, started.stderr
