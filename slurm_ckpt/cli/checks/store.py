"""doctor's checks of the service's data: the store root's owner and mode, and the
catalog reachable and at the newest schema revision."""

from __future__ import annotations

import os
import stat

from slurm_ckpt.cli.checks.base import CheckResult
from slurm_ckpt.config import Settings
from slurm_ckpt.errors import CkptError


def check_store_root(s: Settings) -> CheckResult:
    name, root = "store-root", s.paths.store_root
    fix = f"install -d -o root -m 0711 {root} (on a filesystem every node sees)"
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return CheckResult(name, False, f"{root} does not exist", fix)
    except OSError as err:
        return CheckResult(name, False, f"cannot stat {root}: {err.strerror}", fix)
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISDIR(st.st_mode):
        return CheckResult(name, False, f"{root} is not a folder (or is a symlink)", fix)
    # Users only pass through the root to their own <root>/<user>/ folder, which
    # the trusted side makes: a root they could write would let anyone make
    # another user's folder first. 0711 also hides the list of user names.
    if st.st_uid != 0 or mode & 0o022:
        return CheckResult(
            name,
            False,
            f"{root} is mode {mode:04o}, owner uid {st.st_uid}; want root-owned and "
            "not writable by group or others (0711 or 0755)",
            fix,
        )
    return CheckResult(name, True, f"{root}: mode {mode:04o}, owned by root")


def check_catalog(s: Settings) -> CheckResult:
    from slurm_ckpt.db import migrate
    from slurm_ckpt.db.session import shown_url

    name, url = "catalog", shown_url(s.catalog.url)
    try:
        have, want = migrate.current(s.catalog.url), migrate.head()
    except CkptError as err:
        return CheckResult(
            name, False, str(err), "check catalog.url and that the database server is up"
        )
    if have != want:
        return CheckResult(
            name,
            False,
            f"{url} is at revision {have or 'none'}, not {want}",
            "run `ckpt-admin db upgrade`",
        )
    return CheckResult(name, True, f"{url} at revision {want}")
