"""Physics of prospect_sim.sps checked against the grid itself and published formulas.

Tolerances: the grids are stored as float32, so spectra are compared at
rtol 1e-5; analytic integrals at 1e-9; dust and IGM curves at the rounding
of the published coefficients.
"""

import numpy as np
import pytest

from prospect_sim.sps import GridSPS
from prospect_sim.sps import dust, igm, sfh
from prospect_sim.sps.loaders import load_library
from prospect_sim.sps.loaders import LIGHTSPEED_AA, bc03_path


@pytest.fixture(scope="module")
def sps():
    return GridSPS()


@pytest.fixture(scope="module")
def lib():
    return load_library("bc03")


def test_ssp_at_grid_point_reproduces_grid_spectrum(sps, lib):
    from astropy.io import fits
    iz, ia = 4, 150                                   # solar, ~ 1 Gyr
    with fits.open(bc03_path()) as hdus:
        raw = np.array(hdus[1 + iz].data[ia], dtype=float)
        wave = np.array(hdus["WAVELENGTHS_AA"].data, dtype=float)
    wave_out, spec, mfrac = sps.get_galaxy_spectrum(
        sfh=0, tage=lib.ages[ia] / 1e9, logzsol=lib.logzsol[iz], dust2=0.0, zred=0.0)
    keep = np.isin(wave_out, wave)
    np.testing.assert_allclose(wave_out[keep], wave)
    expected = raw * wave**2 / LIGHTSPEED_AA
    # float32 storage: 1e-5 relative, and values below float32's normal range are flushed
    np.testing.assert_allclose(spec[keep], expected, rtol=1e-5, atol=1e-30 * expected.max())
    assert mfrac == pytest.approx(lib.mfrac[iz, ia], rel=1e-12)


@pytest.mark.parametrize("kind", [1, 4])
def test_parametric_weights_integrate_the_sfh(kind, lib):
    edges = sfh.bin_edges(lib.ages)
    tage, tau = np.array([0.05, 3.0, 13.0]), np.array([0.3, 1.0, 20.0])
    w, _ = sfh.ssp_weights(kind, lib.ages, edges, tage=tage, tau=tau)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(w >= -1e-15)
    # mass formed in the last 100 Myr against a direct numerical integral
    for t, ta in zip(tage, tau):
        a = np.linspace(0, t * 1e9, 200001)
        age_since_start = (t * 1e9 - a) / (ta * 1e9)
        rate = np.exp(-age_since_start) * (age_since_start if kind == 4 else 1.0)
        frac = np.trapezoid(rate * (a < 1e8), a) / np.trapezoid(rate, a)
        got = sfh.sfr_average(kind, 1e8, tage=np.array([t]), tau=np.array([ta]))[0] * 1e8
        assert got == pytest.approx(frac, rel=1e-4, abs=1e-9)


def test_nonparametric_weights_put_each_bin_mass_in_its_ages(lib):
    edges = sfh.bin_edges(lib.ages)
    agebins = np.array([[[0.0, 8.0], [8.0, 9.0], [9.0, 10.0]]])
    mass = np.array([[1.0, 2.0, 7.0]])
    w, _ = sfh.ssp_weights(3, lib.ages, edges, agebins=agebins, bin_mass=mass)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    cum = sfh.cumulative_fraction(3, np.array([1e8, 1e9, 1e10]), agebins=agebins, bin_mass=mass)
    np.testing.assert_allclose(cum[0], [0.1, 0.3, 1.0], rtol=1e-12)
    # SSPs whose whole age bin lies inside a mass bin carry that bin's SFR
    inside = (edges[1:] < 1e8) & (edges[:-1] > 0)
    np.testing.assert_allclose(w[0, inside], 0.1 * np.diff(edges)[inside] / (1e8 - 1), rtol=1e-9)


def test_total_mass_formed_normalises_photometry(sps):
    from sedpy.observate import load_filters
    filters = load_filters(["decam_r"])
    one, _ = sps.photometry(dict(sfh=4, tage=5.0, tau=1.0, mass=1.0, zred=0.1), filters)
    ten, _ = sps.photometry(dict(sfh=4, tage=5.0, tau=1.0, mass=10.0, zred=0.1), filters)
    assert ten[0, 0] / one[0, 0] == pytest.approx(10.0, rel=1e-6)
    bins, _ = sps.photometry(dict(sfh=3, agebins=[[0, 8], [8, 9.7]], mass=[2.0, 8.0],
                                  zred=0.1), filters)
    bins1, _ = sps.photometry(dict(sfh=3, agebins=[[0, 8], [8, 9.7]], mass=[0.2, 0.8],
                                   zred=0.1), filters)
    assert bins[0, 0] / bins1[0, 0] == pytest.approx(10.0, rel=1e-6)


def test_mfrac_in_unit_interval_and_decreasing_with_age(sps, lib):
    assert np.all((lib.mfrac >= 0) & (lib.mfrac <= 1))
    # the BC03 table has two upticks of at most 0.0035 (Z = 0.005 Zsun, ~200 Myr)
    assert np.all(np.diff(lib.mfrac, axis=1) <= 0.004)
    assert lib.mfrac[:, -1].max() < 0.5 < lib.mfrac[:, 100].min()
    tage = np.array([0.01, 0.1, 1.0, 5.0, 13.0])
    props = sps.sfh_properties(dict(sfh=4, tage=tage, tau=1.0, logzsol=-0.3))
    assert np.all(np.diff(props["mfrac"]) < 0)
    assert np.all((props["mfrac"] > 0) & (props["mfrac"] <= 1))
    assert np.all(props["mwa"] < tage)


