"""Prospector's priors through prospect_sim.priors equal Prospector's scipy.stats evaluation."""

import numpy as np
import pytest
from prospect.models import priors

import prospect_sim  # noqa: F401  (routes Prior.__call__ through prospect_sim.priors)
from prospect_sim.priors import log_density

ORIGINAL = priors.Prior.__call__.__wrapped__

PRIORS = [priors.TopHat(mini=-1.5, maxi=0.19), priors.Uniform(mini=0.0, maxi=2.0),
          priors.LogUniform(mini=1e8, maxi=1e12), priors.LogUniform(mini=0.1, maxi=10.0),
          priors.Normal(mean=0.3, sigma=0.1), priors.TopHat(mini=np.zeros(3), maxi=np.ones(3)),
          priors.Normal(mean=np.zeros(2), sigma=np.array([1.0, 3.0]))]


def _values(prior, rng):
    lo, hi = prior.range
    lo, hi = np.broadcast_to(lo, (len(prior),)), np.broadcast_to(hi, (len(prior),))
    width = hi - lo
    edges = [lo, hi, lo - 1e-9 * width, hi + 1e-9 * width, np.full(len(prior), np.nan),
             np.full(len(prior), -np.inf), lo + 100 * width]
    inside = lo + width * rng.uniform(size=(9, len(prior)))
    return [float(lo[0]), float(inside[0, 0])] + edges + [inside, inside[:1]]


@pytest.mark.parametrize("prior", PRIORS, ids=repr)
def test_equals_prospectors_evaluation(prior):
    rng = np.random.default_rng(5)
    for x in _values(prior, rng):
        with np.errstate(all="ignore"):
            want = ORIGINAL(prior, x)
        got = prior(x)
        assert np.shape(got) == np.shape(want), (x, got, want)
        finite = np.isfinite(want)
        np.testing.assert_array_equal(np.isfinite(got), finite)
        np.testing.assert_allclose(np.asarray(got)[finite], np.asarray(want)[finite],
                                   rtol=1e-13, atol=0)


def test_prior_product_of_a_model_is_unchanged():
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    params = TemplateLibrary["parametric_sfh"]
    params["mass"]["prior"] = priors.LogUniform(mini=1e8, maxi=1e12)
    params["logzsol"]["prior"] = priors.Normal(mean=-0.3, sigma=0.4)
    model = SpecModel(params)
    theta = np.array([float(np.squeeze(model.config_dict[k]["prior"].sample()))
                      for k in model.free_params])
    block = np.tile(theta, (6, 1)) * np.linspace(0.5, 1.5, 6)[:, None]
    for x in (theta, block):
        got = model.prior_product(x)
        priors.Prior.__call__, fast = ORIGINAL, priors.Prior.__call__
        try:
            with np.errstate(all="ignore"):
                want = model.prior_product(x)
        finally:
            priors.Prior.__call__ = fast
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))


def test_other_priors_subclasses_and_updates_run_prospectors_code():
    clipped = priors.ClippedNormal(mean=0.0, sigma=1.0, mini=-1.0, maxi=1.0)
    assert log_density(clipped, 0.5) is None

    class Shifted(priors.TopHat):
        pass

    assert log_density(Shifted(mini=0.0, maxi=1.0), 0.5) is None
    assert log_density(priors.TopHat(mini=1.0, maxi=1.0), 1.0) is None     # degenerate
    top = priors.TopHat(mini=0.0, maxi=1.0)
    assert top(3.0, maxi=4.0) == pytest.approx(-np.log(4.0))      # kwargs update the prior
    assert top.params["maxi"] == 4.0
