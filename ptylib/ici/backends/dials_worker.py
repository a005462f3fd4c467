"""The DIALS side of the ``dials`` ICI backend: index one still with DIALS' Python.

Run by an event's job script under the interpreter DIALS is installed for (Debian: ``/usr/bin/python3``),
with ``-I`` so that neither the project's virtualenv nor this file's folder (which holds ``dials.py``,
the backend) shadows the ``dials`` package. Top-level imports are the standard library only, so the
backend can import this module's constants in the project's virtualenv.

Importing DIALS costs about 3 s of CPU per process, more than indexing a still, so by default the
script only *delegates* (:func:`delegate`): it passes its working directory, arguments and
stdout/stderr to a per-user DIALS server (:func:`serve`), which has DIALS imported and forks one
child per still. The child does exactly what ``--in-process`` (or an unusable server) does in the
script's own process: :func:`process_still`.

The server is started by the first event that finds none. It ends after :data:`SERVER_IDLE_S`
without work, as soon as every flow it served has ended (each request passes the flow's liveness
pipe, :mod:`ptylib.ici.jobs`), or on ``ptyflows ici dials-server stop``. Its socket lies in a folder
private to the user (mode 0700, checked: :func:`server_dir`), and a client checks the server's uid
(``SO_PEERCRED``) before sending anything, so no other local user can receive a client's paths or
outputs.

The ICI detector shift ``(x, y)`` mm has CrystFEL's meaning (``detector_shift_x/y``): the detector is
translated by ``(x, y, 0)`` in the McStas lab frame (beam along +z, y up), i.e. ``(−x, y, 0)`` in
DIALS' imgCIF frame, which moves the beam's position on the detector the other way. The supplied
beam centre is the image's own (header) centre moved accordingly (:func:`shift_to_centre_px`); for a
miniCBF (fast +x, slow −y in imgCIF) that is ``header + (x, y) / pixel size``, so the shift that
indexes best equals the offset (fast, slow) of the true beam centre from the header's.

In the working directory (the event directory) :func:`process_still` runs ``dials.import`` (with
``fast_slow_beam_centre`` = the supplied centre, px) → ``dials.find_spots`` → ``dials.index`` (known
cell and space group, ``indexing.method=fft1d``; refinement as :data:`MODE_ARGS` says) by calling
each program's ``run(args)`` in one process, with DIALS' logging reset between them. Then it gates
success on DIALS' *outputs*, not exit codes: the indexed fraction of the strong spots and the
positional RMSD of the reflections used in refinement. It writes:

- ``dials.import.log``, ``dials.find_spots.log``, ``dials.index.log``, ``imported.expt``,
  ``strong.refl``, ``indexed.expt``, ``indexed.refl`` (DIALS' own files);
- ``stream_######.stream``: a CrystFEL-format stream part (one chunk). Peaks are the strong spots
  (``xyzobs.px.value``, ``intensity.sum.value``); the crystal block lists the indexed reflections at
  their predicted positions (``xyzcal.px``), so the project's wRMSD is computed exactly as for CrystFEL.
  ``indexed_by = none`` and no crystal when the gate fails. In ``refine`` mode the crystal block
  carries ``predict_refine/det_shift x = … y = … mm``: the further detector shift that moves the
  supplied beam centre onto the refined one (CrystFEL's meaning of that line);
- ``per_frame_dx_dy.csv`` (``refine`` mode, indexed): ``dx,dy`` = minus that shift, in metres (applied
  minus refined shift), so ICI Step-2's ``next = applied − λ·1e3·(dx, dy)`` moves toward the refined centre;
- ``dials_summary.json``: the decision and its figures (see :func:`summarize`).

Exit code 0 when a decision was reached (indexed or not), 3 when the still could not be imported
or a DIALS program failed unexpectedly, 70 when the server's child died without answering (a crash
inside DIALS); the reason is always printed to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

SUMMARY_NAME = "dials_summary.json"
DXDY_NAME = "per_frame_dx_dy.csv"
#: What the DIALS programs write and :func:`summarize` reads; the job script removes them first.
DIALS_OUTPUTS = ("imported.expt", "strong.refl", "indexed.expt", "indexed.refl")
EXIT_DECIDED = 0
EXIT_ERROR = 3
EXIT_CRASHED = 70
#: The DIALS server exits after this long (s) with no still in progress.
SERVER_IDLE_S = 120.0
#: How long (s) a client waits for a server it started to listen (binding takes milliseconds), and
#: the server for a connected client's request.
SERVER_START_S = 2.0
#: Socket (``.sock``) and lock (``.lock``) names of the servers in :func:`server_dir` start so.
SERVER_PREFIX = "dials-"
#: Set by the runner for each job (:mod:`ptylib.ici.jobs`): the descriptor of the flow's liveness
#: pipe, whose end of file tells the server that the flow has ended. Variables with the prefix
#: below belong to one job and are not passed on to the shared server.
FLOW_FD_VARIABLE = "PTYFLOWS_ICI_FLOW_FD"
JOB_VARIABLE_PREFIX = "PTYFLOWS_ICI_"
STREAM_HEADER = "CrystFEL stream format 2.3\nGenerated by ptyflows (DIALS backend, one still per part)\n"
_DIALS_LOGGERS = ("dials", "dxtbx", "py.warnings")
#: Refinement in each mode. ``refine`` moves only the detector within its plane (DIALS' Shift1/Shift2),
#: exactly an ICI shift: on a still, beam direction and detector position are nearly degenerate, and
#: with every detector and beam parameter free some stills failed DIALS' cell-volume sanity check.
MODE_ARGS = {
    "refine": ["refinement.parameterisation.detector.fix_list=Dist,Tau1,Tau2,Tau3",
               "refinement.parameterisation.beam.fix=all"],
    "fixed": ["refinement.parameterisation.detector.fix=all", "refinement.parameterisation.beam.fix=all"],
}


def shift_to_centre_px(fast_axis: Sequence[float], slow_axis: Sequence[float],
                       pixel_mm: Sequence[float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """2×2 matrix M (rows fast, slow; px per mm) with Δcentre_px = M · (x, y) for a detector shift (x, y) mm.

    ``fast_axis``/``slow_axis`` are the panel's unit vectors in DIALS' imgCIF lab frame. The shift
    moves the detector by d = (−x, y, 0) (imgCIF), so the beam lands −d·axis / pixel pixels away.
    """
    per_x = (fast_axis[0] / pixel_mm[0], slow_axis[0] / pixel_mm[1])  # d = (−1, 0, 0) per mm of x
    per_y = (-fast_axis[1] / pixel_mm[0], -slow_axis[1] / pixel_mm[1])  # d = (0, 1, 0) per mm of y
    return (per_x[0], per_y[0]), (per_x[1], per_y[1])


def supplied_centre_px(header_px: Sequence[float], shift_mm: Sequence[float],
                       matrix: tuple[tuple[float, float], tuple[float, float]]) -> tuple[float, float]:
    """Beam centre (fast, slow; px) seen by the detector moved by ``shift_mm``: header + M · shift."""
    return (header_px[0] + matrix[0][0] * shift_mm[0] + matrix[0][1] * shift_mm[1],
            header_px[1] + matrix[1][0] * shift_mm[0] + matrix[1][1] * shift_mm[1])


def centre_change_to_shift_mm(delta_px: Sequence[float],
                              matrix: tuple[tuple[float, float], tuple[float, float]]) -> tuple[float, float]:
    """The detector shift (mm) that moves the beam centre by ``delta_px`` (fast, slow): M⁻¹ · Δ."""
    (a, b), (c, d) = matrix
    det = a * d - b * c
    return (d * delta_px[0] - b * delta_px[1]) / det, (a * delta_px[1] - c * delta_px[0]) / det


def header_geometry(image: str) -> tuple[tuple[float, float], tuple[tuple[float, float], tuple[float, float]]]:
    """The image's header beam centre (fast, slow; px) and its shift matrix (:func:`shift_to_centre_px`)."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    experiment = ExperimentListFactory.from_filenames([image])[0]
    panel = experiment.detector[0]
    matrix = shift_to_centre_px(panel.get_fast_axis(), panel.get_slow_axis(), panel.get_pixel_size())
    return panel.get_beam_centre_px(experiment.beam.get_s0()), matrix


