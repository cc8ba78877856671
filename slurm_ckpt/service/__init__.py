"""`slurm-ckptd`: the scheduler-side service."""
