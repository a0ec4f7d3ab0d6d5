"""The AGN component: template shapes against the published tables read here, units, paths.

The references are the shipped data files parsed independently in this
test (numpy, their own formats), not the module's interpolants: colours
of the disc and of the torus (normalisation-free), the SMC reddening of
the disc alone, and the amplitudes' meaning (the disc's luminosity as a
multiple of the stars' bolometric luminosity, integrated here).
"""

import os

import numpy as np
import pytest

import prospect_sim.sps  # noqa: F401  (SpecModel without SPS_HOME)
from prospect_sim.errors import SPSError
from prospect_sim.sps import GridSPS, agn

from reference_photometry import specmodel_photometry

BASE = dict(sfh=4, tage=2.0, tau=1.0, logzsol=-0.3, dust2=0.3)


@pytest.fixture(scope="module")
def sps():
    return GridSPS()


def _agn_part(sps, **params):
    """The AGN light alone (Lsun/Hz per Msun formed) and the stellar spectrum."""
    wave, with_agn, _ = sps.get_galaxy_spectrum(**dict(BASE, **params))
    _, stars, _ = sps.get_galaxy_spectrum(**dict(BASE, agn_mass=0.0, agn_torus_mass=0.0,
                                                 fagn=0.0))
    return wave, with_agn - stars, stars


def _llam(wave, lnu):
    return lnu * 2.998e18 / wave**2


def _at(wave, values, where):
    return np.interp(where, wave, values)


def _shang():
    """log nu F_nu against wavelength (AA), read from the CDS file."""
    rows = []
    with open(os.path.join(agn.DATA_DIR, "shang2011_radio_quiet_median_sed.txt")) as handle:
        for line in handle:
            parts = line.split()
            if line.startswith("#") or not parts or parts[0] == "log_freq":
                continue
            rows.append((float(parts[0]), float(parts[1])))
    rows = np.array(rows)
    wave = 2.998e18 / 10**rows[:, 0]
    order = np.argsort(wave)
    return wave[order], rows[order, 1]


def _clumpy(column):
    table = np.genfromtxt(os.path.join(agn.DATA_DIR, "clumpy_torus_by_inclination.csv"),
                          delimiter=",", names=True)
    return 10**table["log10_wavelength_AA"], table[f"log10_flux_incl_{column}"]


def test_disc_colour_is_shang(sps):
    wave, part, _ = _agn_part(sps, agn_mass=1.0, agn_eb_v=0.0)
    ours = _llam(wave, part)
    sw, log_nufnu = _shang()
    ratio_ref = []
    for lam in (1500.0, 3000.0, 5100.0, 8000.0):
        nearest = np.argmin(np.abs(sw - lam))                # a table point: no interpolation
        ratio_ref.append((sw[nearest], 10**log_nufnu[nearest] / sw[nearest]))
    (w0, f0), rest = ratio_ref[0], ratio_ref[1:]
    for w, f in rest:
        assert _at(wave, ours, w) / _at(wave, ours, w0) == pytest.approx(f / f0, rel=2e-3)


def test_torus_colour_is_clumpy_and_inclination_dims_the_near_ir(sps):
    tw, log_flux = _clumpy(30)
    wave, part, _ = _agn_part(sps, agn_torus_mass=1.0, inclination=30.0)
    ours = _llam(wave, part)
    i, j = np.argmin(np.abs(tw - 3e4)), np.argmin(np.abs(tw - 1e5))    # table points
    want = (10**log_flux[j] / tw[j]) / (10**log_flux[i] / tw[i])
    assert _at(wave, ours, tw[j]) / _at(wave, ours, tw[i]) == pytest.approx(want, rel=2e-3)
    near_ir = (wave > 2e4) & (wave < 5e4)
    _, face_on, _ = _agn_part(sps, agn_torus_mass=1.0, inclination=0.0)
    _, edge_on, _ = _agn_part(sps, agn_torus_mass=1.0, inclination=90.0)
    assert np.all(edge_on[near_ir] < face_on[near_ir])


def test_eb_v_reddens_the_disc_only(sps):
    smc = np.loadtxt(os.path.join(agn.DATA_DIR, "smc_extinction_prevot1984.dat"), skiprows=1)
    wave, blue, _ = _agn_part(sps, agn_mass=1.0, agn_eb_v=0.0)
    _, red, _ = _agn_part(sps, agn_mass=1.0, agn_eb_v=0.3)
    for lam in (1500.0, 2500.0, 5500.0):
        k = np.interp(lam, smc[:, 0], smc[:, 1])
        assert _at(wave, red, lam) / _at(wave, blue, lam) == pytest.approx(
            10**(-0.4 * 0.3 * k), rel=1e-3)
    _, torus, _ = _agn_part(sps, agn_torus_mass=1.0, agn_eb_v=0.0)
    _, torus_red, _ = _agn_part(sps, agn_torus_mass=1.0, agn_eb_v=0.5)
    np.testing.assert_allclose(torus_red, torus, rtol=1e-12)


def test_amplitudes_are_multiples_of_the_stellar_bolometric_luminosity():
    sps = GridSPS()
    wave, part, _ = _agn_part(sps, agn_mass=2.0)
    _, intrinsic, _ = sps.get_galaxy_spectrum(**dict(BASE, dust2=0.0, agn_mass=0.0))
    lbol = np.trapezoid(_llam(wave, intrinsic), wave)
    inside = (wave >= 100) & (wave <= 1e7)
    disc = np.trapezoid(_llam(wave, part)[inside], wave[inside])
    assert disc == pytest.approx(2.0 * lbol, rel=2e-3)
    _, torus, _ = _agn_part(sps, agn_torus_mass=0.5, inclination=45.0)
    assert np.trapezoid(_llam(wave, torus)[inside], wave[inside]) == pytest.approx(
        0.5 * lbol, rel=2e-3)


