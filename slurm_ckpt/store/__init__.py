"""The image store: one private folder per job on storage every node sees.

Modules: `layout` (names and folders), `atomic` (durable writes), `checksum`,
`manifest` (the per-image description), `writer` (atomic commit of a dump),
`verify` (structure and data checks, the published list of valid images).
"""
