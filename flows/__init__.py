"""Prefect flows composing the ptylib kernels (one module per pipeline) and the ``ptyflows`` CLI."""
