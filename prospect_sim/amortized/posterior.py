"""A trained amortised posterior and its self-contained checkpoint.

:class:`AmortizedPosterior` bundles what turns an observation into posterior
samples in parameter space: feature scaler, flow, prior bijection, plus the
problem description (parameter and filter names, priors, conditions) and the
noise model the network was trained with. A checkpoint (``.pt``) holds only
plain Python types and tensors, so ``torch.load(weights_only=True)`` reads it.

>>> import numpy as np, torch
>>> from prospect_sim.amortized.noise import FixedNoise
>>> post = AmortizedPosterior.new(
...     problem={"theta_labels": ["a", "b"], "filter_names": ["f1", "f2"],
...              "prior": {"a": {"bounds": [0, 1]}, "b": {"bounds": [-1, 1]}}},
...     conditions=["b"], noise=FixedNoise([1e-10, 1e-10]),
...     flow_options=dict(flow="nsf", hidden=8, transforms=1, bins=4, embedding="8", embed_dim=4))
>>> theta, log_q = post.sample(np.ones((3, 2)) * 1e-9, np.ones((3, 2)) * 1e-10,
...                            np.zeros((3, 2), bool), np.zeros((3, 1)), 7)
>>> theta.shape, log_q.shape, bool(((theta >= 0) & (theta <= 1)).all())
((3, 7, 1), (3, 7), True)
"""

import logging
import math
import os

import numpy as np
import torch

from ..errors import InferenceError, UsageError
from . import spec
from . import noise as noise_mod
from .features import FeatureScaler
from .flows import PosteriorFlow, build_flow_from_options
from .transforms import PriorBijection

__all__ = ["AmortizedPosterior", "load_checkpoint", "load_matching_checkpoint",
           "save_checkpoint", "resolve_device", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "prospect_sim.amortized/1"

log = logging.getLogger(__name__)


def save_checkpoint(obj, path, error=UsageError):
    """``torch.save`` to a temporary name in the same folder, synced, then renamed.

    The bytes are made in memory first, so that a failed write (full disk,
    quota, read-only folder) is the ``OSError`` of the write itself, not torch's
    ``RuntimeError``; it is raised as ``error`` naming ``path`` and the cause,
    the temporary file is removed and any previous ``path`` is kept whole.
    """
    import io

    from ..outputs import atomic_path
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path, error, "checkpoint") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())


