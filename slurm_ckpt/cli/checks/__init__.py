"""The named checks `ckpt-admin doctor` runs, grouped by what they check.

`base` holds the result every check returns; `criu` checks CRIU and the node,
`store` the store root and the catalog, `cluster` Slurm, its plugins and the
service. Each check takes the settings and never raises.
"""
