"""SSP library loading: the fsps loader's errors, the user HDF5 layout, wavelength trimming.

Tolerances: a library written to HDF5 and read back is bit-identical, so
spectra agree exactly; trimming keeps the native wavelengths and values, so
photometry through filters inside the kept range agrees to float rounding
(1e-9 relative per object; the batched lattice to 1e-6).
"""

import os
import pickle

import numpy as np
import pytest

from prospect_sim.errors import SPSError
from prospect_sim.sps import GridSPS, SSPLibrary, load_library
from prospect_sim.sps import loaders
from prospect_sim.sps.kernel import SpectralKernel
from prospect_sim.sps.library import read_hdf5, write_hdf5
from prospect_sim.sps.params import normalize


@pytest.fixture(scope="module")
def bc03():
    return load_library("bc03")


@pytest.fixture(scope="module")
def filters():
    from sedpy.observate import load_filters
    return load_filters([f"decam_{b}" for b in "grizY"])


# -- fsps loader ---------------------------------------------------------------

def test_fsps_library_without_sps_home_names_it(monkeypatch):
    monkeypatch.delenv("SPS_HOME", raising=False)
    with pytest.raises(SPSError, match="SPS_HOME is not set.*--sps grid"):
        loaders.load_fsps()
    with pytest.raises(SPSError, match="SPS_HOME"):
        GridSPS(library="fsps")


def test_fsps_library_with_empty_sps_home_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("SPS_HOME", str(tmp_path))
    with pytest.raises(SPSError, match=r"SPS_HOME is .*no 'data' folder"):
        loaders.load_fsps()


# -- user HDF5 layout -----------------------------------------------------------

def _small_library(bc03):
    """Three metallicities, every fourth age, 900-30000 AA: a library a user might bring."""
    keep_z = [2, 4, 5]
    keep_a = np.r_[0:len(bc03.ages):4]
    w = (bc03.wavelengths > 900) & (bc03.wavelengths < 30000)
    return SSPLibrary("mine", bc03.ages[keep_a], bc03.logzsol[keep_z], bc03.wavelengths[w],
                      bc03.spectra[np.ix_(keep_z, keep_a, np.flatnonzero(w))],
                      bc03.mfrac[np.ix_(keep_z, keep_a)], imf="Kroupa (2001)", imf_type=2,
                      isochrones="my_isochrones", spectral_library="my_spectra",
                      mfrac_includes_remnants=False, zsun=0.02)


def test_user_hdf5_round_trip_predicts(bc03, filters, tmp_path):
    lib = _small_library(bc03)
    path = str(tmp_path / "my_ssps.h5")
    write_hdf5(lib, path)
    back = read_hdf5(path)
    for key in ("ages", "logzsol", "wavelengths", "spectra", "mfrac"):
        np.testing.assert_array_equal(getattr(back, key), getattr(lib, key))
    assert back.libraries == ("my_isochrones", "my_spectra")
    assert back.imf_type == 2 and back.mfrac_includes_remnants is False

    sps = GridSPS(library=path)
    assert sps.ssp.libraries == ("my_isochrones", "my_spectra")
    params = dict(sfh=4, tage=3.0, tau=0.8, logzsol=-0.2, dust_type=2, dust2=0.4, zred=0.3)
    wave, spec, mfrac = sps.get_galaxy_spectrum(**params)
    expect, emfrac, _ = SpectralKernel(lib).spectra(normalize(params, lib, single=True))
    np.testing.assert_array_equal(wave, lib.wavelengths)
    np.testing.assert_array_equal(spec, expect[0])
    assert mfrac == emfrac[0]
    # an SSP at one of its grid points is that grid spectrum
    _, ssp, _ = sps.get_galaxy_spectrum(sfh=0, tage=lib.ages[30] / 1e9, logzsol=lib.logzsol[1],
                                        dust2=0.0, zred=0.0)
    np.testing.assert_allclose(ssp, lib.spectra[1, 30], rtol=1e-6)

    # Prospector's SpecModel predicts with it, and a pickled copy rebuilds from the path
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    model = SpecModel(TemplateLibrary["parametric_sfh"])
    obs = dict(filters=filters, wavelength=None, spectrum=None)
    phot = model.predict(model.theta, obs=obs, sps=sps)[1]
    assert np.all(np.isfinite(phot)) and np.all(phot > 0)
    blob = pickle.dumps(sps)
    assert len(blob) < 1000
    np.testing.assert_array_equal(model.predict(model.theta, obs=obs, sps=pickle.loads(blob))[1],
                                  phot)
    # and the batched kernel agrees with the per-object path on it
    batched, _ = sps.photometry(dict(model.params), filters)
    np.testing.assert_allclose(batched[0], phot, rtol=2e-3)


def test_user_hdf5_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "nope.h5")
    with pytest.raises(SPSError, match="nope.h5.*does not exist"):
        GridSPS(library=missing)
    import h5py
    broken = str(tmp_path / "broken.h5")
    with h5py.File(broken, "w") as f:
        f["ages"] = np.arange(3.0)
    with pytest.raises(SPSError, match="broken.h5.*expected datasets ages, logzsol"):
        load_library(broken)


def test_write_hdf5_leaves_no_partial_file(bc03, tmp_path):
    path = tmp_path / "lib.h5"
    write_hdf5(_small_library(bc03), str(path))
    assert sorted(os.listdir(tmp_path)) == ["lib.h5"]


# -- wavelength trimming ------------------------------------------------------------

def test_wave_range_covering_the_filters_gives_the_same_photometry(filters):
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    cfg = TemplateLibrary["parametric_sfh"]
    cfg["zred"]["isfree"] = True
    cfg["zred"]["prior"].params["maxi"] = 3.0
    model = SpecModel(cfg)
    full = GridSPS()
    wave_range = GridSPS.wave_range_for(filters, zmin=0.0, zmax=3.0)
    trimmed = GridSPS(wave_range=wave_range)
    assert len(trimmed.wavelengths) < 0.8 * len(full.wavelengths)
    assert trimmed.wavelengths[0] <= wave_range[0] and trimmed.wavelengths[-1] >= wave_range[1]
    obs = dict(filters=filters, wavelength=None, spectrum=None)
    rng = np.random.default_rng(7)
    theta = np.array([model.prior_transform(rng.uniform(size=model.ndim)) for _ in range(20)])
    theta[:2, model.theta_labels().index("zred")] = [0.0, 3.0]       # the prior's edges
    a = np.array([model.predict(t, obs=obs, sps=full)[1] for t in theta])
    b = np.array([model.predict(t, obs=obs, sps=trimmed)[1] for t in theta])
    np.testing.assert_allclose(b, a, rtol=1e-9)
    params = {k: theta[:, i] for i, k in enumerate(model.theta_labels())}
    params.update(sfh=4, dust_type=0)
    np.testing.assert_allclose(trimmed.photometry(params, filters)[0],
                               full.photometry(params, filters)[0], rtol=1e-6)


def test_the_library_is_read_once_however_it_is_asked_for():
    full = load_library("bc03")
    assert load_library("bc03", None) is full and load_library(name="bc03") is full
    cut = load_library("bc03", (900, 30000.0))
    assert load_library("bc03", [900.0, 30000]) is cut
    assert cut.spectra.shape[-1] < full.spectra.shape[-1]
