"""slurm-ckpt: transparent checkpoint/restart for Slurm batch jobs, with CRIU."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slurm-ckpt")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
