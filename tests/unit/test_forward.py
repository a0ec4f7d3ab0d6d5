"""Batched prior transform, parameter mapping and photometry against Prospector's per-row code."""

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import quad

import prospect_sim.sps  # noqa: F401  (SpecModel without $SPS_HOME)
from prospect.models import ProspectorParams, SpecModel, priors, transforms
from prospect.models.templates import TemplateLibrary
from prospect.sources.constants import cosmo, jansky_cgs, to_cgs_at_10pc
from sedpy.observate import load_filters

from prospect_sim import forward

TEMPLATES = ["parametric_sfh", "continuity_sfh", "continuity_flex_sfh",
             "continuity_psb_sfh", "dirichlet_sfh", "beta", "alpha", "burst_sfh",
             "logm_sfh", "stochastic_sfh"]


def _custom_model():
    """Every kind of prior, one that does not vectorise, and a depends_on."""
    cfg = TemplateLibrary["parametric_sfh"]
    cfg["zred"].update(isfree=True, prior=priors.FastUniform(a=0.1, b=2.0))
    cfg["tau"]["prior"] = priors.LogNormal(mode=0.0, sigma=0.5)
    cfg["logzsol"]["prior"] = priors.ClippedNormal(mean=-0.3, sigma=0.4, mini=-1.5, maxi=0.2)
    cfg["dust2"]["prior"] = priors.Beta(mini=0.0, maxi=2.0, alpha=2.0, beta=3.0)
    cfg["dust_ratio"] = dict(N=1, isfree=True, init=1.0,
                             prior=priors.FastTruncatedEvenStudentTFreeDeg2Scalar(hw=3.0, sig=1.0))
    cfg["dust1"] = dict(N=1, isfree=False, init=0.0, depends_on=transforms.dustratio_to_dust1)
    cfg["pair"] = dict(N=2, isfree=True, init=np.zeros(2),
                       prior=priors.MultiVariateNormal(mean=np.zeros(2),
                                                       Sigma=np.array([[1.0, 0.3], [0.3, 2.0]])))
    with warnings.catch_warnings():     # Prospector counts Sigma's 4 elements as the length
        warnings.filterwarnings("ignore", "pair has wrong length prior", RuntimeWarning)
        return ProspectorParams(cfg)


def _model(name):
    return _custom_model() if name == "custom" else ProspectorParams(TemplateLibrary[name])


# Prospector's own dirichlet template warns about its prior length
@pytest.mark.filterwarnings("ignore:.*wrong length prior:RuntimeWarning")
@pytest.mark.parametrize("name", TEMPLATES + ["custom"])
def test_prior_transform_and_params_match_prospector_rows(name):
    model = _model(name)
    u = np.random.default_rng(3).random((40, model.ndim))
    theta = forward.prior_transform(model, u)
    expected = np.array([model.prior_transform(row) for row in u])
    np.testing.assert_allclose(theta, expected, rtol=1e-12, atol=0)

    params = forward.batch_params(model, theta)
    passes = forward._plan(model).passes
    # continuity_flex's agebins are computed from the agebins themselves, so
    # Prospector's values drift with the previous call's state (round-off in
    # the bin edges, amplified in the masses to ~1e-6)
    rtol = 1e-5 if name == "continuity_flex_sfh" else 1e-12
    for i in range(len(theta)):
        for _ in range(passes):
            model.set_parameters(theta[i])
        for key, value in model.params.items():
            got = params[key]
            if isinstance(got, np.ndarray) and got.ndim and got.shape[0] == len(theta):
                got = got[i]
            np.testing.assert_allclose(np.squeeze(np.asarray(got, dtype=float)),
                                       np.squeeze(np.asarray(value, dtype=float)),
                                       rtol=rtol, err_msg=f"{name}: {key}")


def test_plan_records_what_vectorises_once_per_model():
    model = _custom_model()
    plan = forward._plan(model)
    assert forward._plan(model) is plan
    by_start = {inds.start: ok for inds, _, ok in plan.prior_steps}
    labels = model.theta_labels()
    assert by_start[labels.index("dust_ratio")] is False       # scalar-only prior: rows
    assert by_start[labels.index("pair_1")] is False           # MultiVariateNormal: rows
    assert by_start[labels.index("mass")] is True
    assert [(name, ok) for name, _, ok in plan.dependent] == [("dust1", True)]


def test_prior_transform_shape_error():
    model = _custom_model()
    with pytest.raises(ValueError, match="shape"):
        forward.prior_transform(model, np.zeros((3, model.ndim + 1)))


