"""Thin Prefect tasks around the ptylib kernels: retries, caching, artifacts. No science here."""