def _reset_logging() -> None:
    """Drop the handlers a DIALS program's ``log.config`` added, so the next program logs only to its own file."""
    for name in _DIALS_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def run_program(name: str, args: list[str]) -> str | None:
    """Run ``dials.<name>``'s ``run(args)`` in this process; None on success, else the error text."""
    import importlib

    module = importlib.import_module(f"dials.command_line.{'dials_import' if name == 'import' else name}")
    try:
        module.run(args)
    except SystemExit as exc:  # DIALS reports many failures ("Sorry: ...") with sys.exit
        if exc.code not in (None, 0):
            return f"dials.{name} exited: {exc.code}"
    except Exception as exc:  # noqa: BLE001 - any DIALS failure is an outcome of this still, not a crash of ours
        traceback.print_exc()
        return f"dials.{name} failed: {type(exc).__name__}: {exc}"
    finally:
        _reset_logging()
    return None


def _columns(table, name: str):  # noqa: ANN001, ANN202 - DIALS flex types
    """A reflection-table vector column as a list of (x, y, z) tuples."""
    return list(table[name])


def _inverse_d_nm(detector, beam, xy_px: list[tuple[float, float]]) -> list[float]:  # noqa: ANN001
    """1/d (nm⁻¹) of detector positions (px, panel 0) for the beam's wavelength."""
    panel = detector[0]
    s0 = beam.get_s0()
    k = 1.0 / beam.get_wavelength()
    out = []
    for x, y in xy_px:
        lab = panel.get_pixel_lab_coord((x, y))
        norm = math.sqrt(sum(c * c for c in lab))
        q = [k * c / norm - s for c, s in zip(lab, s0, strict=True)]
        out.append(10.0 * math.sqrt(sum(c * c for c in q)))  # Å⁻¹ → nm⁻¹
    return out


