r"""Photometry -> network input, and its normalisation.

Per band ``b`` with flux :math:`f` and uncertainty :math:`\sigma` (maggies)
and a softening scale :math:`\beta_b` (the noise model's typical
uncertainty), the raw features are

- :math:`\mathrm{asinh}(f / 2\beta_b)`: a Lupton asinh magnitude up to sign
  and offset, linear through zero and logarithmic for bright objects, so
  negative fluxes (non-detections) are fine;
- :math:`\log_{10}(\sigma / \beta_b)`;
- the missing flag (1 missing, 0 present); a missing band has 0 in the two
  features above;
- with ``colors`` (the default for new networks), the colours of adjacent
  bands, :math:`\mathrm{asinh}(f_b / 2\beta_b) - \mathrm{asinh}(f_{b+1} /
  2\beta_{b+1})`, 0 when either band is missing. The network could form
  them from the first feature, but for bright objects those are nearly
  collinear (a 2% colour is 0.01 of their spread), and the colours, which
  carry redshift, age and dust, are better conditioned inputs on their own
  scale;

followed by the values of the conditioning parameters (``--condition``).
Each feature is then standardised with the mean and standard deviation
measured on noisy training simulations (:meth:`FeatureScaler.fit`).

>>> import numpy as np
>>> s = FeatureScaler(softening=[1e-10, 1e-10], n_conditions=0)
>>> x = s.raw(np.array([[1e-9, -1e-10]]), np.array([[1e-10, 1e-10]]), np.array([[False, True]]))
>>> x.shape
(1, 7)
>>> float(x[0, 3]), float(x[0, 5]), float(x[0, 6])
(0.0, 1.0, 0.0)
"""

import numpy as np

__all__ = ["FeatureScaler"]


class FeatureScaler:
    """Builds and standardises the network input.

    Parameters
    ----------
    softening : (B,) array
        Softening flux per band, maggies.
    n_conditions : int
        Number of conditioning parameters appended after the photometry.
    mean, std : (F,) array, optional
        Standardisation of the F = :attr:`n_features` features; identity
        until :meth:`fit`.
    colors : bool
        Append the B - 1 adjacent-band colours (False in checkpoints made
        before they existed).
    """

    def __init__(self, softening, n_conditions=0, mean=None, std=None, colors=True):
        self.softening = np.asarray(softening, dtype=float)
        if not np.all(np.isfinite(self.softening) & (self.softening > 0)):
            raise ValueError(f"softening must be finite and > 0; got {self.softening.tolist()}")
        self.n_bands = len(self.softening)
        self.n_conditions = int(n_conditions)
        self.colors = bool(colors)
        n = self.n_features
        self.mean = np.zeros(n) if mean is None else np.asarray(mean, dtype=float)
        self.std = np.ones(n) if std is None else np.asarray(std, dtype=float)

    @property
    def n_features(self):
        n_colors = self.n_bands - 1 if self.colors else 0
        return 3 * self.n_bands + n_colors + self.n_conditions

    def raw(self, flux, unc, missing, conditions=None):
        """Unstandardised features (N, F) from flux, unc (N, B) maggies,
        missing (N, B) bool and conditions (N, C)."""
        flux = np.asarray(flux, dtype=float)
        unc = np.asarray(unc, dtype=float)
        missing = np.asarray(missing, dtype=bool) | ~np.isfinite(flux) | ~np.isfinite(unc) \
            | ~(unc > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(missing, 0.0, np.arcsinh(flux / (2 * self.softening)))
            s = np.where(missing, 0.0, np.log10(unc / self.softening))
        parts = [f, s, missing.astype(float)]
        if self.colors:
            either = missing[:, :-1] | missing[:, 1:]
            parts.append(np.where(either, 0.0, f[:, :-1] - f[:, 1:]))
        if self.n_conditions:
            c = np.asarray(conditions, dtype=float).reshape(len(flux), self.n_conditions)
            parts.append(c)
        return np.concatenate(parts, axis=1)

    def fit(self, raw):
        """Set the standardisation from raw features (N, F) of training simulations."""
        self.mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        self.std = np.where(std > 1e-8, std, 1.0)
        return self

    def __call__(self, flux, unc, missing, conditions=None):
        """Standardised features (N, F), float32."""
        x = (self.raw(flux, unc, missing, conditions) - self.mean) / self.std
        return x.astype(np.float32)

    def to_config(self):
        return {"softening": self.softening.tolist(), "n_conditions": self.n_conditions,
                "mean": self.mean.tolist(), "std": self.std.tolist(), "colors": self.colors}

    @classmethod
    def from_config(cls, cfg):
        return cls(**{"colors": False, **cfg})   # older checkpoints: no colours
