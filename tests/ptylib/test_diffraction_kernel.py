"""The simulator's block kernel: blocked, unblocked and compiled renders agree; analytic gradients; device choices."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ptylib.diffraction import execution  # noqa: E402
from ptylib.diffraction.kernel import ChunkedIntensity, KernelRun, block_intensity  # noqa: E402
from ptylib.diffraction.lattice import StructureFactors  # noqa: E402
from ptylib.diffraction.options import (  # noqa: E402
    BeamOptions,
    CrystalOptions,
    DetectorOptions,
    SimulationOptions,
)
from ptylib.diffraction.simulator import Simulator  # noqa: E402

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _options(shape: str = "square", **detector: object) -> SimulationOptions:
    # Triclinic cell, misset, mosaic, per-sub-pixel polarisation: every path of the kernel.
    return SimulationOptions(
        crystal=CrystalOptions(cell_a_A=40.0, cell_b_A=45.0, cell_c_A=50.0, cell_alpha_deg=85.0, cell_beta_deg=95.0,
                               cell_gamma_deg=100.0, n_cells=(4, 5, 6), misset_deg=(3.0, -7.0, 11.0),
                               mosaic_spread_deg=0.6, mosaic_domains=3, mosaic_seed=3, shape=shape),
        detector=DetectorOptions(**{"fpixels": 23, "spixels": 17, "pixel_size_mm": 0.2, "distance_mm": 40.0,
                                    "oversample": 2, "oversample_polar": True, **detector}),
        beam=BeamOptions(fluence_photons_per_m2=1e28, kahn_factor=0.5),
    )


def _table() -> StructureFactors:
    rng = np.random.default_rng(5)
    hkl = np.stack(np.meshgrid(*(np.arange(-4, 5),) * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    return StructureFactors.from_reflections(hkl, rng.gamma(2.0, 40.0, len(hkl)), default_F=10.0)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_blocked_and_unblocked_renders_and_gradients_agree(dtype: torch.dtype, tolerance: float) -> None:
    options, table = _options(), _table()
    one = Simulator(options, structure_factors=table, dtype=dtype, chunk_elements=1 << 30)
    many = Simulator(options, structure_factors=table, dtype=dtype, chunk_elements=500)  # 13 pixels a block, padded
    assert one._scattering_t.shape[0] == 1 and many._scattering_t.shape[0] == 31
    images, grads = [], []
    for simulator in (one, many):
        misset = simulator.tensor([3.0, -7.0, 11.0]).requires_grad_()
        image = simulator.render(misset_deg=misset)
        (image**2).sum().backward()
        images.append(image.detach())
        grads.append(misset.grad)
    assert images[0].shape == (17, 23) and images[0].max() > 10 * images[0].mean()
    assert _relative(images[1], images[0]) <= tolerance
    assert _relative(grads[1], grads[0]) <= tolerance


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_fused_kernel_matches_the_eager_kernel(dtype: torch.dtype, tolerance: float) -> None:
    # torch.compile on the CPU (C++ kernels; Triton on CUDA): slower here than eager, but the same numbers.
    options, table = _options(), _table()
    eager = Simulator(options, structure_factors=table, dtype=dtype, fused=False, threads=1)
    fused = Simulator(options, structure_factors=table, dtype=dtype, fused=True, threads=1)
    misset = [eager.tensor([3.0, -7.0, 11.0]).requires_grad_() for _ in range(2)]
    images = []
    for simulator, angles in zip((eager, fused), misset, strict=True):
        image = simulator.render(misset_deg=angles)
        (image**2).sum().backward()
        images.append(image.detach())
    assert fused.compile_failure is None
    assert _relative(images[1], images[0]) <= tolerance
    assert _relative(misset[1].grad, misset[0].grad) <= tolerance


@pytest.mark.parametrize(("keep", "shape"), [(True, "square"), (False, "square"), (True, "gauss")])
def test_analytic_gradients_match_finite_differences(keep: bool, shape: str) -> None:
    # 6 x 5 pixels of 1.2 mm at 40 mm: few outputs for gradcheck, yet spots and slopes everywhere.
    simulator = Simulator(_options(shape, fpixels=6, spixels=5, pixel_size_mm=1.2), structure_factors=_table(),
                          chunk_elements=200)
    simulator.keep_jacobian = keep
    cell = simulator.tensor([40.0, 45.0, 50.0, 85.0, 95.0, 100.0]).requires_grad_()
    misset = simulator.tensor([3.0, -7.0, 11.0]).requires_grad_()
    spread = simulator.tensor(0.6).requires_grad_()

    def image(c: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return simulator.render(cell=c, misset_deg=m, mosaic_spread_deg=s)

    assert torch.autograd.gradcheck(image, (cell, misset, spread), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_a_later_render_before_backward_leaves_the_first_gradient_right() -> None:
    # The kept Jacobians live in one buffer per simulator: a second differentiable render overwrites
    # them, and the first graph's backward pass must notice and recompute.
    simulator = Simulator(_options(), structure_factors=_table())
    assert simulator.keep_jacobian
    first, second = simulator.tensor([3.0, -7.0, 11.0]).requires_grad_(), simulator.tensor([1.0, 2.0, 3.0])
    image = simulator.render(misset_deg=first)
    simulator.render(misset_deg=second.requires_grad_())
    image.sum().backward()
    reference = Simulator(_options(), structure_factors=_table())
    expected = reference.tensor([3.0, -7.0, 11.0]).requires_grad_()
    reference.render(misset_deg=expected).sum().backward()
    assert _relative(first.grad, expected.grad) <= 1e-12


def test_kept_jacobians_make_the_backward_pass_a_product_only() -> None:
    # Count kernel calls: the backward pass calls it once per block only when the Jacobians were not kept.
    simulator = Simulator(_options(), structure_factors=_table(), chunk_elements=3000)
    calls = []

    def counting(*args: object) -> tuple[torch.Tensor, torch.Tensor | None]:
        calls.append(args[-1])
        return block_intensity(*args)

    blocks, _, domains, _ = simulator._jacobian_shape
    lattice = torch.randn(domains, 3, 3, dtype=torch.float64) * 40
    for buffer in (torch.empty(simulator._jacobian_shape, dtype=torch.float64), None):
        calls.clear()
        run = KernelRun(simulator._block_pixels, lambda: execution.intra_op_threads(None), counting, buffer)
        rows = lattice.clone().requires_grad_()
        ChunkedIntensity.apply(rows, simulator._scattering_t, simulator._weight, (4.0, 5.0, 6.0), "square",
                               simulator._factors, run).sum().backward()
        forward_calls = calls[:blocks]
        assert forward_calls == [buffer is not None] * blocks
        assert calls[blocks:] == ([] if buffer is not None else [True] * blocks)


def test_cuda_blocks_follow_free_memory_within_bounds() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    low, high = execution.CUDA_CHUNK_BOUNDS
    assert execution.chunk_elements_for(cpu, torch.float64) == execution.CPU_CHUNK_ELEMENTS
    # 64 GiB free: a quarter of it over 4 x 4 bytes per float32 element, capped at the upper bound.
    assert execution.chunk_elements_for(cuda, torch.float32, free_bytes=64 << 30) == high
    assert execution.chunk_elements_for(cuda, torch.float64, free_bytes=1 << 30) == (1 << 28) // 32
    assert execution.chunk_elements_for(cuda, torch.float32, free_bytes=1 << 20) == low
    assert execution.keep_jacobian_for(cpu, 1 << 29) and not execution.keep_jacobian_for(cpu, 1 << 31)
    assert execution.keep_jacobian_for(cuda, 1 << 30, free_bytes=8 << 30)
    assert not execution.keep_jacobian_for(cuda, 1 << 30, free_bytes=2 << 30)


def test_thread_count_is_measured_and_restored() -> None:
    before = torch.get_num_threads()
    assert execution.thread_candidates(1) == [1] and execution.thread_candidates(6) == [1, 2, 4, 6]

    def work() -> None:  # fastest with exactly 2 threads
        time.sleep(0.002 if torch.get_num_threads() == 2 else 0.02)

    assert execution.fastest_thread_count(work, [1, 2, 4]) == 2
    assert torch.get_num_threads() == before
    with execution.intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_simulator_measures_its_cpu_threads_once_and_honours_an_override() -> None:
    simulator = Simulator(_options())
    assert simulator.threads is None
    with torch.no_grad():
        simulator.render()
    assert simulator.threads in execution.thread_candidates(torch.get_num_threads())
    assert Simulator(_options(), threads=1).threads == 1
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Simulator(_options(), threads=0)


def test_a_failing_compiler_falls_back_to_the_eager_kernel() -> None:
    def broken_backend(graph: object, inputs: object) -> object:
        raise RuntimeError("no compiler here")

    guarded = execution.GuardedCompile(torch.sin, backend=broken_backend)
    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        assert torch.equal(guarded(x), torch.sin(x))
    assert "no compiler here" in guarded.failure
    assert torch.equal(guarded(x), torch.sin(x))
    with pytest.raises(TypeError):  # not a compiler failure: raised as usual
        execution.GuardedCompile(torch.sin, backend="eager")("not a tensor")


@CUDA
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_cuda_eager_and_fused_match_the_cpu(dtype: torch.dtype, tolerance: float) -> None:
    options, table = _options(), _table()

    def image_and_gradient(simulator: Simulator) -> tuple[torch.Tensor, torch.Tensor]:
        misset = simulator.tensor([3.0, -7.0, 11.0]).requires_grad_()
        image = simulator.render(misset_deg=misset)
        (image**2).sum().backward()
        return image.detach().cpu(), misset.grad.cpu()

    expected = image_and_gradient(Simulator(options, structure_factors=table, dtype=dtype))
    for fused in (False, True):
        simulator = Simulator(options, structure_factors=table, dtype=dtype, device="cuda", fused=fused)
        assert simulator.chunk_elements >= execution.CUDA_CHUNK_BOUNDS[0] and simulator.threads is None
        image, gradient = image_and_gradient(simulator)
        assert simulator.compile_failure is None
        assert _relative(image, expected[0]) <= tolerance
        assert _relative(gradient, expected[1]) <= tolerance