def summarize(mode: str, supplied_px: tuple[float, float], matrix: tuple[tuple[float, float], tuple[float, float]],
              min_fraction: float, max_rmsd_px: float) -> dict:
    """Read DIALS' outputs in the working directory and decide success (figures for ``dials_summary.json``).

    Keys: ``indexed`` (bool), ``reason``, ``n_strong``, ``n_indexed``, ``indexed_fraction``,
    ``rmsd_x_px``/``rmsd_y_px``/``rmsd_px`` (DIALS' positional RMSDs of the reflections used in
    refinement; ``rmsd_px`` = sqrt(x² + y²)), ``refined_centre_px`` (fast, slow), ``pixel_size_mm``
    (fast, slow), ``n_lattices`` and, in ``refine`` mode, ``det_shift_mm``: the detector shift (mm) from
    the supplied to the refined centre, M⁻¹ · (refined − supplied) with M of :func:`shift_to_centre_px`.
    """
    from dials.array_family import flex
    from dxtbx.model.experiment_list import ExperimentListFactory

    summary: dict = {"indexed": False, "min_indexed_fraction": min_fraction, "max_rmsd_px": max_rmsd_px}
    strong = flex.reflection_table.from_file("strong.refl")
    summary["n_strong"] = len(strong)
    if not (Path("indexed.expt").is_file() and Path("indexed.refl").is_file()):
        summary["reason"] = "dials_not_indexed: dials.index wrote no indexed.expt/indexed.refl"
        return summary
    experiments = ExperimentListFactory.from_json_file("indexed.expt", check_format=False)
    refl = flex.reflection_table.from_file("indexed.refl")
    if len(experiments) == 0:
        summary["reason"] = "dials_not_indexed: indexed.expt holds no crystal"
        return summary
    detector, beam = experiments[0].detector, experiments[0].beam
    refined = detector[0].get_beam_centre_px(beam.get_s0())
    pixel = detector[0].get_pixel_size()
    n_indexed = int(refl.get_flags(refl.flags.indexed).count(True))
    used = refl.select(refl.get_flags(refl.flags.used_in_refinement))
    summary.update(n_indexed=n_indexed, refined_centre_px=list(refined), pixel_size_mm=list(pixel),
                   n_lattices=len(experiments))
    if len(used) == 0 or len(strong) == 0:
        summary["reason"] = "dials_not_indexed: no reflection was used in refinement"
        return summary
    xc, yc, _ = used["xyzcal.px"].parts()
    xo, yo, _ = used["xyzobs.px.value"].parts()
    rmsd_x = math.sqrt(flex.mean((xc - xo) ** 2))
    rmsd_y = math.sqrt(flex.mean((yc - yo) ** 2))
    fraction = n_indexed / len(strong)
    summary.update(indexed_fraction=fraction, rmsd_x_px=rmsd_x, rmsd_y_px=rmsd_y,
                   rmsd_px=math.hypot(rmsd_x, rmsd_y))
    if mode == "refine":
        summary["det_shift_mm"] = list(centre_change_to_shift_mm(
            (refined[0] - supplied_px[0], refined[1] - supplied_px[1]), matrix))
    if fraction < min_fraction:
        summary["reason"] = f"gate_indexed_fraction: {fraction:.3f} < {min_fraction:g}"
    elif not summary["rmsd_px"] <= max_rmsd_px:
        summary["reason"] = f"gate_rmsd: {summary['rmsd_px']:.3f} px > {max_rmsd_px:g} px"
    else:
        summary.update(indexed=True, reason="indexed")
    return summary