def resolve_device(name):
    """``"auto"`` -> CUDA when present, else CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"--device {name!r}: {err}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name!r} but CUDA is not available; use --device cpu")
    return dev


def load_matching_checkpoint(ingredients):
    """``(path, checkpoint)`` named by the run, refused if trained for another param file."""
    from ._paths import path_for
    checkpoint = path_for(ingredients.run_params, "flow")
    ckpt = load_checkpoint(checkpoint, InferenceError)
    diff = spec.differences(spec.model_problem(ingredients.model, ingredients.obs, ingredients.sps),
                            ckpt["problem"], what=f"checkpoint {checkpoint!r}")
    if diff:
        raise InferenceError("the checkpoint was trained for another param file: "
                             + "; ".join(diff) + ". Train this param file (--train) or name "
                             "its checkpoint with --checkpoint")
    return checkpoint, ckpt


def load_checkpoint(path, error=ValueError):
    """The checkpoint dict at ``path``; ``error`` (an exception type) if unusable."""
    if not os.path.exists(path):
        raise error(f"no trained model at {path!r}: run the param file with --train first, "
                    "or name a checkpoint with --checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise error(f"{path!r} is not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise error(f"{path!r} is not a prospect_sim amortised-posterior checkpoint "
                    f"(format {ckpt.get('format') if isinstance(ckpt, dict) else None!r}, "
                    f"expected {CHECKPOINT_FORMAT!r})")
    return ckpt


class AmortizedPosterior:
    """Observation -> posterior samples in parameter space.

    Build with :meth:`new` (before training) or :meth:`from_checkpoint`.

    Attributes
    ----------
    problem : dict
        ``theta_labels``, ``filter_names``, ``prior`` of the simulation.
    conditions : list of str
    labels : list of str
        Inferred parameters, in theta order.
    net : PosteriorFlow
    bijection : PriorBijection
    scaler : FeatureScaler
    noise : prospect_sim.amortized.noise.NoiseModel
    """

    def __init__(self, problem, conditions, noise, net, bijection, scaler):
        self.problem = problem
        self.conditions = list(conditions)
        self.labels = [t for t in problem["theta_labels"] if t not in self.conditions]
        self.inferred_index = [problem["theta_labels"].index(t) for t in self.labels]
        self.condition_index = [problem["theta_labels"].index(t) for t in self.conditions]
        self.noise = noise
        self.net = net
        self.bijection = bijection
        self.scaler = scaler

    @classmethod
    def new(cls, problem, conditions, noise, flow_options, seed=0):
        """An untrained posterior; network initialisation seeded by ``seed``."""
        labels = [t for t in problem["theta_labels"] if t not in conditions]
        bounds = np.array([problem["prior"].get(t, {}).get("bounds", [-np.inf, np.inf])
                           for t in labels], dtype=float).reshape(len(labels), 2)
        scaler = FeatureScaler(noise.typical_sigma(), n_conditions=len(conditions))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_flow_from_options(len(labels), scaler.n_features, flow_options)
        return cls(problem, conditions, noise, net, PriorBijection(bounds[:, 0], bounds[:, 1]),
                   scaler)

    @classmethod
    def from_checkpoint(cls, ckpt, best=True, device="cpu"):
        """Rebuild from a checkpoint dict (or path); ``best`` picks the best weights."""
        if isinstance(ckpt, (str, os.PathLike)):
            ckpt = load_checkpoint(str(ckpt))
        net = PosteriorFlow(**ckpt["flow_config"])
        state = ckpt["best_model_state"] if best and ckpt.get("best_model_state") else \
            ckpt["model_state"]
        net.load_state_dict(state)
        net.eval().to(device)
        b = ckpt["bijection"]
        return cls(ckpt["problem"], ckpt["conditions"], noise_mod.from_config(ckpt["noise"]), net,
                   PriorBijection(b["lower"], b["upper"], b["loc"], b["scale"]),
                   FeatureScaler.from_config(ckpt["features"]))

    def state(self):
        """The problem/feature/noise/bijection part of a checkpoint (plain types)."""
        b = self.bijection
        return {"format": CHECKPOINT_FORMAT, "problem": self.problem,
                "conditions": self.conditions, "labels": self.labels,
                "noise": self.noise.to_config(), "features": self.scaler.to_config(),
                "flow_config": self.net.config,
                "bijection": {k: getattr(b, k).tolist() for k in ("lower", "upper", "loc", "scale")}}

    @property
    def device(self):
        return next(self.net.parameters()).device

    def features(self, flux, unc, missing, conditions=None):
        """Standardised network input (N, F) as a tensor on the network's device."""
        x = self.scaler(flux, unc, missing, conditions)
        return torch.from_numpy(x).to(self.device)

    def log_prob(self, theta, x):
        """:math:`\\log q(\\theta \\mid x)` in parameter space (N,), theta (N, D)."""
        u = self.bijection(theta)
        return self.net.log_prob(u.float(), x) + self.bijection.log_abs_det_jacobian(theta)

    def compile_sampling(self, rows):
        """Sample through ``torch.compile`` in blocks of ``rows`` objects (``--compile``;
        see :meth:`.coupling.CouplingSplineFlow.compile_sampling`). Only the
        ``rqs_coupling`` flow has a compiled path; the others sample as before."""
        if self.net.config["flow"] != "rqs_coupling":
            log.warning("--compile: only the rqs_coupling flow samples through torch.compile; "
                        "sampling the %s flow as usual", self.net.config["flow"])
            return
        self.net.flow.compile_sampling(rows)

    def gemm_dtype(self, bfloat16):
        """The ``gemm_dtype`` for :meth:`sample` under ``--bfloat16`` (None without it);
        a :class:`UsageError` for flows other than ``rqs_coupling``, a warning on a CPU
        without bfloat16 instructions."""
        if not bfloat16:
            return None
        if self.net.config["flow"] != "rqs_coupling":
            raise UsageError(f"--bfloat16: only the rqs_coupling flow has it; this "
                             f"checkpoint's flow is {self.net.config['flow']}")
        if self.device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            log.warning("--bfloat16: this CPU has no bfloat16 instructions (AMX, AVX512-BF16); "
                        "its bfloat16 products are emulated and likely slower than float32")
        return torch.bfloat16

    @torch.no_grad()
    def sample(self, flux, unc, missing, conditions, n, generator=None, scale=1.0, density=True,
               gemm_dtype=None):
        """Posterior draws for N observations.

        Parameters
        ----------
        flux, unc : (N, B) array, maggies
        missing : (N, B) bool array
        conditions : (N, C) array or None
        n : int
            Draws per observation.
        generator : torch.Generator, optional
        scale : float
            1 samples the posterior estimate.  Above 1, a defensive proposal
            for importance sampling: half the draws from the flow, half from
            the flow with its Gaussian base ``scale`` times wider, and
            ``log_q`` the density of that equal mixture (so the weights are
            never much worse than the flow's own, and bright objects whose
            flow posterior is too narrow still get covered).
        density : bool
            Return ``log_q`` too; with False it is None, and the prior
            bijection's float64 Jacobian (0.24 ms per object of 1,000 draws
            on the development CPU, ~4% of ``--infer``) and the coupling
            flow's spline log-Jacobians are skipped.
        gemm_dtype : torch.dtype, optional
            ``torch.bfloat16`` (``--bfloat16``): the coupling flow's matrix
            products in bfloat16; without ``density`` and with ``scale`` 1 only.

        Returns
        -------
        theta : (N, n, D) float64 array, inside the prior bounds
        log_q : (N, n) float64 array or None
            :math:`\\log q(\\theta \\mid x)` in parameter space.
        """
        self.net.eval()
        x = self.features(flux, unc, missing, conditions)
        if scale == 1.0:
            u, log_q = self.net.sample(x, n, generator=generator, density=density,
                                       gemm_dtype=gemm_dtype)
        elif gemm_dtype is not None:
            raise ValueError("gemm_dtype: not for the defensive mixture (it needs the density)")
        else:
            u, log_q = self._sample_mixture(x, n, generator, float(scale))
        u = u.cpu().double()
        theta = self.bijection.inverse(u)
        if density:
            log_q = log_q.cpu().double() + self.bijection.log_abs_det_jacobian(theta)
        return theta.transpose(0, 1).numpy(), log_q.transpose(0, 1).numpy() if density else None

    def _sample_mixture(self, x, n, generator, scale):
        """Draws from the equal mixture of the flow and its ``scale``-wider version.

        For a base point ``z`` mapped to ``u``, the wider flow's density is the
        flow's times ``N(z; 0, s^2) / N(z; 0, 1)``; the first half of the draws
        has ``s = 1``, the rest ``s = scale``, and ``log_q`` is the mixture's.
        """
        d = len(self.labels)
        eps = torch.randn((n, x.shape[0], d), generator=generator, dtype=x.dtype)
        widths = torch.ones(n, dtype=x.dtype)
        widths[n // 2:] = scale
        z = eps * widths[:, None, None]
        u, log_q1 = self.net.sample(x, n, base=z)
        r2 = (z * z).sum(-1).to(log_q1.device)
        log_wide = log_q1 + 0.5 * r2 * (1.0 - 1.0 / scale**2) - d * math.log(scale)
        return u, torch.logaddexp(log_q1, log_wide) - math.log(2.0)
