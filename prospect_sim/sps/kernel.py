"""The vectorised physics: N parameter sets in, N rest-frame spectra out.

:class:`SpectralKernel` sums SSP spectra with SFH weights
(:mod:`~prospect_sim.sps.sfh`), interpolates linearly in log Z between the
two bracketing grid metallicities (FSPS ``zcontinuous=1``), attenuates by
dust (:mod:`~prospect_sim.sps.dust`) and the IGM (:mod:`~prospect_sim.sps.igm`),
and adds the nebular emission of young stars (:mod:`~prospect_sim.sps.nebular`).
It works on any wavelength sampling of the library: the native one for
Prospector's per-object interface, a coarse log-lambda one for the batched
photometry (:mod:`~prospect_sim.sps.photometry`); the physics is the same code.
"""

import numpy as np

from . import sfh as _sfh
from .params import require_shared
from .dust import birth_cloud_tau, diffuse_tau
from .igm import LYMAN_WAVE, igm_transmission, line_coefficients
from . import agn as _agn
from . import dust_emission as _dust_emission
from . import nebular as _nebular

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

    ``rest``, ``young`` (N, W) float32 or None, ``mfrac`` (N,), ``lines``
    ``(total, young)`` or None, the SSP ``weights`` and ``young_w`` (N, A)
    and the stellar (``zlo``, ``zfrac``) and gas (``glo``, ``gfrac``)
    metallicity brackets.
    """


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
        self._nebular = {}

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
    def nebular_tables(self, gas_logu, continuum=True):
        """:class:`~.nebular.NebularTables` on this kernel's wavelengths (cached per value)."""
        key = (float(gas_logu), bool(continuum))
        tables = self._nebular.get(key)
        if tables is None:
            if len(self._nebular) > 16:
                self._nebular.clear()
            tables = self._nebular[key] = _nebular.load_grid().tables(
                self.library, self.wave, gas_logu, continuum)
        return tables

    def _sum_ssps(self, weights, zlo, zfrac, n_age=None, table=None, dtype=np.float32):
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

    def stellar(self, batch, nebular=None):
        """Dust-free pieces of N spectra, as a :class:`_Parts`.

        ``young`` is the light of stars younger than ``10**dust_tesc`` yr
        (None when no object has ``dust1 > 0``) and ``rest`` that of all
        other stars (all stars when ``young`` is None); both float32 (N, W)
        in Lsun/Hz per Msun formed, nebular continuum included and the
        ionising photons of the emitting stars removed when ``nebular``
        (:class:`~.nebular.NebularTables` on ``self.wave``) is given.
        Summing them separately (rather than subtracting the young part
        from the total) keeps the birth-cloud attenuated far UV free of
        cancellation.  ``lines`` is ``(total, young)``, the intrinsic line
        luminosities (N, L) in Lsun per Msun formed (``young`` None without
        ``dust1``).
        """
        p = _Parts()
        p.zlo, p.zfrac = self.metallicity_weights(batch.logzsol)
        p.weights, p.young_w = self.age_weights(batch)
        young, rest_w = None, p.weights
        if p.young_w is not None:
            n_age = int(np.max(np.nonzero(p.young_w.any(axis=0))[0], initial=-1)) + 1
            if n_age > 0:
                young = self._sum_ssps(p.young_w, p.zlo, p.zfrac, n_age=n_age)
                rest_w = np.clip(p.weights - p.young_w, 0.0, None)
        rest = self._sum_ssps(rest_w, p.zlo, p.zfrac)
        p.lines = None
        if nebular is not None:
            # the ionising stars have the gas metallicity (as in FSPS and bagpipes)
            p.glo, p.gfrac = self.metallicity_weights(batch.gas_logz)
            n, n_ion = nebular.n_age, _nebular.ionising_pixels(self.wave)
            ionising = self.ssp[:, :n, :n_ion]
            for part, w in ((rest, rest_w), (young, p.young_w)):
                if part is None:
                    continue
                if n_ion:           # the emitting stars' ionising photons go to the gas
                    part[:, :n_ion] -= self._sum_ssps(w[:, :n], p.zlo, p.zfrac, table=ionising)
                    np.maximum(part[:, :n_ion], 0, out=part[:, :n_ion])
                if nebular.cont is not None:
                    part += self._sum_ssps(w[:, :n], p.glo, p.gfrac, table=nebular.cont)
            total = self._sum_ssps(p.weights[:, :n], p.glo, p.gfrac, table=nebular.lines,
                                   dtype=np.float64)
            young_lines = (None if p.young_w is None else
                           self._sum_ssps(p.young_w[:, :n], p.glo, p.gfrac,
                                          table=nebular.lines, dtype=np.float64))
            p.lines = (total, young_lines)
        p.rest, p.young = rest, young
        p.mfrac = self.surviving_fraction(p.weights, p.zlo, p.zfrac)
        return p

    def dust_luminosity(self, batch, parts):
        """Luminosity absorbed by dust, (N,) Lsun per Msun formed (:mod:`.dust_emission`)."""
        table = self.absorption_table(batch)
        total = self._sum_ssps(parts.weights, parts.zlo, parts.zfrac, table=table.stars,
                               dtype=np.float64)
        young = (None if parts.young_w is None else
                 self._sum_ssps(parts.young_w, parts.zlo, parts.zfrac, table=table.stars,
                                dtype=np.float64))
        if table.nebular is not None:
            n = table.nebular.shape[1]
            total += self._sum_ssps(parts.weights[:, :n], parts.glo, parts.gfrac,
                                    table=table.nebular, dtype=np.float64)
            if young is not None:
                young += self._sum_ssps(parts.young_w[:, :n], parts.glo, parts.gfrac,
                                        table=table.nebular, dtype=np.float64)
        return _dust_emission.absorbed(table.centers, total, young, batch)

    def absorption_table(self, batch):
        """:class:`~.dust_emission.AbsorptionTables` for the batch's nebular setting (cached)."""
        key = ("absorption",) + ((float(batch.gas_logu[0]), bool(batch.neb_continuum))
                                 if batch.nebular else ())
        table = self._nebular.get(key)
        if table is None:
            table = self._nebular[key] = _dust_emission.absorption_tables(
                self.library.name, key[1:] or None, fallback=self.library)
        return table

    def stellar_bolometric(self, parts):
        """Intrinsic stellar bolometric luminosity, (N,) Lsun per Msun formed (:mod:`.agn`)."""
        table = self._nebular.get("bolometric")
        if table is None:
            table = self._nebular["bolometric"] = _agn.bolometric(
                self.library.name, fallback=self.library)[..., None]
        return self._sum_ssps(parts.weights, parts.zlo, parts.zfrac, table=table,
                              dtype=np.float64)[:, 0]

    def agn_templates(self):
        """The AGN templates on ``self.wave`` (cached)."""
        out = self._nebular.get("agn")
        if out is None:
            out = self._nebular["agn"] = _agn.evaluated(self.wave)
        return out

    def dust_template(self, batch):
        """Unit-luminosity dust emission (W,) in Lsun/Hz on ``self.wave`` (cached per parameters)."""
        key = ("duste", float(batch.duste_umin[0]), float(batch.duste_qpah[0]),
               float(batch.duste_gamma[0]))
        spec = self._nebular.get(key)
        if spec is None:
            spec = self._nebular[key] = _dust_emission.load_grid().template_lnu(
                self.wave, *key[1:])
        return spec

    def diffuse_transmission(self, batch, wave=None):
        """exp(-tau_diffuse), float64 (N, W).

        When ``dust_index`` is the same for every object (or irrelevant,
        ``dust_type=2``) the optical depth is ``dust2`` times one curve,
        computed once per (dust_type, dust_index) and cached.
        """
        wave = self.wave if wave is None else wave
        index = np.asarray(batch.dust_index, dtype=float)
        if wave is self.wave and (batch.dust_type == 2 or np.all(index == index[0])):
            key = (batch.dust_type, 0.0 if batch.dust_type == 2 else float(index[0]))
            base = self._dust_curves.get(key)
            if base is None:
                if len(self._dust_curves) > 16:
                    self._dust_curves.clear()
                base = self._dust_curves[key] = diffuse_tau(batch.dust_type, wave, np.ones(1),
                                                            index[:1])[0]
            return np.exp(-np.asarray(batch.dust2, dtype=float)[:, None] * base[None, :])
        return np.exp(-diffuse_tau(batch.dust_type, wave, batch.dust2, batch.dust_index))

    def attenuation(self, batch, wave=None):
        """Diffuse (N, W) and birth-cloud (N, W) transmissions (the latter None if dust1 == 0)."""
        diffuse = self.diffuse_transmission(batch, wave)
        wave = self.wave if wave is None else wave
        birth = None
        if np.any(batch.dust1 > 0):
            birth = np.exp(-birth_cloud_tau(wave, batch.dust1, batch.dust1_index))
        return diffuse, birth

    def spectra(self, batch):
        """Rest-frame spectra with nebular emission, dust and IGM.

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
            :attr:`~.nebular.NebularTables.line_wave`; None without
            ``add_neb_emission``.
        """
        require_shared(batch)
        tables = (self.nebular_tables(batch.gas_logu[0], batch.neb_continuum)
                  if batch.nebular else None)
        parts = self.stellar(batch, tables)
        rest, young, mfrac, lines = parts.rest, parts.young, parts.mfrac, parts.lines
        diffuse, birth = self.attenuation(batch)
        spec = rest * diffuse                       # float64
        if young is not None:
            spec += young * (diffuse if birth is None else diffuse * birth)
        if lines is not None:
            lines = _nebular.attenuated_lines(tables.line_wave, *lines, batch)
            if batch.lines_in_spec:
                self._add_lines(spec, lines, tables.line_wave)
        if batch.dust_emission:
            spec += self.dust_luminosity(batch, parts)[:, None] * self.dust_template(batch)
        if batch.agn:               # not attenuated by the host's dust; the IGM below applies
            spec += self.stellar_bolometric(parts)[:, None] * _agn.agn_spectra(
                self.agn_templates(), batch)
        if batch.igm and np.any(batch.zred > 0) and self._n_lya > 0:
            n = self._n_lya
            spec[:, :n] *= igm_transmission(self.wave[:n], batch.zred, batch.igm_factor,
                                            lines=self._igm_lines)
        return spec, mfrac, lines

    def _add_lines(self, spec, lines, line_wave):
        """Add line luminosities (N, L), Lsun, to spectra (N, W) in Lsun/Hz, in place.

        Each line goes to the two pixels around it (:func:`~.nebular.line_pixels`).
        """
        pixels, share, width = _nebular.line_pixels(self.wave, line_wave)
        per_hz = share / width * self.wave[pixels]**2 / _nebular.LIGHTSPEED_AA     # (L, 2)
        np.add.at(spec, (slice(None), pixels.ravel()),
                  (lines[:, :, None] * per_hz[None]).reshape(len(spec), -1))
