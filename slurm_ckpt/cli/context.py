"""What every `ckpt-admin` command shares: settings, the backend it asks, clock.

Root works on the catalog itself; anyone else asks slurm-ckptd's API, which
decides what they may see and do (their settings choose only where the service
is). Loaded lazily, so `--help` and `doctor` work with a broken configuration
or catalog, and once per run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click

from slurm_ckpt.cli.remote import RemoteBackend
from slurm_ckpt.config import Settings, load_settings
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.session import open_database
from slurm_ckpt.service import authz
from slurm_ckpt.service.ops import Backend, Operations


@dataclass
class App:
    config_file: Path | None = None
    cluster_override: str | None = None
    catalog_url_override: str | None = None  # `db --url`
    fixed_now: datetime | None = None  # tests pin the clock (hidden --now / $SLURM_CKPT_NOW)
    _settings: Settings | None = field(default=None, repr=False)
    _catalog: Catalog | None = field(default=None, repr=False)
    _backend: Backend | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings

    @property
    def cluster(self) -> str:
        return self.cluster_override or self.settings.slurm.cluster

    @property
    def catalog_url(self) -> str:
        if self.catalog_url_override is not None:
            return self.catalog_url_override
        return self.settings.catalog.url

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(open_database(self.catalog_url))
        return self._catalog

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self)
        return self._backend

    def now(self) -> datetime:
        return self.fixed_now or datetime.now(UTC)

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.db.dispose()


def make_backend(app: App) -> Backend:
    """Root: the catalog, with root's rights. Anyone else: the service, which decides."""
    if os.geteuid() == 0:
        return Operations(app.catalog, app.settings, authz.ROOT, app.now)
    return RemoteBackend(app.settings.api.client_url)


pass_app = click.make_pass_decorator(App)
