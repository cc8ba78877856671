"""Admin actions: ckpt-admin records them, the service claims and carries them out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from slurm_ckpt.db.models import Action
from slurm_ckpt.db.records import ActionRecord, from_row
from slurm_ckpt.db.rows import CatalogPart, compare_and_set, get_one
from slurm_ckpt.db.states import (
    ACTION_TRANSITIONS,
    ActionKind,
    ActionState,
    check_action_transition,
)
from slurm_ckpt.errors import CatalogConflict

_OPEN_STATES = (ActionState.PENDING, ActionState.RUNNING)


class Actions(CatalogPart):
    """The `actions` table: PENDING -> RUNNING (claimed by one service) -> DONE | FAILED."""

    def submit_action(
        self,
        kind: ActionKind,
        *,
        cluster: str,
        requested_by: str,
        now: datetime,
        slurm_job_id: int | None = None,
        node: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> ActionRecord:
        """Record an admin request as PENDING for the cluster's service.

        Raises CatalogConflict when the kind's target is missing (a job for
        checkpoint and requeue, a node for drain), CatalogError when `options`
        is not JSON.
        """
        row = Action(
            kind=kind,
            cluster=cluster,
            slurm_job_id=slurm_job_id,
            node=node,
            options=dict(options or {}),
            state=ActionState.PENDING,
            detail="",
            progress="",
            requested_by=requested_by,
            created_at=now,
            updated_at=now,
        )
        return self._add(row, ActionRecord)

    def get_action(self, action_id: int) -> ActionRecord:
        """The action with id `action_id`; CatalogNotFound if there is none."""
        return self._get(Action, ActionRecord, action_id)

    def claim_actions(self, cluster: str, now: datetime, limit: int = 20) -> list[ActionRecord]:
        """Take up to `limit` PENDING actions of `cluster`, oldest first, and make them RUNNING.

        Each action is claimed by exactly one caller: the rows are locked (SKIP
        LOCKED on PostgreSQL, so a second claimer takes others instead of
        waiting; SQLite serialises writers) and each move is a compare-and-set.
        """
        running = {"state": ActionState.RUNNING, "updated_at": now}
        with self.db.session(write=True) as session:
            pending = session.scalars(
                select(Action.id)
                .where(Action.cluster == cluster, Action.state == ActionState.PENDING)
                .order_by(Action.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            claimed = [
                action_id
                for action_id in pending
                if compare_and_set(
                    session, Action, action_id, running, expect={"state": ActionState.PENDING}
                )
            ]
            rows = session.scalars(select(Action).where(Action.id.in_(claimed)).order_by(Action.id))
            return [from_row(ActionRecord, row) for row in rows]

    def update_action(
        self,
        action_id: int,
        now: datetime,
        *,
        state: ActionState | None = None,
        detail: str | None = None,
        progress: str | None = None,
    ) -> ActionRecord:
        """Record progress or the end of an action; None leaves a field as it is.

        Raises CatalogNotFound, IllegalTransition (a move the state machine does not
        allow, or any change to a DONE or FAILED action), CatalogConflict (another
        writer changed its state meanwhile).
        """
        with self.db.session(write=True) as session:
            row = get_one(session, Action, action_id, lock=True)
            current = row.state
            target = state or current
            values: dict[str, Any] = {"updated_at": now}
            # A finished action is history too: a stale runner must not rewrite it.
            if target != current or not ACTION_TRANSITIONS[current]:
                check_action_transition(current, target, action_id=action_id)
                values["state"] = target
            if detail is not None:
                values["detail"] = detail
            if progress is not None:
                values["progress"] = progress
            if not compare_and_set(session, Action, action_id, values, expect={"state": current}):
                raise CatalogConflict(
                    f"action {action_id} changed state while it was being updated: "
                    "another writer got there first"
                )
            session.refresh(row)
            return from_row(ActionRecord, row)

    def open_actions(
        self,
        cluster: str,
        *,
        requested_by: str | None = None,
        slurm_job_id: int | None = None,
        kind: ActionKind | None = None,
    ) -> list[ActionRecord]:
        """The cluster's PENDING and RUNNING actions (of one requester, job or kind),
        oldest first."""
        query = select(Action).where(Action.cluster == cluster, Action.state.in_(_OPEN_STATES))
        if requested_by is not None:
            query = query.where(Action.requested_by == requested_by)
        if slurm_job_id is not None:
            query = query.where(Action.slurm_job_id == slurm_job_id)
        if kind is not None:
            query = query.where(Action.kind == kind)
        with self.db.session() as session:
            rows = session.scalars(query.order_by(Action.id))
            return [from_row(ActionRecord, row) for row in rows]

    def running_actions(self, cluster: str) -> list[ActionRecord]:
        """The cluster's RUNNING actions, oldest first (what a restarted service finds)."""
        with self.db.session() as session:
            rows = session.scalars(
                select(Action)
                .where(Action.cluster == cluster, Action.state == ActionState.RUNNING)
                .order_by(Action.id)
            )
            return [from_row(ActionRecord, row) for row in rows]
