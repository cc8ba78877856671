"""The API's settings: where slurm-ckptd listens, where ckpt-admin sends; the local
cluster's file turns it on."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_ckpt.config import load_settings

from .config_helpers import (
    assert_env_value_refused,
    assert_file_value_refused,
    assert_settings,
    write_config,
)

REPO = Path(__file__).resolve().parents[2]


def test_off_by_default_and_nowhere_to_send(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), {})
    assert_settings(s, {"api.host": "127.0.0.1", "api.port": 0, "api.url": ""})
    assert s.api.client_url is None


@pytest.mark.parametrize(
    ("toml", "url"),
    [
        ("[api]\nport = 9811\n", "http://127.0.0.1:9811"),
        ('[api]\nhost = "::1"\nport = 811\n', "http://[::1]:811"),
        ('[api]\nport = 9811\nurl = "https://ckpt.example.org/"\n', "https://ckpt.example.org/"),
        ('[api]\nurl = "http://10.0.0.1:811"\n', "http://10.0.0.1:811"),
    ],
)
def test_clients_send_to_the_url_or_host_and_port(tmp_path: Path, toml: str, url: str) -> None:
    assert load_settings(write_config(tmp_path, toml), {}).api.client_url == url


def test_the_environment_may_choose_the_url(tmp_path: Path) -> None:
    env = {"SLURM_CKPT_API_URL": "http://127.0.0.1:1234"}
    assert (
        load_settings(write_config(tmp_path, ""), env).api.client_url == env["SLURM_CKPT_API_URL"]
    )


def test_bad_values_are_refused(tmp_path: Path) -> None:
    assert_file_value_refused(tmp_path, '[api]\nurl = "ftp://x"\n', "url", "a URL like http://")
    assert_file_value_refused(tmp_path, '[api]\nurl = "http://x/v1?y"\n', "url", "a URL like")
    assert_file_value_refused(tmp_path, "[api]\nport = 70000\n", "port", "from 0 to 65535")
    assert_env_value_refused(tmp_path, "SLURM_CKPT_API_HOST", "a b", "host name or IP")


def test_the_local_cluster_turns_the_api_on(tmp_path: Path) -> None:
    text = (REPO / "scripts/cluster/slurm-ckpt.toml.in").read_text().replace("@MARKER@", "x")
    s = load_settings(write_config(tmp_path, text), {})
    assert (s.api.port, s.api.client_url) == (9811, "http://127.0.0.1:9811")
