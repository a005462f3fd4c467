"""Paths with control characters are refused before any job script or list file is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptylib.ici.backends import CrystfelOptions, EventJob, make_backend
from ptylib.ici.events import resolve_events
from ptylib.ici.model import EventKey

REPO = Path(__file__).resolve().parents[2]


def _h5(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        handle["/entry/data/data"] = np.zeros((2, 4, 4), dtype=np.float32)
    return path


def test_job_script_is_not_written_for_a_name_with_a_newline(tmp_path: Path) -> None:
    backend = make_backend("command", {"template": "cp {h5_path} {stream}"})
    job = EventJob(EventKey(str(tmp_path / "bad\nname.h5"), 0), 0, 0, 0.0, 0.0)
    event_dir = tmp_path / "run_000" / "event_000000"
    with pytest.raises(ValueError, match=r"bad\\nname\.h5', field 'h5_path': holds the control character '\\n'"):
        backend.write_event_script(job, event_dir)
    assert not event_dir.exists()


@pytest.mark.parametrize("name", ["bad\nname.h5", "tab\there.h5", "esc\x1b[31m.h5", "c1\x85.h5"])
def test_event_resolution_refuses_control_characters(tmp_path: Path, name: str) -> None:
    h5 = _h5(tmp_path / name)
    with pytest.raises(ValueError, match="field 'input file': holds the control character") as info:
        resolve_events([h5])
    assert "\n" not in str(info.value) and ascii(str(h5)) in str(info.value)
    if "\n" not in name and "\x85" not in name:  # lines of a list file can carry the others
        listing = tmp_path / "events.lst"
        listing.write_text(f"{name} //1\n", encoding="utf-8")
        with pytest.raises(ValueError, match="holds the control character"):
            resolve_events([], event_list=str(listing))


def test_backend_option_paths_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="field 'geometry'"):
        CrystfelOptions(geometry=tmp_path / "a\nb.geom")
    with pytest.raises(ValueError, match="field 'image_template'"):
        make_backend("dials", {"unit_cell": "79,79,38,90,90,90", "space_group": "P43212",
                               "image_template": "{h5_dir}/x\r{frame}.cbf", "python": sys.executable})


@pytest.mark.slow
def test_cli_gives_one_line_before_any_flow_or_script(tmp_path: Path) -> None:
    h5 = _h5(tmp_path / "bad\nname.h5")
    geometry = tmp_path / "ok.geom"
    geometry.write_text("dim0 = %\ndata = /entry/data/data\n")
    root = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "ici", "run", "--run-root", str(root), "--input", str(h5),
                           "--geometry", str(geometry)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "holds the control character '\\n'" in proc.stderr
    assert not list(root.glob("run_*"))


def test_cli_refuses_a_run_root_with_a_control_character(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.ici_cli_run import _run_checked

    bad_root = tmp_path / "bad\troot"
    assert _run_checked(lambda: pytest.fail("the flow must not start"), bad_root) == 2
    assert "field '--run-root'" in capsys.readouterr().err and not bad_root.exists()
