"""The batched log-posterior equals Prospector's ``lnprobfn``, to what 1e-3 mag implies.

Every parameter file in ``param_files/``: prior draws (and points outside
the prior) through :class:`BatchedLnProb` and through ``lnprobfn`` row by
row.  The batched photometry may differ from ``SpecModel.predict`` by up
to 1e-3 mag (0.1 mag in bands inside the Lyman forest), so the
log-likelihoods may differ by at most what such a shift of the model
moves them, computed here per row from the reference photometry.
"""

from pathlib import Path

import numpy as np
import pytest

from prospect_sim import forward
from prospect_sim.likelihood import BatchedLnProb, lnlike_phot, lnlike_tolerance
from prospect_sim.paramfile import load

FILES = Path(__file__).resolve().parents[2] / "param_files"
PARAM_FILES = ["demo_params.py", "starforming_params.py", "agn_params.py"]


@pytest.fixture(scope="module", params=PARAM_FILES)
def ingredients(request):
    return load(FILES / request.param).build({"sps_library": "grid"})


def _reference(ing, theta, nested=False):
    """lnprobfn and SpecModel.predict's photometry, row by row, with Prospector's own code."""
    from prospect.fitting import lnprobfn
    from prospect_sim.sps._compat import exact_predict
    lnp, phot = [], []
    with exact_predict():
        for row in theta:
            with np.errstate(divide="ignore"):          # Prospector's log(0) outside the prior
                lnp.append(lnprobfn(row, model=ing.model, obs=ing.obs, sps=ing.sps,
                                    noise=ing.noise, nested=nested))
            phot.append(ing.model.predict(row, obs=ing.obs, sps=ing.sps)[1]
                        if np.isfinite(lnp[-1]) else np.full(len(ing.obs["filters"]), np.nan))
    return np.array(lnp), np.array(phot)


def _allowed(ing, theta, phot):
    """|d lnL| that a shift of the model by the kernel's tolerance can cause, per row."""
    zred = forward.batch_params(ing.model, theta)["zred"]
    return lnlike_tolerance(ing.obs, phot, zred) * 1.01


def test_equals_lnprobfn_on_prior_draws(ingredients):
    ing = ingredients
    u = np.random.default_rng(11).uniform(size=(24, ing.model.ndim))
    theta = forward.prior_transform(ing.model, u)
    lnp = BatchedLnProb(ing.model, ing.obs, ing.sps, ing.noise)
    assert lnp.fallback is None
    got = lnp(theta)
    want, phot = _reference(ing, theta)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(want))
    assert np.all(np.abs(got - want) <= _allowed(ing, theta, phot) + 1e-6 * np.abs(want))


def test_nested_leaves_the_prior_out_and_outside_is_minus_inf(ingredients):
    ing = ingredients
    u = np.random.default_rng(12).uniform(size=(6, ing.model.ndim))
    theta = forward.prior_transform(ing.model, u)
    theta[0] = theta[0] + 1e6                 # outside every prior
    nested = BatchedLnProb(ing.model, ing.obs, ing.sps, ing.noise, nested=True)(theta)
    full = BatchedLnProb(ing.model, ing.obs, ing.sps, ing.noise)(theta)
    want, phot = _reference(ing, theta, nested=True)
    assert np.isneginf(nested[0]) and np.isneginf(full[0]) and np.isneginf(want[0])
    assert np.all(np.abs(nested[1:] - want[1:]) <= _allowed(ing, theta[1:], phot[1:])
                  + 1e-6 * np.abs(want[1:]))
    prior = np.array([ing.model.prior_product(row) for row in theta[1:]])
    assert np.allclose(full[1:] - nested[1:], prior)


def test_outlier_mixture_is_prospectors():
    from prospect.likelihood import lnlike_phot as prospector_lnlike_phot
    rng = np.random.default_rng(3)
    obs = {"maggies": rng.uniform(1, 2, 6), "maggies_unc": rng.uniform(0.05, 0.2, 6),
           "phot_mask": np.array([1, 1, 0, 1, 1, 1], bool)}
    phot = rng.uniform(1, 2, (4, 6))
    f = np.array([0.0, 0.05, 0.2, 0.5])
    got = lnlike_phot(phot, obs, f, 7.0)
    for i in range(4):
        want = prospector_lnlike_phot(phot[i], obs=obs, f_outlier_phot=f[i],
                                      nsigma_outlier_phot=7.0)
        assert got[i] == pytest.approx(want, rel=1e-12)


class _NoBatches:
    """An sps with Prospector's per-object interface only."""

    def __init__(self, sps):
        self._sps = sps

    def __getattr__(self, name):
        if name == "photometry":
            raise AttributeError(name)
        return getattr(self._sps, name)


def test_an_sps_without_batches_falls_back_to_lnprobfn():
    from prospect.fitting import lnprobfn
    ing = load(FILES / "demo_params.py").build({"sps_library": "grid"})
    sps = _NoBatches(ing.sps)
    lnp = BatchedLnProb(ing.model, ing.obs, sps, ing.noise)
    assert "no batched photometry" in lnp.fallback
    theta = forward.prior_transform(ing.model, np.full((2, ing.model.ndim), 0.4))
    want = [lnprobfn(row, model=ing.model, obs=ing.obs, sps=sps, noise=ing.noise)
            for row in theta]
    assert np.array_equal(lnp(theta), want)


def test_emcee_batch_map_evaluates_every_walker_at_once_and_checks_its_function():
    from prospect.fitting import lnprobfn
    from prospect_sim.errors import FitError
    from prospect_sim.fit import BatchMap
    from prospect_sim.sps._compat import exact_predict
    ing = load(FILES / "demo_params.py").build({"sps_library": "grid"})
    batch = BatchMap.for_fit(ing)
    assert batch is not None
    theta = forward.prior_transform(ing.model, np.random.default_rng(14).uniform(size=(8, 6)))

    def posterior(row):
        with exact_predict():
            return lnprobfn(row, model=ing.model, obs=ing.obs, sps=ing.sps, noise=ing.noise)

    calls = batch.lnp.n_calls
    got = np.array(batch.map(posterior, list(theta)))
    assert batch.lnp.n_calls - calls == len(theta)          # one block of 8
    want, phot = _reference(ing, theta)
    assert np.all(np.abs(got - want) <= _allowed(ing, theta, phot) + 1e-6 * np.abs(want))
    with pytest.raises(FitError, match="disagrees"):
        BatchMap(batch.lnp).map(lambda row: posterior(row) - 50.0, list(theta[:2]))
