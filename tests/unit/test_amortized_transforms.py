"""Prior bijection and feature construction."""

import numpy as np
import pytest
import torch

from prospect_sim.amortized.features import FeatureScaler
from prospect_sim.amortized.transforms import PriorBijection

BOUNDS = [(0.0, 1.0), (8.0, 12.0), (0.0, np.inf), (-np.inf, 2.0), (-np.inf, np.inf)]


@pytest.fixture
def bij():
    lo, hi = np.array(BOUNDS).T
    b = PriorBijection(lo, hi)
    rng = np.random.default_rng(0)
    theta = np.stack([rng.random(100), 8 + 4 * rng.random(100), rng.exponential(size=100),
                      2 - rng.exponential(size=100), rng.normal(size=100)], 1)
    return b.fit(theta), torch.as_tensor(theta)


def test_round_trip(bij):
    b, theta = bij
    torch.testing.assert_close(b.inverse(b(theta)), theta, rtol=1e-9, atol=1e-9)


def test_support_never_left(bij):
    b, _ = bij
    u = torch.randn(10000, 5, dtype=torch.float64) * 30  # far outside anything trained on
    theta = b.inverse(u)
    lo, hi = np.array(BOUNDS).T
    assert torch.all(theta >= torch.as_tensor(lo)) and torch.all(theta <= torch.as_tensor(hi))
    assert torch.isfinite(theta).all()


def test_log_abs_det_jacobian_matches_autograd(bij):
    b, theta = bij
    t = theta[:7].clone().requires_grad_(True)
    jac = torch.autograd.functional.jacobian(lambda x: b(x).sum(0), t)  # (D, N, D)
    diag = torch.stack([jac[d, :, d] for d in range(5)], 1)
    torch.testing.assert_close(b.log_abs_det_jacobian(theta[:7]), diag.abs().log().sum(1))


def test_bad_bounds():
    with pytest.raises(ValueError, match="upper bound > lower"):
        PriorBijection([1.0], [0.0])


def test_features_missing_and_negative_fluxes():
    s = FeatureScaler([1e-10, 1e-10], n_conditions=1)
    flux = np.array([[-3e-10, 1e-8], [np.nan, 1e-9]])
    unc = np.array([[1e-10, 1e-10], [1e-10, 0.0]])
    x = s.raw(flux, unc, np.zeros((2, 2), bool), np.array([[0.5], [1.0]]))
    assert x.shape == (2, 8) and np.isfinite(x).all()
    np.testing.assert_array_equal(x[:, 4:6], [[0, 0], [1, 1]])  # NaN flux / zero unc -> missing
    assert x[0, 0] < 0  # negative flux keeps its sign
    # the colour of the two bands; 0 when one is missing; then the condition
    assert x[0, 6] == x[0, 0] - x[0, 1] and x[1, 6] == 0 and x[1, 7] == 1.0
    s.fit(np.random.default_rng(0).normal(3, 2, size=(500, 8)))
    again = FeatureScaler.from_config(s.to_config())
    np.testing.assert_array_equal(again(flux, unc, np.zeros((2, 2), bool), [[0.5], [1.0]]),
                                  s(flux, unc, np.zeros((2, 2), bool), [[0.5], [1.0]]))
    # a checkpoint written before colours existed has no 'colors' key: no colours
    old = {k: v for k, v in s.to_config().items() if k != "colors"}
    old["mean"], old["std"] = old["mean"][:6] + old["mean"][7:], old["std"][:6] + old["std"][7:]
    assert FeatureScaler.from_config(old).raw(flux, unc, np.zeros((2, 2), bool),
                                              [[0.5], [1.0]]).shape == (2, 7)
