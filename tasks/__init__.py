"""Thin Prefect tasks around the ptylib kernels: retries, artifacts, progress. No science here.

No task uses Prefect's result cache (each states ``cache_policy=NO_CACHE``): finished steps are reused
through their own records on disk (the study's step records, the ICI ledger)."""
