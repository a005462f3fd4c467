"""Per-event random streams of the proposer: keyed by sha256, counter-based, vectorised over events.

Every proposal draws its random numbers from streams keyed by
``sha256("ici-proposer-v1" | h5 path | event | seed | run_n being proposed | options digest)``, so a
proposal depends only on its own event's history and the knobs: never on event order, batching,
chunking or threads. Changing any knob changes the digest and therefore every stream.

The streams are SplitMix64 sequences read at explicit counters (``u_n = mix64(key + n*gamma)``;
Steele, Lea & Flood 2014). Random access by counter is what lets the hillmap evaluate only the
candidates it visits (candidate ``j`` is a pure function of ``(key, j)``) and draw the candidates of
thousands of events in one numpy expression; creating a ``numpy.random.Generator`` per event costs
~35 us on these machines, more than a whole proposal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ptylib.ici.model import EventKey

_DOMAIN = "ici-proposer-v1"
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0**-53


@dataclass(frozen=True)
class EventStream:
    """The two 64-bit stream keys of one proposal: candidate positions and selection draws."""

    candidate_key: int
    select_key: int


def event_stream(key: EventKey, run_n: int, seed: int, options_digest: str) -> EventStream:
    """Derive the streams for proposing run ``run_n`` of event ``key`` (see the module docstring)."""
    payload = "\x1f".join((_DOMAIN, key.h5_path, str(key.event), str(seed), str(run_n), options_digest))
    digest = hashlib.sha256(payload.encode("utf-8", "surrogatepass")).digest()
    return EventStream(int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:16], "little"))


def uniforms(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) at ``counters`` (E x n, non-negative ints) of the streams ``keys`` (E, uint64)."""
    state = keys.astype(np.uint64)[:, None] + counters.astype(np.uint64) * _GAMMA  # wraps mod 2**64
    state ^= state >> np.uint64(30)
    state *= _MIX1
    state ^= state >> np.uint64(27)
    state *= _MIX2
    state ^= state >> np.uint64(31)
    return (state >> np.uint64(11)).astype(np.float64) * _TO_UNIT
