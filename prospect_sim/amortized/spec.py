"""What a checkpoint records about the problem, and checks that files match.

A *problem* is: the free parameters of the model (``theta_labels``, in
``model.theta`` order), which of them are conditions (inputs) rather than
inferred, the filters, the prior of each parameter as the simulation
file's ``prior`` attribute describes it::

    {label: {"distribution": name, "params": {...}, "bounds": [lo, hi]}}

and the rest of the configuration that changes the photometry
(:func:`model_config`): the model class, every fixed parameter (``dust_type``,
``imf_type``, ``add_neb_emission``, ``sfh``, ...) and the sps's own settings
(its library). A simulation file records it in its ``fixed_config``
attribute, a checkpoint in ``problem["config"]``.

:func:`model_problem` reads it from a Prospector model and obs;
:func:`differences` lists, in words, how two descriptions disagree.
Pure Python + numpy: no torch.
"""

import json
import logging
import math
import re

import numpy as np

__all__ = ["model_problem", "model_config", "legacy_config", "differences", "filter_names",
           "split_labels"]

log = logging.getLogger(__name__)

#: ``what`` of the files whose fixed configuration was already compared or warned about,
#: so a run warns once per file (``--train`` then its ``--validate``).
_SEEN = set()


def filter_names(obs):
    """Filter names of an obs dict (sedpy ``Filter.name`` or plain strings)."""
    filters = obs.get("filters") or []
    return [getattr(f, "name", f) for f in filters]


def _element(value, i, n):
    arr = np.asarray(value)
    if arr.ndim >= 1 and arr.size == n and n > 1:
        return arr.ravel()[i].item()
    if arr.ndim == 0:
        return arr.item()
    return arr.tolist()


def describe_prior(model):
    """Per-element prior description of a Prospector model's free parameters.

    The simulation file's own description (:func:`prospect_sim.forward.prior_description`)
    when that module is importable, so the two compare exactly.

    Returns
    -------
    dict
        ``{theta_label: {"distribution", "params", "bounds"}}`` in theta order.
    """
    try:
        from ..forward import prior_description
    except ImportError:
        prior_description = None
    if prior_description is not None:
        return prior_description(model)
    labels = list(model.theta_labels())
    out = {}
    k = 0
    for name in model.free_params:
        prior = model.config_dict[name]["prior"]
        n = model.theta_index[name].stop - model.theta_index[name].start
        lo, hi = prior.bounds()
        for i in range(n):
            params = {p: _element(v, i, n) for p, v in prior.params.items()}
            out[labels[k]] = {"distribution": type(prior).__name__, "params": params,
                              "bounds": [float(_element(lo, i, n)), float(_element(hi, i, n))]}
            k += 1
    return out


# ----------------------------------------------------------------------
# the fixed configuration
def _function_name(func):
    """``module.qualname`` of a function, without the module of a parameter file.

    A parameter file is ``__main__`` when run, ``_prospect_sim_paramfile_<stem>`` when
    loaded by path: its functions are named alike either way.
    """
    name = getattr(func, "__qualname__", None) or type(func).__name__
    module = getattr(func, "__module__", None) or ""
    if module and module != "__main__" and not module.startswith("_prospect_sim_paramfile_"):
        name = f"{module}.{name}"
    return name


