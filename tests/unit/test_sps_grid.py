"""GridSPS behind Prospector's SpecModel: interface, pickling, errors, batched agreement."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from prospect_sim.errors import SPSError
from prospect_sim.sps import GridSPS, build_sps


@pytest.fixture(scope="module")
def sps():
    return GridSPS()


@pytest.fixture(scope="module")
def filters():
    from sedpy.observate import load_filters
    return load_filters([f"decam_{b}" for b in "grizY"])


def _demo_model():
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    cfg = TemplateLibrary["parametric_sfh"]
    cfg["zred"]["isfree"] = True
    cfg["zred"]["prior"].params["maxi"] = 3.0
    cfg["logzsol"]["prior"].params["mini"] = -2.0
    return SpecModel(cfg)


def _prior_draws(model, n, seed, **fixed):
    """``n`` prior draws as (theta (n, D), batched params dict with ``fixed`` added)."""
    rng = np.random.default_rng(seed)
    theta = np.array([model.prior_transform(rng.uniform(size=model.ndim)) for _ in range(n)])
    params = {k: theta[:, i] for i, k in enumerate(model.theta_labels())}
    params.update(fixed)
    return theta, params


def _predicted(model, theta, filters, sps):
    obs = dict(filters=filters, wavelength=None, spectrum=None)
    return np.array([model.predict(t, obs=obs, sps=sps)[1] for t in theta])


def test_specmodel_predicts_with_gridsps(sps, filters):
    model = _demo_model()
    obs = dict(filters=filters, wavelength=None, spectrum=None)
    spec, phot, mfrac = model.predict(model.theta, obs=obs, sps=sps)
    assert phot.shape == (5,) and np.all(np.isfinite(phot)) and np.all(phot > 0)
    assert 0 < mfrac < 1
    assert sps.ssp.libraries == ("bc03_padova1994", "miles")
    assert sps.wavelengths.shape == spec.shape


def test_pickle_is_small_and_predicts_the_same(sps, filters):
    model = _demo_model()
    obs = dict(filters=filters, wavelength=None, spectrum=None)
    blob = pickle.dumps(sps)
    assert len(blob) < 1000
    clone = pickle.loads(blob)
    a = model.predict(model.theta, obs=obs, sps=sps)[1]
    b = model.predict(model.theta, obs=obs, sps=clone)[1]
    np.testing.assert_array_equal(a, b)


def test_batched_photometry_matches_specmodel_predict(sps, filters):
    """1,000 prior draws of the demo model; tolerance 1e-3 mag in every band."""
    model = _demo_model()
    theta, params = _prior_draws(model, 1000, 42, sfh=4, dust_type=0, imf_type=2)
    ref = _predicted(model, theta, filters, sps)
    maggies, mfrac = sps.photometry(params, filters)
    dmag = np.abs(2.5 * np.log10(maggies / ref))
    assert dmag.max() < 1e-3, dmag.max(axis=0)
    props = sps.sfh_properties(params)
    np.testing.assert_allclose(props["mfrac"], mfrac, rtol=1e-12)


def test_specmodel_builds_without_sps_home():
    code = ("import prospect_sim.sps\n"
            "from prospect.models import SpecModel\n"
            "from prospect.models.templates import TemplateLibrary\n"
            "from sedpy.observate import load_filters\n"
            "m = SpecModel(TemplateLibrary['parametric_sfh'])\n"
            "obs = dict(filters=load_filters(['decam_r']), wavelength=None, spectrum=None)\n"
            "print(m.predict(m.theta, obs=obs, sps=prospect_sim.sps.GridSPS())[1][0] > 0)\n")
    env = {k: v for k, v in os.environ.items() if k != "SPS_HOME"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("True")


@pytest.mark.parametrize("params, word", [
    (dict(logzsol=1.5), "logzsol"),
    (dict(tage=25.0), "tage"),
    (dict(tage=-1.0), "tage"),
    (dict(tau=0.0), "tau"),
    (dict(dust_type=1), "dust_type"),
    (dict(sfh=5), "sfh"),
    (dict(sfh=3, agebins=[[0, 9], [8, 8.5]], mass=[1.0, 1.0]), "agebins"),
])
def test_bad_inputs_raise(sps, params, word):
    with pytest.raises(SPSError, match=word):
        sps.get_galaxy_spectrum(**params)


def test_unsupported_parameter_warns_once():
    sps = GridSPS()
    with pytest.warns(UserWarning, match="imf_type"):
        sps.get_galaxy_spectrum(imf_type=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sps.get_galaxy_spectrum(imf_type=0)


def test_build_sps_selection(monkeypatch):
    assert isinstance(build_sps("grid"), GridSPS)
    monkeypatch.delenv("SPS_HOME", raising=False)
    with pytest.raises(SPSError, match="SPS_HOME.*--sps grid"):
        build_sps("fsps")
    with pytest.raises(SPSError, match="expected one of"):
        build_sps("nope")


def test_photometry_and_properties_is_photometry_plus_sfh_properties(sps, filters):
    """The one-pass path (shared SFH weights) gives what the two calls give."""
    _, params = _prior_draws(_demo_model(), 300, 3, sfh=4, dust_type=0, imf_type=2)
    maggies, props = sps.photometry_and_properties(params, filters)
    ref_maggies, ref_mfrac = sps.photometry(params, filters)
    ref_props = sps.sfh_properties(params)
    np.testing.assert_array_equal(maggies, ref_maggies)
    np.testing.assert_allclose(props["mfrac"], ref_mfrac, rtol=1e-12)
    for key in ("mfrac", "sfr100", "mwa"):
        np.testing.assert_allclose(props[key], ref_props[key], rtol=1e-12, err_msg=key)


def test_batched_photometry_with_birth_clouds_free_dust_index_and_high_z(sps, filters):
    """The kernel's other branches against SpecModel.predict: Kriek & Conroy dust
    with a free dust_index (per-object curves), birth-cloud dust1 (young stars
    apart), and redshifts to 6 (IGM on the blue bands and on DECam i's outliers)."""
    from prospect.models import SpecModel
    from prospect.models import priors
    from prospect.models.templates import TemplateLibrary
    cfg = TemplateLibrary["parametric_sfh"]
    cfg["zred"].update(isfree=True, prior=priors.TopHat(mini=0.0, maxi=6.0))
    cfg["tage"]["prior"] = priors.TopHat(mini=0.01, maxi=1.0)
    cfg["dust_type"]["init"] = 4
    cfg["dust_index"] = dict(N=1, isfree=True, init=0.0, prior=priors.TopHat(mini=-1.0, maxi=0.4))
    cfg["dust1"] = dict(N=1, isfree=True, init=0.5, prior=priors.TopHat(mini=0.0, maxi=2.0))
    model = SpecModel(cfg)
    theta, params = _prior_draws(model, 120, 11, sfh=4, dust_type=4, imf_type=2)
    ref = _predicted(model, theta, filters, sps)
    maggies, _ = sps.photometry(params, filters)
    dmag = np.abs(2.5 * np.log10(maggies / ref))
    # bands whose blue edge is redward of Ly-alpha: the 1e-3 mag of the demo;
    # bands in the Lyman forest, 8 or more magnitudes below the red bands at
    # z ~ 5, get the IGM at lattice-bin centres: documented as 0.1 mag
    lya = 1215.67 * (1 + theta[:, :1])
    blue = np.array([f.wavelength[f.transmission > 0.01 * f.transmission.max()].min()
                     for f in filters])
    free = blue[None, :] > lya
    assert free.sum() > 300 and (~free).sum() > 50
    assert dmag[free].max() < 1e-3, dmag[free].max()
    assert dmag[~free].max() < 0.1, dmag[~free].max()


def test_photometry_only_skip_gives_prospectors_likelihood(sps, filters):
    """Skipping the unused smoothed spectrum changes no photometry and no lnprob.

    (Prospector's own predict, without the point path: exact_predict.)
    """
    from prospect.fitting import lnprobfn
    from prospect_sim.sps import _compat
    model = _demo_model()
    theta, _ = _prior_draws(model, 20, seed=5)
    maggies = np.array(_predicted(model, theta[:1], filters, sps))[0]
    obs = dict(filters=filters, wavelength=None, spectrum=None, maggies=maggies,
               maggies_unc=0.05 * maggies, phot_mask=np.ones(5, dtype=bool))

    def run():
        with _compat.exact_predict():
            return [(model.predict(t, obs=obs, sps=sps)[1].copy(),
                     lnprobfn(t, model=model, obs=obs, sps=sps)) for t in theta]

    assert _compat.set_photometry_only(model, obs, on=False) is False
    reference = run()
    assert _compat.set_photometry_only(model, obs) is True
    skipped = run()
    for (phot0, lnp0), (phot1, lnp1) in zip(reference, skipped):
        np.testing.assert_array_equal(phot1, phot0)
        assert lnp1 == lnp0
    # the spectrum it returns is the unsmoothed model, not Prospector's smoothed one
    with _compat.exact_predict():
        spec, _, _ = model.predict(theta[0], obs=obs, sps=sps)
    np.testing.assert_array_equal(spec, model._norm_spec)


def test_photometry_only_never_skips_a_spectrum(sps, filters):
    from prospect_sim.sps import _compat
    model = _demo_model()
    wave = np.linspace(4000.0, 8000.0, 50)
    obs = dict(filters=filters, wavelength=wave, spectrum=np.ones(50), unc=np.ones(50),
               mask=np.ones(50, dtype=bool))
    assert _compat.set_photometry_only(model, obs) is False
    spec, _, _ = model.predict(model.theta, obs=obs, sps=sps)
    assert spec.shape == wave.shape
