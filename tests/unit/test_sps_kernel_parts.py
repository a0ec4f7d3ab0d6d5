"""Pieces of the batched photometry kernel against independent computations.

- ``_age_basis`` / ``_GroupTable``: the low-rank young- and old-SSP tables against
  the dense product, with the error bound they promise, on the real BC03
  moments; an exactly low-rank library is found to be so; a full-rank one
  is left dense.
- ``_times_linear``: Legendre moments of a product against Gauss-Legendre
  quadrature; ``_times_dust`` against it.
- ``_outlier_fluxes``: the compiled, node-ordered evaluation against a
  plain loop over objects, with and without young (birth-cloud) weights.
"""

import numpy as np
import pytest

from prospect_sim.sps import load_library
from prospect_sim.sps.moments import _GroupTable, _legendre, _age_basis
from prospect_sim.sps.lattice import _Lattice, _times_dust, _times_linear
from prospect_sim.sps.outliers import _outlier_fluxes
from prospect_sim.sps.photometry import PhotometryKernel


@pytest.fixture(scope="module")
def kernel():
    from sedpy.observate import load_filters
    lib = load_library("bc03", wave_range=(900.0, 12000.0))
    kern = PhotometryKernel(lib, load_filters([f"decam_{b}" for b in "grizY"]))
    kern.coarse._build_lattice(160)          # shifts up to z ~ 1.2
    return kern


def _window_moments(lattice, g, k):
    lo, hi = lattice._window(g)
    return lattice.moments[k, :, lo:hi]                     # (A, w, K)


@pytest.mark.parametrize("g, k", [(0, 0), (4, 3), (9, 6)])
def test_group_table_keeps_every_bin_within_its_tolerance(kernel, g, k):
    lat = kernel.coarse
    moments = _window_moments(lat, g, k).astype(float)
    table = _GroupTable(moments.astype(np.float32), lat.n_young, lat.young_tol)
    assert 0 < table.rank < 0.8 * lat.n_young
    assert 0 < table.old_rank < 0.8 * (len(moments) - lat.n_young)
    rng = np.random.default_rng(g + k)
    n_age = len(moments)
    w = rng.random((200, n_age)) * (rng.random((200, n_age)) < 0.7)
    w[:50, 100:] = 0.0                                       # young-only populations
    exact = np.einsum("na,awq->nwq", w, moments)             # bin-major
    # young only; old ages as they are (fewer than the old basis's rank); old basis
    for n_use in (lat.n_young - 5, lat.n_young + table.old_rank - 1, n_age):
        got = table.apply(w.astype(np.float32), n_use).reshape(exact.shape)
        want = np.einsum("na,awq->nwq", w[:, :n_use], moments[:n_use])
        # each age's every moment is kept within tol of that bin's mean c0 (>= 0),
        # so a sum with weights >= 0 is within tol * sum(w c0); float32 adds ~1e-6
        bound = (lat.young_tol * np.einsum("na,aw->nw", w[:, :n_use], moments[:n_use, :, 0])
                 [:, :, None] + 2e-6 * np.abs(want).max(axis=1, keepdims=True))
        assert np.all(np.abs(got - want) <= bound)
    assert np.all(exact[..., 0] > 0)                            # bin means of real spectra


def test_age_basis_finds_an_exact_low_rank():
    rng = np.random.default_rng(1)
    shapes = rng.random((3, 40, 3)) + 0.5                    # three spectra, 40 bins, K=3
    mix = rng.random((30, 3))
    moments = np.einsum("as,swq->awq", mix, shapes)
    coef, basis = _age_basis(moments, 1e-5)
    assert len(basis) == 3
    back = (coef.astype(float) @ basis).reshape(30, 40, 3)   # bin-major
    assert np.allclose(back, moments, rtol=1e-5)


def test_age_basis_leaves_a_full_rank_block_dense():
    moments = np.random.default_rng(2).random((12, 40, 3)) + 0.1
    assert _age_basis(moments, 1e-5) is None
    table = _GroupTable(moments.astype(np.float32), 12, 1e-5)
    assert table.rank == 0
    w = np.ones((2, 12), dtype=np.float32)
    assert np.allclose(table.apply(w, 12), (w @ moments.reshape(12, -1)),
                       rtol=1e-5)


