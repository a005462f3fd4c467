"""Prefect-free computational kernels of the ptyflows pipelines."""
