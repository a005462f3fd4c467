"""An ICI run root on disk: folder and file names (``layout``), the ledger, the state sidecar, ingest, commit."""
