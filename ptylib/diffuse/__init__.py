"""Diffuse scattering from stills: masks, per-pixel q and corrections, voxel grid, scaling, merging, diagnostics."""
