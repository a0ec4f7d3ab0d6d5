"""The vectorised physics: N parameter sets in, N rest-frame spectra out.

:class:`SpectralKernel` sums SSP spectra with SFH weights
(:mod:`~prospect_sim.sps.sfh`), interpolates linearly in log Z between the
two bracketing grid metallicities (FSPS ``zcontinuous=1``), lets each
component (:mod:`~prospect_sim.sps.components`) change that light and add
its own around the dust (:class:`~prospect_sim.sps.dust.Attenuation`), and
applies the IGM (:mod:`~prospect_sim.sps.igm`); see
:mod:`~prospect_sim.sps.component` for the stages.  It works on any
wavelength sampling of the library; the batched photometry
(:mod:`~prospect_sim.sps.photometry`) uses its SFH and metallicity
weights.
"""

import numpy as np

from . import sfh as _sfh
from . import components as _components
from .dust import Attenuation
from .igm import LYMAN_WAVE, batch_transmission, line_coefficients
from .params import require_shared

__all__ = ["SpectralKernel", "WEIGHT_FLOOR", "flush_small"]

#: SSP weights (per Msun formed) smaller than this are set to zero once they
#: are float32. Tau-model tails and small metallicity fractions make weights
#: down to 1e-45, and their products with the SSP tables (entries down to
#: 1e-31) fall below float32's smallest normal number (1.2e-38). x86 CPUs
#: process such denormal numbers ~50x slower; they made the batched
#: photometry 2.7x slower overall. Dropping them changed no band flux of
#: 20,000 demo draws by a single bit.
WEIGHT_FLOOR = 1e-18


def flush_small(w32):
    """Zero the entries of float32 SSP weights below :data:`WEIGHT_FLOOR`, in place.

    >>> w = np.array([0.5, 1e-20, 1e-40], dtype=np.float32)
    >>> flush_small(w).tolist()
    [0.5, 0.0, 0.0]
    """
    np.putmask(w32, np.abs(w32) < WEIGHT_FLOOR, 0)
    return w32


class _Parts:
    """The pieces :meth:`SpectralKernel.stellar` computes for N objects.

    ``rest``, ``young`` (N, W) float32 or None, ``mfrac`` (N,), the SSP
    ``weights``, ``young_w`` and ``rest_w`` (N, A) and the stellar
    metallicity bracket (``zlo``, ``zfrac``).  Components add theirs: the
    gas metallicity bracket (``glo``, ``gfrac``) and the intrinsic ``lines``
    ``(total, young)`` and attenuated ``emission_lines`` (N, L) of
    :mod:`.nebular`.
    """

    emission_lines = None


