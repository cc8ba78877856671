"""slurm-ckpt: transparent checkpoint/restart for Slurm batch jobs, with CRIU."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Computed on use: the launcher starts with every job and must start fast.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("slurm-ckpt")
        except PackageNotFoundError:  # a source tree that was not installed
            return "0+unknown"
    raise AttributeError(name)