def _plain(value):
    """JSON-friendly ``value``: numbers, bools, str, None, lists and dicts of them;
    a function by its name, another object by its class (never a repr with an address)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, np.generic, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf":
            return arr.tolist()
        if arr.dtype.kind in "US":
            return _plain(arr.tolist())
        return [_plain(v) for v in arr.ravel().tolist()] if arr.ndim else _plain(arr.item())
    if callable(value):
        return {"function": _function_name(value)}
    return {"object": type(value).__name__}


def sps_config(sps):
    """The settings of an sps that change its photometry, as plain data.

    The class, the library (``GridSPS.library_name``), the isochrone and spectral
    libraries (``sps.ssp.libraries``, as FSPS names them) and FSPS's ``zcontinuous``.
    Speed options (``wave_range``) and the parameters the model sets on every call
    are left out.
    """
    out = {"class": type(sps).__name__}
    library = getattr(sps, "library_name", None)
    if isinstance(library, str):
        out["library"] = library
    ssp = getattr(sps, "ssp", None)
    libraries = getattr(ssp, "libraries", None)
    if libraries is not None:
        try:
            out["libraries"] = [lib.decode() if isinstance(lib, bytes) else str(lib)
                                for lib in libraries]
        except TypeError:
            pass
    params = getattr(ssp, "params", None)
    try:
        if params is not None and "zcontinuous" in params:
            out["zcontinuous"] = _plain(params["zcontinuous"])
    except Exception:  # noqa: BLE001 - a foreign parameter set without it: not recorded
        pass
    return out


def model_config(model, sps=None):
    """The model's configuration beyond its free parameters, as plain (JSON) data.

    Parameters
    ----------
    model : prospect.models.SpecModel or SedModel
    sps : optional
        Its sps; left out of the description when None.

    Returns
    -------
    dict
        ``{"model": class name, "fixed": {name: value}, "sps": {...}}``: every
        parameter that is not free, with its ``init`` value (a parameter set by a
        ``depends_on`` as ``{"depends_on": function name}``), and :func:`sps_config`.
    """
    fixed = {}
    for name, info in model.config_dict.items():
        if info.get("isfree", False):
            continue
        dep = info.get("depends_on")
        if callable(dep):
            fixed[name] = {"depends_on": _function_name(dep)}
        else:
            fixed[name] = _plain(info.get("init"))
    out = {"model": type(model).__name__, "fixed": fixed}
    if sps is not None:
        out["sps"] = sps_config(sps)
    return out


def legacy_config(model_config_text):
    """:func:`model_config` (without ``sps``) from the ``model_config`` attribute of a
    simulation file made before ``fixed_config`` was recorded; None if unreadable.

    Its values were JSON with ``repr`` for objects: such a parameter is listed under
    ``"unchecked"`` and not compared.
    """
    try:
        old = json.loads(model_config_text)
        params = old["params"]
    except (TypeError, ValueError, KeyError):
        return None
    fixed, unchecked = {}, []
    for name, entry in params.items():
        if entry.get("isfree", False):
            continue
        if "depends_on" in entry:
            dep = str(entry["depends_on"])              # "module.qualname"
            module, _, rest = dep.partition(".")
            if module == "__main__" or module.startswith("_prospect_sim_paramfile_"):
                dep = rest
            fixed[name] = {"depends_on": dep}
        elif isinstance(entry.get("init"), str) and " at 0x" in entry["init"]:
            unchecked.append(name)
        else:
            fixed[name] = entry.get("init")
    return {"model": old.get("class"), "fixed": fixed, "unchecked": unchecked}


def model_problem(model, obs, sps=None):
    """``{"theta_labels", "filter_names", "prior", "config"}`` of a model and obs.

    ``sps`` defaults to the sps built with ``model`` in this process
    (:func:`prospect_sim.pool.ingredients`), when there is one.
    """
    if sps is None:
        sps = _built_sps(model)
    return {"theta_labels": list(model.theta_labels()), "filter_names": filter_names(obs),
            "prior": describe_prior(model), "config": model_config(model, sps)}


def _built_sps(model):
    from .. import pool
    try:
        ing = pool.ingredients()
    except RuntimeError:  # outside a run: nothing was built
        return None
    return ing.sps if ing.model is model else None


def split_labels(theta_labels, conditions):
    """Indices of inferred and conditioning parameters; checks ``conditions``."""
    theta_labels = list(theta_labels)
    conditions = list(conditions or [])
    unknown = [c for c in conditions if c not in theta_labels]
    if unknown:
        raise ValueError(f"--condition {', '.join(unknown)}: not a free parameter of the model; "
                         f"the free parameters are {', '.join(theta_labels)}")
    inferred = [i for i, t in enumerate(theta_labels) if t not in conditions]
    if not inferred:
        raise ValueError("every free parameter is a --condition; nothing is left to infer")
    return inferred, [theta_labels.index(c) for c in conditions]


# ----------------------------------------------------------------------
# comparison
def _close(a, b):
    try:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        return a == b
    if a.shape != b.shape:
        return False
    return bool(np.all((a == b) | np.isclose(a, b, rtol=1e-7, atol=0)))


def _numeric(value):
    """``value`` as a float array when it is a number or a (nested) list of numbers."""
    if isinstance(value, str) or value is None:
        return None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr


def _same(a, b):
    """Numbers within 1e-7 relative (NaN equals NaN), arrays elementwise, strings and
    the rest exactly; dicts and lists of mixed values item by item."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b)
                and all(_same(a[k], b[k]) for k in a))
    x, y = _numeric(a), _numeric(b)
    if x is not None and y is not None:
        return x.shape == y.shape and bool(np.all(
            (x == y) | np.isclose(x, y, rtol=1e-7, atol=0) | (np.isnan(x) & np.isnan(y))))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return a == b


