"""The fast CPU paths of issue 14: the unrolled trimmed mean, the 4-row centred-clipping step, and
numba honouring the caller's thread count.

The unrolled trimmed-mean kernel is generated and compiled per (n, f, dtype) (seconds each, then
cached on disk), so the cases below are few and small in n f.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codedbft.aggregators import _kernels, by_name

pytestmark = pytest.mark.skipif(_kernels._numba() is None, reason="numba not available")

#: (n, f): odd and even n, f = 1, f at its bound n = 2f + 1, and the benchmark's (25, 3)
TRIM_CASES = [(25, 3), (10, 1), (7, 3), (6, 2)]


def _ref_trimmed(x: np.ndarray, f: int) -> np.ndarray:
    n = x.shape[-2]
    return np.sort(x.astype(np.float64), axis=-2)[..., f : n - f, :].mean(axis=-2)


def _inputs(rng: np.random.Generator, B: int, n: int, d: int, dtype) -> np.ndarray:
    x = rng.standard_normal((B, n, d)) * rng.uniform(0.01, 100.0, (B, n, 1))
    x[:, :, : d // 4] = np.round(x[:, :, : d // 4])  # ties: many equal values per column
    x[:, 0, d // 4 : d // 2] = 1e6  # an outlier row on part of the columns
    return x.astype(dtype)


@pytest.mark.parametrize("n,f", TRIM_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unrolled_trimmed_mean_equals_sort_reference(n, f, dtype):
    rng = np.random.default_rng(n * 100 + f)
    x = _inputs(rng, 2, n, 4099, dtype)  # d not a multiple of the kernel's column chunk
    out = np.empty((2, 4099), dtype=dtype)
    _kernels._threads()
    _kernels._numba().trim_unrolled(n, f)(x, out)
    ref = _ref_trimmed(x, f)
    # the float64 sum of the kept values is that of the reference up to its order: exact for
    # float32 inputs of these magnitudes, a few ulps of the kept values (|x| <~ 500) for float64
    if dtype == np.float64:
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-11)
    if dtype == np.float32:
        np.testing.assert_array_equal(out, ref.astype(np.float32))


@pytest.mark.parametrize("n,f", [(25, 3), (10, 1)])
def test_unrolled_and_network_paths_give_the_same_bits_on_float32(n, f, monkeypatch):
    rng = np.random.default_rng(7)
    x = torch.from_numpy(_inputs(rng, 3, n, 2000, np.float32))
    monkeypatch.setattr(_kernels, "TRIM_UNROLL_MIN_COLS", 1)
    fast = _kernels.coord_reduce(x, "trimmed", f=f)
    monkeypatch.setattr(_kernels, "TRIM_UNROLL_MIN_COLS", 1 << 62)
    net = _kernels.coord_reduce(x, "trimmed", f=f)
    assert torch.equal(fast, net)


def test_trimmed_mean_rule_takes_the_unrolled_path_on_large_inputs():
    n, f, d = 25, 3, _kernels.TRIM_UNROLL_MIN_COLS + 3
    assert _kernels.use_unrolled_trim(n, f, d)
    assert not _kernels.use_unrolled_trim(n, 0, d)  # f = 0 is the mean: the network path
    assert not _kernels.use_unrolled_trim(101, 10, d)  # too large a source to compile
    assert not _kernels.use_unrolled_trim(n, f, 100)
    x = torch.from_numpy(_inputs(np.random.default_rng(3), 1, n, d, np.float32)[0])
    got = by_name("trimmed-mean", f=f)(x)
    np.testing.assert_array_equal(got.numpy(), _ref_trimmed(x.numpy(), f).astype(np.float32))


def test_unrolled_source_is_written_once_and_reloaded(tmp_path, monkeypatch):
    from codedbft.aggregators import _numba_kernels as nk

    monkeypatch.setenv("CODEDBFT_KERNEL_DIR", str(tmp_path))
    nk.trim_unrolled.cache_clear()
    try:
        k = nk.trim_unrolled(5, 1)
        files = sorted(p.name for p in tmp_path.glob("*.py"))
        assert files == [f"trim_v{nk._TRIM_GEN_VERSION}_n5_f1.py"]
        mtime = (tmp_path / files[0]).stat().st_mtime_ns
        x = np.arange(5 * 7, dtype=np.float64).reshape(1, 5, 7)[:, ::-1].copy()
        out = np.empty((1, 7))
        k(x, out)
        np.testing.assert_array_equal(out, _ref_trimmed(x, 1))
        nk.trim_unrolled.cache_clear()
        nk.trim_unrolled(5, 1)
        assert (tmp_path / files[0]).stat().st_mtime_ns == mtime  # never rewritten (numba keys on it)
    finally:
        nk.trim_unrolled.cache_clear()


def _old_weighted_step(x: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The one-row-per-sweep step, in the same float64 order (rows in order, no contraction)."""
    acc = np.zeros((x.shape[0], x.shape[2]))
    for i in range(x.shape[1]):
        acc = acc + w[:, i : i + 1] * (x[:, i].astype(np.float64) - v.astype(np.float64))
    return (v.astype(np.float64) + acc).astype(x.dtype)


@pytest.mark.parametrize("n", [1, 3, 4, 7, 25, 26])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weighted_step_kernel_keeps_the_row_order_bits(n, dtype):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((2, n, 5001)) * rng.uniform(0.01, 100.0, (2, n, 1))).astype(dtype)
    v = rng.standard_normal((2, 5001)).astype(dtype)
    w = rng.uniform(0.0, 0.1, (2, n))
    got = _kernels._numba().weighted_step_kernel(x, v, w)
    np.testing.assert_array_equal(got, _old_weighted_step(x, v, w))


def test_centered_clipping_state_round_trip_on_the_fast_path():
    rng = np.random.default_rng(0)
    xs = [torch.from_numpy(rng.standard_normal((9, 3000)).astype(np.float32) * 5) for _ in range(3)]
    a = by_name("centered-clipping", f=2, tau=3.0)
    a(xs[0])
    st = a.state_dict()
    ya = [a(x) for x in xs[1:]]
    b = by_name("centered-clipping", f=2, tau=3.0)
    b.load_state_dict(st)
    yb = [b(x) for x in xs[1:]]
    for p, q in zip(ya, yb):
        assert torch.equal(p, q)


def test_numba_kernels_leave_torch_at_the_callers_thread_count():
    """numba's first pool start reset the OpenMP count torch reads (1 -> 2 on a 2-core host), after
    which every kernel ran on all cores; ``_threads`` restores the caller's count."""
    import numba

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        x = torch.randn(9, 5000)
        for name in ("trimmed-mean", "median", "krum", "centered-clipping"):
            by_name(name, f=2)(x)
            assert torch.get_num_threads() == 1, name
            assert numba.get_num_threads() == 1, name
    finally:
        torch.set_num_threads(before)
