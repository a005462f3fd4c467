"""Parameter descriptions for the Prefect UI's run form, read from the flows' numpy-style docstrings.

Prefect fills a deployment's form descriptions from Google-style ``Args:`` sections only; the project's
flows document parameters numpy style (``name : text`` lines under ``Parameters`` / ``----------``).
:func:`describe_parameters` copies those texts into a served deployment's schema, without reST markup.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

_ENTRY = re.compile(r"^(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s+:\s+(?P<text>.*)$")
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def plain_text(text: str) -> str:
    """``text`` without reST roles (:func:`x` → x) and literal markers (``x`` → x), on one line."""
    return " ".join(_ROLE.sub(r"\1", text).replace("``", "").split())


def numpy_parameter_descriptions(fn: Any) -> dict[str, str]:
    """Parameter name → description from the ``Parameters`` section of ``fn``'s numpy-style docstring.

    Entries are ``name : text`` lines (several names may share one: ``a, b : text``); indented lines
    continue the entry above; a ``; other : text`` inside a line starts another entry.
    """
    lines = (inspect.getdoc(fn) or "").splitlines()
    try:
        start = next(i for i in range(len(lines) - 1) if lines[i].strip() == "Parameters"
                     and set(lines[i + 1].strip()) == {"-"}) + 2
    except StopIteration:
        return {}
    entries: list[tuple[list[str], list[str]]] = []
    for line in lines[start:]:
        if not line.strip() or (line.strip() and set(line.strip()) == {"-"}):
            break
        if line.startswith((" ", "\t")) and entries:
            entries[-1][1].append(line.strip())
            continue
        for part in re.split(r";\s+(?=[A-Za-z_]\w*\s+:\s)", line):
            match = _ENTRY.match(part.strip())
            if match is None:
                break
            entries.append(([n.strip() for n in match["names"].split(",")], [match["text"]]))
    return {name: plain_text(" ".join(text)) for names, text in entries for name in names}


def describe_parameters(deployment: Any, fn: Any) -> Any:
    """Fill the run-form descriptions of ``deployment`` (a RunnerDeployment of flow ``fn``); returns it."""
    texts = numpy_parameter_descriptions(fn)
    for name, prop in deployment._parameter_openapi_schema.properties.items():
        if not prop.get("description") and name in texts:
            prop["description"] = texts[name]
    return deployment