@pytest.mark.parametrize("n_moments", [1, 2, 3])
def test_times_linear_matches_quadrature(n_moments):
    rng = np.random.default_rng(n_moments)
    n, width = 4, 7
    spec = rng.normal(size=(n, width, n_moments)).astype(np.float32)      # bin-major
    t0 = rng.random((n, width)).astype(np.float32)
    t1 = (0.2 * rng.normal(size=(n, width))).astype(np.float32)
    x, wq = np.polynomial.legendre.leggauss(8)
    values = sum(spec[:, :, q, None].astype(float) * _legendre(q, x) for q in range(n_moments))
    if n_moments == 1:          # documented: the slope has nothing to act on
        product = values * t0[..., None]
    else:
        product = values * (t0[..., None] + t1[..., None] * x)
    want = np.stack([(2 * q + 1) / 2 * (product * _legendre(q, x) * wq).sum(-1)
                     for q in range(n_moments)], axis=2)
    got = _times_linear(spec.copy(), t0, t1)
    assert np.allclose(got, want, atol=1e-5)


def test_times_dust_forms_the_slope_as_documented():
    rng = np.random.default_rng(5)
    spec = rng.normal(size=(6, 9, 3)).astype(np.float32)
    trans = rng.random((6, 9)).astype(np.float32)
    dust2 = rng.random(6).astype(np.float32)
    half = (0.1 * rng.normal(size=9)).astype(np.float32)
    want = _times_linear(spec.copy(), trans, -trans * dust2[:, None] * half[None, :])
    assert np.allclose(_times_dust(spec.copy(), trans, dust2, half), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("with_young", [False, True])
def test_outlier_fluxes_match_a_loop_over_objects(kernel, with_young):
    from prospect_sim.sps.params import normalize
    spikes = [s for _, s in kernel.fine]
    assert spikes, "DECam i has outlier points"
    rng = np.random.default_rng(3)
    n, n_age = 500, len(kernel.kernel.ages)
    params = dict(zred=rng.uniform(0.01, 1.5, n), mass=np.ones(n), logzsol=np.zeros(n),
                  dust2=rng.uniform(0, 1, n), tage=np.full(n, 5.0), tau=np.ones(n),
                  dust1=rng.uniform(0, 1, n) if with_young else np.zeros(n),
                  sfh=4, dust_type=0, imf_type=2)
    batch = normalize(params, kernel.library)
    zlo = rng.integers(0, kernel.library.spectra.shape[0] - 1, n)
    w32 = rng.random((n, 2, n_age)).astype(np.float32)
    y32 = rng.random((n, 2, n_age)).astype(np.float32) if with_young else None
    got = _outlier_fluxes(spikes, batch, w32, y32, zlo)

    def dot(spike, weights, pos, node, i):
        pair = spike.nodes[:, zlo[i]:zlo[i] + 2]
        lo = np.sum(weights[i] * pair[node[i]], dtype=float)
        hi = np.sum(weights[i] * pair[node[i] + 1], dtype=float)
        return lo + (pos[i] - node[i]) * (hi - lo)

    for s, spike in enumerate(spikes):
        pos = np.log1p(batch.zred) / spike.lattice.delta * spike.n_sub
        node = np.floor(pos).astype(int)
        want = np.array([dot(spike, w32, pos, node, i) for i in range(n)])
        # FSPS's power laws at the outlier's rest wavelength (dust_index -0.7,
        # dust1_index -1: the defaults); no IGM redward of 3,000 AA rest
        x = spike.center / (1.0 + batch.zred) / 5500.0
        if with_young:
            young = np.array([dot(spike, y32, pos, node, i) for i in range(n)])
            want += young * np.expm1(-batch.dust1 * x**-1.0)
        want *= np.exp(-batch.dust2 * x**-0.7)
        assert np.allclose(got[:, s], want, rtol=1e-5, atol=1e-7 * np.abs(want).max())


def test_lattice_without_age_basis_is_dense(kernel):
    lat = _Lattice(kernel.library, kernel.coarse.curves, 200.0, 16, 8, 3, young_age=0.0)
    lat._build_lattice(20)
    assert lat._table(0, 0).rank == 0


@pytest.mark.parametrize("delayed, survival", [
    (False, lambda x: np.exp(-x)),                       # 1 - P1(x)
    (True, lambda x: (1 + x) * np.exp(-x)),              # 1 - P2(x)
])
def test_sfh_tails_match_extended_precision_and_never_overflow(delayed, survival):
    from prospect_sim.sps import sfh

    def func(a, big_t):            # P(T) - P(T - a) for a <= T: edges a at rate 1, unscaled
        big_t = np.ravel(big_t)
        return sfh._parametric_cumulative(delayed, a, np.ones_like(big_t), big_t,
                                          np.ones_like(big_t))

    rng = np.random.default_rng(4)
    big_t = 10**rng.uniform(-2, np.log10(600), 2000)[:, None]
    a = big_t * 10**rng.uniform(-6, 0, (2000, 5))
    t_ld, a_ld = big_t.astype(np.longdouble), a.astype(np.longdouble)
    want = survival(t_ld - a_ld) - survival(t_ld)           # 64-bit mantissa
    got = func(a, big_t)
    assert np.allclose(got, want.astype(float), rtol=1e-8, atol=0)
    # T past exp's range (exp(-T) underflows): still finite and never negative
    huge = np.array([[1000.0], [5000.0]])
    edge = np.array([[1e-3, 1.0, 999.0], [1e-3, 10.0, 4999.0]])
    out = func(edge, huge)
    assert np.all(np.isfinite(out)) and np.all(out >= 0)


def test_ssp_weights_stop_at_the_oldest_star_exactly():
    from prospect_sim.sps import sfh
    ages = np.geomspace(1e5, 1.4e10, 120)
    ages[0] = 0.0
    edges = sfh.bin_edges(ages)
    tage = np.array([0.3, 2.0, 7.5])
    tau = np.array([0.5, 1.0, 3.0])
    got, _ = sfh.ssp_weights(4, ages, edges, tage=tage, tau=tau)
    # the same integrals over every edge, one object at a time, with no cut
    full = np.diff(sfh.cumulative_fraction(4, edges, tage=tage, tau=tau), axis=1)
    assert np.allclose(got, full, rtol=1e-12, atol=1e-15)
    assert np.allclose(got.sum(axis=1), 1.0)
    beyond = edges[None, :-1] >= tage[:, None] * 1e9
    assert np.all(got[beyond] == 0.0)


def _denormal(x):
    return (x != 0) & (np.abs(x) < np.finfo(np.float32).tiny)


def test_float32_weights_hold_zeros_not_denormal_numbers():
    # a short tau model 10 Gyr old: its young bins' weights run down through
    # float32's denormal range (1e-45 to 1e-38), where x86 GEMMs are ~50x slower
    from prospect_sim.sps import sfh
    from prospect_sim.sps.kernel import WEIGHT_FLOOR
    from prospect_sim.sps.photometry import _pair_weights
    ages = np.geomspace(1e5, 1.4e10, 200)
    ages[0] = 0.0
    weights, _ = sfh.ssp_weights(4, ages, sfh.bin_edges(ages), tage=np.array([10.0, 12.0]),
                                 tau=np.array([0.05, 0.07]))
    assert np.any(_denormal(weights.astype(np.float32)))      # the case this is about
    zfrac = np.array([0.3, 1e-30])
    paired = _pair_weights(weights, zfrac)
    assert not np.any(_denormal(paired))
    exact = np.stack([weights * (1 - zfrac[:, None]), weights * zfrac[:, None]], axis=1)
    assert np.allclose(paired, exact, rtol=1e-6, atol=WEIGHT_FLOOR)
    assert np.all(paired[exact < WEIGHT_FLOOR / 2] == 0)


def test_compiled_loops_run_without_a_writable_cache(tmp_path):
    """No writable numba cache (read-only install and home): compiled in memory, one warning."""
    import os
    import subprocess
    import sys
    code = tmp_path / "code"
    code.mkdir()
    (code / "__pycache__").write_text("a file where numba wants its in-tree cache folder")
    (code / "loops.py").write_text(
        "from prospect_sim.sps._compiled import compiled\n"
        "@compiled\n"
        "def twice(x):\n"
        "    return 2.0 * x\n"
        "@compiled(nogil=True)\n"
        "def thrice(x):\n"
        "    return 3.0 * x\n"
        "print(twice(1.5), thrice(1.5))\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".cache").write_text("a file where numba wants its user-wide cache folder")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    run = subprocess.run([sys.executable, str(code / "loops.py")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["3.0", "4.5"]
    assert run.stderr.count("NUMBA_CACHE_DIR") == 1, run.stderr
