"""The conditional normalizing flow :math:`q(u \\mid x)` on an embedding network.

An MLP embeds the standardised observation features ``x`` (N, F) into a
context vector (N, E); a flow over the standardised unbounded parameters
``u`` (N, D) (see :mod:`.transforms`) is conditioned on it: our spline
coupling flow (:mod:`.coupling`, the default) or one of zuko's. The flow is fully
described by :attr:`PosteriorFlow.config`, so a checkpoint rebuilds it with
``PosteriorFlow(**config)`` and loads the state dict.

>>> import torch
>>> net = PosteriorFlow(n_params=3, n_features=6, flow="rqs_coupling", hidden=16,
...                     transforms=2, embedding=(16,), embed_dim=8)
>>> x = torch.randn(4, 6)
>>> net.log_prob(torch.randn(4, 3), x).shape
torch.Size([4])
>>> u, log_q = net.sample(x, 5, generator=torch.Generator().manual_seed(0))
>>> u.shape, log_q.shape
(torch.Size([5, 4, 3]), torch.Size([5, 4]))
"""

import math

import torch
import zuko
from torch import nn
from zuko.flows.autoregressive import MaskedAutoregressiveTransform

from .coupling import CouplingSplineFlow

__all__ = ["PosteriorFlow", "build_flow_from_options", "SIZES"]

#: Default (hidden, transforms) per flow family, used when ``--hidden`` or
#: ``--transforms`` is not given. The coupling flow is sized for sampling speed
#: (see bench/bench_infer.py); the zuko flows keep their earlier sizes.
SIZES = {"rqs_coupling": (64, 6), "nsf": (128, 5), "nsf_coupling": (128, 5), "maf": (128, 5),
         "naf": (128, 5)}


def _mlp(n_in, hidden, n_out):
    layers, last = [], n_in
    for h in hidden:
        layers += [nn.Linear(last, h), nn.ELU()]
        last = h
    layers.append(nn.Linear(last, n_out))
    return nn.Sequential(*layers)


