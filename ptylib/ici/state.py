"""The ``image_run_state.json`` sidecar: per-event trials, proposal history and ever-indexed flag.

File layout (lengths in mm, wRMSD in px)::

    {
    "last_global_run": 3,
    "events": {
    "/abs/file.h5//12": {"trials": [{"run_n": 0, "det_shift_x_mm": 0.0, "det_shift_y_mm": 0.0,
                          "wrmsd": null, "success": false}, ...],
                         "proposal_history": [{"next_run_n": 1, "dx_mm": 0.01, "dy_mm": -0.02,
                                               "reason": "step1_hillmap_wrmsd_sample"}, ...],
                         "ever_indexed": false},
    ...
    }}

One event per line (compact JSON inside), in insertion order. ``wrmsd`` is ``null`` when the run did
not index and the string ``"inf"`` for an explicit failure; a DONE proposal has ``dx_mm`` and
``dy_mm`` ``null``. Floats are written with ``repr`` precision, so a written state reads back equal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptylib.ici.ledger import gc_paused
from ptylib.ici.model import EventHistory, EventKey, IciInputError
from ptylib.io.atomic import atomic_write_text

_INF = "inf"


@dataclass
class TrialRecord:
    """One run of one event: the shift used (mm), its wRMSD (px; None = not indexed, inf = failure)."""

    run_n: int
    det_shift_x_mm: float
    det_shift_y_mm: float
    wrmsd: float | None
    success: bool


@dataclass
class ProposalRecord:
    """A proposal made for run ``next_run_n``: shift (mm), or None/None for DONE, and its reason code."""

    next_run_n: int
    dx_mm: float | None
    dy_mm: float | None
    reason: str

    @property
    def is_done(self) -> bool:
        """True for a DONE proposal (no shift, reason ``done*``)."""
        return self.dx_mm is None and self.dy_mm is None and self.reason.startswith("done")


@dataclass
class EventState:
    """Everything the sidecar keeps about one event."""

    trials: list[TrialRecord] = field(default_factory=list)
    proposal_history: list[ProposalRecord] = field(default_factory=list)
    ever_indexed: bool = False


@dataclass
class RunState:
    """The whole sidecar: events by key and the last ingested run (-1 when none)."""

    events: dict[EventKey, EventState] = field(default_factory=dict)
    last_global_run: int = -1


# ----------------------------------------------------------------------------- ledger -> state


def state_from_ledger(histories: Mapping[EventKey, EventHistory], previous: RunState | None) -> RunState:
    """Rebuild trials and ever-indexed flags from the ledger, keeping the previous proposal histories.

    Events absent from the ledger are dropped. ``last_global_run`` is the larger of the previous
    value and the highest run in the ledger; no proposal is appended (the proposer does that).
    """
    old_events = previous.events if previous is not None else {}
    last_run = previous.last_global_run if previous is not None else -1
    events: dict[EventKey, EventState] = {}
    with gc_paused():
        for key, history in histories.items():
            trials = [TrialRecord(row.run_n, row.det_shift_x_mm, row.det_shift_y_mm, row.wrmsd, row.succeeded)
                      for row in history.rows]
            ever = any(row.indexed for row in history.rows) or any(trial.success for trial in trials)
            old = old_events.get(key)
            events[key] = EventState(trials, list(old.proposal_history) if old else [], ever)
            if trials:
                last_run = max(last_run, trials[-1].run_n)
    return RunState(events, last_run)


# ----------------------------------------------------------------------------- writing


def format_state(state: RunState) -> str:
    """The sidecar as JSON text (one event per line; see the module docstring)."""
    with gc_paused():
        lines = [f"{json.dumps(key.label())}: {_dumps(_event_to_json(event))}" for key, event in state.events.items()]
    body = ",\n".join(lines)
    return f'{{\n"last_global_run": {int(state.last_global_run)},\n"events": {{\n{body}\n}}}}\n'


def write_state(path: Path, state: RunState) -> None:
    """Write the sidecar to ``path`` atomically."""
    atomic_write_text(path, format_state(state))


def _dumps(obj: Any) -> str:
    """Compact JSON that refuses NaN/inf (they must be encoded by the caller)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _event_to_json(event: EventState) -> dict[str, Any]:
    """JSON-ready dict of one event."""
    return {
        "trials": [
            {"run_n": int(t.run_n), "det_shift_x_mm": float(t.det_shift_x_mm),
             "det_shift_y_mm": float(t.det_shift_y_mm), "wrmsd": _wrmsd_to_json(t.wrmsd), "success": bool(t.success)}
            for t in event.trials
        ],
        "proposal_history": [
            {"next_run_n": int(p.next_run_n), "dx_mm": _optional_float(p.dx_mm), "dy_mm": _optional_float(p.dy_mm),
             "reason": p.reason}
            for p in event.proposal_history
        ],
        "ever_indexed": bool(event.ever_indexed),
    }


def _wrmsd_to_json(wrmsd: float | None) -> float | str | None:
    """None (or NaN) -> null, inf -> "inf", otherwise the float."""
    if wrmsd is None or math.isnan(wrmsd):
        return None
    return _INF if math.isinf(wrmsd) else float(wrmsd)


def _optional_float(value: float | None) -> float | None:
    """None stays None; numbers become plain floats."""
    return None if value is None else float(value)


# ----------------------------------------------------------------------------- reading


