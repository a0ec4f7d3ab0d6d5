"""The vectorised SPS set-up kernels against their original loop versions.

``_bin_moments`` (one sparse operator applied to every spectrum),
``_Spike._tabulate`` (a windowed GEMM per metallicity) and
``refine_sampling`` are checked against verbatim copies of the loop code
they replaced (``_bin_moments_loop``, ``_tabulate_loop``,
``_refine_sampling_loop`` below), on a random library on an irregular
wavelength grid and on a few ages of the real BC03 library.

Tolerance: both versions are exact in exact arithmetic; they differ only
by the order of float summation.  ``_bin_moments`` sums in float64 and
rounds once to float32, ``_tabulate`` accumulates float32 products, so
agreement is asked to 2e-6 of each row's largest value (float32 epsilon is
1.2e-7; a few tens of terms are summed).  ``refine_sampling`` keeps the
same formula and is asked to agree exactly.
"""

import numpy as np
import pytest

from prospect_sim.sps import loaders, load_library
from prospect_sim.sps.moments import _bin_moments, _legendre
from prospect_sim.sps.outliers import _Curve, _Spike, _split_curves

RTOL = 2e-6


# -- the original implementations, kept as independent references -------------

def _bin_moments_loop(wave, spectra, edges, n_moments=3):
    """The per-metallicity Simpson + ``reduceat`` version of ``_bin_moments``."""
    lnw = np.log(wave)
    delta = edges[1] - edges[0]
    inner = lnw[(lnw > edges[0]) & (lnw < edges[-1])]
    pts = np.union1d(inner, edges)
    pos = np.interp(pts, lnw, np.arange(len(lnw), dtype=float))
    i0 = np.clip(np.floor(pos).astype(int), 0, len(lnw) - 2)
    frac = pos - i0
    seg_bin = np.clip(np.searchsorted(edges, pts[:-1], side="right") - 1, 0, len(edges) - 2)
    yc = 0.5 * (edges[seg_bin] + edges[seg_bin + 1])
    x0, x1 = 2 * (pts[:-1] - yc) / delta, 2 * (pts[1:] - yc) / delta
    h = (pts[1:] - pts[:-1]) / 6.0
    legs = [(_legendre(q, x0), 4 * _legendre(q, 0.5 * (x0 + x1)), _legendre(q, x1))
            for q in range(n_moments)]
    first = np.searchsorted(pts, edges[:-1])
    out = np.empty(spectra.shape[:2] + (len(edges) - 1, n_moments), dtype=np.float32)
    for k in range(spectra.shape[0]):
        s = spectra[k].astype(float)
        vals = s[:, i0] * (1 - frac) + s[:, i0 + 1] * frac          # (A, P)
        l0, l1 = vals[:, :-1], vals[:, 1:]
        lm = 0.5 * (l0 + l1)
        for q, (p0, pm, p1) in enumerate(legs):
            seg = h * (l0 * p0 + lm * pm + l1 * p1)
            out[k, :, :, q] = np.add.reduceat(seg, first, axis=1) * ((2 * q + 1) / delta)
    return out


def _tabulate_loop(moments, response, i_min, n_obs, n_moments, n_sub, j_max):
    """The V x K x (M+1) loop version of ``_Spike._tabulate``: nodes (j_max M + 1, Z, A)."""
    V, K, M = n_obs, n_moments, n_sub
    resp = response.reshape(V, K, M + 1)
    shifts = np.arange(j_max)
    table = np.zeros((M + 1,) + moments.shape[:2] + (j_max,), dtype=np.float32)
    for v in range(V):
        cols = v - i_min - shifts
        for q in range(K):
            ssp = moments[:, :, cols, q]
            for m in range(M + 1):
                table[m] += resp[v, q, m] * ssp
    nodes = np.moveaxis(table[:M], -1, 0).reshape((j_max * M,) + table.shape[1:3])
    last = np.moveaxis(table[M], -1, 0)[-1:]
    return np.ascontiguousarray(np.concatenate([nodes, last]))


