"""Where the dose/overlap study keeps its files, relative to the run folder.

Every path a study record stores is relative to the run folder (:func:`ptylib.ptycho.study.run_relative`),
so a copied or moved run folder stays complete and never points back into the original.
"""

from __future__ import annotations

from pathlib import Path

DESIGN = Path("phase_a") / "design.json"
INPUTS = Path("phase_b") / "validation.json"
RUN_MANIFEST = Path("phase_c") / "run_manifest.json"
VIEWS_MANIFEST = Path("phase_d") / "views_manifest.json"
LSQML_MANIFEST = Path("phase_f") / "lsqml_manifest.json"
TRAINING_MANIFEST = Path("phase_e") / "training_manifest.json"
SKIP_SUMMARY = Path("phase_e") / "skip_summary.json"
TRAINING_PLAN = Path("phase_e") / "training_plan.json"
GUARDRAIL = Path("phase_e") / "guardrail.json"
COMPARISON_MANIFEST = Path("phase_g") / "comparison_manifest.json"
SUMMARY_DIR = Path("phase_h")
