"""Catalogues for ``--infer --catalog FILE``: CSV, HDF5 or FITS, read in batches.

Columns, per filter of the parameter file's obs (``filter.name``, e.g. ``des_g``):

=====================  ==============================================
``<filter>_flux``      flux in maggies (may be negative)
``<filter>_unc``       1-sigma flux uncertainty in maggies
``<param>``            value of each ``--condition`` parameter (e.g. ``zred``)
=====================  ==============================================

A band is *missing* for a row when its flux or uncertainty is empty or NaN,
or its uncertainty is not positive. A row with a non-numeric value, or with
every band missing, or a missing condition, is *bad*: it gets NaN posteriors
and a flag, and the rest go on. A filter without its columns is an error.

Layouts: CSV with a header line; HDF5 with one 1-D dataset per column at the
root, or one table (compound dataset) whose fields are the columns; FITS with
the columns in the first binary table. Nothing is loaded whole: rows are read
``batch_rows`` at a time.
"""

import csv
import os

import numpy as np

from ..errors import InferenceError

__all__ = ["Catalog", "read_columns", "columns_for"]


def columns_for(filter_names, conditions=()):
    """Required column names, in order: fluxes, uncertainties, conditions."""
    return ([f"{f}_flux" for f in filter_names] + [f"{f}_unc" for f in filter_names]
            + list(conditions))


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


class Catalog:
    """A catalogue file opened for batched reading.

    Parameters
    ----------
    path : str
    columns : list of str
        Columns to read (see :func:`columns_for`).
    """

    def __init__(self, path, columns):
        self.path = str(path)
        self.columns = list(columns)
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
        missing = [c for c in self.columns if c not in self.available]
        if missing:
            raise InferenceError(
                f"--catalog {self.path!r} lacks the columns {', '.join(missing)}; it needs "
                "<filter>_flux and <filter>_unc (maggies) for every filter of the param "
                f"file's obs, and one column per --condition; it has {', '.join(self.available)}")

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
            lengths = {len(self._h5[c]) for c in self.columns if c in self.available}
            if len(lengths) > 1:
                raise InferenceError(f"--catalog {self.path!r}: columns have different "
                                     f"lengths {sorted(lengths)}")
            self.n_rows = lengths.pop() if lengths else 0
        self._read = self._read_hdf5

    def _read_hdf5(self, start, stop):
        if self._table is not None:
            block = self._table[start:stop]
            return {c: block[c] for c in self.columns}
        return {c: self._h5[c][start:stop] for c in self.columns}

    def _open_fits(self):
        from astropy.io import fits
        self._fits = fits.open(self.path, memmap=True)
        hdus = [h for h in self._fits if isinstance(h, fits.BinTableHDU)]
        if not hdus:
            raise InferenceError(f"--catalog {self.path!r} has no binary table")
        self._fits_data = hdus[0].data
        self.available = list(hdus[0].columns.names)
        self.n_rows = len(self._fits_data)
        self._read = lambda a, b: {c: np.asarray(self._fits_data[c][a:b]) for c in self.columns}

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
        index = [self.available.index(c) for c in self.columns]
        rows = [next(self._csv_rows) for _ in range(stop - start)]
        self._csv_pos = stop
        return {c: [r[i] if i < len(r) else "" for r in rows] for c, i in zip(self.columns, index)}

    # --- public ------------------------------------------------------------------------
    def read(self, start, stop):
        """Columns of rows [start, stop) as float arrays, and a non-numeric mask.

        Returns
        -------
        values : dict of str -> (n,) float array (NaN where empty)
        bad : (n,) bool array, True where some value is not a number
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
