"""Catalogues for ``--infer --catalog FILE``: CSV, HDF5 or FITS, read in batches.

Columns, per filter of the parameter file's obs (``filter.name``, e.g. ``des_g``):

=====================  ==============================================
``<filter>_flux``      flux in maggies (may be negative)
``<filter>_unc``       1-sigma flux uncertainty in maggies
``<filter>_mag``       or: AB magnitude (used when the flux columns are absent)
``<filter>_magerr``    and its 1-sigma uncertainty, mag
``<param>``            value of each ``--condition`` parameter (e.g. ``zred``)
=====================  ==============================================

A magnitude becomes the flux ``10**(-0.4 mag)`` maggies and its error the
flux uncertainty ``0.4 ln(10) flux magerr`` (first order); a magnitude
outside (-50, 50) (the 99 / -99 of non-detections) counts as missing.
A column map (``--columns map.json``, :func:`load_column_map`) names the
catalogue's own columns: ``{"des_g_flux": "FLUX_G", "des_g_unc":
"FLUXERR_G", "zred": "z_spec"}``; its keys are the names above.

A band is *missing* for a row when its flux or uncertainty is empty or NaN,
or its uncertainty is not positive. A row with a non-numeric value, or with
every band missing, or a missing condition, is *bad*: it gets NaN posteriors
and a flag, and the rest go on. A filter without its columns is an error.

Other columns (an id, ``--keep_columns``) are read as they are stored:
numbers stay numbers; a CSV column is an integer when every value is one, a
float when every value is a number or empty, else text.

Layouts: CSV with a header line; HDF5 with one 1-D dataset per column at the
root, or one table (compound dataset) whose fields are the columns; FITS with
the columns in the first binary table. Nothing is loaded whole: rows are read
``batch_rows`` at a time.
"""

import csv
import json
import os

import numpy as np

from ..errors import InferenceError, UsageError

__all__ = ["Catalog", "read_columns", "columns_for", "photometry_columns", "load_column_map",
           "to_maggies", "ID_COLUMNS", "id_column"]

#: Id columns looked for when ``--id_column`` is not given, in order.
ID_COLUMNS = ("id", "objid", "ID", "OBJID")

def id_column(available, given, path):
    """The id column of a catalogue with columns ``available``, or None (row numbers).

    ``given`` (``--id_column``) must be one of them; without it the first of
    :data:`ID_COLUMNS` present, if any.
    """
    if given is None:
        return next((c for c in ID_COLUMNS if c in available), None)
    if given not in available:
        raise UsageError(f"--id_column {given}: no such column in {path} (it has "
                         f"{', '.join(available)})")
    return given


#: Magnitudes at or beyond this (in absolute value) are non-detection markers: missing.
MAG_LIMIT = 50.0


def columns_for(filter_names, conditions=()):
    """Required column names, in order: fluxes, uncertainties, conditions."""
    return ([f"{f}_flux" for f in filter_names] + [f"{f}_unc" for f in filter_names]
            + list(conditions))


def load_column_map(path):
    """The ``--columns`` JSON file: ``{our name: catalogue column}`` (str -> str)."""
    try:
        with open(path) as fh:
            found = json.load(fh)
    except OSError as err:
        raise UsageError(f"--columns {path!r}: cannot read it ({err.strerror or err})") from None
    except ValueError as err:
        raise UsageError(f"--columns {path!r} is not JSON ({err}); expected an object like "
                         '{"des_g_flux": "FLUX_G", "des_g_unc": "FLUXERR_G"}') from None
    if not isinstance(found, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in found.items()):
        raise UsageError(f"--columns {path!r}: expected a JSON object of column names "
                         '(our name -> catalogue column, e.g. {"des_g_flux": "FLUX_G"}); '
                         f"got {json.dumps(found)[:200]}")
    return found


def photometry_columns(available, filter_names, conditions=(), column_map=None, path="catalogue"):
    """Which catalogue columns hold each band and condition.

    Parameters
    ----------
    available : list of str
        The catalogue's columns.
    filter_names : list of str
    conditions : list of str
    column_map : dict, optional
        ``{our name: catalogue column}`` (:func:`load_column_map`).

    Returns
    -------
    bands : list of (kind, value column, error column)
        ``kind`` is ``"flux"`` (maggies) or ``"mag"`` (AB), one per filter.
    conditions : list of str
        The catalogue column of each condition.
    """
    cmap = dict(column_map or {})
    known = {f"{f}_{s}" for f in filter_names for s in ("flux", "unc", "mag", "magerr")}
    known |= set(conditions)
    unknown = sorted(set(cmap) - known)
    if unknown:
        raise UsageError(f"--columns: unknown name{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; its keys are <filter>_flux, <filter>_unc, "
                         "<filter>_mag, <filter>_magerr for the filters "
                         f"{', '.join(filter_names)}"
                         + (f" and the conditions {', '.join(conditions)}" if conditions else ""))
    absent = sorted(f"{k} -> {v}" for k, v in cmap.items() if v not in available)
    if absent:
        raise InferenceError(f"--columns: {path!r} has no column {'; '.join(absent)}; it has "
                             f"{', '.join(available)}")
    col = lambda name: cmap.get(name, name)  # noqa: E731
    bands, lacking = [], []
    for f in filter_names:
        for kind, err in (("flux", "unc"), ("mag", "magerr")):
            a, b = col(f"{f}_{kind}"), col(f"{f}_{err}")
            if a in available and b in available:
                bands.append((kind, a, b))
                break
        else:
            lacking.append(f)
    cond = [col(c) for c in conditions]
    lacking_cond = [c for c, name in zip(conditions, cond) if name not in available]
    if lacking or lacking_cond:
        need = [c for s in ("flux", "unc") for f in lacking
                if (c := col(f"{f}_{s}")) not in available] + lacking_cond
        raise InferenceError(
            f"--catalog {path!r} lacks the columns {', '.join(need)}; it needs "
            "<filter>_flux and <filter>_unc (maggies), or <filter>_mag and <filter>_magerr "
            "(AB), for every filter of the param file's obs, and one column per --condition "
            "(--columns map.json names columns called otherwise); it has "
            f"{', '.join(available)}")
    return bands, cond


