"""Synthetic ICI data with hidden true centres: the stand-in indexer's dataset and rendered stills for DIALS."""