class PosteriorFlow(nn.Module):
    """Embedding MLP + conditional zuko flow.

    Parameters
    ----------
    n_params : int
        D, inferred parameters.
    n_features : int
        F, observation features.
    flow : {"rqs_coupling", "nsf", "nsf_coupling", "maf", "naf"}
        ``rqs_coupling`` (the default): rational-quadratic spline coupling
        layers after a conditional full-covariance whitening
        (:class:`~prospect_sim.amortized.coupling.CouplingSplineFlow`), one
        network pass per transform to sample. The others are zuko's: neural
        spline flow (fully autoregressive: D + 1 passes per transform to
        sample D parameters; or ``nsf_coupling``, zuko's masked two-pass
        variant), masked autoregressive flow (affine) or neural
        autoregressive flow.
    hidden : int, optional
        Hidden units of each transform's two-layer network; default from
        :data:`SIZES`.
    transforms : int, optional
        Number of transforms; default from :data:`SIZES`.
    bins : int
        Spline bins (rqs_coupling, nsf, nsf_coupling).
    embedding : sequence of int
        Hidden layer sizes of the embedding MLP.
    embed_dim : int
        E, size of the context vector.
    affine : bool
        Start (in the direction parameters -> base) with a conditional
        elementwise affine map :math:`(u - \\mu(c)) / \\sigma(c)`. Posteriors much
        narrower than the prior (bright objects) are then whitened before the
        splines, whose bins cover a fixed [-5, 5] and could not resolve them.
        For ``rqs_coupling`` the map is full-covariance, computed once per object.
    """

    def __init__(self, n_params, n_features, flow="rqs_coupling", hidden=None, transforms=None,
                 bins=8, embedding=(128, 128), embed_dim=64, affine=True):
        super().__init__()
        if flow not in SIZES:
            raise ValueError(f"unknown flow {flow!r}; expected one of {', '.join(SIZES)}")
        hidden = SIZES[flow][0] if hidden is None else hidden
        transforms = SIZES[flow][1] if transforms is None else transforms
        self.config = dict(n_params=int(n_params), n_features=int(n_features), flow=str(flow),
                           hidden=int(hidden), transforms=int(transforms), bins=int(bins),
                           embedding=[int(h) for h in embedding], embed_dim=int(embed_dim),
                           affine=bool(affine))
        self.embed = _mlp(n_features, self.config["embedding"], embed_dim)
        if flow == "rqs_coupling":
            self.flow = CouplingSplineFlow(n_params, embed_dim, transforms=transforms,
                                           hidden=hidden, bins=bins, affine=affine)
            return
        common = dict(features=n_params, context=embed_dim, transforms=transforms,
                      hidden_features=[hidden, hidden])
        if flow == "nsf":
            self.flow = zuko.flows.NSF(bins=bins, **common)
        elif flow == "nsf_coupling":
            self.flow = zuko.flows.NSF(bins=bins, passes=2 if n_params > 1 else None, **common)
        elif flow == "maf":
            self.flow = zuko.flows.MAF(**common)
        elif flow == "naf":
            common.pop("hidden_features")
            self.flow = zuko.flows.NAF(network=dict(hidden_features=[hidden, hidden]), **common)
        if affine:
            whiten = MaskedAutoregressiveTransform(features=n_params, context=embed_dim, passes=1,
                                                   hidden_features=[hidden, hidden])
            self.flow = zuko.flows.Flow([whiten, *self.flow.transform.transforms], self.flow.base)

    def log_prob(self, u, x):
        """:math:`\\log q(u \\mid x)`: u (N, D), x (N, F) -> (N,)."""
        if self.config["flow"] == "rqs_coupling":
            return self.flow.log_prob(u, self.embed(x))
        return self.flow(self.embed(x)).log_prob(u)

    def loss(self, u, x):
        """Mean negative log-density, the NPE loss
        :math:`-\\mathbb{E}_{(\\theta, x)}[\\log q(u(\\theta) \\mid x)]`."""
        return -self.log_prob(u, x).mean()

    @torch.no_grad()
    def sample(self, x, n, generator=None, base=None, density=True, gemm_dtype=None):
        """Draw ``n`` samples per observation.

        Parameters
        ----------
        x : (N, F) tensor
        n : int
        generator : torch.Generator, optional
            Source of the base-distribution draws (for reproducible sampling).
        base : (n, N, D) tensor, optional
            Base-space points to transform instead of standard normal draws
            (``log_q`` is still the flow's density at the result).
        density : bool
            False: ``log_q`` may be None (the coupling flow then skips it).
        gemm_dtype : torch.dtype, optional
            The coupling flow's matrix products in this dtype (without
            ``density`` only; see :meth:`.CouplingSplineFlow.sample`).

        Returns
        -------
        u : (n, N, D) tensor
        log_q : (n, N) tensor, :math:`\\log q(u \\mid x)`, or None
        """
        if self.config["flow"] == "rqs_coupling":
            return self.flow.sample(self.embed(x), n, generator=generator, base=base,
                                    density=density, gemm_dtype=gemm_dtype)
        if gemm_dtype is not None:
            raise ValueError(f"gemm_dtype: only the rqs_coupling flow has it, not "
                             f"{self.config['flow']}")
        dist = self.flow(self.embed(x))
        d = self.config["n_params"]
        if base is None:
            z = torch.randn((n, x.shape[0], d), generator=generator, dtype=x.dtype,
                            device="cpu").to(x.device)
        else:
            z = base.to(device=x.device, dtype=x.dtype)
        u, ladj = dist.transform.inv.call_and_ladj(z)
        if self.config["flow"] == "naf":  # inverted by bisection: re-evaluate the density
            return u, dist.log_prob(u)
        log_base = -0.5 * (z ** 2).sum(-1) - 0.5 * d * math.log(2 * math.pi)
        return u, log_base - ladj


def build_flow_from_options(n_params, n_features, opts):
    """A :class:`PosteriorFlow` from the amortised-posterior options dict."""
    embedding = opts["embedding"]
    if isinstance(embedding, str):
        embedding = [int(h) for h in embedding.split(",") if h.strip()]
    return PosteriorFlow(n_params, n_features, flow=opts["flow"], hidden=opts.get("hidden"),
                         transforms=opts.get("transforms"), bins=opts["bins"],
                         embedding=embedding, embed_dim=opts["embed_dim"],
                         affine=opts.get("affine", True))
