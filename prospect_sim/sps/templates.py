"""Band fluxes of fixed rest-frame templates at any redshift, tabulated in ln(1 + z).

The components whose light is a sum of a few fixed spectra with
per-object amplitudes (dust emission, the AGN) get their batched
photometry from :class:`TemplatePhotometry`: each template's band fluxes,
computed at redshift nodes exactly as the per-object path integrates a
spectrum (``SpecModel.predict_phot``, sedpy: the filter interpolated onto
the spectrum's observed wavelengths, a trapezoid sum of
``lambda T f_lambda``), and interpolated linearly between nodes.

The integral is linear in the spectrum, so for a block of nodes it is one
matrix product: the filter's weight at every template wavelength
(:func:`_band_rows`, compiled) times the templates.  Tabulating many
templates (the dust-emission basis, the AGN's reddenings and
inclinations) costs little more than one.
"""

import numpy as np

from ._compiled import compiled

__all__ = ["TemplatePhotometry"]

LIGHTSPEED_AA = 2.998e18   # Angstrom/s, Prospector's value
_JY_AB = 3631e-23          # erg/s/cm^2/Hz


class TemplatePhotometry:
    """Band fluxes of T rest-frame spectra at any redshift, tabulated in ln(1 + z).

    Parameters
    ----------
    wave : ndarray (W,)
        Rest-frame Angstrom (the per-object spectrum's).
    lnu : ndarray (T, W) or (W,)
        The spectra, Lsun/Hz (per whatever unit they are scaled by); they
        may be negative (a basis).
    filters : list of sedpy.observate.Filter
    step : float
        Node spacing in ln(1 + z): the fluxes are interpolated linearly
        between nodes, so the templates must be smooth on that scale.
    igm_factor : float or None
        Madau IGM absorption at each node's redshift (as the per-object
        spectrum has it when ``add_igm_absorption``), scaled by ``igm_factor``;
        None for none.
    resolution : float or None
        Tabulate from the spectra resampled (linearly) at this lambda /
        dlambda instead of at every native wavelength: for smooth templates
        over a wide range (the AGN), where the native 0.5-0.9 AA optical
        sampling would cost most of the set-up and change nothing.

    Only the bands that can see a template (red edge beyond its bluest
    non-zero wavelength) are tabulated, in float32; the others are zero.
    """

    def __init__(self, wave, lnu, filters, step=2.5e-4, igm_factor=None, resolution=None):
        lnu = np.atleast_2d(np.asarray(lnu, dtype=float))
        wave = np.asarray(wave, dtype=float)
        keep = np.flatnonzero((lnu != 0).any(axis=0))
        lo, hi = (max(keep[0] - 1, 0), min(keep[-1] + 2, len(wave))) if len(keep) else (0, 0)
        wave, lnu = wave[lo:hi], lnu[:, lo:hi]
        if resolution is not None and len(wave) > 1:
            grid = np.exp(np.arange(np.log(wave[0]), np.log(wave[-1]), 1.0 / resolution))
            lnu = np.array([np.interp(grid, wave, row) for row in lnu])
            wave = grid
        self.wave = wave
        # per Angstrom: L_lambda = L_nu c / lambda^2 (the (1 + z) factors are in flux_norm)
        self.llam = np.ascontiguousarray(lnu * LIGHTSPEED_AA / wave**2)
        self.filters = list(filters)
        self.n_templates = len(self.llam)
        self.seen = np.array([b for b, f in enumerate(self.filters)
                              if len(wave) > 1 and f.wavelength[-1] > wave[0]], dtype=int)
        self.step = float(step)
        self.igm_factor = igm_factor
        self.table = np.zeros((1, self.n_templates, len(self.seen)), dtype=np.float32)
        self._extend(0.0)

    def _extend(self, zmax, chunk=256):
        from .igm import LYMAN_WAVE, igm_transmission
        n = int(np.ceil(np.log1p(zmax) / self.step)) + 2
        if n <= len(self.table):
            return
        n = max(n, int(1.25 * len(self.table)))
        z1 = np.exp(self.step * np.arange(n))
        table = np.zeros((n, self.n_templates, len(self.seen)))
        n_blue = 0
        if self.igm_factor is not None:
            n_blue = int(np.searchsorted(self.wave, LYMAN_WAVE[0], side="right"))
        for start in range(0, n, chunk):
            part = slice(start, min(start + chunk, n))
            blue = np.ones((part.stop - start, n_blue))
            if n_blue:
                blue = igm_transmission(self.wave[:n_blue], z1[part] - 1.0, self.igm_factor)
            blue = np.ascontiguousarray(blue)
            for j, b in enumerate(self.seen):
                f = self.filters[b]
                fwave = np.asarray(f.wavelength, dtype=float)
                ftrans = np.asarray(f.transmission, dtype=float)
                # the template wavelengths any node of this block can see
                i0 = max(int(np.searchsorted(self.wave, fwave[0] / z1[part.stop - 1])) - 1, 0)
                i1 = min(int(np.searchsorted(self.wave, fwave[-1] / z1[start],
                                             side="right")) + 1, len(self.wave))
                if i1 - i0 < 2:
                    continue
                rows = np.zeros((part.stop - start, i1 - i0))
                _band_rows(self.wave[i0:i1], z1[part], fwave, ftrans,
                           blue[:, i0:] if i0 < n_blue else blue[:, :0], rows)
                table[part, :, j] = rows @ self.llam[:, i0:i1].T
        for j, b in enumerate(self.seen):
            table[..., j] *= _JY_AB / self.filters[b].ab_zero_counts
        self.table = table.astype(np.float32)       # 1e-7: far below the interpolation's error

    def _nodes(self, zred):
        zred = np.asarray(zred, dtype=float)
        self._extend(float(zred.max(initial=0.0)))
        x = np.log1p(zred) / self.step
        i = np.minimum(np.floor(x).astype(int), len(self.table) - 2)
        return i, (x - i)[:, None]

    def _full(self, seen_fluxes):
        if len(self.seen) == len(self.filters):
            return seen_fluxes
        out = np.zeros((len(seen_fluxes), len(self.filters)))
        out[:, self.seen] = seen_fluxes
        return out

    def __call__(self, zred, which=None):
        """Fluxes before ``flux_norm`` (lattice units): (N, B) of template ``which``.

        ``which`` is an index, or an (N,) array of indices (one template per
        object); None for a single template.
        """
        i, t = self._nodes(zred)
        which = 0 if which is None else which
        return self._full((1 - t) * self.table[i, which] + t * self.table[i + 1, which])

    def combine(self, zred, coeffs):
        """Fluxes (N, B) of ``sum_t coeffs[n, t] template_t`` for each object at ``zred[n]``."""
        i, t = self._nodes(zred)
        coeffs = np.asarray(coeffs, dtype=float)
        lo = np.einsum("nt,ntb->nb", coeffs, self.table[i])
        hi = np.einsum("nt,ntb->nb", coeffs, self.table[i + 1])
        return self._full((1 - t) * lo + t * hi)


