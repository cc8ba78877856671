"""Dump backends: save a running process tree into a folder and bring it back."""
