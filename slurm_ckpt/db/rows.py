"""What every part of the catalog shares: the database, adding and reading one row,
compare-and-set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from slurm_ckpt.db.models import Action, Checkpoint, Job
from slurm_ckpt.db.records import R, from_row
from slurm_ckpt.db.session import Database
from slurm_ckpt.errors import CatalogNotFound

# The tables whose rows are changed in place; events are only ever added.
Row = TypeVar("Row", Job, Checkpoint, Action)


class CatalogPart:
    """One aggregate's share of `Catalog`; every public method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _add(self, row: object, record: type[R]) -> R:
        """Insert `row` in a transaction of its own; it comes back as a `record`."""
        with self.db.session(write=True) as session:
            return added(session, row, record)

    def _get(self, model: type[Row], record: type[R], row_id: int) -> R:
        """Row `row_id` of `model` as a `record`; CatalogNotFound if there is none."""
        with self.db.session() as session:
            return from_row(record, get_one(session, model, row_id))


def added(session: Session, row: object, record: type[R]) -> R:
    """`row` added and flushed, so its id and server defaults are set, as a `record`."""
    session.add(row)
    session.flush()
    return from_row(record, row)


def not_found(model: type[Row], row_id: int) -> CatalogNotFound:
    """The error for a missing row: "job 7 is not in the catalog"."""
    return CatalogNotFound(f"{model.__name__.lower()} {row_id} is not in the catalog")


def get_one(session: Session, model: type[Row], row_id: int, *, lock: bool = False) -> Row:
    """The row with id `row_id`, locked FOR UPDATE with `lock`; raises CatalogNotFound."""
    query = select(model).where(model.id == row_id)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise not_found(model, row_id)
    return row


def compare_and_set(
    session: Session,
    model: type[Row],
    row_id: int,
    values: Mapping[str, Any],
    *,
    expect: Mapping[str, Any] | None = None,
) -> bool:
    """Set `values` on one row, only if its columns still hold `expect`; True if it changed.

    `expect` is what the caller read (usually the state): of two writers that read
    the same state, the second one's UPDATE matches no row, so it cannot undo or
    repeat the first one's move. Without `expect`, False means there is no such row.
    """
    guards = [getattr(model, name) == value for name, value in (expect or {}).items()]
    result = session.execute(
        update(model)
        .where(model.id == row_id, *guards)
        .values(**values)
        # Callers read back or refresh the row they return, so no in-session copy goes stale.
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount == 1
