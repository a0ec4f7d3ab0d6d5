"""What a checkpoint records about the problem, and checks that files match.

A *problem* is: the free parameters of the model (``theta_labels``, in
``model.theta`` order), which of them are conditions (inputs) rather than
inferred, the filters, and the prior of each parameter as the simulation
file's ``prior`` attribute describes it::

    {label: {"distribution": name, "params": {...}, "bounds": [lo, hi]}}

:func:`model_problem` reads it from a Prospector model and obs;
:func:`differences` lists, in words, how two descriptions disagree.
Pure Python + numpy: no torch.
"""

import json
import math

import numpy as np

__all__ = ["model_problem", "differences", "filter_names", "split_labels"]


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


def model_problem(model, obs):
    """``{"theta_labels", "filter_names", "prior"}`` of a model and obs."""
    return {"theta_labels": list(model.theta_labels()), "filter_names": filter_names(obs),
            "prior": describe_prior(model)}


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


def _close(a, b):
    try:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        return a == b
    if a.shape != b.shape:
        return False
    return bool(np.all((a == b) | np.isclose(a, b, rtol=1e-7, atol=0)))


def differences(expected, found, what="simulation file"):
    """How ``found`` differs from ``expected`` (both :func:`model_problem` dicts).

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
    return out
