"""Argument types and options shared by the commands."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from slurm_ckpt.errors import BadPath, IntervalError
from slurm_ckpt.intervals import ACCEPTED_FORMS, parse_interval
from slurm_ckpt.store.layout import parse_job_id

F = TypeVar("F", bound=Callable[..., Any])

# Slurm node names: letters, digits and a few separators; never a path or an option.
_NODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(eq=False)
class ParsedInt(click.ParamType[int]):
    """A whole number, given as one or as text that `parse` reads (raising `error`)."""

    name: str
    parse: Callable[[str], int]
    error: type[Exception]
    wanted: str  # "a duration...": what the refusal says it is not

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return self.parse(str(value))
        except self.error:
            self.fail(f"{value!r} is not {self.wanted}", param, ctx)


class NodeType(click.ParamType[str]):
    name = "NODE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not _NODE_RE.fullmatch(text):
            self.fail(f"{text!r} is not a node name", param, ctx)
        return text


JOB_ID = ParsedInt("JOB", parse_job_id, BadPath, "a Slurm job id (a positive number)")
NODE = NodeType()
# An interval in the project's grammar (`90s`, `10m`, `1h30m`), as seconds.
DURATION = ParsedInt("DURATION", parse_interval, IntervalError, f"a duration: use {ACCEPTED_FORMS}")


def json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (docs/cli-json.md) instead of a table."
    )(f)


def wait_options(f: F) -> F:
    f = click.option(
        "--timeout",
        type=DURATION,
        default="10m",
        show_default=True,
        help="With --wait: give up (exit 7) after this long; the action goes on.",
    )(f)
    return click.option(
        "--wait", is_flag=True, help="Follow the action until it is done, showing its progress."
    )(f)
