"""The Slurm adapters on this machine and cluster, beyond their contract (which every
adapter, the fake included, passes in tests/contract/test_slurm_adapters.py): which
adapters can be used here, and the times they report against scontrol's."""

from __future__ import annotations

import pwd
from datetime import timedelta
from pathlib import Path

import pytest

from slurm_ckpt.config import load_settings
from slurm_ckpt.errors import SlurmBackendUnavailable
from slurm_ckpt.slurm import parse, registry
from slurm_ckpt.slurm.cli import CliSlurm

from .slurm_helpers import SlurmTestClient


def test_every_registered_adapter_is_usable_or_says_why() -> None:
    available = set(registry.available())
    unavailable = registry.unavailable()
    assert "cli" in available
    assert available | set(unavailable) == set(registry.BACKENDS)
    assert not available & set(unavailable)
    settings = load_settings(env={})
    for name, reason in unavailable.items():
        assert reason
        with pytest.raises(SlurmBackendUnavailable) as err:
            registry.create(name, settings.slurm)
        assert err.value.reason == reason


def test_the_times_listed_are_the_ones_scontrol_shows(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    # squeue is asked for epoch seconds, scontrol prints this machine's local time:
    # the two agree only if neither is read in the wrong time zone.
    job = cluster.submit(
        "#!/bin/bash\nsleep 300\n",
        user=test_user.pw_name,
        cwd=user_dir,
        args=["--checkpoint=2m", "--time=20", "--output=/dev/null"],
    )
    try:
        record = cluster.wait_for(job, {"RUNNING"}, timeout=60)
        (info,) = [j for j in CliSlurm().list_checkpointed_jobs() if j.job_id == job]
    finally:
        cluster.cancel(job)
    assert info.start_time == parse.parse_time(record["StartTime"])
    assert info.end_time == parse.parse_time(record["EndTime"])
    assert info.end_time is not None and info.start_time is not None
    assert info.end_time - info.start_time == timedelta(minutes=20)
    assert info.batch_host == record["BatchHost"]