def _refine_sampling_loop(wave, spectra, cap=10.0, lo=7000.0, hi=30000.0):
    """The per-metallicity gather version of ``refine_sampling``."""
    gaps = np.diff(wave)
    mids = (wave[:-1] < hi) & (wave[1:] > lo) & (gaps > cap)
    extra = [np.linspace(a, b, int(np.ceil((b - a) / cap)) + 1)[1:-1]
             for a, b in zip(wave[:-1][mids], wave[1:][mids])]
    if not extra:
        return wave, spectra
    new = np.union1d(wave, np.concatenate(extra))
    pos = np.searchsorted(wave, new, side="right") - 1
    pos = np.clip(pos, 0, len(wave) - 2)
    frac = ((new - wave[pos]) / (wave[pos + 1] - wave[pos])).astype(np.float32)
    out = np.empty(spectra.shape[:-1] + (len(new),), dtype=np.float32)
    for i in np.ndindex(spectra.shape[:-2]):
        out[i] = spectra[i][..., pos] * (1 - frac) + spectra[i][..., pos + 1] * frac
    return new, out


# -- helpers -------------------------------------------------------------------

def _assert_rows_close(new, ref, axis):
    """|new - ref| <= RTOL * max |ref| over ``axis`` (the row scale), with equal shapes."""
    assert new.shape == ref.shape and new.dtype == ref.dtype
    scale = np.max(np.abs(ref), axis=axis, keepdims=True)
    err = np.abs(new.astype(float) - ref.astype(float))
    assert np.all(err <= RTOL * scale), float(np.max(err / np.maximum(scale, 1e-300)))


class _Library:
    """The three attributes the lattice reads from an SSPLibrary."""

    def __init__(self, wave, spectra, ages):
        self.wavelengths, self.spectra, self.ages = wave, spectra, ages


def _random_library(rng, n_z=3, n_age=5, n_wave=400):
    """Spectra (Z, A, W) float32 on irregular wavelengths from 900 to 12000 AA."""
    wave = np.sort(rng.uniform(900.0, 12000.0, n_wave))
    spectra = rng.lognormal(0.0, 1.0, (n_z, n_age, n_wave)).astype(np.float32)
    return _Library(wave, spectra, np.logspace(6, 10, n_age))


@pytest.fixture(scope="module")
def bc03_few_ages():
    lib = load_library("bc03")
    return _Library(lib.wavelengths, np.ascontiguousarray(lib.spectra[:, ::60]),
                    lib.ages[::60])


# -- _bin_moments --------------------------------------------------------------

@pytest.mark.parametrize("n_moments", [1, 2, 3])
@pytest.mark.parametrize("resolution", [30.0, 300.0, 3000.0])
def test_bin_moments_match_the_loop_on_a_random_library(n_moments, resolution):
    rng = np.random.default_rng([7, n_moments, int(resolution)])
    lib = _random_library(rng)
    # random edges, reaching beyond the native range on both sides (constant there)
    start = np.log(rng.uniform(700.0, 1500.0))
    n_bins = int(np.log(15000.0 / 700.0) * resolution)
    edges = start + np.arange(n_bins + 1) / resolution
    new = _bin_moments(lib.wavelengths, lib.spectra, edges, n_moments)
    ref = _bin_moments_loop(lib.wavelengths, lib.spectra, edges, n_moments)
    _assert_rows_close(new, ref, axis=(2, 3))


def test_bin_moments_match_the_loop_inside_the_native_range():
    rng = np.random.default_rng(11)
    lib = _random_library(rng, n_wave=50)
    edges = np.log(2000.0) + np.arange(41) * 0.013
    ref = _bin_moments_loop(lib.wavelengths, lib.spectra, edges, 3)
    _assert_rows_close(_bin_moments(lib.wavelengths, lib.spectra, edges, 3), ref, axis=(2, 3))


