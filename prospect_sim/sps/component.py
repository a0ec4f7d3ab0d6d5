"""The seam every physical component of the embedded SPS plugs into.

The light of a galaxy is built in stages, the same on every path::

    stars (SFH x SSPs, metallicity)       sfh.py, library.py, kernel.py
      + what the gas does to them          Component.intrinsic   (nebular.py)
      x dust attenuation, birth clouds     dust.py (Attenuation)
      + light emitted after the dust       Component.emitted     (nebular lines,
                                                                  dust_emission.py, agn.py)
      x IGM                                igm.py

A :class:`Component` is one physical addition to the stellar light,
defined once, in its own module: its parameters (FSPS/Prospector names,
defaults, the ranges its grids cover), how it changes the per-object
spectrum (:meth:`Component.intrinsic`, :meth:`Component.emitted`, on any
wavelength sampling) and its batched photometry (:meth:`Component.bands`,
a :class:`Bands`), and what it says to users (:meth:`Component.describe`,
:meth:`Component.extras`, :attr:`Component.uses`).
:class:`~.kernel.SpectralKernel`, :class:`~.photometry.PhotometryKernel`,
:class:`~.grid.GridSPS`, :mod:`.params`, :mod:`prospect_sim.effects` and
:mod:`prospect_sim.forward` only loop over :data:`.components.COMPONENTS`;
adding a component is one module (a subclass of :class:`Component`), its
tests, and its entry in that tuple.

Units throughout: rest-frame Angstrom, Lsun/Hz (spectra) and Lsun (lines,
luminosities) per Msun formed; band fluxes before ``flux_norm``, as the
lattice gives them (:mod:`.photometry`).
"""

import copy

import numpy as np

__all__ = ["Component", "Bands", "Scale", "pair_table", "slice_batch"]


class Component:
    """One physical component: its parameters, physics and photometry.

    Attributes
    ----------
    name : str
        What it is, in a few words (``info`` and messages).
    parameters : dict
        Float parameters it reads -> FSPS default; each becomes a (N,)
        attribute of the :class:`~.params.Batch`.
    uses : dict
        Parameter name (or prefix ending in ``_``) -> what gives it an
        effect (for :func:`prospect_sim.effects.what_uses`).
    """

    name = ""
    parameters = {}
    uses = {}

    # -- parameters --------------------------------------------------------
    def read(self, params, batch, library):
        """Set the component's switches on ``batch`` and check its parameters.

        The float ``parameters`` are already (N,) attributes of ``batch``;
        raise :class:`~prospect_sim.errors.SPSError` for values the grids
        do not cover.
        """

    def on(self, batch):
        """Whether the component adds anything to ``batch``."""
        return False

    def ranges(self, library):
        """Parameter -> (min, max) its grids cover (priors are checked against them)."""
        return {}

    def shared(self, batch):
        """Parameters whose tables are built per value: one value per batch."""
        return ()

    # -- per-object spectrum (SpectralKernel.spectra) ----------------------
    def intrinsic(self, kernel, batch, parts):
        """Change the dust-free stellar light ``parts`` (:class:`~.kernel._Parts`) in place."""

    def emitted(self, kernel, batch, parts, spec):
        """Add light emitted after the dust to ``spec`` (N, W) on ``kernel.wave``, in place."""

    # -- batched photometry (PhotometryKernel) -----------------------------
    def check_batched(self, batch):
        """Raise :class:`~prospect_sim.errors.SPSError` if the batched photometry cannot do ``batch``."""

    def library(self, library, kernel, batch):
        """The SSP library the lattice is built on (``library`` unless the component changes it)."""
        return library

    def bands_key(self, batch):
        """What the component's :class:`Bands` depend on, besides the filters (hashable)."""
        return None

    def bands(self, kernel, library, filters, batch):
        """A :class:`Bands` for ``filters``, or None if the lattice carries it all."""
        return None

    # -- what users see ----------------------------------------------------
    def describe(self, value, on, free):
        """One line for ``info`` when the model turns the component on, else None.

        ``value(key, default)`` reads a model parameter, ``on(key)`` says
        whether an amplitude is positive or varies, ``free`` names the
        parameters that vary.
        """
        return None

    def extras(self, flag, params, filter_names=()):
        """Simulation extras (name -> description with units) of a model with ``params``.

        ``flag(key)`` reads a boolean switch of the model; ``filter_names``
        are the bands simulated (for per-band extras).
        """
        return {}


