"""Noise models: shapes, statistics, missing bands, config round trip, pickling."""

import pickle

import numpy as np
import pytest

from prospect_sim.amortized import noise


def _models():
    rng = np.random.default_rng(1)
    cat_flux = [10 ** rng.uniform(-11, -8, 500) for _ in range(3)]
    cat_unc = [1e-11 + 0.05 * f for f in cat_flux]
    return [
        noise.FixedNoise([1e-10, 2e-10, 3e-10]),
        noise.FixedNoise([1e-10, 2e-10, 3e-10], scatter=0.1, p_missing=[0.0, 0.2, 0.5]),
        noise.DepthNoise([24.0, 23.5, 23.0], nsigma=5, floor=0.02, depth_scatter=0.2),
        noise.EmpiricalNoise(cat_flux, cat_unc, k=10, p_missing=0.1),
    ]


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.kind)
def test_shapes_and_missing(model):
    phot = np.full((2000, 3), 1e-9)
    flux, unc, missing = model.sample(phot, np.random.default_rng(0))
    assert flux.shape == unc.shape == missing.shape == (2000, 3)
    assert np.all(unc[~missing] > 0)
    assert np.all(flux[missing] == 0) and np.all(unc[missing] == 0)
    assert not missing.all(axis=1).any()  # every object keeps a band


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.kind)
def test_config_and_pickle_round_trip(model):
    again = noise.from_config(model.to_config())
    assert again == model
    assert pickle.loads(pickle.dumps(model)) == model
    phot = np.full((5, 3), 1e-9)
    a = model.sample(phot, np.random.default_rng(3))
    b = again.sample(phot, np.random.default_rng(3))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_fixed_noise_statistics():
    # 20,000 draws: the sample std of eps is within 2% of 1 (about 7 sigma of its error)
    m = noise.FixedNoise([1e-10, 1e-9])
    phot = np.full((20000, 2), 5e-9)
    flux, unc, _ = m.sample(phot, np.random.default_rng(0))
    np.testing.assert_allclose(((flux - phot) / unc).std(0), 1, atol=0.02)
    np.testing.assert_allclose(unc[0], [1e-10, 1e-9])


def test_depth_noise_formula():
    m = noise.DepthNoise([22.5], nsigma=5, floor=0.1)
    sig = m.sigma(np.array([[1e-8], [0.0]]), np.random.default_rng(0))
    sky = 10 ** (-0.4 * 22.5) / 5
    np.testing.assert_allclose(sig[:, 0], [np.hypot(sky, 1e-9), sky])


def test_depth_noise_reports_the_floor_on_the_observed_flux():
    # the noise is drawn with sigma(noiseless flux); the uncertainty given to the network
    # must depend on the observed flux only, or it reveals the noiseless one
    m = noise.DepthNoise([22.5, 23.0], nsigma=5, floor=0.02)
    phot = np.full((20000, 2), 1e-8)                   # floor-dominated: S/N ~ 50 per band
    flux, unc, _ = m.sample(phot, np.random.default_rng(3))
    sky = 10 ** (-0.4 * np.array([22.5, 23.0])) / 5
    np.testing.assert_allclose(unc, np.sqrt(sky ** 2 + (0.02 * flux) ** 2), rtol=1e-12)
    # the noise itself has the noiseless sigma
    sigma = np.sqrt(sky ** 2 + (0.02 * 1e-8) ** 2)
    np.testing.assert_allclose(((flux - phot) / sigma).std(axis=0), 1.0, atol=0.02)
    # with a scattered depth, the same sky term enters both
    m = noise.DepthNoise([22.5, 23.0], nsigma=5, floor=0.02, depth_scatter=0.3)
    flux, unc, _ = m.sample(phot[:100], np.random.default_rng(4))
    sig = m.sigma(phot[:100], np.random.default_rng(4))
    np.testing.assert_allclose(unc ** 2 - (0.02 * flux) ** 2, sig ** 2 - (0.02 * phot[:100]) ** 2,
                               rtol=1e-6)


def test_missing_probability():
    m = noise.FixedNoise([1.0, 1.0, 1.0], p_missing=[0.0, 0.3, 0.6])
    _, _, missing = m.sample(np.zeros((20000, 3)), np.random.default_rng(0))
    # 20,000 Bernoulli draws: error 0.0035; 0.02 is > 5 sigma
    np.testing.assert_allclose(missing.mean(0), [0.0, 0.3, 0.6], atol=0.02)


def test_empirical_follows_catalogue_relation():
    f = np.logspace(-11, -8, 1000)
    m = noise.EmpiricalNoise([f], [0.1 * f], k=5)
    sig = m.sigma(np.array([[1e-10], [1e-9]]), np.random.default_rng(0))
    np.testing.assert_allclose(sig[:, 0], [1e-11, 1e-10], rtol=0.05)


def test_default_noise_from_obs_and_bad_input():
    m = noise.default_noise({"maggies_unc": np.array([1e-10, np.nan, 3e-10])})
    np.testing.assert_allclose(m.unc, [1e-10, 2e-10, 3e-10])
    with pytest.raises(ValueError, match="build_obs_noise"):
        noise.default_noise({"maggies_unc": np.array([np.nan, -1.0])})
    with pytest.raises(ValueError, match="p_missing"):
        noise.FixedNoise([1.0], p_missing=1.0)
    with pytest.raises(ValueError, match="one value per band"):
        noise.FixedNoise([1.0, 1.0], p_missing=[0.1, 0.1, 0.1])


def test_empirical_reports_the_uncertainty_of_the_observed_flux():
    # a catalogue of sky noise 1 plus a 10% calibration term, with a spread of depths
    rng = np.random.default_rng(3)
    f = np.linspace(-5.0, 200.0, 20000)
    depth = rng.choice([1.0, 1.5], size=f.size)
    m = noise.EmpiricalNoise([f], [np.sqrt(depth ** 2 + (0.1 * np.clip(f, 0, None)) ** 2)], k=20)
    a, b, c = m._relation[0]
    assert 1.0 < a < 2.25 and c == pytest.approx(0.01, rel=0.05)
    # bright objects of one noiseless flux: the reported uncertainty follows the
    # observed flux (as a pipeline's does), not the noiseless one the noise was drawn at
    phot = np.full((4000, 1), 100.0)
    flux, unc, _ = m.sample(phot, np.random.default_rng(0))
    assert np.corrcoef(flux[:, 0], unc[:, 0])[0, 1] > 0.95
    # (the depths, 1 or 1.5, add at most 1.3% in quadrature at these fluxes)
    np.testing.assert_allclose(unc[:, 0], np.sqrt(1.6 + (0.1 * flux[:, 0]) ** 2), rtol=0.02)
    # sky-dominated objects keep the depth of their own draw, plus the
    # calibration term of the flux they have
    phot = np.zeros((4000, 1))
    sigma = m.sigma(phot, np.random.default_rng(1))
    assert set(np.unique(np.round(sigma, 4))) == {1.0, 1.5}
    flux = phot + sigma * np.random.default_rng(2).standard_normal(phot.shape)
    rep = m.reported(flux, sigma, phot)
    np.testing.assert_allclose(rep, np.sqrt(sigma ** 2 + (0.1 * np.clip(flux, 0, None)) ** 2),
                               rtol=0.03)
