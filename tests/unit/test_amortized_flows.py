"""The conditional flows, in the manner of zuko's tests/test_flows.py."""

import numpy as np
import pytest
import torch

from prospect_sim.amortized.flows import PosteriorFlow
from prospect_sim.amortized.noise import FixedNoise
from prospect_sim.amortized.options import FLOWS
from prospect_sim.amortized.posterior import AmortizedPosterior

SMALL = dict(hidden=16, transforms=2, bins=4, embedding=(16,), embed_dim=8)


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("d", [1, 3])
def test_shapes_and_gradients(flow, d):
    torch.manual_seed(0)
    net = PosteriorFlow(d, 5, flow=flow, **SMALL)
    x, u = torch.randn(8, 5), torch.randn(8, d)
    log_p = net.log_prob(u, x)
    assert log_p.shape == (8,) and torch.isfinite(log_p).all()
    net.loss(u, x).backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    samples, log_q = net.sample(x, 4, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (4, 8, d) and log_q.shape == (4, 8)
    assert torch.isfinite(samples).all()


@pytest.mark.parametrize("flow", ["rqs_coupling", "nsf", "nsf_coupling", "maf"])
def test_sample_log_q_matches_log_prob(flow):
    torch.manual_seed(0)
    net = PosteriorFlow(3, 5, flow=flow, **SMALL)
    x = torch.randn(6, 5)
    u, log_q = net.sample(x, 10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net.log_prob(u, x.expand(10, 6, 5)), log_q, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flow", ["rqs_coupling", "nsf", "maf"])
def test_given_base_points_are_what_is_transformed(flow):
    torch.manual_seed(0)
    net = PosteriorFlow(3, 5, flow=flow, **SMALL)
    x = torch.randn(6, 5)
    u, log_q = net.sample(x, 10, generator=torch.Generator().manual_seed(3))
    z = torch.randn((10, 6, 3), generator=torch.Generator().manual_seed(3))
    u2, log_q2 = net.sample(x, 10, base=z)
    assert torch.equal(u, u2) and torch.equal(log_q, log_q2)
    wide, log_q_wide = net.sample(x, 10, base=2.0 * z)
    torch.testing.assert_close(net.log_prob(wide, x.expand(10, 6, 5)), log_q_wide,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flow", FLOWS)
def test_train_eval_agree_and_save_load_identity(flow, tmp_path):
    torch.manual_seed(0)
    net = PosteriorFlow(2, 5, flow=flow, **SMALL)
    x, u = torch.randn(8, 5), torch.randn(8, 2)
    net.train()
    a = net.log_prob(u, x)
    net.eval()
    torch.testing.assert_close(a, net.log_prob(u, x))
    torch.save({"config": net.config, "state": net.state_dict()}, tmp_path / "f.pt")
    ck = torch.load(tmp_path / "f.pt", weights_only=True)
    again = PosteriorFlow(**ck["config"])
    again.load_state_dict(ck["state"])
    torch.testing.assert_close(again.log_prob(u, x), a)
    g = torch.Generator().manual_seed(3)
    s1, _ = net.sample(x, 5, generator=g.manual_seed(3))
    s2, _ = again.sample(x, 5, generator=g.manual_seed(3))
    torch.testing.assert_close(s1, s2)


@pytest.mark.parametrize("flow", FLOWS)
def test_posterior_samples_never_leave_the_prior(flow):
    problem = {"theta_labels": ["a", "b", "z"], "filter_names": ["f1", "f2"],
               "prior": {"a": {"bounds": [0.0, 1.0]}, "b": {"bounds": [9.0, 12.0]},
                         "z": {"bounds": [0.0, 4.0]}}}
    post = AmortizedPosterior.new(problem, ["z"], FixedNoise([1e-10, 1e-10]),
                                  dict(flow=flow, **SMALL), seed=0)
    # an untrained net and wild inputs: samples must still be inside the bounds
    with torch.no_grad():
        for p in post.net.parameters():
            p.mul_(5.0)
    rng = np.random.default_rng(0)
    flux = rng.normal(size=(20, 2)) * 1e-7
    theta, log_q = post.sample(flux, np.full((20, 2), 1e-10), np.zeros((20, 2), bool),
                               rng.random((20, 1)) * 4, 200,
                               generator=torch.Generator().manual_seed(0))
    assert theta.shape == (20, 200, 2) and log_q.shape == (20, 200)
    assert np.all((theta[..., 0] >= 0) & (theta[..., 0] <= 1))
    assert np.all((theta[..., 1] >= 9) & (theta[..., 1] <= 12))
    # without the density: the same draws, and no log_q
    cond = rng.random((20, 1)) * 4
    args = (flux, np.full((20, 2), 1e-10), np.zeros((20, 2), bool), cond, 50)
    with_q, _ = post.sample(*args, generator=torch.Generator().manual_seed(4))
    without, none = post.sample(*args, generator=torch.Generator().manual_seed(4), density=False)
    assert none is None
    np.testing.assert_array_equal(with_q, without)


def test_unknown_flow():
    with pytest.raises(ValueError, match="unknown flow"):
        PosteriorFlow(2, 3, flow="glow")


def test_coupling_spline_matches_zuko_rqs():
    """Our spline (one bin lookup for value and log-Jacobian) is zuko's MonotonicRQSTransform."""
    from zuko.transforms import MonotonicRQSTransform

    from prospect_sim.amortized.coupling import rqs_forward, rqs_inverse
    g = torch.Generator().manual_seed(0)
    k = 8
    params = 3 * torch.randn(500, 3 * k - 1, generator=g, dtype=torch.float64)
    x = 6 * torch.randn(500, generator=g, dtype=torch.float64)  # some outside [-5, 5]
    ref = MonotonicRQSTransform(params[:, :k], params[:, k:2 * k], params[:, 2 * k:])
    y_ref, ladj_ref = ref.call_and_ladj(x)
    w, h, d = (params[:, None, :k], params[:, None, k:2 * k], params[:, None, 2 * k:])
    y, ladj = rqs_forward(x[:, None], w, h, d)
    torch.testing.assert_close(y[:, 0], y_ref)
    torch.testing.assert_close(ladj[:, 0], ladj_ref)
    back, ladj_inv = rqs_inverse(y, w, h, d)
    torch.testing.assert_close(back[:, 0], x)
    torch.testing.assert_close(ladj_inv, -ladj)
    only, none = rqs_inverse(y, w, h, d, ladj=False)  # sampling without the density
    assert none is None
    torch.testing.assert_close(only, back, rtol=0, atol=0)


def test_coupling_flow_chunking_does_not_change_draws(monkeypatch):
    from prospect_sim.amortized import coupling
    torch.manual_seed(0)
    net = PosteriorFlow(4, 5, flow="rqs_coupling", **SMALL).eval()
    x = torch.randn(6, 5)
    u1, q1 = net.sample(x, 40, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(coupling, "_CHUNK_ROWS", 7)
    u2, q2 = net.sample(x, 40, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(u1, u2)
    torch.testing.assert_close(q1, q2)


def test_compiled_sampling_matches_eager(monkeypatch, caplog):
    """--compile: whole blocks of objects through the compiled graph (the last chunk of
    draws padded), the leftover objects eagerly; the same draws and densities."""
    from prospect_sim.amortized import coupling
    monkeypatch.setattr(coupling, "_CHUNK_ROWS", 64)  # chunks of 16 draws: 50 = 3 x 16 + 2
    torch.manual_seed(0)
    net = PosteriorFlow(4, 5, flow="rqs_coupling", **SMALL).eval()
    x = torch.randn(11, 5)                            # blocks of 4: 2 compiled, 3 eager
    u1, q1 = net.sample(x, 50, generator=torch.Generator().manual_seed(2))
    net.flow.compile_sampling(4)
    u2, q2 = net.sample(x, 50, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(u2, u1, rtol=0, atol=1e-4)
    torch.testing.assert_close(q2, q1, rtol=0, atol=1e-4)
    # without the density (a second compiled graph): the same draws, no log_q
    u3, q3 = net.sample(x, 50, generator=torch.Generator().manual_seed(2), density=False)
    assert q3 is None
    torch.testing.assert_close(u3, u1, rtol=0, atol=1e-4)
    assert "--compile failed" not in caplog.text  # compiled, not fallen back
    assert net.flow._compiled is not None


def test_low_precision_products_follow_the_same_flow(monkeypatch, caplog):
    """gemm_dtype (--bfloat16): float32 through that code path (merged output product,
    biases after it) is the plain path to rounding; bfloat16 moves draws by little, eager
    and compiled alike; with the density it is refused."""
    from prospect_sim.amortized import coupling
    monkeypatch.setattr(coupling, "_CHUNK_ROWS", 64)
    torch.manual_seed(0)
    net = PosteriorFlow(4, 5, flow="rqs_coupling", **SMALL).eval()
    x = torch.randn(11, 5)

    def draws(dtype):
        return net.sample(x, 400, generator=torch.Generator().manual_seed(2), density=False,
                          gemm_dtype=dtype)[0]

    u = draws(None)
    torch.testing.assert_close(draws(torch.float32), u, rtol=0, atol=1e-5)
    low = draws(torch.bfloat16)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    err = (low - u).abs() / u.std(0)  # in posterior widths
    assert err.median() < 0.01 and err.max() > 0  # bfloat16 really ran, and moved little
    net.flow.compile_sampling(4)
    low_c = draws(torch.bfloat16)
    assert ((low_c - low).abs() / u.std(0)).median() < 0.01
    assert "--compile failed" not in caplog.text
    with pytest.raises(ValueError, match="density"):
        net.sample(x, 10, density=True, gemm_dtype=torch.bfloat16)
    zuko_net = PosteriorFlow(4, 5, flow="nsf", **SMALL).eval()
    with pytest.raises(ValueError, match="rqs_coupling"):
        zuko_net.sample(x, 10, density=False, gemm_dtype=torch.bfloat16)


def test_coupling_flow_transforms_every_parameter():
    """Layers come in complementary pairs: each parameter is transformed once per pair."""
    from prospect_sim.amortized.coupling import _masks
    for d in (2, 3, 6, 7):
        m = _masks(d, 4)
        assert (~m[0] | ~m[1]).all() and (~m[2] | ~m[3]).all()
        assert ((m.sum(1) == d // 2) | (m.sum(1) == d - d // 2)).all()
