"""The Slurm adapter: `base.SlurmAdapter` and its implementations (see `registry`).

Importing this package needs neither Slurm nor pyslurm.
"""

from slurm_ckpt.slurm.base import JobInfo, NodeInfo, SlurmAdapter

__all__ = ["JobInfo", "NodeInfo", "SlurmAdapter"]
