"""Entry point of `slurm-ckptd`: foreground, logs to stderr (or syslog), SIGTERM stops it.

Also the composition root: `compose` builds the service's collaborators from the
settings, each with only what it needs; nothing else reads the whole Settings.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType

import click

from slurm_ckpt import __version__
from slurm_ckpt.config import Settings, get_settings, load_settings
from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.session import open_database, shown_url
from slurm_ckpt.errors import CkptError
from slurm_ckpt.service.actions import ActionRunner
from slurm_ckpt.service.api import Api, ApiServer
from slurm_ckpt.service.app import Service, utcnow
from slurm_ckpt.service.chaining import Chainer
from slurm_ckpt.service.checkpoints import Checkpointer
from slurm_ckpt.service.eligibility import CriuGroup
from slurm_ckpt.service.finals import Finals
from slurm_ckpt.service.images import JobImages
from slurm_ckpt.service.metrics import Metrics, MetricsServer
from slurm_ckpt.service.policy import Admission, FailureTracker, RequeuePolicy, WalltimeChaining
from slurm_ckpt.service.requests import Outcome
from slurm_ckpt.service.schedule import Schedule
from slurm_ckpt.service.sync import Syncer
from slurm_ckpt.slurm import registry
from slurm_ckpt.slurm.base import SlurmAdapter
from slurm_ckpt.store.jobfs import shared_job_files

log = logging.getLogger("slurm_ckpt.service")


def _logging(level: str, syslog: bool) -> None:
    handler: logging.Handler
    if syslog:
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(
            logging.Formatter("slurm-ckptd[%(process)d]: %(levelname)s %(message)s")
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler logs every run at INFO, Alembic its set-up; their warnings still show.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="Configuration file (default: $SLURM_CKPT_CONFIG or /etc/slurm-ckpt/config.toml).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    help="Overrides service.log_level.",
)
@click.option("--syslog", is_flag=True, help="Log to syslog instead of stderr.")
@click.option("--cluster", help="Cluster name recorded in the catalog (default: slurm.cluster).")
@click.version_option(__version__, prog_name="slurm-ckptd")
def cli(config_file: Path | None, log_level: str | None, syslog: bool, cluster: str | None) -> None:
    """Schedule checkpoints for every job that asked for them, keep the catalog,
    requeue jobs that failed. Runs in the foreground until SIGTERM or SIGINT."""
    try:
        settings = load_settings(config_file) if config_file else get_settings()
    except CkptError as exc:
        raise click.ClickException(str(exc)) from exc
    _logging(log_level or settings.service.log_level, syslog)
    try:
        service, servers = _build(settings, cluster)
    except CkptError as exc:
        raise click.ClickException(str(exc)) from exc

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        service.stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.start()
    for server in servers:
        server.start()
    try:
        while not service.stopped.wait(1.0):
            pass
    finally:
        service.stop()
        for server in servers:
            server.stop()


def compose(
    settings: Settings,
    catalog: Catalog,
    slurm: SlurmAdapter,
    *,
    cluster: str,
    metrics: Metrics | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Service:
    """The service and its collaborators, each given only what it needs. Outcomes
    of checkpoints fan out to metrics, admin actions and walltime chaining."""
    svc = settings.service
    metrics = metrics or Metrics()
    # Our requeues and the sync take turns (Syncer.requeues).
    requeues = threading.Lock()
    files = shared_job_files(settings.paths.store_root, svc.store_timeout)
    listeners: list[Callable[[Outcome], None]] = [metrics.checkpoint_finished]
    images = JobImages(catalog, files, retention=settings.retention.policy)
    finals = Finals(catalog, files, images)
    checkpointer = Checkpointer(
        catalog,
        slurm,
        files,
        images,
        finals,
        admission=Admission(svc.max_concurrent_checkpoints, svc.max_checkpoints_per_store),
        failures=FailureTracker(svc.failure_backoff, svc.failure_backoff_max, svc.give_up_after),
        deadline=svc.checkpoint_deadline,
        on_outcome=_fan_out(listeners),
    )
    requeue = settings.requeue
    syncer = Syncer(
        catalog,
        slurm,
        files,
        cluster,
        requeue=(
            RequeuePolicy(frozenset(requeue.causes), requeue.max_restarts)
            if requeue.enabled
            else None
        ),
        on_requeue=lambda cause: metrics.requeues.labels(cause=cause).inc(),
        on_interrupted=checkpointer.interrupted,
        criu_refusal=_criu_refusal(settings),
        requeues=requeues,
    )
    schedule = Schedule(
        catalog, checkpointer, metrics, jitter_fraction=svc.jitter_fraction, clock=clock
    )
    walltime = settings.walltime
    chainer = Chainer(
        WalltimeChaining(walltime.chaining, walltime.max_chained_runs, walltime.margin),
        catalog,
        slurm,
        checkpointer,
        clock=clock,
        on_requeue=lambda: metrics.requeues.labels(cause="walltime").inc(),
        requeues=requeues,
    )
    actions = ActionRunner(
        catalog,
        slurm,
        schedule,
        images,
        cluster=cluster,
        clock=clock,
        stopped=schedule.stopped,
        requeues=requeues,
    )
    listeners += [actions.on_outcome, chainer.on_outcome]
    return Service(
        catalog=catalog,
        checkpointer=checkpointer,
        images=images,
        finals=finals,
        syncer=syncer,
        chainer=chainer,
        actions=actions,
        schedule=schedule,
        metrics=metrics,
        poll_interval=svc.poll_interval,
        store_root=settings.paths.store_root,
        clock=clock,
    )


def _fan_out(listeners: list[Callable[[Outcome], None]]) -> Callable[[Outcome], None]:
    def emit(outcome: Outcome) -> None:
        for listener in listeners:
            listener(outcome)

    return emit


def _criu_refusal(settings: Settings) -> Callable[[int], str | None]:
    # With the fake backend no job runs CRIU, so no group limits who is checkpointed.
    if settings.launcher.dumper != "criu":
        return lambda uid: None
    return CriuGroup(settings.criu.group, settings.criu.binary).refusal


def _check_store_root(root: Path) -> None:
    """Raises CkptError, with the command that fixes it, unless only root writes `root`."""
    fix = f"install -d -o root -m 0711 {root}"
    if not root.is_dir():
        raise CkptError(
            f"store root {root} does not exist: create it owned by root, not writable "
            f"by users: {fix}"
        )
    st = root.stat()
    if st.st_uid != 0 or st.st_mode & 0o022:
        # Users who can write the root can make other users' folders in it.
        raise CkptError(
            f"store root {root} is mode {st.st_mode & 0o7777:04o}, owner uid {st.st_uid}: "
            f"users must not write to it: chown root {root}; chmod 0711 {root}"
        )


def _build(
    settings: Settings, cluster: str | None
) -> tuple[Service, list[MetricsServer | ApiServer]]:
    """Everything slurm-ckptd runs, from its settings; raises CkptError with the fix."""
    url = settings.catalog.url
    have, want = migrate.current(url), migrate.head()
    if have != want:
        raise CkptError(
            f"catalog {shown_url(url)} is at revision {have or 'none'}, not {want}: "
            "run `ckpt-admin db upgrade`"
        )
    _check_store_root(settings.paths.store_root)
    # A catalog made by an older release may still be world-readable.
    migrate.restrict_sqlite_file(url, settings.admin.group)
    catalog = Catalog(open_database(url))
    slurm = registry.create(settings.slurm.adapter, settings.slurm)
    metrics = Metrics()
    service = compose(
        settings, catalog, slurm, cluster=cluster or settings.slurm.cluster, metrics=metrics
    )
    servers: list[MetricsServer | ApiServer] = []
    if settings.service.metrics_port:
        servers.append(
            MetricsServer(
                metrics,
                service.health,
                host=settings.service.metrics_host,
                port=settings.service.metrics_port,
            )
        )
    if settings.api.port:
        api = Api(catalog, settings, clock=service.clock)
        servers.append(ApiServer(api, host=settings.api.host, port=settings.api.port))
    log.info("catalog %s, Slurm via %s, pid %d", shown_url(url), slurm.name, os.getpid())
    return service, servers


def main() -> None:
    cli()
