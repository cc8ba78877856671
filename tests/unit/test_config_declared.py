"""Settings declared once: every key a `setting(parser, default)` field, read by
one reader; backend names from the registries; retention as the catalog's policy."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from slurm_ckpt.config import Settings, load_settings
from slurm_ckpt.config.reader import key_of, sections
from slurm_ckpt.db.retention import RetentionPolicy
from slurm_ckpt.dump import registry as dumpers
from slurm_ckpt.registry import Entry
from slurm_ckpt.slurm import registry as adapters

from .config_helpers import assert_env_value_refused, load_error, write_config

SECTIONS = [
    "paths",
    "criu",
    "catalog",
    "slurm",
    "checkpoint",
    "service",
    "requeue",
    "retention",
    "walltime",
    "launcher",
    "admin",
    "api",
]


def test_every_field_of_every_section_is_a_declared_setting(tmp_path: Path) -> None:
    declared = sections(Settings)
    assert list(declared) == SECTIONS
    for cls in declared.values():
        for field in dataclasses.fields(cls):
            assert callable(key_of(field).parse)
            assert field.default is not dataclasses.MISSING
    # Built without a file or environment, a section is its defaults.
    s = load_settings(write_config(tmp_path, ""), {})
    assert s.criu == type(s.criu)()
    assert s.service == type(s.service)()


def test_the_unknown_section_message_lists_the_sections_in_order(tmp_path: Path) -> None:
    err = load_error(write_config(tmp_path, "[servce]\n"))
    assert str(err).endswith(f"known sections are {', '.join(SECTIONS)}")


def test_durations_are_timedeltas(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), {})
    for value in (
        s.slurm.command_timeout,
        s.slurm.retry_delay,
        s.checkpoint.min_interval,
        s.service.poll_interval,
        s.service.checkpoint_deadline,
        s.service.store_timeout,
        s.service.failure_backoff,
        s.service.failure_backoff_max,
        s.walltime.margin,
        s.launcher.pid_wait,
        s.launcher.dump_timeout,
        s.launcher.store_wait,
    ):
        assert isinstance(value, timedelta) and value > timedelta(0)


def test_seconds_a_timedelta_cannot_hold_are_refused(tmp_path: Path) -> None:
    err = load_error(write_config(tmp_path, "[launcher]\ndump_timeout = 1e300\n"))
    assert "launcher.dump_timeout = 1e+300" in str(err)
    assert "must be a number of seconds > 0, at most" in str(err)
    err = load_error(write_config(tmp_path, "[launcher]\ndump_timeout = 1e-9\n"))
    assert "must be a number of seconds > 0, at least 0.000001" in str(err)


# Retention


def test_retention_is_the_catalogs_policy(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), {})
    assert s.retention.policy == RetentionPolicy(keep_last=3, keep_within=None, minimum=1)
    path = write_config(tmp_path, '[retention]\nkeep_last = 0\nkeep_within = "2d"\nminimum = 2\n')
    s = load_settings(path, {})
    # keep_last = 0 is "no count rule".
    assert s.retention.policy == RetentionPolicy(None, timedelta(days=2), 2)


# Backends: the names are the registries'


def test_a_production_config_naming_the_fake_dumper_is_refused(
    tmp_path: Path, production_dumpers: None
) -> None:
    path = write_config(tmp_path, '[launcher]\ndumper = "fake"\n')
    err = load_error(path)
    assert str(err) == f'config: launcher.dumper = "fake" in {path}: must be one of criu'
    assert err.key == "launcher.dumper"
    assert_env_value_refused(tmp_path, "SLURM_CKPT_LAUNCHER_DUMPER", "fake", "must be one of criu")


def test_tests_may_select_the_fake_dumper_once_registered(tmp_path: Path) -> None:
    dumpers.register_fake()
    s = load_settings(write_config(tmp_path, '[launcher]\ndumper = "fake"\n'), {})
    assert s.launcher.dumper == "fake"


def test_the_slurm_adapters_are_the_registrys(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[slurm]\nadapter = "rest"\n')
    assert "must be one of cli, pyslurm" in str(load_error(path))
    adapters.BACKENDS.add(Entry("rest", "for this test", "json", "dumps"))
    try:
        assert load_settings(path, {}).slurm.adapter == "rest"
    finally:
        adapters.BACKENDS.remove("rest")
    # An adapter that cannot be used here is still a valid choice: the error comes
    # when the service selects it, with the reason.
    s = load_settings(write_config(tmp_path, '[slurm]\nadapter = "pyslurm"\n'), {})
    assert s.slurm.adapter == "pyslurm"
