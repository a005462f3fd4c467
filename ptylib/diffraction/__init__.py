"""Differentiable crystal-diffraction simulator with nanoBragg's physics (torch), stills and refinement.

Importing this package imports nothing heavy: torch is loaded by the modules that need it
(``cell``, ``mosaic``, ``lattice``, ``detector``, ``simulator``, ``still_renderer``, ``refine``).
"""