def _shown(value):
    if isinstance(value, dict) and set(value) == {"depends_on"}:
        return f"depends_on={value['depends_on']}"
    if isinstance(value, dict) and len(value) == 1 and set(value) <= {"function", "object"}:
        return next(iter(value.values()))
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _config_differences(expected, found, what, free):
    out = []
    if expected.get("model") and found.get("model") and expected["model"] != found["model"]:
        out.append(f"model class: {expected['model']} in the param file, {found['model']} "
                   f"in the {what}")
    fe, ff = expected.get("fixed") or {}, found.get("fixed") or {}
    free = free | set(expected.get("unchecked", [])) | set(found.get("unchecked", []))
    for name in sorted((set(fe) | set(ff)) - free):
        if name not in ff:
            out.append(f"fixed parameter {name}: {_shown(fe[name])} in the param file, "
                       f"not in the {what}")
        elif name not in fe:
            out.append(f"fixed parameter {name}: not in the param file, {_shown(ff[name])} "
                       f"in the {what}")
        elif not _same(fe[name], ff[name]):
            out.append(f"fixed parameter {name}: {_shown(fe[name])} in the param file, "
                       f"{_shown(ff[name])} in the {what}")
    se, sf = expected.get("sps"), found.get("sps")
    if isinstance(se, dict) and isinstance(sf, dict):
        for key in sorted(set(se) & set(sf)):
            if not _same(se[key], sf[key]):
                out.append(f"sps {key}: {_shown(se[key])} in the param file, "
                           f"{_shown(sf[key])} in the {what}")
    return out


def differences(expected, found, what="simulation file"):
    """How ``found`` differs from ``expected`` (both :func:`model_problem` dicts).

    The fixed configuration (``"config"``) is compared when both have it; when
    only ``expected`` has it (a file or checkpoint made before it was recorded),
    a warning says, once per ``what``, that it could not be checked.

    Returns
    -------
    list of str
        Empty when they match.
    """
    out = []
    for key, noun in (("theta_labels", "free parameters"), ("filter_names", "filters")):
        e, f = list(expected[key]), list(found[key])
        if e != f:
            out.append(f"{noun}: the param file has {e}, the {what} has {f}")
    pe, pf = expected.get("prior") or {}, found.get("prior") or {}
    if isinstance(pf, str):
        pf = json.loads(pf)
    for label in expected["theta_labels"]:
        if label not in pe or label not in pf:
            continue
        a, b = pe[label], pf[label]
        if a.get("distribution") != b.get("distribution"):
            out.append(f"prior of {label}: {a.get('distribution')} in the param file, "
                       f"{b.get('distribution')} in the {what}")
            continue
        bounds_a = [x if math.isfinite(x) else str(x) for x in map(float, a.get("bounds", []))]
        if not _close(a.get("bounds"), b.get("bounds")):
            out.append(f"prior bounds of {label}: {bounds_a} in the param file, "
                       f"{b.get('bounds')} in the {what}")
            continue
        pa, pb = a.get("params", {}), b.get("params", {})
        for p in sorted(set(pa) | set(pb)):
            if p not in pa or p not in pb or not _close(pa[p], pb[p]):
                out.append(f"prior of {label}: {p}={pa.get(p)} in the param file, "
                           f"{p}={pb.get(p)} in the {what}")
    ce, cf = expected.get("config"), found.get("config")
    if ce:
        if cf:
            free = set(expected["theta_labels"]) | set(found["theta_labels"])
            free |= {re.sub(r"_\d+$", "", label) for label in free}   # name_1 .. name_n
            out += _config_differences(ce, cf, what, free)
        elif what not in _SEEN:
            log.warning("the %s does not record the fixed parameters and sps it was made "
                        "with (it predates that record); they could not be checked against "
                        "the param file", what)
        _SEEN.add(what)
    return out