def test_zero_dust_gives_dust_free_spectrum(sps):
    base = dict(sfh=4, tage=2.0, tau=0.5, logzsol=-0.5, zred=0.0)
    _, free, _ = sps.get_galaxy_spectrum(**base, dust_type=0, dust2=0.0, dust1=0.0)
    for dt in (0, 2, 4):
        _, spec, _ = sps.get_galaxy_spectrum(**base, dust_type=dt, dust2=0.0, dust1=0.0)
        np.testing.assert_array_equal(spec, free)
    _, dusty, _ = sps.get_galaxy_spectrum(**base, dust_type=2, dust2=0.5)
    assert np.all(dusty[(sps.wavelengths > 1500) & (sps.wavelengths < 9000)]
                  < free[(sps.wavelengths > 1500) & (sps.wavelengths < 9000)])


def _calzetti_2000(lam_um):
    """Calzetti et al. (2000) eq. 4, R_V = 4.05."""
    x = 1.0 / lam_um
    blue = 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + 4.05
    red = 2.659 * (-1.857 + 1.040 * x) + 4.05
    return np.where(lam_um < 0.63, blue, red)


def test_dust_curves_match_published_formulas():
    lam = np.array([1200.0, 1500.0, 2175.0, 3000.0, 4400.0, 5500.0, 8000.0, 12000.0, 22000.0])
    one = np.ones(1)
    # Calzetti: FSPS writes R_V as 1.78/0.44 = 4.0455 instead of 4.05, an offset
    # of 0.0045/4.05 = 1.1e-3 in tau per unit dust2
    tau2 = dust.diffuse_tau(2, lam, one, one * 0.0)[0]
    np.testing.assert_allclose(tau2, _calzetti_2000(lam / 1e4) / 4.05, rtol=0, atol=1.2e-3)
    # power law
    np.testing.assert_allclose(dust.diffuse_tau(0, lam, one * 0.7, one * -0.7)[0],
                               0.7 * (lam / 5500) ** -0.7, rtol=1e-12)
    # Kriek & Conroy (2013): (k_cal + E_b Drude) / R_V * (lam/5500)^delta, E_b = 0.85 - 1.9 delta
    delta = -0.3
    eb = 0.85 - 1.9 * delta
    drude = eb * (lam * 350.0) ** 2 / ((lam**2 - 2175.0**2) ** 2 + (lam * 350.0) ** 2)
    ref = (_calzetti_2000(lam / 1e4) + drude) / 4.05 * (lam / 5500) ** delta
    np.testing.assert_allclose(dust.diffuse_tau(4, lam, one, one * delta)[0], ref, rtol=0,
                               atol=1.2e-3 * 1.5)
    # the bump peaks at 2175 AA with E_b / R_V above the smooth curve
    bump = dust.diffuse_tau(4, lam, one, one * delta)[0] - \
        dust.calzetti_k(lam) / 4.05 * (lam / 5500) ** delta
    assert np.argmax(bump) == 2
    # birth-cloud dust is a power law whatever the diffuse curve
    np.testing.assert_allclose(dust.birth_cloud_tau(lam, one * 1.0, one * -1.0)[0],
                               (lam / 5500) ** -1.0)


def test_igm_matches_madau_1995():
    z = 3.0
    # Madau (1995) eq. 15: Ly-alpha and Ly-beta blanketing, + the metal term of his eq. 15 note
    lam_rest = np.array([1100.0, 1000.0, 1250.0])
    lobs = lam_rest * (1 + z)
    tau_a = 0.0036 * (lobs / 1216.0) ** 3.46 + 0.0017 * (lobs / 1216.0) ** 1.68
    tau_b = 0.0017 * (lobs / 1026.0) ** 3.46
    expected = np.array([tau_a[0], tau_a[1] + tau_b[1], 0.0])   # 1000 AA > Ly-gamma
    got = igm.igm_tau(lam_rest, np.array([z]))[0]
    np.testing.assert_allclose(got, expected, rtol=5e-3)   # Madau quotes 1216/1026/973 AA
    trans = igm.igm_transmission(lam_rest, np.array([z, 0.0]), igm_factor=np.array([1.0, 1.0]))
    np.testing.assert_allclose(trans[0], np.exp(-got))
    np.testing.assert_array_equal(trans[1], 1.0)
    # Lyman continuum: strongly absorbed at z = 3
    assert 0.02 < igm.igm_transmission(np.array([800.0]), np.array([3.0]))[0, 0] < 0.1


@pytest.mark.parametrize("dust_type", [0, 2, 4])
def test_dust_at_one_wavelength_per_object_is_the_curve_diagonal(dust_type):
    rng = np.random.default_rng(0)
    lam = rng.uniform(900.0, 40000.0, 50)
    dust2, index = rng.uniform(0.0, 2.0, 50), rng.uniform(-1.0, 0.4, 50)
    full = dust.diffuse_tau(dust_type, lam, dust2, index)
    np.testing.assert_allclose(dust.diffuse_tau_at(dust_type, lam, dust2, index),
                               np.diag(full), rtol=1e-12)
    np.testing.assert_allclose(dust.birth_cloud_tau_at(lam, dust2, index),
                               np.diag(dust.birth_cloud_tau(lam, dust2, index)), rtol=1e-12)