@compiled
def _band_rows(wave, z1, fwave, ftrans, blue, out):
    """sedpy's ``sum lambda T f_lambda dlambda`` as weights on ``f_lambda`` at ``wave``.

    ``out[k] @ llam`` is the band integral of a rest-frame ``llam`` (per
    Angstrom) redshifted by ``z1[k]``: per unit of ``flux_norm`` (which
    holds the (1 + z) of flux densities) the observed ``f_lambda`` is
    ``llam / z1**2`` at ``lambda = z1 lambda_rest``, and ``dlambda = z1
    dlambda_rest``; trapezoids between the template's wavelengths, the
    filter interpolated linearly (zero outside it).  ``blue`` (K, n_blue)
    multiplies the first ``n_blue`` points at node ``k`` (the IGM).
    """
    n_w = len(wave)
    n_blue = blue.shape[1]
    for k in range(len(z1)):
        s = z1[k]
        lo = max(np.searchsorted(wave, fwave[0] / s) - 1, 0)
        hi = min(np.searchsorted(wave, fwave[-1] / s, side="right") + 1, n_w)
        j = max(np.searchsorted(fwave, wave[lo] * s, side="right") - 1, 0)
        row = out[k]
        for i in range(lo, hi):
            lam = wave[i] * s
            if lam < fwave[0] or lam > fwave[-1]:
                continue
            while j < len(fwave) - 2 and fwave[j + 1] <= lam:
                j += 1
            t = (lam - fwave[j]) / (fwave[j + 1] - fwave[j])
            g = lam * (ftrans[j] + t * (ftrans[j + 1] - ftrans[j])) / s
            if i < n_blue:
                g *= blue[k, i]
            # the trapezoids on either side of point i, each half of its width
            if i > lo:
                row[i] += 0.5 * g * (wave[i] - wave[i - 1])
            if i < hi - 1:
                row[i] += 0.5 * g * (wave[i + 1] - wave[i])