def to_maggies(kind, value, error):
    """Flux and uncertainty (maggies) of a band's two columns; NaN where missing.

    ``kind`` ``"flux"``: as given. ``"mag"``: AB magnitudes; ``|mag| >= 50``
    or a non-positive error is missing.
    """
    value, error = np.asarray(value, float), np.asarray(error, float)
    if kind == "flux":
        return value, error
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(value) & (np.abs(value) < MAG_LIMIT) & np.isfinite(error) & (error > 0)
        flux = np.where(ok, 10 ** (-0.4 * np.where(ok, value, 0.0)), np.nan)
        return flux, np.where(ok, 0.4 * np.log(10.0) * flux * error, np.nan)


def _to_float(values):
    """Strings/objects -> (float array, non-numeric mask); empty means NaN, not bad."""
    out = np.full(len(values), np.nan)
    bad = np.zeros(len(values), bool)
    for i, v in enumerate(values):
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "nan", "null", "na")):
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            bad[i] = True
    return out, bad


def _text(values):
    return np.array([v.decode(errors="replace").strip() if isinstance(v, bytes)
                     else str(v).strip() for v in values], dtype=object)


def _kind_of(dtype):
    """The stored kind of a column of numpy ``dtype``: int64, float64, bool or object (text)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return np.dtype(np.int64) if dtype.kind == "i" or dtype.itemsize < 8 else dtype
    if dtype.kind == "f":
        return np.dtype(np.float64)
    if dtype.kind == "b":
        return np.dtype(bool)
    return np.dtype(object)


def _sniff(values):
    """The kind of a CSV column from its text values (see the module docstring)."""
    kind = np.dtype(np.int64)
    for v in values:
        v = v.strip()
        if kind == np.int64:
            try:
                int(v)
                continue
            except ValueError:
                kind = np.dtype(np.float64)
        if v.lower() in ("", "nan", "null", "na"):
            continue
        try:
            float(v)
        except ValueError:
            return np.dtype(object)
    return kind


class Catalog:
    """A catalogue file opened for batched reading.

    Parameters
    ----------
    path : str
    columns : list of str
        Numeric columns to read (see :func:`columns_for`).
    extra : list of str
        Columns read as stored (ids, ``--keep_columns``): :attr:`extra_dtypes`.
    """

    def __init__(self, path, columns, extra=()):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise InferenceError(f"--catalog {self.path!r}: no such file")
        ext = os.path.splitext(self.path)[1].lower()
        if ext in (".h5", ".hdf5", ".hdf"):
            self._open_hdf5()
        elif ext in (".fits", ".fit", ".fits.gz", ".fz") or self.path.endswith(".fits.gz"):
            self._open_fits()
        elif ext in (".csv", ".txt", ".dat"):
            self._open_csv()
        else:
            raise InferenceError(f"--catalog {self.path!r}: unknown format {ext!r}; expected "
                                 ".csv, .h5/.hdf5 or .fits")
        self.use(columns, extra)

    def use(self, columns, extra=()):
        """Read ``columns`` (numbers) and ``extra`` (as stored) from now on."""
        self.columns, self.extra = list(columns), list(dict.fromkeys(extra))
        missing = [c for c in self.columns if c not in self.available]
        if missing:
            raise InferenceError(
                f"--catalog {self.path!r} lacks the columns {', '.join(missing)}; it needs "
                "<filter>_flux and <filter>_unc (maggies) for every filter of the param "
                f"file's obs, and one column per --condition; it has {', '.join(self.available)}")
        missing = [c for c in self.extra if c not in self.available]
        if missing:
            raise InferenceError(f"--catalog {self.path!r} has no column {', '.join(missing)} "
                                 f"(it has {', '.join(self.available)})")
        self._all = list(dict.fromkeys(self.columns + self.extra))
        if getattr(self, "_h5", None) is not None and self._table is None:
            lengths = {len(self._h5[c]) for c in self._all}
            if len(lengths) > 1:
                raise InferenceError(f"--catalog {self.path!r}: columns have different "
                                     f"lengths {sorted(lengths)}")
            self.n_rows = lengths.pop() if lengths else 0
        self.extra_dtypes = {c: self._stored_kind(c) for c in self.extra}
        self._csv_pos = None
        return self

    # --- formats -----------------------------------------------------------------------
    def _open_hdf5(self):
        import h5py
        self._h5 = h5py.File(self.path, "r")
        tables = [k for k, v in self._h5.items() if isinstance(v, h5py.Dataset)
                  and v.dtype.names]
        if tables:
            self._table = self._h5[tables[0]]
            self.available = list(self._table.dtype.names)
            self.n_rows = len(self._table)
        else:
            self._table = None
            self.available = [k for k, v in self._h5.items()
                              if isinstance(v, h5py.Dataset) and v.ndim == 1]
        self._read = self._read_hdf5

    def _read_hdf5(self, start, stop):
        if self._table is not None:
            block = self._table[start:stop]
            return {c: block[c] for c in self._all}
        return {c: self._h5[c][start:stop] for c in self._all}

    def _open_fits(self):
        from astropy.io import fits
        self._fits = fits.open(self.path, memmap=True)
        hdus = [h for h in self._fits if isinstance(h, fits.BinTableHDU)]
        if not hdus:
            raise InferenceError(f"--catalog {self.path!r} has no binary table")
        self._fits_data = hdus[0].data
        self.available = list(hdus[0].columns.names)
        self.n_rows = len(self._fits_data)
        self._read = lambda a, b: {c: np.asarray(self._fits_data[c][a:b]) for c in self._all}

    def _open_csv(self):
        with open(self.path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise InferenceError(f"--catalog {self.path!r} is empty; expected a header line")
            self.available = [h.strip() for h in header]
            self.n_rows = sum(1 for row in reader if row)
        self._csv_pos = None
        self._read = self._read_csv

    def _read_csv(self, start, stop):
        # sequential reads continue from where the last one stopped
        if self._csv_pos != start:
            if getattr(self, "_csv_fh", None) is not None:
                self._csv_fh.close()
            self._csv_fh = open(self.path, newline="")
            self._csv_reader = csv.reader(self._csv_fh)
            next(self._csv_reader)
            self._csv_rows = (r for r in self._csv_reader if r)
            for _ in range(start):
                next(self._csv_rows)
        index = [self.available.index(c) for c in self._all]
        rows = [next(self._csv_rows) for _ in range(stop - start)]
        self._csv_pos = stop
        return {c: [r[i] if i < len(r) else "" for r in rows] for c, i in zip(self._all, index)}

    def _stored_kind(self, name):
        if getattr(self, "_table", None) is not None:
            return _kind_of(self._table.dtype[name])
        if getattr(self, "_h5", None) is not None:
            return _kind_of(self._h5[name].dtype)
        if getattr(self, "_fits_data", None) is not None:
            return _kind_of(self._fits_data.dtype[name])
        i = self.available.index(name)
        with open(self.path, newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            return _sniff(r[i] if i < len(r) else "" for r in reader if r)

    # --- public ------------------------------------------------------------------------
    def read_block(self, start, stop):
        """Rows [start, stop): the numeric columns, their non-numeric mask, the extras.

        Returns
        -------
        values : dict of str -> (n,) float array (NaN where empty)
        bad : (n,) bool array, True where some value is not a number
        extra : dict of str -> (n,) array of :attr:`extra_dtypes` (text as ``str`` objects)
        """
        raw = self._read(start, stop)
        values, bad = {}, np.zeros(stop - start, bool)
        for c in self.columns:
            col = np.asarray(raw[c])
            if col.dtype.kind in "fiub":
                values[c] = col.astype(float)
            else:
                values[c], nonnum = _to_float(list(col))
                bad |= nonnum
        extra = {}
        for c in self.extra:
            kind, col = self.extra_dtypes[c], raw[c]
            if kind == object:
                extra[c] = _text(col)
            elif np.asarray(col).dtype.kind in "fiub":
                extra[c] = np.asarray(col).astype(kind)
            elif kind == np.int64:   # CSV text, sniffed as integers
                extra[c] = np.array([int(v) for v in col], dtype=np.int64)
            else:
                extra[c] = _to_float(list(col))[0].astype(kind)
        return values, bad, extra

    def read(self, start, stop):
        """Columns of rows [start, stop) as float arrays, and a non-numeric mask.

        Returns
        -------
        values : dict of str -> (n,) float array (NaN where empty)
        bad : (n,) bool array, True where some value is not a number
        """
        values, bad, _ = self.read_block(start, stop)
        return values, bad

    def read_text(self, start, stop):
        """Columns of rows [start, stop) as lists of str (ids and names, as written)."""
        raw = self._read(start, stop)
        return {c: [v.decode(errors="replace").strip() if isinstance(v, bytes) else str(v).strip()
                    for v in raw[c]] for c in self.columns}

    def close(self):
        for name in ("_h5", "_fits", "_csv_fh"):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_columns(path, columns):
    """Whole columns of a (small) catalogue as float arrays."""
    with Catalog(path, columns) as cat:
        values, _ = cat.read(0, cat.n_rows)
    return values