class Bands:
    """A component's photometry for one filter set, N objects at a time.

    Attributes
    ----------
    summaries : tuple of str
        Quantities :meth:`add` writes to the photometry summary (per Msun
        formed), (N,) each, turned into simulation extras by :meth:`properties`.
    band_summaries : tuple of str
        The same, (N, B): one value per band, before ``flux_norm``.
    """

    summaries = ()
    band_summaries = ()
    #: Spectra of light the component adds through the lattice, as the stars'
    #: go (dust, birth clouds, IGM, filters), with weights of its own
    #: (:meth:`lattice_weights`): a library-like object with ``ages``
    #: (increasing stand-ins), ``logzsol``, ``wavelengths``, ``spectra``
    #: (Z, S, W) and ``mfrac``; None for none.
    spectra = None

    def lattice_weights(self, batch, w32, y32, zlo):
        """Blocks ``(rows, weights, young, lower)`` of the batch's weights of :attr:`spectra`.

        ``weights`` and ``young`` (n, 2, S) float32 pair weights (``young``
        None without birth clouds) of the objects ``rows`` (an index array,
        or a slice), at metallicity indices ``lower`` and ``lower + 1``.
        """
        return ()

    def add(self, batch, w32, y32, zlo, out, summary):
        """Add the band fluxes (before ``flux_norm``) of ``batch`` to ``out`` (N, B), in place.

        ``w32`` and ``y32`` are the SSP weights (N, 2, A) of all and of
        young stars (None without ``dust1``) at the metallicities ``zlo``
        and ``zlo + 1`` (:func:`pair_table`); ``summary`` maps each name
        of :attr:`summaries` to a (N,) array to fill, and of
        :attr:`band_summaries` to a (N, B) one.
        """
        raise NotImplementedError

    def properties(self, summary, batch, scale):
        """Extras (name -> (N,) values, in the units :meth:`Component.extras` says).

        ``scale`` is a :class:`Scale`: how the summaries become physical.
        """
        return {}


class Scale:
    """What turns a batch's summaries into physical quantities.

    Attributes
    ----------
    flux : ndarray (N,)
        ``flux_norm``: lattice band fluxes -> maggies.
    line : ndarray (N,)
        A luminosity per Msun formed (Lsun) -> observed flux, erg/s/cm^2
        (as ``SpecModel`` scales lines).
    mass_formed : ndarray (N,)
        Msun.
    maggies : ndarray (N, B)
        The total model photometry.
    filter_names : list of str
    """

    def __init__(self, flux, line, mass_formed, maggies, filter_names):
        self.flux = flux
        self.line = line
        self.mass_formed = mass_formed
        self.maggies = maggies
        self.filter_names = list(filter_names)


def pair_table(weights, zlo, table, n_age):
    """(N, X) float64: the pair weights (N, 2, A) of the first ``n_age`` ages times a (Z, A, X) table.

    Row ``n`` is ``w[n, 0] @ table[zlo[n]] + w[n, 1] @ table[zlo[n] + 1]``.

    >>> w = np.ones((1, 2, 3), dtype=np.float32)
    >>> pair_table(w, np.array([0]), np.ones((2, 3, 4)), 2).tolist()
    [[4.0, 4.0, 4.0, 4.0]]
    """
    out = np.empty((len(weights), table.shape[2]))
    for k in np.unique(zlo):
        rows = np.nonzero(zlo == k)[0]
        w = weights[rows, :, :n_age]
        out[rows] = w[:, 0] @ table[k, :n_age] + w[:, 1] @ table[k + 1, :n_age]
    return out


def slice_batch(batch, rows):
    """A shallow copy of ``batch`` with every per-object array restricted to ``rows``.

    ``rows`` is a slice or an integer index array.
    """
    part = copy.copy(batch)
    for key, value in vars(batch).items():
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == batch.n:
            setattr(part, key, value[rows])
    part.n = (len(range(*rows.indices(batch.n))) if isinstance(rows, slice) else len(rows))
    return part