def stream_text(summary: dict, filename: str, event: str) -> str:
    """One CrystFEL-format chunk from DIALS' outputs in the working directory (see the module docstring)."""
    lines = [STREAM_HEADER.rstrip("\n"), "----- Begin chunk -----", f"Image filename: {filename}", f"Event: {event}",
             f"indexed_by = {'dials_fft1d' if summary['indexed'] else 'none'}",
             f"dials/reason = {summary.get('reason', '')}"]
    if Path("strong.refl").is_file() and Path("imported.expt").is_file():
        from dials.array_family import flex
        from dxtbx.model.experiment_list import ExperimentListFactory

        imported = ExperimentListFactory.from_json_file("imported.expt", check_format=False)[0]
        strong = flex.reflection_table.from_file("strong.refl")
        xy = [(x, y) for x, y, _ in _columns(strong, "xyzobs.px.value")]
        inv_d = _inverse_d_nm(imported.detector, imported.beam, xy)
        lines += [f"num_peaks = {len(xy)}", "Peaks from peak search",
                  "  fs/px   ss/px (1/d)/nm^-1   Intensity  Panel"]
        lines += [f"{x:8.2f} {y:8.2f} {d:10.2f} {i:12.2f}   p0"
                  for (x, y), d, i in zip(xy, inv_d, strong["intensity.sum.value"], strict=True)]
        lines.append("End of peak list")
    if summary["indexed"]:
        lines += _crystal_lines(summary)
    lines.append("----- End chunk -----")
    return "\n".join(lines) + "\n"


def _crystal_lines(summary: dict) -> list[str]:
    from dials.array_family import flex
    from dxtbx.model.experiment_list import ExperimentListFactory

    experiment = ExperimentListFactory.from_json_file("indexed.expt", check_format=False)[0]
    refl = flex.reflection_table.from_file("indexed.refl")
    refl = refl.select(refl.get_flags(refl.flags.indexed) & (refl["id"] == 0))
    a, b, c, al, be, ga = experiment.crystal.get_unit_cell().parameters()
    astar = experiment.crystal.get_A()  # row-major 3x3 in Å⁻¹; columns are a*, b*, c*
    lines = ["--- Begin crystal",
             f"Cell parameters {a / 10:.5f} {b / 10:.5f} {c / 10:.5f} nm, {al:.5f} {be:.5f} {ga:.5f} deg"]
    for k, name in enumerate(("astar", "bstar", "cstar")):
        lines.append(f"{name} = " + " ".join(f"{10 * astar[3 * r + k]:+.7f}" for r in range(3)) + " nm^-1")
    lines.append(f"dials/rmsd_px = {summary['rmsd_x_px']:.6f} {summary['rmsd_y_px']:.6f}")
    if "det_shift_mm" in summary:
        dx, dy = summary["det_shift_mm"]
        lines.append(f"predict_refine/det_shift x = {dx:.6f} y = {dy:.6f} mm")
    lines += ["Reflections measured after indexing",
              "   h    k    l          I   sigma(I)       peak background  fs/px  ss/px panel"]
    variance = refl["intensity.sum.variance"]
    # DIALS has no peak-pixel or background figure per spot here: written as 0 (not used in scoring).
    for hkl, i, v, (x, y, _) in zip(refl["miller_index"], refl["intensity.sum.value"], variance,
                                    _columns(refl, "xyzcal.px"), strict=True):
        lines.append("{:4d} {:4d} {:4d} ".format(*hkl) + f"{i:10.2f} {math.sqrt(max(v, 0.0)):10.2f} {0.0:10.2f} "
                     f"{0.0:10.2f} {x:7.2f} {y:7.2f} p0")
    lines += ["End of reflections", "--- End crystal"]
    return lines


