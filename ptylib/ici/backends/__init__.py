"""Indexer backends of the ICI loop behind one interface (:class:`~ptylib.ici.backends.base.IndexerBackend`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ptylib.ici.backends.base import BackendName, EventJob, EventResult, IndexerBackend
from ptylib.ici.backends.command import CommandBackend, CommandOptions
from ptylib.ici.backends.crystfel import CrystfelBackend, CrystfelOptions
from ptylib.ici.backends.dials import DialsBackend, DialsNotFoundError, DialsOptions

# name -> (backend class, its options dataclass); a new backend registers here.
BACKENDS: dict[BackendName, tuple[type[IndexerBackend], type]] = {
    BackendName.CRYSTFEL: (CrystfelBackend, CrystfelOptions),
    BackendName.COMMAND: (CommandBackend, CommandOptions),
    BackendName.DIALS: (DialsBackend, DialsOptions),
}


def make_backend(name: str | BackendName, options: object | Mapping[str, Any] | None = None) -> IndexerBackend:
    """Build the backend ``name`` from its options dataclass, or from a mapping of its fields.

    Raises ValueError naming the known backends for an unknown name, and the allowed fields for
    unknown or missing options.
    """
    try:
        backend_cls, options_cls = BACKENDS[BackendName(str(name).strip().lower())]
    except ValueError:
        known = ", ".join(b.value for b in BACKENDS)
        raise ValueError(f"unknown indexer backend {name!r}; known backends: {known}") from None
    if isinstance(options, options_cls):
        return backend_cls(options)
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(f"backend {name!r} takes {options_cls.__name__} or a mapping, not {type(options).__name__}")
    given = dict(options or {})
    allowed = [f.name for f in dataclasses.fields(options_cls)]
    required = [f.name for f in dataclasses.fields(options_cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    unknown = sorted(set(given) - set(allowed))
    missing = [f for f in required if f not in given]
    if unknown or missing:
        raise ValueError(f"backend {name!r} options: unknown {unknown}, missing {missing}; "
                         f"allowed: {', '.join(allowed)}")
    return backend_cls(options_cls(**given))


__all__ = [
    "BACKENDS",
    "BackendName",
    "CommandBackend",
    "CommandOptions",
    "CrystfelBackend",
    "CrystfelOptions",
    "DialsBackend",
    "DialsNotFoundError",
    "DialsOptions",
    "EventJob",
    "EventResult",
    "IndexerBackend",
    "make_backend",
]
