"""Entry point of `slurm-ckpt-launch`, the interpreter of a checkpointed batch script.

The kernel runs `#!/path/slurm-ckpt-launch /bin/bash` as
`slurm-ckpt-launch /bin/bash SCRIPT ARGS...`.
"""

import signal

# First thing, before the imports below take their time: a checkpoint signal
# arriving during start-up must neither kill us (SIGUSR1's default) nor be lost.
_early_signals: list[int] = []
signal.signal(signal.SIGUSR1, lambda signum, frame: _early_signals.append(signum))

import logging  # noqa: E402
import logging.handlers  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, NoReturn  # noqa: E402

from slurm_ckpt.errors import CkptError  # noqa: E402

if TYPE_CHECKING:
    from datetime import timedelta

    from slurm_ckpt.launcher.session import Session
    from slurm_ckpt.store.layout import JobDir

log = logging.getLogger("slurm_ckpt.launcher")

USAGE = """usage: slurm-ckpt-launch INTERPRETER SCRIPT [ARGS...]

Runs SCRIPT with INTERPRETER under checkpoint control, inside a Slurm batch job.
Used as a script's interpreter line: #!/path/to/slurm-ckpt-launch /bin/bash
Outside a job, or when checkpointing cannot be set up, the script runs unchanged."""


def _passthrough(
    interpreter: list[str], script_and_args: list[str], reason: str, *, whole_line: bool = False
) -> NoReturn:
    """Run the script exactly as without us; checkpointing must never fail a job."""
    if whole_line:
        log.warning("%s", reason)
    else:
        log.warning("running the script without checkpoints: %s", reason)
    logging.shutdown()
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    os.execv(interpreter[0], [*interpreter, *script_and_args])


def _log_to(path: Path | None) -> None:
    # Never the job's stdout or stderr: those are files we roll back.
    handler: logging.Handler
    if path is not None:
        handler = logging.FileHandler(path)
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
    else:
        handler = logging.NullHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s slurm-ckpt-launch[%(process)d] %(levelname)s %(message)s")
    )
    root = logging.getLogger("slurm_ckpt")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    if args[0] == "--version":
        from slurm_ckpt import __version__

        print(f"slurm-ckpt-launch {__version__}")
        sys.exit(0)
    if len(args) < 2:
        print(f"slurm-ckpt-launch: no script given\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    # The kernel passes "#!/launcher /bin/bash -l" as ONE argument "/bin/bash -l".
    interpreter = args[0].split(maxsplit=1)
    script, rest = args[1], args[2:]
    _log_to(None)

    from slurm_ckpt.launcher import session as session_mod
    from slurm_ckpt.launcher.permission import NotPermitted

    try:
        session = _set_up(interpreter, Path(script), rest)
    except NotPermitted as exc:
        _passthrough(interpreter, [script, *rest], str(exc), whole_line=True)
    except (CkptError, OSError, ValueError) as exc:
        _passthrough(interpreter, [script, *rest], str(exc))

    signal.pthread_sigmask(signal.SIG_BLOCK, session_mod.WAITED)
    try:
        early = session.start()
        if early is not None:
            session.end()
            sys.exit(early)
        if _early_signals:
            session.checkpoint()
        code = session.run()
    except Exception:
        log.exception("launcher failed")
        raise
    logging.shutdown()
    sys.exit(code)


def _set_up(interpreter: list[str], script: Path, args: list[str]) -> "Session":
    from slurm_ckpt.config import get_settings
    from slurm_ckpt.dump import registry
    from slurm_ckpt.launcher import permission
    from slurm_ckpt.launcher.session import Job, Session
    from slurm_ckpt.store.layout import parse_job_id

    job_id_text = os.environ.get("SLURM_JOB_ID")
    if not job_id_text:
        raise ValueError("not inside a Slurm job (SLURM_JOB_ID is not set)")
    job_id = parse_job_id(job_id_text)
    restart_count = int(os.environ.get("SLURM_RESTART_COUNT", "0") or "0")
    settings = get_settings()
    jobdir = _job_dir(settings.paths.store_root, job_id, settings.launcher.store_wait)
    _log_to(jobdir.log_file)
    if settings.launcher.dumper == "criu":
        binary = settings.criu.binary
        refused = permission.refusal(permission.look(binary), binary, settings.criu.group)
        if refused is not None:
            raise permission.NotPermitted(refused)
    dumper = registry.create(
        settings.launcher.dumper,
        registry.DumperOptions(
            binary=settings.criu.binary,
            timeout=settings.launcher.dump_timeout,
            file_locks=settings.criu.file_locks,
            # A deleted scratch file is the job's data like any other it writes.
            ghost_limit=settings.launcher.copy_max_bytes,
        ),
    )
    session = Session(
        Job(job_id, restart_count, interpreter, script, args), jobdir, dumper, settings
    )
    log.info(
        "job %d (restart %d): %s %s %s",
        job_id,
        restart_count,
        " ".join(interpreter),
        script,
        " ".join(args),
    )
    if restart_count == 0:
        # Probing runs the backend (tens of ms); on a restart the restore itself
        # is the probe, and the time counts.
        caps = dumper.capabilities()
        if not caps.available:
            raise ValueError(f"{dumper.name} is unusable: {caps.reason}")
        session.criu_version = caps.version
        log.info(
            "%s %s%s", dumper.name, caps.version, "" if caps.incremental else f" ({caps.reason})"
        )
    elif not os.access(settings.criu.binary, os.X_OK):
        raise ValueError(f"{settings.criu.binary} is not executable")
    return session


def _job_dir(root: Path, job_id: int, wait: "timedelta") -> "JobDir":
    """The job's folder inside the user's own one, which the service makes when it
    starts tracking the user's first job: a job that starts at once waits for it."""
    import pwd
    import time

    from slurm_ckpt.errors import MissingUserDir
    from slurm_ckpt.store.folders import ensure_job_dir

    user = pwd.getpwuid(os.geteuid()).pw_name
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        try:
            return ensure_job_dir(root, user, job_id)
        except MissingUserDir:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


if __name__ == "__main__":
    main()
