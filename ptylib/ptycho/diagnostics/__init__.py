"""Sim-lines debug scenarios: a seeded "lines" object simulated, split, grouped, trained (PINN), inferred and
stitched, with diagnostics that catch the clipped-canvas / dim-amplitude / NaN class of failures.

``scenario`` holds the typed options and the built-in scenarios; ``lines`` the object; ``data`` the
simulate → split → group step; ``probe_stats``, ``grouping_stats``, ``reassembly``, ``training`` and
``comparison`` the diagnostics; ``report`` the pass/fail checks. No Prefect import here.
"""
