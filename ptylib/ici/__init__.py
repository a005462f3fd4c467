"""Iterative centre-shift indexing (ICI): ledger, proposer, backends. No Prefect here."""
