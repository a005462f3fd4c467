"""The ICI convergence study as a flow: the project's proposer against simple searches on the same events.

On the demo's dataset (DIALS-rendered stills when DIALS is installed, the stand-in indexer's spot
images otherwise), every strategy runs the full ICI loop from the same first centre in its own run
root ``<run_root>/<mode>/<strategy>``: ``model`` (the project's default), ``hillmap`` (the seed's
policy), and the baselines ``spiral`` (fixed golden-angle spiral) and ``random`` (uniform in the
disk) with a budget of ``proposer.baseline_runs`` runs per event (:mod:`ptylib.ici.proposer.baselines`). Modes:
``fixed`` (detector not refined: the wRMSD is the only signal) and ``refine`` (the indexer refines
the detector; Step-2 / the model use the refined centres). The study compares runs until an event
first indexes, runs until DONE and the final distance to the true centre
(:mod:`ptylib.ici.report.study`), as a table and a plot artifact and as files in ``run_root``. Every loop
resumes where it stopped, so a killed study continues when run again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import flow

from flows.ici_demo import prepare_demo_data
from flows.ici_loop import ici_loop
from ptylib.ici.proposer.options import POLICIES, ProposerOptions
from ptylib.io.lock import RunRootLock
from ptylib.io.manifest import write_manifest
from tasks.ici import study_figures_task, study_report_task

MODES = ("fixed", "refine")


@flow(name="ici-study", log_prints=True)
def ici_study(
    run_root: str = "runs/study/ici",
    n_events: int = 16,
    data_seed: int = 2026,
    modes: tuple[str, ...] = MODES,
    strategies: tuple[str, ...] = POLICIES,
    indexer: str = "auto",
    proposer: ProposerOptions | None = None,
    max_iterations: int = 10,
    initial_shift_mm: tuple[float, float] = (0.0, 0.0),
    workers: int = 2,
) -> dict[str, object]:
    """Run every strategy in every mode on the same synthetic events and compare them.

    ``strategies`` are proposer policies (``model``, ``hillmap``, ``spiral``, ``random``); ``proposer``
    holds the other knobs, shared by all (``baseline_runs`` is the baselines' budget per event).
    ``initial_shift_mm`` is every event's first centre (mm; the search disk is centred on it): away
    from the nominal centre it makes a hard start, where runs until first index tell strategies apart.
    Returns the figures per (mode, strategy) and the path of ``study.md``.

    Parameters
    ----------
    run_root : folder of the study; each loop runs in its MODE/STRATEGY sub-folder.
    n_events : synthetic events (stills) shared by every strategy.
    data_seed : seed of the synthetic data.
    modes : fixed (detector not refined) and/or refine.
    strategies : proposer policies to compare (model, hillmap, spiral, random).
    indexer : dials, standin or auto (DIALS when installed).
    proposer : the other proposer knobs, shared by all strategies (baseline_runs is the baselines' budget).
    max_iterations : runs per loop.
    initial_shift_mm : every event's first centre (x, y) in mm; the search disk is centred on it.
    workers : event batches indexed at the same time.
    """
    bad = [m for m in modes if m not in MODES] + [s for s in strategies if s not in POLICIES]
    if bad or not modes or not strategies:
        raise ValueError(f"modes must be among {', '.join(MODES)} and strategies among {', '.join(POLICIES)}; "
                         f"got modes={list(modes)}, strategies={list(strategies)}")
    root = Path(run_root).resolve()
    base = proposer or ProposerOptions()
    with RunRootLock(root, owner="ici-study flow"):  # data, manifest and study files; each loop locks its own root
        data = prepare_demo_data(root, n_events, data_seed, base.radius_mm, indexer)
        write_manifest(root, pipeline="ici_study", inputs=[str(data.h5_path)], parameters={
            "n_events": n_events, "data_seed": data_seed, "modes": list(modes), "strategies": list(strategies),
            "indexer": indexer, "proposer": base.to_dict(), "max_iterations": max_iterations,
            "initial_shift_mm": list(initial_shift_mm), "workers": workers})
        figures = []
        for mode in modes:
            for strategy in strategies:
                options = dataclasses.replace(base, policy=strategy)
                strategy_root = root / mode / strategy
                print(f"{mode} / {strategy}: ICI loop in {strategy_root}")
                ici_loop.with_options(flow_run_name=f"ici-loop-{mode}-{strategy}")(
                    run_root=str(strategy_root), **data.loop_arguments(mode == "refine"), proposer=options,
                    max_iterations=max_iterations, initial_shift_mm=initial_shift_mm, workers=workers)
                figures.append(study_figures_task(str(strategy_root), mode, options))
        study_report_task(str(root), figures)
    return {"figures": [f.row() for f in figures], "report": str(root / "study.md")}
