"""Checking and broadcasting GridSPS parameters.

A batch of N parameter sets is a dict: scalars broadcast to every object,
``(N,)`` arrays give one value per object; for ``sfh=3`` ``mass`` is
``(nbin,)`` or ``(N, nbin)`` and ``agebins`` ``(nbin, 2)`` or ``(N, nbin, 2)``.
:func:`normalize` turns it into a :class:`Batch` of float arrays and raises
:class:`~prospect_sim.errors.SPSError` for values the library cannot cover.
"""

import warnings

import numpy as np

from ..errors import NotBatchedError, SPSError
from .checks import broadcast as _broadcast
from .checks import check_range as _check_range
from .checks import scalar_option
from . import components as _components
from .dust import DUST_TYPES

__all__ = ["Batch", "normalize", "require_shared", "defaults", "grid_ranges"]

#: FSPS defaults of the float parameters of the stars, dust and IGM.
_STELLAR = {"zred": 0.0, "tage": 1.0, "tau": 1.0, "logzsol": 0.0, "dust2": 0.0,
            "dust1": 0.0, "dust_index": -0.7, "dust1_index": -1.0,
            "dust_tesc": 7.0, "igm_factor": 1.0, "mass": 1.0}


def defaults():
    """FSPS defaults of every float parameter GridSPS reads, the components' included (dict)."""
    return {**_STELLAR, **_components.parameters()}
SFH_TYPES = {0: "single burst", 1: "tau", 3: "non-parametric (agebins)", 4: "delayed tau"}

# parameters GridSPS cannot vary: warn once when they ask for something else
_IGNORED_TRUE = ("add_agb_dust_model",)
_IGNORED_NONZERO = ("frac_nodust", "frac_obrun", "sigma_smooth_ssp")


def grid_ranges(library):
    """Parameter -> (min, max) that the grids cover (values outside are refused).

    >>> from prospect_sim.sps import load_library
    >>> grid_ranges(load_library("bc03"))["gas_logu"]
    (-4.0, 0.0)
    """
    out = {"logzsol": (float(library.logzsol[0]), float(library.logzsol[-1])),
           "tage": (0.0, library.max_age / 1e9), "dust2": (0.0, np.inf),
           "dust1": (0.0, np.inf), "zred": (0.0, np.inf)}
    for component in _components.COMPONENTS:
        out.update(component.ranges(library))
    return out


class Batch:
    """N checked parameter sets: attributes are float arrays of shape (N,).

    ``sfh``, ``dust_type`` are ints; ``bin_mass`` (N, nbin) and ``agebins``
    (N, nbin, 2) only for ``sfh=3``; ``mass`` is the total mass formed (N,);
    ``lumdist`` is None or (N,) Mpc; ``igm`` bool; ``mstar`` whether ``mass``
    is surviving stellar mass (``mass_units="mstar"``); every component's
    float parameters (N,) and the switches its ``read`` sets: ``nebular``,
    ``neb_continuum``, ``lines_in_spec`` (:mod:`.nebular`), ``dust_emission``
    (:mod:`.dust_emission`), ``agn`` (:mod:`.agn`; ``fagn`` is zero without
    ``add_agn_dust``).  ``varying`` names the parameters that change from
    call to call (a fit's free ones), for the batched photometry's tables.
    """

    varying = frozenset()


    def __repr__(self):
        return f"Batch(n={self.n}, sfh={self.sfh}, dust_type={self.dust_type})"


def _batch_size(params, sfh, single):
    if single:
        return 1
    sizes = set()
    for key in defaults():
        if key not in params or (key == "mass" and sfh == 3):
            continue
        arr = np.asarray(params[key])
        if arr.size > 1:
            sizes.add(arr.shape[0] if arr.ndim else 1)
    if sfh == 3:
        mass = np.asarray(params.get("mass", 1.0), dtype=float)
        if mass.ndim == 2:
            sizes.add(mass.shape[0])
        agebins = np.asarray(params.get("agebins", np.zeros((1, 2))))
        if agebins.ndim == 3:
            sizes.add(agebins.shape[0])
    if len(sizes) > 1:
        raise SPSError(f"Batched parameters disagree on the number of objects: sizes {sorted(sizes)}.")
    return sizes.pop() if sizes else 1


