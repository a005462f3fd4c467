"""File helpers shared by every pipeline: atomic writes, run directories, locks."""
