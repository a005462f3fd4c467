"""The ``image_run_state.json`` sidecar: per-event trials, proposal history and ever-indexed flag.

File layout (lengths in mm, wRMSD in px), one event per line in insertion order, compact JSON
inside each line::

    {
    "last_global_run": 3,
    "events": {
    "/abs/file.h5::12": {"trials":[{"run_n":0,"det_shift_x_mm":0.0,"det_shift_y_mm":0.0,"wrmsd":null,
        "success":false}],"proposal_history":[{"next_run_n":1,"dx_mm":0.01,"dy_mm":-0.02,
        "reason":"step1_hillmap_pure_exploration"}],"ever_indexed":false},
    ...
    }}

(each event is one line in the file; it is wrapped here).

Event keys are :meth:`EventKey.sidecar_key` (``<h5 path>::<event>``, the original tools' form, so
their summary tools read this file; keys ``<h5 path>//<event>`` of earlier versions are read too). ``wrmsd`` is ``null`` when the run
did not index and the string ``"inf"`` for an explicit failure (so the file stays standard JSON); a
DONE proposal has ``dx_mm`` and ``dy_mm`` ``null``. Floats are written with ``repr`` precision, so a
written state reads back equal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, NoReturn, TypeGuard

from ptylib.ici.model import (
    EventHistory,
    EventKey,
    IciInputError,
    Proposal,
)
from ptylib.ici.runroot.ledger import format_rows, gc_paused

_INF = "inf"


@dataclass
class TrialRecord:
    """One run of one event: the shift used (mm), its wRMSD (px; None = not indexed, inf = failure)."""

    run_n: int
    det_shift_x_mm: float
    det_shift_y_mm: float
    wrmsd: float | None
    success: bool


@dataclass(frozen=True)
class ProposalEntry:
    """An item of an event's proposal history: the proposal made for run ``next_run_n``."""

    next_run_n: int
    proposal: Proposal


@dataclass
class EventState:
    """Everything the sidecar keeps about one event."""

    trials: list[TrialRecord] = field(default_factory=list)
    proposal_history: list[ProposalEntry] = field(default_factory=list)
    ever_indexed: bool = False


@dataclass
class RunState:
    """The whole sidecar: events by key and the last ingested run (-1 when none)."""

    events: dict[EventKey, EventState] = field(default_factory=dict)
    last_global_run: int = -1


# ----------------------------------------------------------------------------- writing


def format_ledger_and_state(histories: Mapping[EventKey, EventHistory], previous: RunState | None) -> tuple[str, str]:
    """The ledger text of ``histories`` and the sidecar text that goes with it.

    The sidecar's trials and ever-indexed flags are the ledger's rows; its proposal histories (and
    ``last_global_run``, unless the ledger has a later run) are those of ``previous``; events absent
    from the ledger are dropped. The rows' numbers are formatted once, for both files, and no
    :class:`TrialRecord` is built.
    """
    old_events = previous.events if previous is not None else {}
    last_run = previous.last_global_run if previous is not None else -1
    with gc_paused():
        rows = format_rows(histories)
        wrmsd = list(map(_WRMSD_JSON_OF_TEXT.get, rows.wrmsd, rows.wrmsd))
        success = list(map(_SUCCESS_JSON_OF_TEXT.get, rows.wrmsd, repeat("true")))
        texts = _trial_texts(rows.run_n, rows.x, rows.y, wrmsd, success)
        minus_inf = rows.wrmsd.index("-inf") if "-inf" in rows.wrmsd else -1
        lines = []
        start = 0
        for (key, history), count in zip(histories.items(), rows.counts, strict=True):
            stop = start + count
            if start <= minus_inf < stop:
                _wrmsd_json(-math.inf)  # raises: a wRMSD of -inf cannot be stored
            old = old_events.get(key) if old_events else None
            ever = "1" in rows.indexed[start:stop] or "true" in success[start:stop]
            lines.append(_event_line(key, texts[start:stop], old.proposal_history if old else (), ever))
            if count:
                last_run = max(last_run, history.rows[-1].run_n)
            start = stop
    return rows.ledger_text(), _state_text(lines, last_run)


# From the ledger's wRMSD column (blank: not indexed) to the sidecar's; other numbers stay as they are.
_WRMSD_JSON_OF_TEXT = {"": "null", _INF: f'"{_INF}"'}
_SUCCESS_JSON_OF_TEXT = {"": "false", _INF: "false", f"-{_INF}": "false"}


def _state_text(event_lines: list[str], last_global_run: int) -> str:
    """The whole sidecar from its event lines."""
    body = ",\n".join(event_lines)
    return f'{{\n"last_global_run": {int(last_global_run)},\n"events": {{\n{body}\n}}}}\n'


