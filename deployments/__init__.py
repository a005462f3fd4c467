"""Deployments of the flows: ``serve_all.py`` serves them (schedules, event triggers: inbox HDF5 files -> ICI loop,
inbox CBF stills -> diffuse pipeline, ICI completion -> report); ``prefect.yaml`` declares the same set for a
process work pool; ``inbox_watcher.py`` emits the inbox events; ``local_stack.py`` is ``ptyflows ui``."""