def _write_text(path: str, text: str) -> None:
    # Same-folder temporary file + rename: a killed worker never leaves half a stream or summary.
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def program_steps(opts: argparse.Namespace, supplied: Sequence[float]) -> list[tuple[str, list[str], str | None]]:
    """(program, arguments, output it must write or None) of the three DIALS programs for one still."""
    # Debian's DIALS 3.12 lacks xfel_mono_sim_ext, so its stills indexer fails on every candidate;
    # the sequences indexer (what "Auto" picks for a single still there) indexes stills well.
    index_args = [f"unit_cell={opts.unit_cell}", f"space_group={opts.space_group}", "indexing.method=fft1d",
                  "indexing.stills.indexer=sequences", *MODE_ARGS[opts.mode], *opts.index_arg]
    return [
        ("import", [opts.image, f"fast_slow_beam_centre={supplied[0]!r},{supplied[1]!r}",
                    "output.experiments=imported.expt", "output.log=dials.import.log"], "imported.expt"),
        ("find_spots", ["imported.expt", "output.reflections=strong.refl", "output.log=dials.find_spots.log",
                        *opts.find_spots_arg], "strong.refl"),
        # No required output: "no lattice found" is an outcome that summarize() reads from the missing files.
        ("index", ["imported.expt", "strong.refl", "output.experiments=indexed.expt",
                   "output.reflections=indexed.refl", "output.log=dials.index.log", *index_args], None),
    ]


def process_still(opts: argparse.Namespace) -> int:
    """Import, find spots, index and score one still in the working directory; returns the exit code.

    The directory must not hold an earlier attempt's outputs (the job script removes them).
    """
    started = time.monotonic()
    summary: dict = {"indexed": False, "mode": opts.mode, "image": opts.image,
                     "det_shift_mm_applied": list(opts.det_shift_mm)}
    try:
        header_px, matrix = header_geometry(opts.image)
    except Exception as exc:  # noqa: BLE001 - an unreadable still is an outcome, reported like any other
        summary["reason"] = f"dials_unreadable_image: {opts.image}: {type(exc).__name__}: {exc}"
        return _finish(summary, opts, EXIT_ERROR, started)
    supplied = supplied_centre_px(header_px, opts.det_shift_mm, matrix)
    summary.update(header_centre_px=list(header_px), supplied_centre_px=list(supplied),
                   shift_matrix_px_per_mm=[list(row) for row in matrix], timings_s={})
    error = None
    for name, args, required in program_steps(opts, supplied):
        t0 = time.monotonic()
        error = run_program(name, args)
        summary["timings_s"][name] = time.monotonic() - t0
        if required is None:
            continue
        if error is None and not Path(required).is_file():
            error = f"dials.{name} wrote no {required}"  # it can return normally without writing it
        if error is not None:
            summary["reason"] = f"dials_error: {error}"
            return _finish(summary, opts, EXIT_ERROR, started)
    try:
        summary.update(summarize(opts.mode, supplied, matrix, opts.min_indexed_fraction, opts.max_rmsd_px))
        if error is not None and not summary["indexed"]:
            summary["reason"] = f"dials_not_indexed: {error}"  # e.g. "No suitable lattice could be found"
    except Exception as exc:  # noqa: BLE001 - an unreadable DIALS output is an outcome of this still
        traceback.print_exc()
        summary.update(indexed=False, reason=f"dials_output_unreadable: {type(exc).__name__}: {exc}")
        return _finish(summary, opts, EXIT_ERROR, started)
    return _finish(summary, opts, EXIT_DECIDED, started)


