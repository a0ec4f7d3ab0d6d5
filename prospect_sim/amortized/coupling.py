r"""A conditional rational-quadratic spline *coupling* flow, built for fast sampling.

The flow maps standardised parameters :math:`u` (..., D) to a standard normal
:math:`z` through a conditional affine whitening and ``transforms`` coupling
layers (Durkan et al. 2019, "Neural Spline Flows", RQ-NSF (C)):

.. math::
    u' = L(c)^{-1} (u - \mu(c)), \qquad
    \text{layer } t:\ y_{A_t} = x_{A_t},\quad
    y_{B_t} = s\big(x_{B_t};\ \phi_t(x_{A_t}, c)\big)

where :math:`c` is the context (the embedded observation), :math:`L(c)` is
lower triangular with a positive diagonal (a conditional full-covariance
Gaussian, so the splines only model the departure from it), :math:`A_t, B_t`
split the D parameters in two halves (a different split for every pair of
layers), and :math:`s` is an elementwise monotonic rational-quadratic spline
with ``bins`` bins on :math:`[-5, 5]`, the identity outside. Compared with
zuko's autoregressive NSF (``--flow nsf``), which needs D network passes per
transform to sample, a coupling layer needs one pass in either direction, and:

- the context part of each conditioner's first layer,
  :math:`W_c c + b`, is computed once per object, not once per draw;
- the whitening depends on the context only, so it is computed once per object;
- the inverse spline returns its log-Jacobian from the same bin lookup (no
  second evaluation of the network to get the density of the draws);
- sampling runs in chunks of rows that stay in the CPU cache;
- with ``gemm_dtype=torch.bfloat16`` (``--bfloat16``) the conditioners' hidden
  and output layers, most of a compiled draw's cost, run in bfloat16.

The spline parametrisation (bounded softmax widths and heights, bounded
log-derivatives, derivative 1 at the ends) is zuko's
``MonotonicRQSTransform``, so the two agree to rounding (tested).

>>> import torch
>>> f = CouplingSplineFlow(features=4, context=3, transforms=2, hidden=16, bins=4)
>>> c = torch.randn(5, 3)
>>> f.log_prob(torch.randn(5, 4), c).shape
torch.Size([5])
>>> u, log_q = f.sample(c, 7, generator=torch.Generator().manual_seed(0))
>>> u.shape, log_q.shape
(torch.Size([7, 5, 4]), torch.Size([7, 5]))
>>> torch.allclose(f.log_prob(u, c.expand(7, 5, 3)), log_q, atol=1e-4)
True
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._compile import compiled

__all__ = ["CouplingSplineFlow", "rqs_forward", "rqs_inverse"]

_BOUND = 5.0       # the splines act on [-_BOUND, _BOUND], identity outside
_LOG_SLOPE = math.log(1e-3)  # zuko's slope bound: bin ratios and derivatives within 1e-3..1e3
_LOG_2PI = math.log(2 * math.pi)
_CHUNK_ROWS = 1 << 13  # rows (draws x objects) per sampling chunk: intermediates stay in cache
_WHITEN_HIDDEN = 128  # hidden units of the whitening network (run once per object)


def _draws_per_chunk(objects):
    """Draws per sampling chunk for ``objects`` objects: ~``_CHUNK_ROWS`` rows."""
    return max(1, _CHUNK_ROWS // max(1, objects))


def _cum_widths(raw):
    """Unnormalised cumulative bin sizes (..., K) and their totals (..., 1) from raw (..., K).

    ``raw`` should be contiguous: torch's elementwise kernels are several times
    slower on a strided slice.
    """
    e = torch.exp(raw / (1 + (2 / -_LOG_SLOPE) * raw.abs()))
    if torch.compiler.is_compiling() and not torch.is_grad_enabled():
        # compiled sampling: K-term sums the compiler fuses (its cumsum is a call), 1.06x
        cum = torch.stack([e[..., :j + 1].sum(-1) for j in range(e.shape[-1])], -1)
    else:
        cum = torch.cumsum(e, dim=-1)
    return cum, cum[..., -1:]


def _derivative(raw):
    return torch.exp(raw / (1 + raw.abs() / -_LOG_SLOPE))


def _bin(cum_x, tot_x, cum_y, tot_y, raw_d, k):
    """Knots (x0, x1, y0, y1), derivatives (d0, d1) of bin ``k`` (..., 1)."""
    K = cum_x.shape[-1]
    first, last = k == 0, k == K - 1
    k0 = (k - 1).clamp_min(0)
    zero = torch.zeros((), dtype=cum_x.dtype, device=cum_x.device)
    x0 = torch.where(first, zero, cum_x.gather(-1, k0))
    y0 = torch.where(first, zero, cum_y.gather(-1, k0))
    x1, y1 = cum_x.gather(-1, k), cum_y.gather(-1, k)
    b2 = 2 * _BOUND
    x0, x1 = b2 * x0 / tot_x - _BOUND, b2 * x1 / tot_x - _BOUND
    y0, y1 = b2 * y0 / tot_y - _BOUND, b2 * y1 / tot_y - _BOUND
    # derivatives at the K - 1 interior knots; 1 at both ends
    one = torch.ones((), dtype=cum_x.dtype, device=cum_x.device)
    d0 = torch.where(first, one, _derivative(raw_d.gather(-1, k0)))
    d1 = torch.where(last, one, _derivative(raw_d.gather(-1, k.clamp_max(K - 2))))
    return x0, x1, y0, y1, d0, d1


def rqs_forward(x, w, h, d):
    """Monotonic spline :math:`y = s(x)` and :math:`\\log |dy/dx|`.

    Parameters
    ----------
    x : (..., M) tensor
    w, h : (..., M, K) tensors
        Raw bin widths and heights (K >= 2).
    d : (..., M, K - 1) tensor
        Raw log-derivatives at the interior knots.

    Returns
    -------
    y, ladj : (..., M) tensors
    """
    cum_x, tot_x = _cum_widths(w)
    cum_y, tot_y = _cum_widths(h)
    xx = x.unsqueeze(-1)
    inside = (xx >= -_BOUND) & (xx <= _BOUND)
    # bin index: interior knots below x (compared unnormalised: cum < (x/B + 1)/2 * total)
    t = (xx / _BOUND + 1) * 0.5 * tot_x
    k = (cum_x[..., :-1] < t).sum(-1, keepdim=True)
    x0, x1, y0, y1, d0, d1 = _bin(cum_x, tot_x, cum_y, tot_y, d, k)
    wb, hb = x1 - x0, y1 - y0
    s = hb / wb
    z = ((xx - x0) / wb).clamp(0, 1)
    zz = z * (1 - z)
    den = s + (d0 + d1 - 2 * s) * zz
    y = y0 + hb * (s * z * z + d0 * zz) / den
    jac = s * s * (d1 * z * z + 2 * s * zz + d0 * (1 - z) ** 2) / (den * den)
    y = torch.where(inside, y, xx).squeeze(-1)
    ladj = torch.where(inside, jac.log(), torch.zeros_like(jac)).squeeze(-1)
    return y, ladj


def rqs_inverse(y, w, h, d, ladj=True):
    """Inverse spline :math:`x = s^{-1}(y)` and :math:`\\log |dx/dy|`, from one bin lookup.

    Same arguments and shapes as :func:`rqs_forward`; with ``ladj=False`` the
    log-Jacobian is not computed (None).
    """
    cum_x, tot_x = _cum_widths(w)
    cum_y, tot_y = _cum_widths(h)
    yy = y.unsqueeze(-1)
    inside = (yy >= -_BOUND) & (yy <= _BOUND)
    t = (yy / _BOUND + 1) * 0.5 * tot_y
    k = (cum_y[..., :-1] < t).sum(-1, keepdim=True)
    x0, x1, y0, y1, d0, d1 = _bin(cum_x, tot_x, cum_y, tot_y, d, k)
    wb, hb = x1 - x0, y1 - y0
    s = hb / wb
    dy = (yy - y0).clamp(min=0)
    g = d0 + d1 - 2 * s
    a = hb * (s - d0) + dy * g
    b = hb * d0 - dy * g
    c = -s * dy
    z = (2 * c / (-b - (b * b - 4 * a * c).clamp_min(0).sqrt())).clamp(0, 1)
    x = torch.where(inside, x0 + z * wb, yy).squeeze(-1)
    if not ladj:
        return x, None
    zz = z * (1 - z)
    den = s + g * zz
    jac = s * s * (d1 * z * z + 2 * s * zz + d0 * (1 - z) ** 2) / (den * den)
    return x, torch.where(inside, -jac.log(), torch.zeros_like(jac)).squeeze(-1)


def _masks(features, transforms):
    """(transforms, D) bool: True where a layer leaves the parameter unchanged (split A).

    Layers come in pairs with complementary splits, so every parameter is
    transformed once per pair; each pair uses a different (fixed) split.
    """
    if features == 1:
        return torch.zeros((transforms, 1), dtype=torch.bool)
    gen = torch.Generator().manual_seed(1234)
    out = []
    for t in range(transforms):
        if t % 2 == 0:
            perm = torch.arange(features) if t == 0 else torch.randperm(features, generator=gen)
            a = torch.zeros(features, dtype=torch.bool)
            a[perm[: features // 2]] = True
            out.append(a)
        else:
            out.append(~out[-1])
    return torch.stack(out)


class _Conditioner(nn.Module):
    """MLP :math:`\\phi(x_A, c)`: first layer split so the context term is per object."""

    def __init__(self, n_a, n_b, context, hidden, bins):
        super().__init__()
        self.n_b, self.bins, self.hidden = n_b, bins, hidden
        self.lin_a = nn.Linear(n_a, hidden, bias=False) if n_a else None
        self.lin_c = nn.Linear(context, hidden)
        self.lin_h = nn.Linear(hidden, hidden)
        # three output layers, so widths, heights and derivatives come out contiguous
        self.out_w = nn.Linear(hidden, n_b * bins)
        self.out_h = nn.Linear(hidden, n_b * bins)
        self.out_d = nn.Linear(hidden, n_b * (bins - 1))

    def context_term(self, c):
        """(..., E) -> (..., H): computed once per object."""
        return self.lin_c(c)

    def forward(self, x_a, ctx, gemm_dtype=None):
        """x_a (..., A), ctx (..., H) broadcastable -> raw widths, heights (..., B, K)
        and log-derivatives (..., B, K - 1), in x_a's dtype.

        ``gemm_dtype`` (e.g. ``torch.bfloat16``) runs the hidden and output
        layers (all but the first layer's few inputs: ~99% of the multiply-adds)
        in that dtype, accumulating in float32 as the BLAS does.
        """
        if self.lin_a is None:  # one parameter: a spline conditioned on the context only
            h = F.relu(ctx).expand(x_a.shape[:-1] + (self.hidden,))
        else:
            h = F.relu(self.lin_a(x_a).add_(ctx), inplace=True)
        k = self.bins
        if gemm_dtype is None:
            h = F.relu(self.lin_h(h), inplace=True)
            return (self.out_w(h).unflatten(-1, (self.n_b, k)),
                    self.out_h(h).unflatten(-1, (self.n_b, k)),
                    self.out_d(h).unflatten(-1, (self.n_b, k - 1)))
        # biases added in float32 after the product (fused with the activation when compiled)
        h = F.relu(F.linear(h.to(gemm_dtype), self.lin_h.weight.to(gemm_dtype)).float()
                   + self.lin_h.bias)
        w = torch.cat([self.out_w.weight, self.out_h.weight, self.out_d.weight])
        b = torch.cat([self.out_w.bias, self.out_h.bias, self.out_d.bias])
        out = F.linear(h.to(gemm_dtype), w.to(gemm_dtype)).to(x_a.dtype) + b  # one product
        nw = self.n_b * k
        return (out[..., :nw].unflatten(-1, (self.n_b, k)),
                out[..., nw:2 * nw].unflatten(-1, (self.n_b, k)),
                out[..., 2 * nw:].unflatten(-1, (self.n_b, k - 1)))


class CouplingSplineFlow(nn.Module):
    """Conditional whitening + RQ-spline coupling layers; see the module docstring.

    Parameters
    ----------
    features : int
        D, dimension of :math:`u` (with D = 1, the spline is conditioned on the
        context only).
    context : int
        E, dimension of the context vector.
    transforms : int
        Number of coupling layers.
    hidden : int
        Hidden units of each conditioner's two hidden layers.
    bins : int
        Spline bins.
    affine : bool
        Start with the conditional full-covariance whitening.
    """

    def __init__(self, features, context, transforms=6, hidden=64, bins=8, affine=True):
        super().__init__()
        if bins < 2:
            raise ValueError(f"the spline coupling flow needs at least 2 bins; got {bins}")
        self.features, self.bins, self.affine = features, bins, affine
        self.register_buffer("masks", _masks(features, transforms))
        self.layers = nn.ModuleList()
        for m in self.masks:
            n_a = int(m.sum())
            self.layers.append(_Conditioner(n_a, features - n_a, context, hidden, bins))
        self._set_indices()
        self._compiled = None  # (rows, compiled _invert_layers) after compile_sampling
        # a checkpoint's masks replace ours: derive the indices from them
        self.register_load_state_dict_post_hook(lambda module, keys: module._set_indices())
        if affine:
            n_tri = features * (features - 1) // 2
            w = _WHITEN_HIDDEN  # evaluated once per object: its size costs nothing per draw
            self.whiten = nn.Sequential(nn.Linear(context, w), nn.ELU(), nn.Linear(w, w), nn.ELU(),
                                        nn.Linear(w, 2 * features + n_tri))
            self.register_buffer("tril", torch.tril_indices(features, features, -1))

    # --- the per-object part --------------------------------------------------------------
    def _whitening(self, c):
        """mu (..., D), L (..., D, D) lower triangular, log diag L (..., D)."""
        d = self.features
        out = self.whiten(c)
        mu, raw_diag, off = out[..., :d], out[..., d:2 * d], out[..., 2 * d:]
        log_diag = 7 * torch.tanh(raw_diag / 7)  # diagonal within exp(+-7)
        L = torch.diag_embed(torch.exp(log_diag))
        L[..., self.tril[0], self.tril[1]] = off
        return mu, L, log_diag

    def _set_indices(self):
        """The splits as index buffers, so no data-dependent op runs per call (and
        ``torch.compile`` traces all the layers as one graph)."""
        for t, m in enumerate(self.masks):
            self.register_buffer(f"_ia{t}", m.nonzero().squeeze(-1), persistent=False)
            self.register_buffer(f"_ib{t}", (~m).nonzero().squeeze(-1), persistent=False)

    def _indices(self, t):
        """Indices of layer ``t``'s unchanged (A) and transformed (B) parameters."""
        return getattr(self, f"_ia{t}"), getattr(self, f"_ib{t}")

    # --- density direction u -> z (training) ----------------------------------------------
    def log_prob(self, u, c):
        """:math:`\\log q(u \\mid c)`: u (..., D), c (..., E) broadcastable -> (...)."""
        ladj = torch.zeros(u.shape[:-1], dtype=u.dtype, device=u.device)
        x = u
        if self.affine:
            mu, L, log_diag = self._whitening(c)
            x = torch.linalg.solve_triangular(L, (x - mu).unsqueeze(-1), upper=False).squeeze(-1)
            ladj = ladj - log_diag.sum(-1)
        for t, layer in enumerate(self.layers):
            ia, ib = self._indices(t)
            x_a, x_b = x[..., ia], x[..., ib]
            y_b, l = rqs_forward(x_b, *layer(x_a, layer.context_term(c)))
            x = x.clone()
            x[..., ib] = y_b
            ladj = ladj + l.sum(-1)
        log_base = -0.5 * (x * x).sum(-1) - 0.5 * self.features * _LOG_2PI
        return log_base + ladj

    # --- sampling direction z -> u ---------------------------------------------------------
    def _invert_layers(self, z, ctx, density=True, gemm_dtype=None):
        """Base points z (S, N, D) through the coupling layers, inverted; ``ctx`` holds
        each layer's context term (N, H); ``gemm_dtype`` as in :meth:`sample`.
        Returns y (S, N, D) and :math:`-\\log|dy/dz|` (S, N), or None without
        ``density``."""
        y = z
        lq = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device) if density else None
        for t in reversed(range(len(self.layers))):
            ia, ib = self._indices(t)
            x_b, l = rqs_inverse(y[..., ib], *self.layers[t](y[..., ia], ctx[t], gemm_dtype),
                                 ladj=density)
            y = y.index_copy(-1, ib, x_b)
            if density:
                lq = lq - l.sum(-1)
        return y, lq

    def compile_sampling(self, rows):
        """Sample through ``torch.compile`` (the spline's elementwise chain fused: 1.8x
        faster on the development CPU, after ~40 s of compiling, cached on disk by torch).

        Objects are sampled in blocks of ``rows`` and draws in chunks of a fixed
        size (the last one padded), so one compiled graph serves every call; the
        objects beyond the last whole block (all of them when fewer than ``rows``)
        are sampled eagerly. Falls back to eager sampling, with a warning, if
        compiling fails.
        """
        rows = int(rows)
        if rows < 1:
            raise ValueError(f"compile_sampling: rows must be positive, got {rows}")
        self._compiled = (rows, compiled(self._invert_layers, "sampling"))

    @torch.no_grad()
    def sample(self, c, n, generator=None, base=None, density=True, gemm_dtype=None):
        """``n`` draws per context row.

        Parameters
        ----------
        c : (N, E) tensor
        n : int
        generator : torch.Generator, optional
            Source of the base draws, taken in one call of shape (n, N, D), so
            the draws do not depend on the chunking.
        base : (n, N, D) tensor, optional
            Base-space points to transform instead of standard normal draws
            (``log_q`` is still the flow's density at the result).
        density : bool
            Compute ``log_q``; without it (None) the splines skip their
            log-Jacobians.
        gemm_dtype : torch.dtype, optional
            Run the conditioners' hidden and output layers in this dtype
            (``torch.bfloat16``: 2-4x faster matrix products on CPUs with AMX
            or AVX512-BF16, and on GPUs). Their outputs then carry ~3
            significant digits, so the draws follow a slightly different flow,
            whose density is not ``log_q``: only without ``density``.

        Returns
        -------
        u : (n, N, D) tensor
        log_q : (n, N) tensor or None
        """
        if density and gemm_dtype is not None:
            raise ValueError("sample: gemm_dtype changes the draws' distribution, so it "
                             "cannot be used with density=True")
        d = self.features
        if base is None:
            z = torch.randn((n, c.shape[0], d), generator=generator, dtype=c.dtype,
                            device="cpu").to(c.device)
        else:
            z = base.to(device=c.device, dtype=c.dtype).clone()
        log_q = -0.5 * (z * z).sum(-1) - 0.5 * d * _LOG_2PI if density else None
        if self._compiled is not None:
            return self._sample_blocks(c, z, log_q, gemm_dtype, *self._compiled)
        return self._sample_chunks(c, z, log_q, gemm_dtype, self._invert_layers,
                                   _draws_per_chunk(len(c)))

    def _sample_chunks(self, c, z, log_q, gemm_dtype, invert, step, pad=False):
        """Invert z (n, N, D) in chunks of ``step`` draws (the last padded with zeros
        to ``step`` when ``pad``, so every chunk has one shape); ``log_q`` None: no
        density."""
        ctx = [layer.context_term(c) for layer in self.layers]  # (N, H) each
        n = z.shape[0]
        density = log_q is not None
        u, lq = torch.empty_like(z), log_q.clone() if density else None
        for s in range(0, n, step):
            zc = z[s:s + step].contiguous()
            m = zc.shape[0]
            if pad and m < step:
                zc = torch.cat([zc, zc.new_zeros((step - m,) + zc.shape[1:])])
            yc, lc = invert(zc, ctx, density, gemm_dtype)
            u[s:s + m] = yc[:m]
            if density:
                lq[s:s + m] += lc[:m]
        if self.affine:  # the whitening, inverted: u = mu + L y
            mu, L, log_diag = self._whitening(c)
            u = torch.baddbmm(mu.unsqueeze(-1).expand(-1, -1, n), L, u.permute(1, 2, 0))
            u = u.permute(2, 0, 1)
            if density:
                lq -= log_diag.sum(-1)
        return u, lq

    def _sample_blocks(self, c, z, log_q, gemm_dtype, rows, invert):
        """The compiled path: whole blocks of ``rows`` objects, each inverted in
        fixed-size chunks of draws; the objects left over (fewer than ``rows``) run
        eagerly, rather than paying for a padded block."""
        n_obj = c.shape[0]
        full = n_obj - n_obj % rows
        step = min(_draws_per_chunk(rows), z.shape[0])
        u = torch.empty_like(z)
        lq = None if log_q is None else torch.empty_like(log_q)
        for b in range(0, n_obj, rows):
            sl = slice(b, b + rows)
            part = None if log_q is None else log_q[:, sl]
            if b < full:
                u[:, sl], lq_b = self._sample_chunks(c[sl], z[:, sl], part, gemm_dtype, invert,
                                                     step, pad=True)
            else:
                u[:, sl], lq_b = self._sample_chunks(c[sl], z[:, sl], part, gemm_dtype,
                                                     self._invert_layers,
                                                     _draws_per_chunk(n_obj - full))
            if lq is not None:
                lq[:, sl] = lq_b
        return u, lq