def _event_line(key: EventKey, trial_texts: list[str], history: Sequence[ProposalEntry], ever_indexed: bool) -> str:
    """One event's line: its key and compact JSON of its trials, proposal history and flag."""
    return (f'{encode_basestring_ascii(key.sidecar_key())}: {{"trials":[{",".join(trial_texts)}],'
            f'"proposal_history":[{",".join(map(_proposal_json, history))}],'
            f'"ever_indexed":{_json_bool(ever_indexed)}}}')


def _trial_texts(run_n: list[str], x: list[str], y: list[str], wrmsd: list[str], success: list[str]) -> list[str]:
    """Compact JSON of each trial from the JSON text of its fields."""
    return [f'{{"run_n":{run},"det_shift_x_mm":{sx},"det_shift_y_mm":{sy},"wrmsd":{value},"success":{flag}}}'
            for run, sx, sy, value, flag in zip(run_n, x, y, wrmsd, success)]


def _wrmsd_json(wrmsd: float | None) -> str:
    """None (or NaN) -> null, inf -> "inf", otherwise the number (px)."""
    if wrmsd is None or math.isnan(wrmsd):
        return "null"
    if wrmsd == math.inf:
        return f'"{_INF}"'
    if not math.isfinite(wrmsd):
        raise ValueError(f"wRMSD {wrmsd} cannot be stored")
    return repr(float(wrmsd))


def _json_bool(value: bool) -> str:
    """JSON true/false."""
    return "true" if value else "false"


def _proposal_json(entry: ProposalEntry) -> str:
    """One proposal as compact JSON (DONE: null shifts), as ``json`` writes it."""
    proposal = entry.proposal
    return (f'{{"next_run_n":{int(entry.next_run_n)},"dx_mm":{_json_number(proposal.dx_mm)},'
            f'"dy_mm":{_json_number(proposal.dy_mm)},"reason":{encode_basestring_ascii(proposal.reason)}}}')


def _json_number(value: float | None) -> str:
    """None -> null, otherwise the number as a float; JSON has no NaN or infinity."""
    if value is None:
        return "null"
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"Out of range float values are not JSON compliant: {number!r}")
    return repr(number)


# ----------------------------------------------------------------------------- reading


def read_state(path: Path) -> RunState:
    """Read the sidecar; a missing file gives an empty :class:`RunState`."""
    path = Path(path)
    if not path.exists():
        return RunState()
    return parse_state(path.read_bytes(), str(path))


def parse_state(data: bytes, name: str) -> RunState:
    """Parse sidecar bytes; ``name`` (the file) is used in error messages."""
    return _parse_state(data, name, keep_trials=True)


def parse_state_histories(data: bytes, name: str) -> RunState:
    """:func:`parse_state` that validates the trials the same way but keeps every event's ``trials`` empty.

    For callers that rebuild the trials from the ledger (:func:`format_ledger_and_state` only keeps
    the proposal histories and ``last_global_run`` of the previous state).
    """
    return _parse_state(data, name, keep_trials=False)