def _finish(summary: dict, opts: argparse.Namespace, code: int, started: float) -> int:
    """Write the stream part, ``per_frame_dx_dy.csv`` (refine mode, indexed) and the summary; report the reason."""
    try:
        text = stream_text(summary, opts.filename, opts.event)
    except Exception as exc:  # noqa: BLE001 - fall back to a chunk without peaks rather than no part at all
        traceback.print_exc()
        summary.update(indexed=False, reason=f"dials_output_unreadable: {exc}")
        text = "\n".join([STREAM_HEADER.rstrip("\n"), "----- Begin chunk -----", f"Image filename: {opts.filename}",
                          f"Event: {opts.event}", "indexed_by = none", "----- End chunk -----", ""])
        code = EXIT_ERROR
    if summary["indexed"] and "det_shift_mm" in summary:
        dx_mm, dy_mm = summary["det_shift_mm"]
        _write_text(DXDY_NAME, f"dx,dy\n{-dx_mm * 1e-3!r},{-dy_mm * 1e-3!r}\n")
    summary["elapsed_s"] = time.monotonic() - started
    _write_text(SUMMARY_NAME, json.dumps(summary, indent=1) + "\n")
    _write_text(opts.stream, text)
    print(f"ptyflows dials worker: {summary['reason']}", file=sys.stderr if not summary["indexed"] else sys.stdout)
    return code


def _pair(text: str) -> tuple[float, float]:
    x, y = (float(v) for v in text.split(","))
    return x, y


def parser() -> argparse.ArgumentParser:
    """Command line of the worker (the backend's job scripts build it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", required=True, help="the still (a file dials.import reads, e.g. name_00001.cbf)")
    p.add_argument("--det-shift-mm", type=_pair, required=True, help="ICI detector shift 'x,y' (mm)")
    p.add_argument("--unit-cell", required=True, help="a,b,c,alpha,beta,gamma (Å, deg)")
    p.add_argument("--space-group", required=True)
    p.add_argument("--mode", choices=tuple(MODE_ARGS), default="refine")
    p.add_argument("--min-indexed-fraction", type=float, default=0.8)
    p.add_argument("--max-rmsd-px", type=float, default=0.5)
    p.add_argument("--stream", required=True, help="stream part to write")
    p.add_argument("--filename", required=True, help="'Image filename' of the chunk (the source HDF5)")
    p.add_argument("--event", required=True, help="'Event' of the chunk, e.g. //3")
    p.add_argument("--find-spots-arg", action="append", default=[], help="extra dials.find_spots argument")
    p.add_argument("--index-arg", action="append", default=[], help="extra dials.index argument")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` and process one still in the working directory."""
    return process_still(parser().parse_args(argv))


# ---- the DIALS server: DIALS imported once, one forked child per still --------------------------


class ForeignServerError(ConnectionError):
    """The process answering on the server's socket runs as another user: nothing is sent to it."""


def _check_private(path: Path) -> None:
    """PermissionError unless ``path`` is a folder (not a link) owned by this user with no access for others."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{path} is not a folder private to uid {os.getuid()} (owner uid {info.st_uid}, "
                              f"mode {stat.filemode(info.st_mode)}); remove it so that it is made again with mode 0700")


def server_dir() -> Path:
    """The per-user folder of the DIALS server's socket, mode 0700 (made when missing).

    ``$XDG_RUNTIME_DIR/ptyflows`` when that runtime folder is private to this user, else
    ``<temp dir>/ptyflows-<uid>``. PermissionError when the folder is not a folder owned by this
    user without access for others (e.g. another user made it first).
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    path = Path(tempfile.gettempdir(), f"ptyflows-{os.getuid()}")
    if os.path.isabs(runtime):  # unset or relative: never a folder that depends on the working directory
        with contextlib.suppress(OSError):
            _check_private(Path(runtime))
            path = Path(runtime, "ptyflows")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    _check_private(path)
    return path


def server_socket_path() -> Path:
    """The server's socket: one per interpreter and version of this file, in :func:`server_dir`."""
    digest = hashlib.sha256(f"{sys.executable}\0".encode() + Path(__file__).read_bytes()).hexdigest()[:16]
    return server_dir() / f"{SERVER_PREFIX}{digest}.sock"


def _peer_uid_pid(connection: socket.socket) -> tuple[int, int]:
    pid, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return uid, pid