def test_bin_moments_match_the_loop_on_bc03(bc03_few_ages):
    lib = bc03_few_ages
    edges = np.log(1215.67) + np.arange(-700, 300) / 200.0
    ref = _bin_moments_loop(lib.wavelengths, lib.spectra, edges, 3)
    _assert_rows_close(_bin_moments(lib.wavelengths, lib.spectra, edges, 3), ref, axis=(2, 3))


def test_bin_moments_rejects_four_moments():
    with pytest.raises(ValueError, match="n_moments=4"):
        _bin_moments(np.arange(1.0, 5.0), np.ones((1, 1, 4)), np.log([1.5, 2.0, 2.5]), 4)


# -- _Spike._tabulate ----------------------------------------------------------

def _check_tabulate(library, curve, resolution, n_sub, n_moments, j_max):
    spike = _Spike(library, curve, resolution, n_sub, n_moments)
    lat = spike.lattice
    lat._build_lattice(j_max + 1)
    ref = _tabulate_loop(lat.moments.copy(), lat.response, lat.i_min, lat.n_obs,
                         lat.n_moments, n_sub, j_max)
    spike._tabulate(j_max)
    assert spike.nodes.flags.c_contiguous
    _assert_rows_close(spike.nodes, ref, axis=0)


@pytest.mark.parametrize("n_moments,n_sub", [(1, 2), (2, 4), (3, 8)])
def test_tabulate_matches_the_loop_on_a_random_library(n_moments, n_sub):
    rng = np.random.default_rng([3, n_moments])
    lib = _random_library(rng)
    wave = np.linspace(8400.0, 8560.0, 17)
    trans = np.zeros_like(wave)
    trans[7:10] = [0.02, -0.05, 0.03]
    _check_tabulate(lib, _Curve(wave, trans, 1.0e7), 2000.0, n_sub, n_moments, 400)


def test_tabulate_matches_the_loop_on_bc03_through_a_decam_outlier(bc03_few_ages):
    from sedpy.observate import load_filters
    _, spikes = _split_curves(load_filters([f"decam_{b}" for b in "grizY"]), 0.15)
    assert spikes, "DECam i has an outlier point at 8480 AA"
    _check_tabulate(bc03_few_ages, spikes[0][1], 2000.0, 2, 1, 1500)


# -- refine_sampling -----------------------------------------------------------

def test_refine_sampling_matches_the_loop_exactly():
    rng = np.random.default_rng(5)
    wave = np.cumsum(rng.uniform(1.0, 60.0, 800)) + 6000.0
    spectra = rng.lognormal(0.0, 1.0, (2, 3, len(wave))).astype(np.float32)
    new_wave, new = loaders.refine_sampling(wave, spectra)
    ref_wave, ref = _refine_sampling_loop(wave, spectra)
    np.testing.assert_array_equal(new_wave, ref_wave)
    assert new.dtype == ref.dtype == np.float32
    np.testing.assert_array_equal(new, ref)


def test_refine_sampling_keeps_a_fine_grid_as_is():
    wave = np.linspace(7000.0, 9000.0, 401)
    spectra = np.ones((1, 2, len(wave)), dtype=np.float32)
    new_wave, new = loaders.refine_sampling(wave, spectra)
    assert new_wave is wave and new is spectra


def test_refine_sampling_matches_the_loop_on_bc03_wavelengths():
    from astropy.io import fits
    with fits.open(loaders.bc03_path(), memmap=True) as hdus:
        wave = np.array(hdus["WAVELENGTHS_AA"].data, dtype=float)
    rng = np.random.default_rng(9)
    spectra = rng.lognormal(0.0, 1.0, (2, 2, len(wave))).astype(np.float32)
    new_wave, new = loaders.refine_sampling(wave, spectra)
    ref_wave, ref = _refine_sampling_loop(wave, spectra)
    np.testing.assert_array_equal(new_wave, ref_wave)
    np.testing.assert_array_equal(new, ref)