def test_fagn_is_a_torus_fraction_and_other_agn_tau_refused(sps):
    wave, part, _ = _agn_part(sps, fagn=0.1, agn_tau=60.0, add_agn_dust=True)
    assert part.max() > 0 and part[wave < 5000].max() < 1e-3 * part.max()
    with pytest.raises(SPSError, match="agn_tau=60"):
        sps.get_galaxy_spectrum(**BASE, fagn=0.1, agn_tau=5.0, add_agn_dust=True)
    with pytest.raises(SPSError, match="inclination"):
        sps.get_galaxy_spectrum(**BASE, agn_torus_mass=1.0, inclination=95.0)


def test_batched_matches_specmodel_with_the_agnfinder_box():
    from prospect.models import SpecModel, priors
    from prospect.models.templates import TemplateLibrary
    from sedpy.observate import load_filters
    names = ["galex_NUV", "sdss_u0", "sdss_g0", "sdss_r0", "sdss_i0", "sdss_z0",
             "vista_vircam_J", "vista_vircam_Ks", "wise_w1", "wise_w2", "wise_w3", "wise_w4"]
    filters = load_filters(names)
    cfg = TemplateLibrary["parametric_sfh"]
    for key, init in (("agn_mass", 1.0), ("agn_eb_v", 0.1), ("agn_torus_mass", 1.0),
                      ("inclination", 30.0)):
        cfg[key] = dict(N=1, isfree=True, init=init, prior=priors.TopHat(mini=0, maxi=1))
    model = SpecModel(cfg)
    rng = np.random.default_rng(2)
    n = 30
    draws = dict(zred=rng.uniform(0.005, 6, n), tage=10**rng.uniform(-2, 1, n),
                 tau=rng.uniform(0.1, 3, n), logzsol=rng.uniform(-1.5, 0.3, n),
                 dust2=rng.uniform(0, 2, n), mass=np.full(n, 1e10),
                 agn_mass=10**rng.uniform(-3, 1.2, n), agn_eb_v=rng.uniform(0, 0.5, n),
                 agn_torus_mass=10**rng.uniform(-3, 1.2, n), inclination=rng.uniform(0, 90, n))
    sps = GridSPS()
    ref = specmodel_photometry(model, draws, filters, sps)
    fast = GridSPS().photometry(dict(draws, sfh=4), filters)[0]
    blue = np.array([f.wavelength[f.transmission > 0].min() for f in filters])
    ok = blue[None, :] > 1216.0 * (1 + draws["zred"][:, None])
    dmag = np.where(ok, np.abs(2.5 * np.log10(np.where(ok, fast / ref, 1.0))), 0.0)
    assert dmag.max() < 1e-3, dict(zip(names, dmag.max(axis=0).round(5)))
    bare = GridSPS().photometry(dict(draws, sfh=4, agn_mass=0.0, agn_torus_mass=0.0),
                                filters)[0]
    assert np.abs(2.5 * np.log10(fast[ok] / bare[ok])).max() > 1.0


def test_templates_ship_with_the_package():
    from importlib import resources
    folder = resources.files("prospect_sim.sps") / "data" / "agn"
    for name in ("shang2011_radio_quiet_median_sed.txt", "clumpy_torus_by_inclination.csv",
                 "clumpy_torus_incl_selected.csv", "smc_extinction_prevot1984.dat",
                 "README.rst"):
        assert (folder / name).is_file(), name


def test_l_agn_extra():
    from sedpy.observate import load_filters
    sps = GridSPS()
    wave, intrinsic, _ = sps.get_galaxy_spectrum(**dict(BASE, dust2=0.0, agn_mass=0.0,
                                                        agn_torus_mass=0.0))
    lbol = np.trapezoid(_llam(wave, intrinsic), wave)
    _, props = GridSPS().photometry_and_properties(
        dict(BASE, mass=1e10, zred=0.5, agn_mass=2.0, agn_torus_mass=0.5, inclination=20.0),
        load_filters(["sdss_r0"]))
    assert props["l_agn"][0] == pytest.approx(2.5 * 1e10 * lbol, rel=2e-3)


def test_agn_fraction_per_band_is_the_agn_share_of_the_flux():
    from sedpy.observate import load_filters
    from prospect_sim.sps.agn import agn_fraction_name
    names = ["sdss_u0", "sdss_r0", "vista_vircam_Ks", "wise_w1", "wise_w3"]
    filters = load_filters(names)
    rng = np.random.default_rng(8)
    n = 40
    draws = dict(sfh=4, zred=rng.uniform(0.05, 3, n), tage=10**rng.uniform(-1, 0.5, n),
                 tau=rng.uniform(0.3, 3, n), logzsol=rng.uniform(-1, 0.2, n),
                 dust2=rng.uniform(0, 1, n), mass=np.full(n, 1e10),
                 agn_mass=10**rng.uniform(-3, 1, n), agn_eb_v=rng.uniform(0, 0.5, n),
                 agn_torus_mass=10**rng.uniform(-3, 1, n), inclination=rng.uniform(0, 90, n))
    sps = GridSPS()
    total, props = sps.photometry_and_properties(draws, filters)
    host = sps.photometry(dict(draws, agn_mass=0.0, agn_torus_mass=0.0), filters)[0]
    for b, name in enumerate(names):
        share = props[agn_fraction_name(name)]
        assert np.all((share >= 0) & (share <= 1))
        assert np.allclose(share, 1 - host[:, b] / total[:, b], rtol=1e-5, atol=1e-6)
    # the torus dominates the mid-IR more than the optical for these draws
    assert np.median(props["agn_fraction_wise_w3"]) > np.median(props["agn_fraction_sdss_r0"])
