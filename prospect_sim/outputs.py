"""Where every mode writes, and how it writes without losing anything.

``--outfile BASE`` (default: the parameter file's name without ``.py``, in
the current directory) names every output; :func:`path_for` appends a suffix
per kind of output:

=======================  ==========================================
kind                     path
=======================  ==========================================
``sims``                 ``BASE_sims.h5`` (``--simfile`` overrides)
``dynesty``              ``BASE_dynesty.h5``
``dynesty_checkpoint``   ``BASE_dynesty_checkpoint.pkl``
``nautilus``             ``BASE_nautilus.h5``
``nautilus_checkpoint``  ``BASE_nautilus_checkpoint.h5``
``emcee``                ``BASE_emcee.h5``
``optimize``             ``BASE_optimize.h5``
``<sampler>_catalog``    ``BASE_<sampler>_catalog.h5`` (``--catalog`` fits;
                         ``.part`` while it grows)
``flow``                 ``BASE_flow.pt`` (``--checkpoint`` overrides)
``posterior``            ``BASE_posterior.h5``
=======================  ==========================================

An existing output is never replaced silently (:func:`check_writable`), and a
whole file is written under a temporary name in the same folder and renamed
only once it is complete (:func:`atomic_path`), so an interrupted run leaves
either the old file or nothing, never half a file under the final name.
"""

import contextlib
import os
import uuid
from pathlib import Path

from .errors import UsageError

__all__ = ["KINDS", "base_for", "path_for", "check_writable", "require_existing",
           "atomic_path", "write_failed"]

#: Suffix of each kind of output, appended to the ``--outfile`` base.
KINDS = {
    "sims": "_sims.h5",
    "dynesty": "_dynesty.h5",
    "dynesty_checkpoint": "_dynesty_checkpoint.pkl",
    "nautilus": "_nautilus.h5",
    "nautilus_checkpoint": "_nautilus_checkpoint.h5",
    "emcee": "_emcee.h5",
    "optimize": "_optimize.h5",
    "dynesty_catalog": "_dynesty_catalog.h5",
    "nautilus_catalog": "_nautilus_catalog.h5",
    "emcee_catalog": "_emcee_catalog.h5",
    "optimize_catalog": "_optimize_catalog.h5",
    "flow": "_flow.pt",
    "posterior": "_posterior.h5",
}

#: Kinds whose path a dedicated flag overrides (flag name in ``run_params``).
_OVERRIDES = {"sims": "simfile", "flow": "checkpoint"}


def base_for(run_params):
    """The base name of every output: ``--outfile`` or the parameter file's stem.

    Parameters
    ----------
    run_params : dict
        Parsed command line; reads ``outfile`` and ``param_file``.

    Returns
    -------
    str
        ``--outfile`` when given, else the parameter file's name without
        ``.py`` (in the current directory), else ``"prospect_sim"``.
    """
    outfile = run_params.get("outfile")
    if outfile:
        return str(outfile)
    param_file = run_params.get("param_file")
    if param_file:
        return Path(param_file).stem
    return "prospect_sim"


def path_for(run_params, kind):
    """Path of the output of one kind (table in the module docstring).

    >>> path_for({"outfile": "out/gal", "simfile": None}, "dynesty")
    'out/gal_dynesty.h5'
    >>> path_for({"outfile": "out/gal", "simfile": "big.h5"}, "sims")
    'big.h5'
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {sorted(KINDS)}")
    override = _OVERRIDES.get(kind)
    if override and run_params.get(override):
        return str(run_params[override])
    return base_for(run_params) + KINDS[kind]


def check_writable(path, run_params, resumable=True):
    """Refuse to replace an existing output unless asked to.

    Parameters
    ----------
    path : str
        The output about to be written.
    run_params : dict
        Reads ``overwrite`` and ``resume``.
    resumable : bool
        Whether this output can be continued with ``--resume``; if not,
        ``--resume`` does not allow replacing it.

    Raises
    ------
    UsageError
        When ``path`` exists without ``--overwrite`` (or ``--resume`` for a
        resumable output), or when its folder does not exist or cannot be
        written (probed with a small file, before any long work).
    """
    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: folder {folder}/ does not exist; "
                         f"create it or choose another --outfile")
    _probe(folder, path)
    if not Path(path).exists():
        return
    if run_params.get("overwrite"):
        return
    if resumable and run_params.get("resume"):
        return
    how = "--overwrite to replace it or --resume to continue it" if resumable \
        else "--overwrite to replace it"
    raise UsageError(f"output {path} already exists; pass {how}, "
                     f"or choose another --outfile")


def _probe(folder, path):
    """Write and remove a small file in ``folder``: an unwritable folder fails now, not after the work."""
    import tempfile
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".prospect_sim_probe_") as fh:
            fh.write(b"probe")
            fh.flush()
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err} in {folder}/; "
                         f"choose another --outfile") from err


def require_existing(path, flag, what):
    """Raise :class:`UsageError` naming ``flag`` when an input file is missing.

    Parameters
    ----------
    path : str
        The input file.
    flag : str
        The flag that sets it, e.g. ``"--simfile"``.
    what : str
        What the file is and which mode makes it, for the message.
    """
    if not Path(path).is_file():
        raise UsageError(f"{what} {path} does not exist; give the right file with "
                         f"{flag} or make it first")


def write_failed(path, err, error=UsageError, what="output",
                 fix="free space or choose another --outfile"):
    """The one-line error for a write of ``path`` that failed with the ``OSError`` ``err``.

    Names the path and the cause (full disk, quota, read-only folder), e.g.
    ``cannot write checkpoint x.pt: No space left on device (errno 28); <fix>``.
    Returns an ``error`` instance for the caller to raise ``from err``.
    """
    cause = getattr(err, "strerror", None) or " ".join(str(err).split()) or type(err).__name__
    if getattr(err, "errno", None):
        cause = f"{cause} (errno {err.errno})"
    return error(f"cannot write {what} {path}: {cause}; {fix}")


@contextlib.contextmanager
def atomic_path(path, error=None, what="output"):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary name is in the same folder (so the rename is atomic) and is
    removed if the body raises, leaving any previous ``path`` untouched.
    With ``error`` (a :class:`~prospect_sim.errors.ProspectSimError` type),
    an ``OSError`` of the body or the rename (full disk, quota, read-only) is
    raised as that type, naming ``path`` and the cause (:func:`write_failed`).

    >>> import tempfile
    >>> final = Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(final) as tmp:
    ...     _ = Path(tmp).write_text("done")
    >>> final.read_text()
    'done'
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield str(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if error is None:
            raise
        raise write_failed(path, err, error, what) from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