def normalize(params, library, single=False, warned=None):
    """Check ``params`` against ``library`` and broadcast them to a :class:`Batch`.

    Parameters
    ----------
    params : dict
        Parameter names as in FSPS/Prospector (see module docstring).
    library : SSPLibrary
    single : bool
        Prospector's per-object call: vectors (e.g. ``mass`` of ``sfh=3``)
        belong to one object.
    warned : set or None
        Names already warned about (each is warned once per GridSPS).

    Returns
    -------
    Batch
    """
    warned = set() if warned is None else warned
    b = Batch()
    b.sfh = int(scalar_option(params, "sfh", 4))
    if b.sfh not in SFH_TYPES:
        raise SPSError(f"sfh={b.sfh} is not supported by GridSPS: allowed "
                       + ", ".join(f"{k} ({v})" for k, v in SFH_TYPES.items()) + ".")
    b.dust_type = int(scalar_option(params, "dust_type", 0))
    if b.dust_type not in DUST_TYPES:
        raise SPSError(f"dust_type={b.dust_type} is not supported by GridSPS: allowed "
                       + ", ".join(f"{k} ({v})" for k, v in DUST_TYPES.items()) + ".")
    b.igm = bool(scalar_option(params, "add_igm_absorption", True))
    units = scalar_option(params, "mass_units", "mformed")
    if units not in ("mformed", "mstar"):
        raise SPSError(f"mass_units={units!r}: expected 'mformed' or 'mstar'.")
    b.mstar = units == "mstar"
    n = b.n = _batch_size(params, b.sfh, single)

    for key, default in defaults().items():
        if key != "mass":
            setattr(b, key, _broadcast(params.get(key, default), n, key))
    b.lumdist = None if "lumdist" not in params else _broadcast(params["lumdist"], n, "lumdist")

    zlo, zhi = library.logzsol[0], library.logzsol[-1]
    _check_range("logzsol", b.logzsol, zlo, zhi)
    _check_range("zred", b.zred, 0.0, np.inf)
    _check_range("dust2", b.dust2, 0.0, np.inf)
    _check_range("dust1", b.dust1, 0.0, np.inf)
    for component in _components.COMPONENTS:
        component.read(params, b, library)
    for key in ("dust_index", "dust1_index", "dust_tesc", "igm_factor"):
        _check_range(key, getattr(b, key), -np.inf, np.inf)
    tmax = library.max_age / 1e9
    if b.sfh == 3:
        _normalize_bins(params, b, library, single)
    else:
        _check_range("tage", b.tage, 0.0, tmax, lo_open=b.sfh != 0, unit=" Gyr")
        if b.sfh in (1, 4):
            _check_range("tau", b.tau, 0.0, np.inf, lo_open=True, unit=" Gyr")
        mass = np.asarray(params.get("mass", 1.0), dtype=float)
        if single and mass.size > 1:
            raise SPSError(f"mass has {mass.size} components; GridSPS models one stellar "
                           "population per object for sfh 0, 1, 4 (use sfh=3 for binned masses).")
        b.mass = _broadcast(mass, n, "mass")
        _check_range("mass", b.mass, 0.0, np.inf)
    _warn_unsupported(params, library, warned)
    return b


def require_shared(batch, varying=()):
    """Raise :class:`NotBatchedError` unless the batch shares the values its tables are built for.

    One ``igm_factor`` (AGN, whose photometry is tabulated with the IGM):
    the components' :meth:`~.component.Component.shared` parameters.

    Tables built per value need the value shared by the batch (the
    per-object path always has it).  ``varying`` names parameters that change from one
    call to the next (a model's free parameters): none of these may be
    among them either, or every call would build new tables.
    """
    keys = [key for component in _components.COMPONENTS for key in component.shared(batch)]
    for key in keys:
        if key in varying:
            raise NotBatchedError(f"{key} varies from call to call, and the batched "
                                  "photometry builds its tables per value of it: keep it "
                                  "fixed, or predict per object (model.predict).")
        value = getattr(batch, key)
        if not np.all(value == value[0]):
            raise NotBatchedError(f"{key} must be the same for every object of a batch (its tables "
                           f"are built per value); got {np.unique(value)[:4]}...: keep it "
                           "fixed, or predict per object (model.predict).")


def _normalize_bins(params, b, library, single):
    n = b.n
    if "agebins" not in params:
        raise SPSError("sfh=3 needs 'agebins' (log10 yr lookback edges, shape (nbin, 2)).")
    agebins = np.asarray(params["agebins"], dtype=float)
    if agebins.ndim == 2:
        agebins = np.broadcast_to(agebins, (n,) + agebins.shape)
    if agebins.ndim != 3 or agebins.shape[-1] != 2:
        raise SPSError(f"agebins has shape {agebins.shape}; expected (nbin, 2) or (N, nbin, 2) "
                       "in log10(yr).")
    mass = np.asarray(params.get("mass", 1.0), dtype=float)
    if mass.ndim <= 1:
        mass = np.broadcast_to(mass.reshape(-1), (n, mass.size))
    if mass.shape != agebins.shape[:2]:
        raise SPSError(f"sfh=3: mass has shape {mass.shape} but agebins {agebins.shape}; "
                       "expected one mass per age bin.")
    lo, hi = agebins[..., 0], agebins[..., 1]
    if not (np.all(np.isfinite(agebins)) and np.all(hi > lo)
            and np.all(lo[:, 1:] >= hi[:, :-1] - 1e-9)):
        raise SPSError(f"agebins must be increasing (each bin's upper edge above its lower "
                       f"edge, bins in order of lookback time), got {agebins[0].tolist()}.")
    top = np.log10(library.max_age)
    if np.any(hi > top + 1e-9):
        raise SPSError(f"agebins reach log10(age/yr)={hi.max():.4g}, older than the oldest SSP "
                       f"of library {library.name!r}: allowed up to {top:.4g}.")
    if np.any(mass < 0) or not np.all(np.isfinite(mass)) or np.any(mass.sum(axis=1) <= 0):
        raise SPSError("sfh=3: mass per bin must be finite, >= 0 and not all zero.")
    b.agebins = agebins
    b.bin_mass = mass
    b.mass = mass.sum(axis=1)
    b.tage = 10**hi.max(axis=1) / 1e9


def _warn_unsupported(params, library, warned):
    notes = []
    if "imf_type" in params and library.imf_type is not None:
        value = int(np.atleast_1d(params["imf_type"]).flat[0])
        if value != library.imf_type:
            notes.append(("imf_type", f"imf_type={value} is ignored: library {library.name!r} "
                          f"has a fixed {library.imf} IMF (imf_type={library.imf_type})."))
    for key in _IGNORED_TRUE:
        if key in params and bool(np.atleast_1d(params[key]).flat[0]):
            notes.append((key, f"{key}=True is ignored: GridSPS has no dust shells "
                          "around AGB stars."))
    for key in _IGNORED_NONZERO:
        if key in params and np.any(np.asarray(params[key], dtype=float) != 0):
            notes.append((key, f"{key} is ignored by GridSPS (treated as 0)."))
    for key, message in notes:
        if key not in warned:
            warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=4)