def test_prior_description():
    desc = forward.prior_description(_custom_model())
    assert list(desc) == _custom_model().theta_labels()
    assert desc["mass"]["distribution"] == "LogUniform"
    assert desc["mass"]["bounds"] == [1e8, 1e12]
    assert desc["zred"]["bounds"] == [0.1, 2.0]                 # FastUniform: no bounds()
    assert desc["zred"]["params"] == {"a": 0.1, "b": 2.0}
    assert desc["pair_2"]["bounds"] == [-np.inf, np.inf]
    cont = forward.prior_description(ProspectorParams(TemplateLibrary["continuity_sfh"]))
    assert cont["logsfr_ratios_2"]["params"]["scale"] == 0.3


# ----------------------------------------------------------------------
# photometry: a toy sps with both paths
class ToySPS:
    """Analytic stand-in for an SSP library: a smooth spectrum per Msun formed.

    ``photometry`` is written independently of Prospector (its own flux
    normalisation and filter integral), so agreement with ``model.predict``
    checks the batched plumbing, units included.
    """

    def __init__(self, nan_above_tage=None, batched=True):
        self.wave = np.geomspace(900.0, 40000.0, 4000)
        self.nan_above = nan_above_tage
        if not batched:
            self.photometry = None

    def _spectra(self, tage, logzsol, dust2):
        x = self.wave / 5500.0
        tage, logzsol, dust2 = (np.atleast_1d(np.asarray(v, float))[:, None]
                                for v in (tage, logzsol, dust2))
        slope = 1.0 + 0.4 * np.log10(tage) + 0.2 * logzsol
        spec = 1e-5 * x ** slope * np.exp(-dust2 * x ** -0.7) / (1.0 + (x / 0.4) ** -4)
        if self.nan_above is not None:
            spec = np.where(tage > self.nan_above, np.nan, spec)
        return spec, 1.0 - 0.1 * np.log10(1.0 + tage[:, 0])

    def get_galaxy_spectrum(self, **params):
        spec, mfrac = self._spectra(params["tage"], params["logzsol"], params["dust2"])
        return self.wave, spec[0], float(mfrac[0])

    def get_galaxy_elines(self):
        return np.zeros(0), np.zeros(0)

    def photometry(self, params, filters):
        n = len(params["tage"])
        spec, mfrac = self._spectra(params["tage"], params["logzsol"], params["dust2"])
        zred = np.broadcast_to(params["zred"], (n,))
        mass = np.broadcast_to(params["mass"], (n,))
        dist = cosmo.luminosity_distance(zred).to("Mpc").value * 1e5
        norm = mass * to_cgs_at_10pc / (3631 * jansky_cgs) * (1 + zred) / dist ** 2
        out = np.empty((n, len(filters)))
        for b, filt in enumerate(filters):
            lam, trans = filt.wavelength, filt.transmission
            for i in range(n):
                fnu = np.interp(lam, self.wave * (1 + zred[i]), spec[i]) * norm[i]
                out[i, b] = np.trapezoid(fnu * trans / lam, lam) / np.trapezoid(trans / lam, lam)
        return out, mfrac


def _demo_like_model():
    cfg = TemplateLibrary["parametric_sfh"]
    cfg["zred"].update(isfree=True, prior=priors.TopHat(mini=0.05, maxi=1.5))
    cfg["mass"]["prior"] = priors.LogUniform(mini=1e8, maxi=1e12)
    cfg["tage"]["prior"] = priors.TopHat(mini=0.1, maxi=13.0)
    cfg["tau"]["prior"] = priors.LogUniform(mini=0.1, maxi=10.0)
    return SpecModel(cfg)


@pytest.fixture(scope="module")
def obs():
    return {"filters": load_filters(["decam_g", "decam_r", "decam_i", "decam_z", "decam_Y"]),
            "wavelength": None, "spectrum": None}


def _theta(model, n, seed=5):
    return forward.prior_transform(model, np.random.default_rng(seed).random((n, model.ndim)))


def test_fast_and_reference_paths_agree(obs):
    model, sps = _demo_like_model(), ToySPS()
    theta = _theta(model, 30)
    fast, extras_fast = forward.predict_batch(model, sps, obs, theta, path="fast")
    ref, extras_ref = forward.predict_batch(model, sps, obs, theta, path="reference")
    assert fast.shape == ref.shape == (30, 5)
    assert np.all(ref > 0)
    dmag = 2.5 * np.abs(np.log10(fast / ref))
    assert dmag.max() < 1e-3, dmag.max()
    assert forward.has_fast_path(sps) and not forward.has_fast_path(ToySPS(batched=False))
    auto, _ = forward.predict_batch(model, ToySPS(batched=False), obs, theta)
    np.testing.assert_array_equal(auto, ref)
    for key in forward.EXTRAS:
        np.testing.assert_allclose(extras_fast[key], extras_ref[key], rtol=1e-12)
        assert extras_fast[key].shape == (30,)
    mass = theta[:, model.theta_labels().index("mass")]
    np.testing.assert_allclose(extras_ref["stellar_mass"], mass * extras_ref["mfrac"])