def _connect(path: Path, expected_uid: int | None = None) -> socket.socket | None:
    """A connection to the server at ``path`` (None when nobody listens), its peer checked before anything is sent.

    Raises :class:`ForeignServerError` when the peer runs as another uid than ``expected_uid``
    (default: this process's).
    """
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
    except OSError:
        connection.close()
        return None
    uid, pid = _peer_uid_pid(connection)
    expected = os.getuid() if expected_uid is None else expected_uid
    if uid != expected:
        connection.close()
        raise ForeignServerError(f"{path} is served by pid {pid} of uid {uid}, not uid {expected}")
    return connection


def _flow_fd() -> int | None:
    """The descriptor named by :data:`FLOW_FD_VARIABLE` when it is an open pipe (the runner's flow-liveness pipe)."""
    try:
        fd = int(os.environ[FLOW_FD_VARIABLE])
        return fd if stat.S_ISFIFO(os.fstat(fd).st_mode) else None
    except (KeyError, ValueError, OSError):
        return None


def delegate(argv: list[str], *, start_server: bool = True) -> int | None:
    """Process one still in the DIALS server (started on first use); None when no server can be used.

    Sends the working directory, ``argv``, this process's stdout/stderr descriptors and the flow's
    liveness pipe (so the server ends with the last flow it serves); the server's child writes there
    and answers with its exit code. A child that dies without answering (a crash in DIALS) gives
    :data:`EXIT_CRASHED`. An unsafe socket folder or a server of another user is reported on stderr
    and the still is then processed in this process.
    """
    try:
        path = server_socket_path()
        connection = _connect(path)
        if connection is None and start_server:
            # New session: the runner's timeout kills the event's process group, not the shared server.
            # One BLAS/OpenMP thread: the server forks (safest with a single thread), and stills already
            # run side by side. The job's own variables stay with the job.
            env = {k: v for k, v in os.environ.items() if not k.startswith(JOB_VARIABLE_PREFIX)}
            env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
            subprocess.Popen([sys.executable, "-I", __file__, "--serve"], cwd="/", env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + SERVER_START_S
            while connection is None and time.monotonic() < deadline:
                time.sleep(0.05)
                connection = _connect(path)
    except (PermissionError, ForeignServerError) as exc:
        print(f"dials_server_refused: {exc}; indexing this still in its own process", file=sys.stderr)
        return None
    if connection is None:
        return None
    with connection:
        request = json.dumps({"cwd": os.getcwd(), "argv": argv}).encode()
        sys.stdout.flush()
        sys.stderr.flush()
        flow = _flow_fd()
        socket.send_fds(connection, [request], [sys.stdout.fileno(), sys.stderr.fileno(),
                                                *([] if flow is None else [flow])])
        reply = b""
        while len(reply) < 4:
            chunk = connection.recv(4 - len(reply))
            if not chunk:
                print("dials_crashed: the DIALS server's process for this still died without an answer",
                      file=sys.stderr)
                return EXIT_CRASHED
            reply += chunk
    return struct.unpack("!i", reply)[0]


def stop_servers() -> list[dict]:
    """Ask every DIALS server of this user to stop; one reply per server (``pid``, ``ended_stills``).

    Stills in progress are ended (their events record ``dials_crashed``). A socket nobody serves is skipped.
    """
    replies = []
    for path in sorted(server_dir().glob(f"{SERVER_PREFIX}*.sock")):
        connection = _connect(path)
        if connection is None:
            continue
        with connection:
            connection.sendall(json.dumps({"stop": True}).encode())
            connection.shutdown(socket.SHUT_WR)
            answer = b"".join(iter(lambda: connection.recv(4096), b""))
        with contextlib.suppress(ValueError):
            replies.append(json.loads(answer))
    return replies


class _Server:
    """State of :func:`serve`: the listening socket, the stills in progress and the flows served."""

    def __init__(self, listener: socket.socket, path: Path) -> None:
        self.listener = listener
        self.path = path
        self.children: set[int] = set()
        self.flows: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) of a flow's pipe -> our descriptor
        self.flows_seen = False

    def reap(self) -> bool:
        """Collect finished children; whether any finished."""
        finished = {pid for pid in self.children if os.waitpid(pid, os.WNOHANG)[0]}
        self.children -= finished
        return bool(finished)

    def drop_ended_flows(self, readable: list) -> None:
        """Forget the flows whose pipe reached end of file (nothing is ever written to it)."""
        for key, fd in list(self.flows.items()):
            if fd in readable:
                os.close(fd)
                del self.flows[key]

    def add_flow(self, fd: int) -> None:
        """Keep one descriptor per flow pipe."""
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        if key in self.flows or not stat.S_ISFIFO(info.st_mode):
            os.close(fd)
            return
        self.flows[key] = fd
        self.flows_seen = True

    def stop(self, connection: socket.socket) -> None:
        """End the stills in progress, answer the stopping client and remove the socket."""
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            connection.sendall(json.dumps({"pid": os.getpid(), "ended_stills": len(self.children)}).encode())
        connection.close()
        self.close()

    def close(self) -> None:
        """Stop listening and remove the socket (this server holds the lock, so it is still its own)."""
        self.listener.close()
        self.path.unlink(missing_ok=True)


