"""The one backend registry (slurm_ckpt.registry) and its two users: the Slurm
adapters and the dump backends. Backends are imported only when selected; one
whose optional import fails is listed with the reason, raised when selected;
the fakes are registered by tests only."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest

from slurm_ckpt.config import load_settings
from slurm_ckpt.dump import registry as dumpers
from slurm_ckpt.dump.base import Dumper
from slurm_ckpt.dump.criu import CriuDumper
from slurm_ckpt.dump.fake import FakeDumper
from slurm_ckpt.errors import DumperUnavailable, SlurmBackendUnavailable
from slurm_ckpt.registry import Entry, Registry
from slurm_ckpt.slurm import registry as adapters
from slurm_ckpt.slurm.cli import CliSlurm

from .config_helpers import write_config

MISSING = "slurm_ckpt_test_no_such_module"
LAZY = "colorsys"  # a module nothing else here imports


class Refused(Exception):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def _hsv(options: tuple[float, float, float]) -> Mapping[str, object]:
    h, s, v = options
    return {"h": h, "s": s, "v": v}


def example() -> Registry[tuple[float, float, float], object]:
    return Registry(
        "colour",
        Refused,
        [
            Entry("hsv", "colorsys.hsv_to_rgb", LAZY, "hsv_to_rgb", arguments=_hsv),
            Entry(
                "needs", "needs a module that is not there", "json", "dumps", requires=(MISSING,)
            ),
            Entry(
                "hinted", "same, with a hint", "json", "dumps", requires=(MISSING,), hint="pip it"
            ),
            Entry("broken", "its own module does not import", MISSING, "make"),
        ],
    )


def test_entries_are_listed_in_order_usable_or_not() -> None:
    r = example()
    assert r.names() == ("hsv", "needs", "hinted", "broken")
    assert list(r) == list(r.names()) and len(r) == 4
    assert "hsv" in r and "rest" not in r
    assert r.available() == ["hsv", "broken"]
    assert set(r.unavailable()) == {"needs", "hinted"}


def test_a_missing_optional_module_is_the_reason_and_the_error_on_selection() -> None:
    r = example()
    reason = r.unavailable_reason("needs")
    assert reason == f"{MISSING} does not import: ModuleNotFoundError: No module named {MISSING!r}"
    assert r.unavailable()["hinted"] == f"{reason} (pip it)"
    with pytest.raises(Refused) as err:
        r.create("needs", (0, 0, 0))
    assert (err.value.name, err.value.reason) == ("needs", reason)
    with pytest.raises(KeyError):
        r.unavailable_reason("rest")


def test_unknown_names_and_unimportable_backends_are_refused_with_the_registrys_error() -> None:
    r = example()
    with pytest.raises(Refused, match="unknown colour; known: hsv, needs, hinted, broken"):
        r.create("rest", (0, 0, 0))
    with pytest.raises(Refused, match=f"{MISSING}.make does not import: ModuleNotFoundError"):
        r.create("broken", (0, 0, 0))


def test_the_backend_is_imported_only_when_selected_and_made_from_the_options() -> None:
    sys.modules.pop(LAZY, None)
    r = example()
    r.available()
    r.unavailable()
    assert LAZY not in sys.modules
    assert r.create("hsv", (0.0, 1.0, 1.0)) == (1.0, 0.0, 0.0)
    assert LAZY in sys.modules


def test_a_name_is_registered_once_and_can_be_removed() -> None:
    r = example()
    with pytest.raises(ValueError, match="colour 'hsv' is already registered"):
        r.add(Entry("hsv", "again", LAZY, "hsv_to_rgb"))
    r.remove("hsv")
    assert "hsv" not in r
    with pytest.raises(KeyError):
        r.remove("hsv")


# The Slurm adapters


def test_the_slurm_adapters_are_cli_and_pyslurm_and_no_fake() -> None:
    assert adapters.BACKENDS.names() == ("cli", "pyslurm")
    assert adapters.BACKENDS.entry("pyslurm").requires == ("pyslurm",)


def test_the_cli_adapter_gets_the_settings_in_seconds(tmp_path: Path) -> None:
    settings = load_settings(
        write_config(tmp_path, "[slurm]\nmax_attempts = 4\n"),
        {"SLURM_CKPT_SLURM_COMMAND_TIMEOUT": "7.5", "SLURM_CKPT_SLURM_RETRY_DELAY": "0.5"},
    )
    made = adapters.create("cli", settings.slurm)
    assert isinstance(made, CliSlurm)
    assert (made._timeout, made._max_attempts, made._retry_delay) == (7.5, 4, 0.5)


def test_an_unusable_adapter_says_why_when_selected(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, ""), {})
    for name, reason in adapters.unavailable().items():
        assert adapters.unavailable_reason(name) == reason
        with pytest.raises(SlurmBackendUnavailable) as err:
            adapters.create(name, settings.slurm)
        assert err.value.reason == reason


# The dump backends


def test_production_registers_criu_only(production_dumpers: None) -> None:
    assert dumpers.BACKENDS.names() == ("criu",)
    options = dumpers.DumperOptions(Path("/bin/true"), timedelta(seconds=1))
    with pytest.raises(DumperUnavailable, match="unknown backend; known: criu"):
        dumpers.create("fake", options)


def test_criu_gets_the_options_with_the_timeout_in_seconds() -> None:
    assert dumpers.BACKENDS.entry("criu").requires == ("pycriu",)
    if dumpers.BACKENDS.unavailable_reason("criu") is not None:
        pytest.skip(f"criu unusable here: {dumpers.BACKENDS.unavailable_reason('criu')}")
    options = dumpers.DumperOptions(
        Path("/opt/criu"), timedelta(minutes=2), file_locks=False, ghost_limit=4096
    )
    made = dumpers.create("criu", options)
    assert isinstance(made, CriuDumper)
    assert (made.binary, made.timeout, made.file_locks, made.ghost_limit) == (
        Path("/opt/criu"),
        120.0,
        False,
        4096,
    )


def test_tests_register_the_fake_once(production_dumpers: None) -> None:
    dumpers.register_fake()
    dumpers.register_fake()
    assert dumpers.BACKENDS.names() == ("criu", "fake")
    made = dumpers.create("fake", dumpers.DumperOptions(Path("/x"), timedelta(seconds=1)))
    assert isinstance(made, FakeDumper)


def test_the_fake_can_go_into_a_registry_of_its_own() -> None:
    own: Registry[dumpers.DumperOptions, Dumper] = Registry("backend", DumperUnavailable)
    dumpers.register_fake(own)
    assert own.names() == ("fake",)
