"""Output and input paths of the amortised modes (through :mod:`prospect_sim.outputs`)."""

import os

from ..errors import UsageError

_SUFFIX = {"sims": "_sims.h5", "flow": "_flow.pt", "posterior": "_posterior.h5"}
_OVERRIDE = {"sims": "simfile", "flow": "checkpoint"}


def path_for(run_params, kind):
    """``outputs.path_for(run_params, kind)``; a local fallback with the same
    naming rules while the driver's module is not importable."""
    try:
        from ..outputs import path_for as _path_for
    except ImportError:
        _path_for = None
    if _path_for is not None:
        return str(_path_for(run_params, kind))
    override = _OVERRIDE.get(kind)
    if override and run_params.get(override):
        return str(run_params[override])
    base = run_params.get("outfile") or os.path.splitext(
        os.path.basename(str(run_params.get("param_file", "prospect_sim"))))[0]
    return str(base) + _SUFFIX[kind]


def check_writable(path, run_params, what):
    """UsageError when ``path`` exists and neither --overwrite nor --resume is given
    (``outputs.check_writable``, which also checks the folder, when importable)."""
    try:
        from ..outputs import check_writable as _check
    except ImportError:
        _check = None
    if _check is not None:
        return _check(path, run_params, resumable=True)
    if os.path.exists(path) and not (run_params.get("overwrite") or run_params.get("resume")):
        raise UsageError(f"{what} {path!r} exists; pass --resume to continue it or "
                         "--overwrite to replace it")