def _parse_state(data: bytes, name: str, keep_trials: bool) -> RunState:
    """Parse sidecar bytes; without ``keep_trials`` the trials are checked but not stored."""
    with gc_paused():
        try:
            document = json.loads(data.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise IciInputError(name, f"not UTF-8 text (byte {exc.start})", field_name="json") from None
        except json.JSONDecodeError as exc:
            raise IciInputError(name, f"corrupt JSON: {exc.msg} (column {exc.colno})", line=exc.lineno,
                                field_name="json") from None
        return _state_from_json(document, name, keep_trials)


def _state_from_json(document: Any, name: str, keep_trials: bool = True) -> RunState:
    """Validate and convert a decoded sidecar."""
    if type(document) is not dict:
        _fail(name, "<top level>", "an object", document)
    last = document.get("last_global_run")
    if not (type(last) is int and last >= -1):
        _fail(name, "last_global_run", "an integer >= -1", last)
    events_json = document.get("events")
    if type(events_json) is not dict:
        _fail(name, "events", "an object", events_json)
    events: dict[EventKey, EventState] = {}
    for label, event_json in events_json.items():
        where = f"events[{label!r}]"
        try:
            key = EventKey.from_label(label)
        except ValueError:
            raise IciInputError(name, f"event key '{label}' is not '<h5 path>::<event>'", field_name=where) from None
        events[key] = _event_from_json(event_json, name, where, keep_trials)
    return RunState(events, last)


def _event_from_json(obj: Any, name: str, where: str, keep_trials: bool = True) -> EventState:
    """One event's state (``where`` names it in errors)."""
    if type(obj) is not dict:
        _fail(name, where, "an object", obj)
    trials_json, history_json = obj.get("trials"), obj.get("proposal_history")
    ever = obj.get("ever_indexed")
    if type(trials_json) is not list:
        _fail(name, f"{where}.trials", "a list", trials_json)
    if type(history_json) is not list:
        _fail(name, f"{where}.proposal_history", "a list", history_json)
    if type(ever) is not bool:
        _fail(name, f"{where}.ever_indexed", "true or false", ever)
    if keep_trials:
        trials = [_trial_from_json(item, name, where, index) for index, item in enumerate(trials_json)]
    else:
        _check_trials(trials_json, name, where)
        trials = []
    history = [_proposal_from_json(item, name, where, index) for index, item in enumerate(history_json)]
    return EventState(trials, history, ever)


def _trial_from_json(obj: Any, name: str, where: str, index: int) -> TrialRecord:
    """Trial ``index`` of the event ``where``; error texts are only built on failure."""
    if type(obj) is not dict:
        _fail(name, f"{where}.trials[{index}]", "an object", obj)
    run_n, x, y = obj.get("run_n"), obj.get("det_shift_x_mm"), obj.get("det_shift_y_mm")
    wrmsd, success = obj.get("wrmsd"), obj.get("success")
    if not (type(run_n) is int and run_n >= 0):
        _fail(name, f"{where}.trials[{index}].run_n", "an integer >= 0", run_n)
    if not _is_finite(x):
        _fail(name, f"{where}.trials[{index}].det_shift_x_mm", "a finite number", x)
    if not _is_finite(y):
        _fail(name, f"{where}.trials[{index}].det_shift_y_mm", "a finite number", y)
    if wrmsd == _INF:
        wrmsd = math.inf
    elif type(wrmsd) is float and math.isnan(wrmsd):  # Python's json writes NaN for "not indexed"
        wrmsd = None
    elif wrmsd is not None and not (type(wrmsd) in (float, int) and wrmsd >= 0):
        _fail(name, f"{where}.trials[{index}].wrmsd", 'null, "inf" or a number >= 0', wrmsd)
    if type(success) is not bool:
        _fail(name, f"{where}.trials[{index}].success", "true or false", success)
    return TrialRecord(run_n, float(x), float(y), None if wrmsd is None else float(wrmsd), success)


def _check_trials(trials_json: list[Any], name: str, where: str) -> None:
    """Check the trials as :func:`_trial_from_json` does without building them (same error for the first bad one)."""
    number = (float, int)
    for index, obj in enumerate(trials_json):
        if type(obj) is dict:
            run_n, x, y = obj.get("run_n"), obj.get("det_shift_x_mm"), obj.get("det_shift_y_mm")
            wrmsd = obj.get("wrmsd")
            if (type(run_n) is int and run_n >= 0 and type(x) in number and type(y) in number
                    and math.isfinite(x) and math.isfinite(y) and type(obj.get("success")) is bool
                    and (wrmsd is None or wrmsd == _INF or (type(wrmsd) in number and wrmsd >= 0))):
                continue
        _trial_from_json(obj, name, where, index)  # raises the error of this trial


def _proposal_from_json(obj: Any, name: str, where: str, index: int) -> ProposalEntry:
    """Proposal ``index`` of the event ``where``."""
    if type(obj) is not dict:
        _fail(name, f"{where}.proposal_history[{index}]", "an object", obj)
    next_run_n, reason = obj.get("next_run_n"), obj.get("reason")
    dx, dy = obj.get("dx_mm"), obj.get("dy_mm")
    if not (type(next_run_n) is int and next_run_n >= 0):
        _fail(name, f"{where}.proposal_history[{index}].next_run_n", "an integer >= 0", next_run_n)
    if type(reason) is not str:
        _fail(name, f"{where}.proposal_history[{index}].reason", "a string", reason)
    if dx is None and dy is None:
        return ProposalEntry(next_run_n, Proposal(None, None, reason))
    expected = "a finite number (or null in both dx_mm and dy_mm for DONE)"
    if not _is_finite(dx):
        _fail(name, f"{where}.proposal_history[{index}].dx_mm", expected, dx)
    if not _is_finite(dy):
        _fail(name, f"{where}.proposal_history[{index}].dy_mm", expected, dy)
    return ProposalEntry(next_run_n, Proposal(float(dx), float(dy), reason))


def _is_finite(value: Any) -> TypeGuard[float]:
    """A finite JSON number (int or float, not bool)."""
    return type(value) in (float, int) and math.isfinite(value)


def _fail(name: str, where: str, expected: str, found: Any) -> NoReturn:
    """Raise an IciInputError naming the key."""
    raise IciInputError(name, f"expected {expected}, found {_describe(found)}", field_name=where)


def _describe(value: Any) -> str:
    """Short text for a wrong JSON value (containers by type only)."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'list'}"
    return "nothing (key missing or null)" if value is None else repr(value)[:80]
