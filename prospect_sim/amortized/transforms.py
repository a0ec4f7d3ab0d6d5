r"""A bijection from the prior support to an unbounded, standardised space.

The flow models parameters in the space

.. math:: u = (g(\theta) - m) / s

where, per parameter with prior bounds :math:`[a, b]`,

- both finite:  :math:`g(\theta) = \mathrm{logit}((\theta - a) / (b - a))`
- only ``a`` finite: :math:`g(\theta) = \log(\theta - a)`
- only ``b`` finite: :math:`g(\theta) = -\log(b - \theta)`
- unbounded:    :math:`g(\theta) = \theta`

and :math:`m, s` are the mean and standard deviation of :math:`g(\theta)`
over training simulations. The inverse maps every real :math:`u` into the
support, so posterior samples never leave the prior. Densities change by

.. math:: \log q_\theta(\theta) = \log q_u(u) + \log |du / d\theta|

which :meth:`PriorBijection.log_abs_det_jacobian` returns.

>>> import torch
>>> t = PriorBijection([0.0, 8.0], [1.0, 12.0])
>>> theta = torch.tensor([[0.5, 10.0]])
>>> torch.allclose(t.inverse(t.forward(theta)), theta)
True
>>> bool(((t.inverse(torch.tensor([[-50.0, 50.0]])) - torch.tensor([0.0, 12.0])).abs() < 1e-6).all())
True
"""

import numpy as np
import torch
from torch import nn

__all__ = ["PriorBijection"]

_EPS = 1e-7  # fraction of the prior range kept away from the bounds in the forward map


class PriorBijection(nn.Module):
    """Prior support :math:`\\leftrightarrow` standardised unbounded space.

    Parameters
    ----------
    lower, upper : (D,) array
        Prior bounds; ``-inf``/``inf`` for an unbounded side.
    loc, scale : (D,) array, optional
        Standardisation of :math:`g(\\theta)`; see :meth:`fit`.
    """

    def __init__(self, lower, upper, loc=None, scale=None):
        super().__init__()
        lower = torch.as_tensor(np.asarray(lower, dtype=np.float64))
        upper = torch.as_tensor(np.asarray(upper, dtype=np.float64))
        if lower.shape != upper.shape or lower.ndim != 1:
            raise ValueError(f"bounds have shapes {tuple(lower.shape)} and {tuple(upper.shape)}; "
                             "expected two (D,) arrays")
        if torch.any(upper <= lower):
            raise ValueError("every prior needs upper bound > lower bound; got "
                             f"{list(zip(lower.tolist(), upper.tolist()))}")
        d = len(lower)
        self.register_buffer("lower", lower)
        self.register_buffer("upper", upper)
        self.register_buffer("loc", torch.zeros(d, dtype=torch.float64) if loc is None
                             else torch.as_tensor(np.asarray(loc, dtype=np.float64)))
        self.register_buffer("scale", torch.ones(d, dtype=torch.float64) if scale is None
                             else torch.as_tensor(np.asarray(scale, dtype=np.float64)))

    @property
    def _kinds(self):
        lo, hi = torch.isfinite(self.lower), torch.isfinite(self.upper)
        return lo & hi, lo & ~hi, ~lo & hi

    def _g(self, theta):
        both, low, high = self._kinds
        lo = torch.where(torch.isfinite(self.lower), self.lower, 0.0).to(theta)
        hi = torch.where(torch.isfinite(self.upper), self.upper, 1.0).to(theta)
        x = ((theta - lo) / (hi - lo)).clamp(_EPS, 1 - _EPS)
        g = torch.where(both, torch.logit(x), theta)
        g = torch.where(low, torch.log((theta - lo).clamp_min(1e-300)), g)
        g = torch.where(high, -torch.log((hi - theta).clamp_min(1e-300)), g)
        return g

    def fit(self, theta):
        """Set ``loc``/``scale`` from training parameters ``theta`` (N, D)."""
        g = self._g(torch.as_tensor(np.asarray(theta), dtype=torch.float64))
        self.loc.copy_(g.mean(0))
        self.scale.copy_(g.std(0).clamp_min(1e-12))
        return self

    def forward(self, theta):
        """:math:`\\theta` (..., D) -> :math:`u` (..., D)."""
        dtype = theta.dtype
        g = self._g(theta.to(torch.float64))
        return ((g - self.loc) / self.scale).to(dtype)

    def inverse(self, u):
        """:math:`u` (..., D) -> :math:`\\theta` (..., D), always inside the bounds."""
        dtype = u.dtype
        g = u.to(torch.float64) * self.scale + self.loc
        both, low, high = self._kinds
        lo = torch.where(torch.isfinite(self.lower), self.lower, 0.0)
        hi = torch.where(torch.isfinite(self.upper), self.upper, 1.0)
        theta = torch.where(both, lo + (hi - lo) * torch.sigmoid(g), g)
        theta = torch.where(low, lo + torch.exp(g), theta)
        theta = torch.where(high, hi - torch.exp(-g), theta)
        # exact bounds in float64 arithmetic; keep them exact after a cast too
        theta = torch.maximum(torch.minimum(theta, self.upper), self.lower)
        return theta.to(dtype)

    def log_abs_det_jacobian(self, theta):
        """:math:`\\sum_i \\log |du_i / d\\theta_i|` (...,) at ``theta`` (..., D)."""
        t = theta.to(torch.float64)
        both, low, high = self._kinds
        lo = torch.where(torch.isfinite(self.lower), self.lower, 0.0)
        hi = torch.where(torch.isfinite(self.upper), self.upper, 1.0)
        x = ((t - lo) / (hi - lo)).clamp(_EPS, 1 - _EPS)
        ladj = torch.where(both, -torch.log(hi - lo) - torch.log(x) - torch.log1p(-x),
                           torch.zeros_like(t))
        ladj = torch.where(low, -torch.log((t - lo).clamp_min(1e-300)), ladj)
        ladj = torch.where(high, -torch.log((hi - t).clamp_min(1e-300)), ladj)
        return (ladj - torch.log(self.scale)).sum(-1).to(theta.dtype)
