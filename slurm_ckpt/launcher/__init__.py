"""`slurm-ckpt-launch`: the in-job launcher, used as a batch script's interpreter."""
