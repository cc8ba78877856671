"""Fakes for unit tests of the service: a controlled clock and a world of a fake Slurm,
the fake dump backend playing the launcher and a real (SQLite) catalog. The scheduler
is never started: tests call the tasks it would run."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Self

from slurm_ckpt.config import Settings, load_settings
from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog, JobRecord
from slurm_ckpt.db.session import open_database
from slurm_ckpt.dump.fake import FakeDumper
from slurm_ckpt.launcher.session import Job, Session
from slurm_ckpt.service.app import Service
from slurm_ckpt.service.main import compose
from slurm_ckpt.slurm.base import JobInfo
from slurm_ckpt.slurm.fake import FakeSlurm
from slurm_ckpt.store.folders import ensure_job_dir, ensure_user_dir
from slurm_ckpt.store.layout import JobDir

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the fake clock's first reading
USER = "alice"  # every fake job is this user's, with the uid running the tests
FREE_PID = 10_000_000  # above any pid_max
CLUSTER = "test"


class FakeClock:
    """The service's clock; it moves only when a test advances it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeWorld:
    """A service with everything around it; `open` builds one in a fresh store."""

    # The checkpoint interval of the jobs `job` adds, unless a test gives one.
    JOB_INTERVAL: ClassVar[int] = 60

    service: Service
    settings: Settings  # the current service's
    slurm: FakeSlurm
    catalog: Catalog
    clock: FakeClock
    store: Path
    failing: dict[int, str] = field(default_factory=dict)  # slurm job id -> dump error
    silent: set[int] = field(default_factory=set)  # jobs whose launcher does not answer

    @classmethod
    @contextmanager
    def open(cls, store: Path, slurm: FakeSlurm, **env: str) -> Iterator[Self]:
        """A world whose store is `store` (created here), with a new SQLite catalog beside
        it; `env` adds settings to the ones every world needs."""
        store.mkdir()
        url = f"sqlite:///{store.parent}/catalog.db"
        migrate.upgrade(url)
        db = open_database(url)
        try:
            clock = FakeClock()
            catalog = Catalog(db)
            settings = fake_settings(store, url, **env)
            service = compose(settings, catalog, slurm, cluster=CLUSTER, clock=clock)
            world = cls(service, settings, slurm, catalog, clock, store)
            slurm.on_signal = world.play_launcher
            yield world
        finally:
            db.dispose()

    def make_service(self, **env: str) -> Service:
        """Another instance on the same catalog, Slurm and clock; `env` replaces the
        settings the world was opened with, it does not add to them."""
        settings = fake_settings(self.store, self.settings.catalog.url, **env)
        return self.restarted_service(settings)

    def restarted_service(self, settings: Settings | None = None) -> Service:
        """A new instance, as one starts after the current one died; with the current
        one's settings unless given others (which become the world's)."""
        self.settings = settings or self.settings
        return compose(self.settings, self.catalog, self.slurm, cluster=CLUSTER, clock=self.clock)

    def job(self, job_id: int, **fields: object) -> JobInfo:
        """A running job Slurm knows, with its job directory in the store."""
        info = JobInfo(
            job_id=job_id,
            state="RUNNING",
            user=USER,
            uid=os.getuid(),
            batch_host="node1",
            node_list="node1",
            start_time=START,
            time_limit=None,
            end_time=None,
            restarts=0,
            interval=self.JOB_INTERVAL,
        )
        info = dataclasses.replace(info, **fields)  # type: ignore[arg-type]
        self.slurm.add(info)
        # The service makes the user's folder when it tracks the job; the launcher,
        # which may start first, waits for it, then makes the job's own.
        ensure_user_dir(self.store, USER, os.getuid(), os.getgid())
        ensure_job_dir(self.store, USER, job_id)
        return info

    def play_launcher(self, job_id: int, signal: str) -> None:
        """The launcher's part, with the real launcher code and the fake dump backend."""
        if job_id in self.silent:
            return
        jobdir = JobDir(self.store, USER, job_id)
        session = Session(
            Job(job_id, 0, ["/bin/sh"], jobdir.path / "x", []),
            jobdir,
            FakeDumper(fail_dump=self.failing.get(job_id)),
            self.settings,
        )
        session.child = FREE_PID
        session.criu_version = "fake-1"
        session.checkpoint()

    def answer_late(self, job_id: int) -> None:
        """A silent launcher answers the request it was sent after all."""
        self.silent.discard(job_id)
        self.play_launcher(job_id, "USR1")

    def tracked(self, job_id: int) -> JobRecord:
        """The catalog's record of a Slurm job, which must be tracked."""
        record = self.catalog.find_job(CLUSTER, job_id)
        assert record is not None
        return record


def fake_settings(store: Path, catalog_url: str, **env: str) -> Settings:
    """Settings for a world: its store and catalog, the fake dump backend, then `env`."""
    return load_settings(
        env={
            "SLURM_CKPT_PATHS_STORE_ROOT": str(store),
            "SLURM_CKPT_CATALOG_URL": catalog_url,
            "SLURM_CKPT_LAUNCHER_DUMPER": "fake",
            **env,
        }
    )
