"""``python -m prospect_sim info FILE``: describe a simulation file and check it.

:func:`describe` opens the file read-only, checks its structure, reads every
complete chunk against its checksum, and returns a one-screen description:
provenance, the fixed parameters, progress, invalid rows, parameter ranges
against their priors, photometry ranges, and a content digest (SHA-256 of the
datasets, equal for files with the same draws whatever the number of workers
that made them).
"""

import hashlib
import json
import os

import numpy as np

from .store import SimulationStore

__all__ = ["describe", "content_digest"]


def describe(path):
    """A one-screen description of the simulation file at ``path``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str

    Raises
    ------
    StoreError
        Missing, unreadable, truncated or corrupt file (a done chunk whose
        data fail their checksum).
    """
    path = str(path)
    with SimulationStore(path) as store:
        report = store.verify()
        attrs = store.attrs
        text = store.text_attr
        done = store.chunks_done
        labels, filters = store.theta_labels, store.filter_names
        ranges = _ranges(store, done)
        digest = content_digest(store)
        prior = store.prior
        n, k_done, k_all = store.n_samples, int(done.sum()), store.n_chunks
        lines = [f"simulation file {path} ({os.path.getsize(path) / 1e6:.1f} MB), "
                 f"schema {int(attrs['schema_version'])}",
                 f"  made by:   {text('param_file', '?')} (sha256 "
                 f"{(text('param_file_sha256') or '?')[:12]})",
                 f"  created:   {text('created', '?')}; finished: "
                 f"{text('finished') or 'no'}"
                 + (f"; last resumed: {text('last_resumed')}" if text('last_resumed') else ""),
                 f"  sps:       {text('sps', '?')}, {text('forward_path', '?')} path",
                 f"  fixed:     {_fixed(text('fixed_config'))}",
                 f"  draws:     seed {store.seed}, design {text('design', 'random')}, "
                 f"chunk_size {store.chunk_size}",
                 f"  rows:      {report['rows_done']:,} of {n:,} done ({k_done}/{k_all} chunks)"
                 + ("" if k_done == k_all else "; incomplete: continue with --resume"),
                 f"  invalid:   {report['invalid']:,} rows (non-finite photometry; "
                 "/valid is False)",
                 f"  integrity: OK (structure, and checksums of {k_done} chunks)",
                 f"  content:   sha256 {digest[:16]}",
                 f"  theta ({len(labels)}), over valid rows:",
                 f"    {'name':<16s}{'prior':<14s}{'bounds':<26s}{'min':>12s}{'max':>12s}"]
        for j, label in enumerate(labels):
            info = prior.get(label, {})
            bounds = info.get("bounds", ["?", "?"])
            lo, hi = ranges["theta"][0][j], ranges["theta"][1][j]
            lines.append(f"    {label:<16s}{info.get('distribution', '?'):<14s}"
                         f"{'[%s, %s]' % tuple(_num(b) for b in bounds):<26s}"
                         f"{_num(lo):>12s}{_num(hi):>12s}")
        lines.append(f"  photometry ({len(filters)} bands, AB mag over valid rows):")
        with np.errstate(all="ignore"):
            faint = -2.5 * np.log10(ranges["phot"][0])
            bright = -2.5 * np.log10(ranges["phot"][1])
        for b, name in enumerate(filters):
            lines.append(f"    {name:<16s}{_num(bright[b]):>10s} .. {_num(faint[b])}")
        extras = store.extras
        units = json.loads(text("extras_units") or "{}")
        if extras:
            lines.append("  extras:    " + ", ".join(
                f"{e} ({units[e].split(',')[-1].strip()})" if "," in units.get(e, "") else e
                for e in extras))
    return "\n".join(lines)


def content_digest(store):
    """SHA-256 of the datasets' bytes (theta, phot, extras, valid, chunks_done), streamed.

    Two files with the same draws and physics have the same digest, whatever
    the number of workers or ranks, interruptions and resumes.
    """
    h = hashlib.sha256()
    f = store.file
    step = max(1, store.chunk_size)
    for key in ["theta", "phot", "valid"] + ["extras/" + e for e in store.extras]:
        dset = f[key]
        h.update(key.encode())
        for start in range(0, dset.shape[0], step):
            h.update(dset[start:start + step].tobytes())
    h.update(f["chunks_done"][()].tobytes())
    return h.hexdigest()


def _ranges(store, done):
    """Per-column min and max of theta and phot over valid rows of done chunks."""
    f = store.file
    D, B = len(store.theta_labels), len(store.filter_names)
    out = {"theta": [np.full(D, np.inf), np.full(D, -np.inf)],
           "phot": [np.full(B, np.inf), np.full(B, -np.inf)]}
    for k in np.flatnonzero(done):
        rows = store.chunk_rows(k)
        valid = f["valid"][rows]
        if not valid.any():
            continue
        for key in ("theta", "phot"):
            block = f[key][rows][valid]
            out[key][0] = np.minimum(out[key][0], block.min(axis=0))
            out[key][1] = np.maximum(out[key][1], block.max(axis=0))
    return out


def _fixed(config_text):
    """'dust1=dust1_from_dust2(), dust_type=0, sfh=4 (SpecModel)' from ``fixed_config``."""
    if not config_text:
        return "not recorded (a file made before fixed_config)"
    try:
        config = json.loads(config_text)
    except ValueError:
        return "unreadable"
    items = []
    for name, value in sorted((config.get("fixed") or {}).items()):
        if isinstance(value, dict) and "depends_on" in value:
            text = str(value["depends_on"]).rsplit(".", 1)[-1] + "()"
        elif isinstance(value, dict):
            text = str(next(iter(value.values()), "?"))
        else:
            text = json.dumps(value) if not isinstance(value, str) else value
        items.append(f"{name}={text if len(text) <= 40 else text[:37] + '...'}")
    return (", ".join(items) or "none") + f" ({config.get('model', '?')})"


def _num(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not np.isfinite(x):
        return str(x)
    return f"{x:.4g}"