def serve(idle_exit_s: float = SERVER_IDLE_S) -> int:
    """Run the DIALS server; 0 when it ends, or at once when another one already serves this socket.

    It ends when ``idle_exit_s`` pass with no still in progress, when every flow it has served has
    ended (their liveness pipes closed) and no still is in progress, or on a stop request
    (:func:`stop_servers`). Single-threaded: it imports DIALS once, then forks a child per still (from a
    process with no other threads, so forking is safe); each child runs :func:`main` in the client's
    directory with the client's stdout/stderr, so a crash or a hang stays with that one still.
    """
    path = server_socket_path()
    lock = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another server won the race; it serves this file's version too
    path.unlink(missing_ok=True)  # left by a server that was killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    server = _Server(listener, path)
    # Everything the three programs and the scoring import, loaded before any client is served.
    import dials.array_family.flex  # noqa: F401
    import dials.command_line.dials_import  # noqa: F401
    import dials.command_line.find_spots  # noqa: F401
    import dials.command_line.index  # noqa: F401
    import dxtbx.model.experiment_list  # noqa: F401

    last_activity = time.monotonic()
    while True:
        if server.reap():
            last_activity = time.monotonic()
        idle = time.monotonic() - last_activity > idle_exit_s
        if not server.children and (idle or (server.flows_seen and not server.flows)):
            server.close()
            return 0
        readable = select.select([listener, *server.flows.values()], [], [], 0.5)[0]
        server.drop_ended_flows(readable)
        if listener not in readable:
            continue
        connection, _ = listener.accept()
        if _peer_uid_pid(connection)[0] != os.getuid():  # the folder is private; this is a second line
            connection.close()
            continue
        connection.settimeout(SERVER_START_S)
        try:
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
            request = json.loads(message)
        except (OSError, ValueError):
            connection.close()
            continue
        if request.get("stop"):
            server.stop(connection)
            return 0
        if len(fds) == 3:
            server.add_flow(fds.pop())
        pid = os.fork()
        if pid == 0:
            listener.close()
            for fd in server.flows.values():
                os.close(fd)
            _serve_one(connection, request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        connection.close()
        server.children.add(pid)
        last_activity = time.monotonic()


def _serve_one(connection: socket.socket, request: dict, fds: list[int]) -> None:
    """In a forked child: run one request in the client's folder with its stdout/stderr, answer with the exit code, exit."""
    code = EXIT_ERROR
    try:
        connection.settimeout(None)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        os.chdir(request["cwd"])
        threading.Thread(target=_exit_when_client_goes, args=(connection,), daemon=True).start()
        code = main(request["argv"])
    except SystemExit as exc:  # argparse errors
        code = exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BaseException:  # noqa: BLE001 - report, answer and exit whatever happened
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            connection.sendall(struct.pack("!i", code))
        finally:
            os._exit(code)


def _exit_when_client_goes(connection: socket.socket) -> None:
    # The client sends nothing after its request: end of file means it was killed (e.g. the
    # runner's timeout), so this still's work stops too.
    if not connection.recv(1):
        os._exit(EXIT_CRASHED)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        # --serve [--idle-exit-s S]
        sys.exit(serve(float(sys.argv[3]) if sys.argv[2:3] == ["--idle-exit-s"] else SERVER_IDLE_S))
    in_process = sys.argv[1:2] == ["--in-process"]
    args = sys.argv[2:] if in_process else sys.argv[1:]
    code = None if in_process else delegate(args)
    if code is None:
        code = main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: with DIALS loaded it takes about a second and all files are closed.
    os._exit(code)