def read_state(path: Path) -> RunState:
    """Read the sidecar; a missing file gives an empty :class:`RunState`."""
    path = Path(path)
    if not path.exists():
        return RunState()
    return parse_state(path.read_bytes(), str(path))


def parse_state(data: bytes, name: str) -> RunState:
    """Parse sidecar bytes; ``name`` (the file) is used in error messages."""
    with gc_paused():
        try:
            document = json.loads(data.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise IciInputError(name, f"not UTF-8 text (byte {exc.start})", field_name="json") from None
        except json.JSONDecodeError as exc:
            raise IciInputError(name, f"corrupt JSON: {exc.msg} (column {exc.colno})", line=exc.lineno,
                                field_name="json") from None
        return _state_from_json(document, name)


def _state_from_json(document: Any, name: str) -> RunState:
    """Validate and convert a decoded sidecar."""
    _expect(isinstance(document, dict), name, "<top level>", "an object", document)
    last = document.get("last_global_run")
    _expect(_is_int(last) and last >= -1, name, "last_global_run", "an integer >= -1", last)
    events_json = document.get("events")
    _expect(isinstance(events_json, dict), name, "events", "an object", events_json)
    events: dict[EventKey, EventState] = {}
    for label, event_json in events_json.items():
        try:
            key = EventKey.from_label(label)
        except ValueError:
            raise IciInputError(name, f"event key '{label}' is not '<h5 path>//<event>'",
                                field_name=f"events[{label!r}]") from None
        events[key] = _event_from_json(event_json, name, f"events[{label!r}]")
    return RunState(events, last)


def _event_from_json(obj: Any, name: str, where: str) -> EventState:
    """One event's state."""
    _expect(isinstance(obj, dict), name, where, "an object", obj)
    trials_json = obj.get("trials")
    history_json = obj.get("proposal_history")
    ever = obj.get("ever_indexed")
    _expect(isinstance(trials_json, list), name, f"{where}.trials", "a list", trials_json)
    _expect(isinstance(history_json, list), name, f"{where}.proposal_history", "a list", history_json)
    _expect(isinstance(ever, bool), name, f"{where}.ever_indexed", "true or false", ever)
    trials = [_trial_from_json(item, name, f"{where}.trials[{i}]") for i, item in enumerate(trials_json)]
    history = [_proposal_from_json(item, name, f"{where}.proposal_history[{i}]")
               for i, item in enumerate(history_json)]
    return EventState(trials, history, ever)


def _trial_from_json(obj: Any, name: str, where: str) -> TrialRecord:
    """One trial record."""
    _expect(isinstance(obj, dict), name, where, "an object", obj)
    run_n = obj.get("run_n")
    _expect(_is_int(run_n) and run_n >= 0, name, f"{where}.run_n", "an integer >= 0", run_n)
    success = obj.get("success")
    _expect(isinstance(success, bool), name, f"{where}.success", "true or false", success)
    return TrialRecord(
        run_n,
        _finite_from_json(obj.get("det_shift_x_mm"), name, f"{where}.det_shift_x_mm"),
        _finite_from_json(obj.get("det_shift_y_mm"), name, f"{where}.det_shift_y_mm"),
        _wrmsd_from_json(obj.get("wrmsd"), name, f"{where}.wrmsd"),
        success,
    )


def _proposal_from_json(obj: Any, name: str, where: str) -> ProposalRecord:
    """One proposal record."""
    _expect(isinstance(obj, dict), name, where, "an object", obj)
    next_run_n = obj.get("next_run_n")
    _expect(_is_int(next_run_n) and next_run_n >= 0, name, f"{where}.next_run_n", "an integer >= 0", next_run_n)
    reason = obj.get("reason")
    _expect(isinstance(reason, str), name, f"{where}.reason", "a string", reason)
    dx, dy = obj.get("dx_mm"), obj.get("dy_mm")
    _expect((dx is None) == (dy is None), name, f"{where}.dx_mm", "null together with dy_mm (DONE)", dx)
    if dx is None:
        return ProposalRecord(next_run_n, None, None, reason)
    return ProposalRecord(next_run_n, _finite_from_json(dx, name, f"{where}.dx_mm"),
                          _finite_from_json(dy, name, f"{where}.dy_mm"), reason)


def _finite_from_json(value: Any, name: str, where: str) -> float:
    """A finite number (JSON ints accepted)."""
    _expect(_is_number(value) and math.isfinite(value), name, where, "a finite number", value)
    return float(value)


def _wrmsd_from_json(value: Any, name: str, where: str) -> float | None:
    """null -> None, "inf" -> inf, otherwise a number >= 0."""
    if value is None:
        return None
    if value == _INF:
        return math.inf
    _expect(_is_number(value) and value >= 0, name, where, 'null, "inf" or a number >= 0', value)
    return float(value)


def _is_int(value: Any) -> bool:
    """A JSON integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A JSON number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expect(ok: bool, name: str, where: str, expected: str, found: Any) -> None:
    """Raise an IciInputError naming the key when ``ok`` is false."""
    if not ok:
        raise IciInputError(name, f"expected {expected}, found {_describe(found)}", field_name=where)


def _describe(value: Any) -> str:
    """Short text for a wrong JSON value (containers by type only)."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'list'}"
    return "nothing (key missing or null)" if value is None else repr(value)[:80]
