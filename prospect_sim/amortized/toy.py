r"""An analytic toy problem whose posterior is known: linear-Gaussian photometry.

Parameters :math:`\theta \in [0, 1]^D` with a uniform prior; noiseless
"photometry" in maggies

.. math:: \phi = s\,(A \theta + c),

and Gaussian noise of fixed per-band uncertainty :math:`\sigma`
(:class:`~prospect_sim.amortized.noise.FixedNoise`). The posterior is the
Gaussian :math:`\mathcal{N}(\mu, \Sigma)` truncated to the unit box, with
:math:`\Sigma^{-1} = A^T A\, s^2 / \sigma^2` and
:math:`\mu = \Sigma A^T s (f - s c) / \sigma^2`. Used by the tests to check
calibration against the truth, and by anyone who wants to see the machinery
work in seconds.

>>> import numpy as np
>>> toy = LinearGaussianToy()
>>> mu, cov = toy.posterior(toy.phot(np.array([[0.5, 0.5]]))[0])
>>> np.allclose(mu, 0.5)
True
"""

import json

import h5py
import numpy as np

from .noise import FixedNoise

__all__ = ["LinearGaussianToy"]


class LinearGaussianToy:
    """Linear-Gaussian photometry with a uniform prior on the unit box.

    Parameters
    ----------
    A : (B, D) array
    c : (B,) array
    scale : float
        Flux unit, maggies.
    sigma : float
        Per-band uncertainty in units of ``scale``.
    """

    def __init__(self, A=((1.0, 0.0), (0.0, 1.0), (1.0, 1.0)), c=(0.5, 0.5, 0.5),
                 scale=1e-9, sigma=0.05):
        self.A = np.asarray(A, dtype=float)
        self.c = np.asarray(c, dtype=float)
        self.scale = float(scale)
        self.sigma = float(sigma)
        self.n_bands, self.n_params = self.A.shape
        self.theta_labels = [f"t{i}" for i in range(self.n_params)]
        self.filter_names = [f"band{b}" for b in range(self.n_bands)]

    @property
    def noise(self):
        return FixedNoise(np.full(self.n_bands, self.sigma * self.scale))

    @property
    def problem(self):
        prior = {t: {"distribution": "TopHat", "params": {"mini": 0.0, "maxi": 1.0},
                     "bounds": [0.0, 1.0]} for t in self.theta_labels}
        return {"theta_labels": self.theta_labels, "filter_names": self.filter_names,
                "prior": prior}

    def phot(self, theta):
        """Noiseless fluxes (N, B), maggies, for theta (N, D)."""
        return self.scale * (np.asarray(theta) @ self.A.T + self.c)

    def posterior(self, flux, present=None):
        """Mean (D,) and covariance (D, D) of the untruncated Gaussian posterior.

        ``present`` (B,) bool: the bands measured (default all); the others
        are dropped from the likelihood.
        """
        keep = np.ones(self.n_bands, bool) if present is None else np.asarray(present, bool)
        A = self.A[keep]
        prec = A.T @ A / self.sigma ** 2
        cov = np.linalg.inv(prec)
        mu = cov @ A.T @ (np.asarray(flux)[keep] / self.scale - self.c[keep]) / self.sigma ** 2
        return mu, cov

    def write_simfile(self, path, n, seed=0, n_bad=0, chunk_size=1000):
        """Write ``n`` prior simulations in the simulation-file layout (DESIGN.md 4).

        ``n_bad`` rows get NaN photometry but ``valid=True``, to exercise the
        non-finite filter.
        """
        rng = np.random.default_rng(seed)
        theta = rng.random((n, self.n_params))
        phot = self.phot(theta)
        if n_bad:
            phot[rng.choice(n, n_bad, replace=False), 0] = np.nan
        n_chunks = -(-n // chunk_size)
        with h5py.File(path, "w-") as h5:
            h5["theta"] = theta
            h5["phot"] = phot
            h5["valid"] = np.ones(n, bool)
            h5["chunks_done"] = np.ones(n_chunks, bool)
            h5.attrs["theta_labels"] = np.array(self.theta_labels, dtype="S")
            h5.attrs["filter_names"] = np.array(self.filter_names, dtype="S")
            h5.attrs["prior"] = json.dumps(self.problem["prior"])
            h5.attrs["n_samples"] = n
            h5.attrs["chunk_size"] = chunk_size
            h5.attrs["seed"] = seed
            h5.attrs["schema_version"] = 1
        return path
