"""Deployments of the flows: ``serve_all.py`` serves them (with the flight check's schedule); ``prefect.yaml``
declares them for a process work pool. Event triggers are planned, not yet declared."""
