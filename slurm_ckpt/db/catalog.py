"""The catalog: the one entry point for queries and state changes.

`Catalog(db)` combines one part per aggregate (jobs.py, checkpoints.py,
events.py, actions.py, summaries.py); every public method is one transaction
and returns frozen records (records.py), never ORM objects. Concurrent writers
(two service instances) are kept apart by row locks where the database has
them (PostgreSQL; SQLite serialises writers instead), compare-and-set UPDATEs
on the state that was read (rows.py), unique seq numbers per job, and a partial
unique index allowing one REQUESTED checkpoint per job.
Raises: CatalogError subclasses only (see slurm_ckpt.errors).
"""

from __future__ import annotations

from slurm_ckpt.db.actions import Actions
from slurm_ckpt.db.checkpoints import Checkpoints
from slurm_ckpt.db.events import Events
from slurm_ckpt.db.jobs import Jobs
from slurm_ckpt.db.records import (
    ActionRecord,
    CheckpointActivity,
    CheckpointRecord,
    DumpResult,
    EventRecord,
    JobRecord,
    JobSummary,
    NewJob,
)
from slurm_ckpt.db.summaries import Summaries

# Callers import the records from here, next to Catalog.
__all__ = [
    "ActionRecord",
    "Catalog",
    "CheckpointActivity",
    "CheckpointRecord",
    "DumpResult",
    "EventRecord",
    "JobRecord",
    "JobSummary",
    "NewJob",
]


class Catalog(Jobs, Checkpoints, Events, Actions, Summaries):
    """The service's memory: tracked jobs, their checkpoints and events, admin actions."""