def test_non_finite_predictions_pass_through(obs):
    model = _demo_like_model()
    theta = _theta(model, 20)
    tage = theta[:, model.theta_labels().index("tage")]
    for path in ("fast", "reference"):
        phot, _ = forward.predict_batch(model, ToySPS(nan_above_tage=8.0), obs, theta, path=path)
        bad = ~np.isfinite(phot).all(axis=1)
        np.testing.assert_array_equal(bad, tage > 8.0)
        assert 0 < bad.sum() < 20


def test_unknown_path(obs):
    model = _demo_like_model()
    with pytest.raises(ValueError, match="path"):
        forward.predict_batch(model, ToySPS(), obs, _theta(model, 2), path="quick")


# ----------------------------------------------------------------------
# derived quantities of sps without kernels
@pytest.mark.parametrize("sfh,power", [(1, 0), (4, 1)])
def test_sfh_properties_parametric_match_numerical_integrals(sfh, power):
    tage, tau = np.array([0.05, 1.0, 9.0]), np.array([0.3, 2.0, 0.5])
    mass = np.array([1.0, 2e9, 5e10])
    got = forward.sfh_properties({"sfh": sfh, "tage": tage, "tau": tau, "mass": mass})
    for i in range(3):
        def sfr(t):
            return (t / tau[i]) ** power * np.exp(-t / tau[i])
        total = quad(sfr, 0, tage[i])[0]
        recent = quad(sfr, max(tage[i] - 0.1, 0), tage[i])[0]
        mean_t = quad(lambda t: t * sfr(t), 0, tage[i])[0] / total
        np.testing.assert_allclose(got["sfr100"][i], mass[i] * recent / total / 1e8, rtol=1e-8)
        np.testing.assert_allclose(got["mwa"][i], tage[i] - mean_t, rtol=1e-8)


def test_sfh_properties_nonparametric_and_burst():
    agebins = np.log10([[1.0, 3e7], [3e7, 3e8], [3e8, 1e10]])
    mass = np.array([[1e6, 1e8, 1e10]])
    got = forward.sfh_properties({"sfh": 3, "agebins": agebins[None], "mass": mass})
    recent = 1e6 + 1e8 * (1e8 - 3e7) / (3e8 - 3e7)
    np.testing.assert_allclose(got["sfr100"], [recent / 1e8])
    mids = (10 ** agebins).mean(axis=1) / 1e9
    np.testing.assert_allclose(got["mwa"], [(mass[0] * mids).sum() / mass.sum()])
    burst = forward.sfh_properties({"sfh": 0, "tage": np.array([0.05, 2.0]), "mass": 1e9})
    np.testing.assert_allclose(burst["sfr100"], [10.0, 0.0])
    np.testing.assert_allclose(burst["mwa"], [0.05, 2.0])
    other = forward.sfh_properties({"sfh": 5, "tage": np.ones(2), "mass": 1.0})
    assert np.isnan(other["sfr100"]).all()


def test_prior_transform_respects_bounds_and_distribution():
    """KS test of every marginal against its prior (seeded; p > 1e-3 at N = 20000).

    With 11 marginals a correct transform fails one test with probability
    about 1e-2 for a random seed; the seed is fixed, so the result is stable.
    """
    model = _custom_model()
    theta = forward.prior_transform(model, np.random.default_rng(11).random((20000, model.ndim)))
    labels = model.theta_labels()
    col = {name: theta[:, labels.index(name)] for name in labels}
    assert ((col["zred"] >= 0.1) & (col["zred"] <= 2.0)).all()
    assert ((col["logzsol"] >= -1.5) & (col["logzsol"] <= 0.2)).all()
    assert ((col["dust_ratio"] >= -3) & (col["dust_ratio"] <= 3)).all()
    cdfs = {"zred": stats.uniform(0.1, 1.9).cdf,
            "mass": stats.loguniform(1e8, 1e12).cdf,
            "logzsol": stats.truncnorm(-1.2 / 0.4, 0.5 / 0.4, loc=-0.3, scale=0.4).cdf,
            "dust2": stats.beta(2.0, 3.0, loc=0.0, scale=2.0).cdf,
            "tau": stats.lognorm(0.5, scale=np.exp(0.25)).cdf,
            "pair_1": stats.norm(0, 1).cdf}
    for name, cdf in cdfs.items():
        assert stats.kstest(col[name], cdf).pvalue > 1e-3, name