class SpectralKernel:
    """Composite rest-frame spectra from an SSP grid.

    Parameters
    ----------
    library : SSPLibrary
        Ages, metallicities and surviving mass fractions.
    wave : ndarray of shape (W,) or None
        Rest-frame Angstrom of ``spectra``; None for the library's own.
    spectra : ndarray of shape (Z, A, W) or None
        SSP spectra on ``wave`` (Lsun/Hz per Msun formed, float32); None for
        the library's own.
    """

    def __init__(self, library, wave=None, spectra=None):
        self.library = library
        self.ages = library.ages
        self.edges = _sfh.bin_edges(library.ages)
        self.logzsol = library.logzsol
        self.ssp_mfrac = library.mfrac
        self.wave = library.wavelengths if wave is None else np.asarray(wave, dtype=float)
        self.ssp = library.spectra if spectra is None else np.ascontiguousarray(
            spectra, dtype=np.float32)
        self._n_lya = int(np.searchsorted(self.wave, LYMAN_WAVE[0], side="right"))
        self._igm_lines = line_coefficients(self.wave[:self._n_lya])
        self._dust_curves = {}
        self._cache = {}

    def cached(self, key, build):
        """``build()``, kept under ``key`` for this kernel (the components' tables)."""
        value = self._cache.get(key)
        if value is None:
            if len(self._cache) > 32:
                self._cache.clear()
            value = self._cache[key] = build()
        return value

    # -- weights ---------------------------------------------------------
    def metallicity_weights(self, logzsol):
        """Lower grid index (N,) and weight of the upper one (N,), linear in log Z."""
        grid = self.logzsol
        lo = np.clip(np.searchsorted(grid, logzsol, side="right") - 1, 0, len(grid) - 2)
        frac = (logzsol - grid[lo]) / (grid[lo + 1] - grid[lo])
        return lo, np.clip(frac, 0.0, 1.0)

    def age_weights(self, batch, need_young=None):
        """Mass-formed weights per SSP age (N, A) and their young part (or None)."""
        if need_young is None:
            need_young = bool(np.any(batch.dust1 > 0))
        t_young = 10**batch.dust_tesc if need_young else None
        return _sfh.ssp_weights(batch.sfh, self.ages, self.edges, tage=batch.tage,
                                tau=batch.tau, agebins=getattr(batch, "agebins", None),
                                bin_mass=getattr(batch, "bin_mass", None), t_young=t_young)

    def surviving_fraction(self, weights, zlo, zfrac):
        """Surviving stellar mass per mass formed, (N,)."""
        per_z = weights @ self.ssp_mfrac.T                    # (N, Z): one GEMM
        rows = np.arange(len(weights))
        return (1.0 - zfrac) * per_z[rows, zlo] + zfrac * per_z[rows, zlo + 1]

    # -- spectra ---------------------------------------------------------
    def sum_ssps(self, weights, zlo, zfrac, n_age=None, table=None, dtype=np.float32):
        """sum_a w_a [(1 - f) T_lo,a + f T_hi,a], (N, X), of a (Z, A, X) table.

        ``table`` is the SSP grid unless given (e.g. nebular lines).  Only
        the ages up to the oldest one with non-zero weight are read (the
        grid is 26 MB per metallicity pair at native sampling).
        """
        table = self.ssp if table is None else table
        if n_age is None:
            n_age = int(np.max(np.nonzero(weights.any(axis=0))[0], initial=0)) + 1
        n_age = min(n_age, table.shape[1])
        out = np.zeros((len(weights), table.shape[2]), dtype=dtype)
        if n_age == 0:
            return out
        for k in np.unique(zlo):
            rows = np.nonzero(zlo == k)[0]
            w = weights[rows, :n_age].astype(dtype)
            f = zfrac[rows, None].astype(dtype)
            part = flush_small(w * (1 - f)) @ table[k, :n_age].astype(dtype, copy=False)
            if np.any(f > 0):
                part += flush_small(w * f) @ table[k + 1, :n_age].astype(dtype, copy=False)
            out[rows] = part
        return out

    def stellar(self, batch):
        """Dust-free stellar light of N objects, as a :class:`_Parts`.

        ``young`` is the light of stars younger than ``10**dust_tesc`` yr
        (None when no object has ``dust1 > 0``) and ``rest`` that of all
        other stars (all stars when ``young`` is None); both float32 (N, W)
        in Lsun/Hz per Msun formed.  Summing them separately (rather than
        subtracting the young part from the total) keeps the birth-cloud
        attenuated far UV free of cancellation.
        """
        p = _Parts()
        p.zlo, p.zfrac = self.metallicity_weights(batch.logzsol)
        p.weights, p.young_w = self.age_weights(batch)
        young, p.rest_w = None, p.weights
        if p.young_w is not None:
            n_age = int(np.max(np.nonzero(p.young_w.any(axis=0))[0], initial=-1)) + 1
            if n_age > 0:
                young = self.sum_ssps(p.young_w, p.zlo, p.zfrac, n_age=n_age)
                p.rest_w = np.clip(p.weights - p.young_w, 0.0, None)
        p.rest = self.sum_ssps(p.rest_w, p.zlo, p.zfrac)
        p.young = young
        p.mfrac = self.surviving_fraction(p.weights, p.zlo, p.zfrac)
        return p

    def spectra(self, batch):
        """Rest-frame spectra: stars, every component the batch turns on, dust and IGM.

        Parameters
        ----------
        batch : Batch

        Returns
        -------
        spec : ndarray of shape (N, W)
            Lsun/Hz per Msun formed, rest frame, on ``self.wave``; emission
            lines included when ``batch.lines_in_spec``.
        mfrac : ndarray of shape (N,)
            Surviving stellar mass / mass formed.
        lines : ndarray of shape (N, L) or None
            Attenuated emission-line luminosities (Lsun per Msun formed) at
            :attr:`~.cloudy.NebularTables.line_wave`; None without
            ``add_neb_emission``.
        """
        require_shared(batch)
        active = [c for c in _components.COMPONENTS if c.on(batch)]
        parts = self.stellar(batch)
        for component in active:
            component.intrinsic(self, batch, parts)
        diffuse, birth = Attenuation(batch).transmissions(self.wave, self._dust_curves)
        spec = parts.rest * diffuse                       # float64
        if parts.young is not None:
            spec += parts.young * (diffuse if birth is None else diffuse * birth)
        for component in active:
            component.emitted(self, batch, parts, spec)
        igm = batch_transmission(self.wave, batch, lines=self._igm_lines)
        if igm is not None:
            spec[:, :igm.shape[1]] *= igm
        return spec, parts.mfrac, parts.emission_lines
