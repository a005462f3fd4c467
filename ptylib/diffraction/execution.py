"""Where and how the simulator's kernel runs: block size per device, CPU thread count, compiled kernels.

* Block size. On a CPU a block of 2^18 (sub-pixel x domain x axis) elements keeps each
  intermediate (2 MiB in float64) in cache; on CUDA the kernel is memory-bound and launch-bound,
  so blocks are sized from the free device memory (a quarter of it, for the backward pass's
  intermediates), bounded to [2^20, 2^28] elements.
* Threads. On a CPU the intra-op thread count is measured, not assumed: the first render of a
  block size in a process times a block with 1, 2, 4, ... up to torch's thread count and keeps
  the fastest for the process (on a loaded 2-core machine one thread ran 3x faster than two,
  because OpenMP threads spin on cores other jobs hold; on an idle many-core machine more win).
  Measuring once per process, not per simulator, keeps its cost (up to seconds when the machine
  is oversubscribed) away from callers that build many simulators, like the still renderer.
* Compiled kernels. ``torch.compile`` fuses each block's element-wise passes into one kernel
  (Triton on CUDA). On the CPU one variant took 35-136 s to compile on the shared 2-core machine
  and no speed-up was measured to repay it, so it is the default on CUDA only; the eager kernel is
  the reference and the fallback.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

#: (sub-pixel x domain x axis) elements per block on a CPU: 2 MiB per float64 intermediate.
CPU_CHUNK_ELEMENTS = 1 << 18
#: Bounds of the block size on CUDA (elements).
CUDA_CHUNK_BOUNDS = (1 << 20, 1 << 28)
#: Share of the free device memory a block's intermediates may use on CUDA.
CUDA_MEMORY_FRACTION = 0.25
#: Live intermediates per element of a block computing its Jacobian, in units of the element size.
LIVE_BYTES_PER_ELEMENT = 4
#: Memory the Jacobians kept between the forward and the backward pass may take on a CPU (a
#: 1024 x 1024 image with 2 x 2 sub-pixels and 5 domains needs 0.5 GiB in float64).
CPU_JACOBIAN_BYTES = 1 << 30


def chunk_elements_for(device: torch.device, dtype: torch.dtype, *, free_bytes: int | None = None) -> int:
    """Elements per block on ``device``: the CPU cache size, or from free CUDA memory (``free_bytes``)."""
    if device.type != "cuda":
        return CPU_CHUNK_ELEMENTS
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    elements = int(free_bytes * CUDA_MEMORY_FRACTION) // (LIVE_BYTES_PER_ELEMENT * itemsize)
    low, high = CUDA_CHUNK_BOUNDS
    return max(low, min(high, elements))


def keep_jacobian_for(device: torch.device, jacobian_bytes: int, *, free_bytes: int | None = None) -> bool:
    """Whether the Jacobians of a whole image (``jacobian_bytes``) may stay in memory on ``device``.

    On a CPU up to ``CPU_JACOBIAN_BYTES``; on CUDA up to ``CUDA_MEMORY_FRACTION`` of the free memory.
    Otherwise the backward pass recomputes them block by block.
    """
    if device.type != "cuda":
        return jacobian_bytes <= CPU_JACOBIAN_BYTES
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    return jacobian_bytes <= free_bytes * CUDA_MEMORY_FRACTION


@contextlib.contextmanager
def intra_op_threads(count: int | None) -> Iterator[None]:
    """Hold torch's intra-op thread count at ``count`` inside the block (None: leave it), then restore it."""
    if count is None or count == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def thread_candidates(available: int) -> list[int]:
    """1, 2, 4, ... below ``available``, and ``available`` itself."""
    candidates, count = [], 1
    while count < available:
        candidates.append(count)
        count *= 2
    return [*candidates, available]


#: Thread counts measured in this process, by (what was timed, candidates): see ``measured_thread_count``.
_MEASURED_THREADS: dict[tuple[object, ...], int] = {}


def measured_thread_count(key: tuple[object, ...], work: Callable[[], object]) -> int:
    """The fastest intra-op thread count for ``work``, measured on the first call per ``key`` in this process."""
    candidates = thread_candidates(torch.get_num_threads())
    memo = (*key, *candidates)
    if memo not in _MEASURED_THREADS:
        _MEASURED_THREADS[memo] = fastest_thread_count(work, candidates)
    return _MEASURED_THREADS[memo]


def fastest_thread_count(work: Callable[[], object], candidates: Sequence[int], *, rounds: int = 2) -> int:
    """The thread count under which ``work`` ran fastest (best of ``rounds`` interleaved timings)."""
    if len(candidates) == 1:
        return candidates[0]
    timings: dict[int, list[float]] = {count: [] for count in candidates}
    for _ in range(rounds):
        for count in candidates:
            with intra_op_threads(count):
                start = time.perf_counter()
                work()
                timings[count].append(time.perf_counter() - start)
    return min(candidates, key=lambda count: (min(timings[count]), statistics.median(timings[count])))


class GuardedCompile:
    """``torch.compile(function, backend=...)`` that falls back to ``function`` when compiling fails.

    A compiler failure (``BackendCompilerFailed``, e.g. no Triton or no C++ compiler, or an internal
    dynamo error) on any call, including the recompilation for a new argument variant, switches to
    the eager function for good; ``failure`` then holds the reason (also issued as a
    ``RuntimeWarning``). Other errors propagate.
    """

    def __init__(self, function: Callable[..., Any], *, backend: str | Callable[..., Any] = "inductor") -> None:
        self._eager = function
        # Static shapes: the simulator pads every block to one size, so each shape compiles once.
        self._compiled = torch.compile(function, dynamic=False, backend=backend)
        self.failure: str | None = None

    def __call__(self, *args: Any) -> Any:
        if self.failure is None:
            try:
                return self._compiled(*args)
            except Exception as error:
                from torch._dynamo.exc import (
                    BackendCompilerFailed,
                    InternalTorchDynamoError,
                )

                if not isinstance(error, BackendCompilerFailed | InternalTorchDynamoError):
                    raise
                self.failure = f"{type(error).__name__}: {' '.join(str(error).split())}"
                warnings.warn(f"torch.compile of {self._eager.__name__} failed, using the eager kernel "
                              f"({self.failure})", RuntimeWarning, stacklevel=2)
        return self._eager(*args)
