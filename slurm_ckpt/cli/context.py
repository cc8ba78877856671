"""What every `ckpt-admin` command shares: settings, catalog, caller, clock.

Loaded lazily, so `--help` and `doctor` work with a broken configuration or
catalog, and once per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click

from slurm_ckpt.cli import access
from slurm_ckpt.cli.errors import UnknownJob
from slurm_ckpt.config import Settings, load_settings
from slurm_ckpt.db.catalog import Catalog, JobRecord
from slurm_ckpt.db.session import open_database


@dataclass
class App:
    config_file: Path | None = None
    cluster_override: str | None = None
    fixed_now: datetime | None = None  # tests pin the clock (hidden --now / $SLURM_CKPT_NOW)
    _settings: Settings | None = field(default=None, repr=False)
    _catalog: Catalog | None = field(default=None, repr=False)
    _actor: access.Actor | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings

    @property
    def cluster(self) -> str:
        return self.cluster_override or self.settings.slurm.cluster

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(open_database(self.settings.catalog.url))
        return self._catalog

    @property
    def actor(self) -> access.Actor:
        if self._actor is None:
            self._actor = access.actor_for(access.process_identity(), self.settings.admin.group)
        return self._actor

    def now(self) -> datetime:
        return self.fixed_now or datetime.now(UTC)

    def require_admin(self, what: str) -> None:
        access.require_admin(self.actor, what, self.settings.admin.group)

    def job(self, slurm_job_id: int, what: str) -> JobRecord:
        """The tracked job, once the caller may `what` it; UnknownJob, NotAllowed."""
        job = self.catalog.find_job(self.cluster, slurm_job_id)
        if job is None:
            raise UnknownJob(slurm_job_id, self.cluster)
        access.require_job_access(self.actor, job, what)
        return job

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.db.dispose()


pass_app = click.make_pass_decorator(App)
