"""A store laid out as the service and the launcher lay it out, for the caller's own jobs."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from slurm_ckpt.store.folders import ensure_job_dir, ensure_user_dir
from slurm_ckpt.store.layout import JobDir

# Whoever runs the tests owns the jobs of these stores.
ME = pwd.getpwuid(os.geteuid()).pw_name


def make_job(root: Path, job_id: int) -> JobDir:
    """`<root>/<me>/<job_id>/` with its subfolders: the service's part, then the launcher's."""
    ensure_user_dir(root, ME, os.geteuid(), os.getegid())
    return ensure_job_dir(root, ME, job_id)
