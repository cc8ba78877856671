"""`ckpt-admin`: the admin and user command line."""
