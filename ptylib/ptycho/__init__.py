"""Ptychography kernels: objects, probes, scans, forward model, dataset contract, grouping, overlap
views, y splits, stitching, metrics and the pty-chi LSQML adapter. No Prefect in here."""
