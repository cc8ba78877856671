from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from slurm_ckpt.db import states
from slurm_ckpt.db.states import (
    ALLOWED_TRANSITIONS,
    CheckpointKind,
    CheckpointState,
    check_transition,
)
from slurm_ckpt.errors import CatalogConflict, IllegalTransition

S = CheckpointState
LEGAL = {
    (S.REQUESTED, S.VALID),
    (S.REQUESTED, S.FAILED),
    (S.VALID, S.OBSOLETE),
    (S.FAILED, S.OBSOLETE),
    (S.FAILED, S.VALID),  # a late result whose image verified
    (S.OBSOLETE, S.DELETED),
}


def test_every_state_has_an_entry() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(S)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_exactly_the_documented_transitions_are_allowed(current: S, target: S) -> None:
    if (current, target) in LEGAL:
        check_transition(current, target)
        return
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, target, checkpoint_id=7)
    assert (info.value.current, info.value.target, info.value.checkpoint_id) == (
        current.value,
        target.value,
        7,
    )
    assert isinstance(info.value, CatalogConflict)


def test_message_names_the_checkpoint_and_what_is_allowed() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(S.VALID, S.FAILED, checkpoint_id=12)
    assert str(info.value) == "checkpoint 12 is VALID: it cannot become FAILED (allowed: OBSOLETE)"
    with pytest.raises(IllegalTransition) as info:
        check_transition(S.DELETED, S.VALID)
    assert str(info.value) == (
        "a checkpoint is DELETED: it cannot become VALID (allowed: none, it is final)"
    )


def test_checkpoint_kinds_are_the_values_the_catalog_stores() -> None:
    assert [k.value for k in CheckpointKind] == ["periodic", "final", "admin"]


def test_states_imports_nothing_but_the_standard_library_and_errors() -> None:
    # The in-job launcher imports it: SQLAlchemy must not come with it.
    tree = ast.parse(Path(states.__file__).read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported == {"__future__", "collections.abc", "enum", "slurm_ckpt.errors"}
