"""From unit-cube draws to model photometry, for N objects at a time.

One physics, two entry points:

- the **fast path**: when the sps has batched kernels (``sps.photometry`` and
  ``sps.sfh_properties``, as :class:`prospect_sim.sps.GridSPS` does), a whole
  chunk is one vectorised call straight to maggies;
- the **reference path**: ``model.predict(theta_i, obs=obs, sps=sps)`` looped
  over objects, i.e. exactly what a Prospector fit computes (FSPS included).

The steps before the sps, the prior transform and the mapping from theta to
the parameter dictionary, reproduce ``model.prior_transform`` and
``model.set_parameters`` row by row for any Prospector model. Each prior's
``unit_transform`` and each ``depends_on`` function is called once on the
whole batch when it gives the per-row answer (checked once per process on a
fixed probe batch) and once per row otherwise (e.g. the joint priors of
``prospect.models.priors_beta``).

Example
-------
>>> from prospect.models import ProspectorParams, priors
>>> from prospect.models.templates import TemplateLibrary
>>> cfg = TemplateLibrary["parametric_sfh"]
>>> cfg["tage"]["prior"] = priors.TopHat(mini=1.0, maxi=2.0)
>>> model = ProspectorParams(cfg)
>>> u = np.array([[0.5, 0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]])
>>> theta = prior_transform(model, u)
>>> bool(np.allclose(theta[0], model.prior_transform(u[0])))
True
>>> batch_params(model, theta)["tage"]
array([1.5, 1. ])
"""

import logging
import weakref

import numpy as np

__all__ = ["EXTRAS", "extras_for", "filter_names", "prior_transform", "batch_params",
           "predict_batch",
           "has_fast_path", "prior_description", "sfh_properties"]

log = logging.getLogger(__name__)

#: Derived quantities stored in ``/extras`` and their units.
EXTRAS = {"mfrac": "surviving stellar mass / stellar mass formed",
          "stellar_mass": "surviving stellar mass, Msun",
          "sfr100": "star formation rate averaged over the last 100 Myr, Msun/yr",
          "mwa": "mass-weighted age (by mass formed), Gyr"}

def extras_for(model, filter_names=()):
    """Names and units of the extras a simulation of ``model`` through ``filter_names`` stores (dict).

    :data:`EXTRAS`, and those of every component of the embedded SPS that
    the model turns on (:meth:`prospect_sim.sps.component.Component.extras`;
    NaN from an sps that does not compute them).
    """
    from .sps import components
    params = model.params
    out = dict(EXTRAS)

    def flag(key, default=False):
        return bool(np.atleast_1d(params.get(key, default)).flat[0])

    for component in components.COMPONENTS:
        out.update(component.extras(flag, params, list(filter_names)))
    return out


_PROBE_ROWS = 8
_PROBE_SEED = 20240611
_RTOL = 1e-10


# ----------------------------------------------------------------------
# per-process plan: which steps vectorise
class _Plan:
    """What vectorises for one model (built once per process, on a probe batch)."""

    def __init__(self, model):
        self.ndim = int(model.ndim)
        self.free = [(name, model.theta_index[name]) for name in model.free_params
                     if name in model.theta_index]
        self.prior_steps = []           # (slice, unit_transform, vectorised)
        self.dependent = []             # (name, function, vectorised)
        self.passes = 1                 # rounds of depends_on until values settle
        rng = np.random.default_rng(_PROBE_SEED)
        u = rng.uniform(0.02, 0.98, size=(_PROBE_ROWS, self.ndim))
        theta_rows = np.array([model.prior_transform(row) for row in u])
        for name, inds in self.free:
            prior = model.config_dict[name]["prior"]
            step = (inds, prior.unit_transform, False)
            for func in (_closed_form(prior), prior.unit_transform):
                if func is not None and _agrees(lambda: func(u[:, inds]), theta_rows[:, inds]):
                    step = (inds, func, True)
                    break
            self.prior_steps.append(step)
            if not step[2]:
                log.info("prior of %r does not vectorise; it is evaluated row by row", name)
        deps = [(name, info["depends_on"]) for name, info in model.config_dict.items()
                if callable(info.get("depends_on", None))]
        if deps:
            self._plan_dependencies(model, deps, theta_rows)

    def _plan_dependencies(self, model, deps, theta_rows):
        N = len(theta_rows)
        params, batched = _base_params(model, theta_rows, self.free)
        raw = dict(model.params)
        from .transforms import BATCHED
        for name, func in deps:
            rows = _per_row(func, params, batched, raw, N)
            # Prospector's SFH transforms have batched twins (prospect_sim.transforms),
            # used only where they give the per-row answer on this probe batch
            twin = BATCHED.get(func)
            ok = False
            if twin is not None:
                out = _try_vectorised(twin, params, N, rows.shape)
                ok = out is not None and _close(out, rows)
            if ok:
                func_used = twin
            else:
                out = _try_vectorised(func, params, N, rows.shape)
                ok, func_used = out is not None and _close(out, rows), func
            self.dependent.append((name, func_used, ok))
            params[name] = rows
            batched.add(name)
            if not ok:
                log.info("depends_on of %r does not vectorise; it is evaluated row by row",
                         name)
        # A depends_on function may read a parameter computed later in the
        # model's order; Prospector then uses the previous call's value. Apply
        # the transforms until the values settle, so that a row never depends
        # on what was computed before it.
        for _ in range(len(deps)):
            before = {name: params[name] for name, _ in deps}
            _propagate(self.dependent, params, batched, model.params, N)
            if all(_close(params[name], before[name]) for name, _ in deps):
                break
            self.passes += 1


_plans = weakref.WeakKeyDictionary()


def _plan(model):
    try:
        return _plans[model]
    except KeyError:
        plan = _plans[model] = _Plan(model)
        return plan
    except TypeError:                  # a model without weak-reference support
        return _Plan(model)


def _closed_form(prior):
    """The inverse CDF of the commonest priors without scipy's per-call overhead.

    Used only when it reproduces ``prior.unit_transform`` on the probe batch.
    """
    from prospect.models import priors
    kind = type(prior)
    params = getattr(prior, "params", {})
    try:
        if kind in (priors.TopHat, priors.Uniform):
            lo = np.asarray(params["mini"], dtype=float)
            scale = np.asarray(params["maxi"], dtype=float) - lo
            return lambda x: x * scale + lo
        if kind is priors.LogUniform:
            log_lo = np.log(np.asarray(params["mini"], dtype=float))
            log_range = np.log(np.asarray(params["maxi"], dtype=float)) - log_lo
            return lambda x: np.exp(log_lo + x * log_range)
    except KeyError:
        return None
    return None


def _agrees(call, want):
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(call(), dtype=float)
    except Exception:                  # noqa: BLE001 - any failure means "not vectorised"
        return False
    return out.shape == want.shape and _close(out, want)


def _close(a, b):
    try:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=_RTOL, atol=0.0,
                                                   equal_nan=True))


# ----------------------------------------------------------------------
# prior transform
def prior_transform(model, u):
    """Map unit-cube draws to parameters, as ``model.prior_transform`` does per row.

    Parameters
    ----------
    model : prospect.models.ProspectorParams
    u : ndarray (N, D)
        Coordinates in the unit hypercube, D = ``model.ndim``.

    Returns
    -------
    theta : ndarray (N, D) float64
        Free parameters in ``model.theta`` order.
    """
    u = np.asarray(u, dtype=float)
    plan = _plan(model)
    if u.ndim != 2 or u.shape[1] != plan.ndim:
        raise ValueError(f"u must have shape (N, {plan.ndim}), got {u.shape}")
    theta = np.empty_like(u)
    for inds, func, vectorised in plan.prior_steps:
        if vectorised:
            theta[:, inds] = func(u[:, inds])
        else:
            for i in range(len(u)):
                theta[i, inds] = func(u[i, inds])
    return theta


def prior_description(model):
    """The prior of each element of theta, as stored in the ``prior`` attribute.

    Returns
    -------
    dict
        ``{label: {"distribution": name, "params": {...}, "bounds": [lo, hi]}}``
        in ``model.theta_labels()`` order. For a parameter of length n > 1 the
        labels are ``name_1 .. name_n`` and each entry carries its element of
        the prior parameters.
    """
    out = {}
    for name, inds in _plan(model).free:
        prior = model.config_dict[name]["prior"]
        n = inds.stop - inds.start
        values = dict(getattr(prior, "params", {}) or {})
        for attr in ("a", "b", "mu", "sig", "hw"):     # the Fast* priors keep theirs as attributes
            if attr in getattr(prior, "prior_params", []) and attr not in values:
                values[attr] = getattr(prior, attr, None)
        lo, hi = _prior_bounds(prior, n)
        for j in range(n):
            label = name if n == 1 else f"{name}_{j + 1}"
            out[label] = {"distribution": type(prior).__name__,
                          "params": {k: _element(v, j, n) for k, v in values.items()},
                          "bounds": [float(lo[j]), float(hi[j])]}
    return out


def _prior_bounds(prior, n):
    try:
        lo, hi = prior.bounds()
    except Exception:                  # noqa: BLE001 - priors without bounds(): use the transform
        try:
            with np.errstate(all="ignore"):
                lo, hi = prior.unit_transform(np.zeros(n)), prior.unit_transform(np.ones(n))
        except Exception:              # noqa: BLE001
            lo, hi = -np.inf, np.inf
    lo = np.broadcast_to(np.asarray(lo, dtype=float).reshape(-1), (n,))
    hi = np.broadcast_to(np.asarray(hi, dtype=float).reshape(-1), (n,))
    return lo, hi


def _element(value, j, n):
    arr = np.asarray(value)
    if arr.dtype.kind in "biuf":
        if arr.size == n and n > 1:
            return float(arr.reshape(-1)[j])
        return arr.tolist() if arr.ndim else arr.item()
    return repr(value)


# ----------------------------------------------------------------------
# theta -> parameter dictionary
def _base_params(model, theta, free):
    """Fixed parameters broadcast, free ones from theta; and the names that are per object."""
    N = len(theta)
    params, batched = {}, set()
    for name, value in model.params.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "biufc" and arr.size == 1:
            scalar = arr.reshape(())
            params[name] = scalar.item() if arr.dtype.kind in "biu" else float(scalar)
        elif arr.dtype.kind in "biufc":
            params[name] = np.broadcast_to(arr, (N,) + arr.shape)
            batched.add(name)
        else:
            params[name] = value
    for name, inds in free:
        n = inds.stop - inds.start
        params[name] = (np.ascontiguousarray(theta[:, inds.start]) if n == 1
                        else np.ascontiguousarray(theta[:, inds]))
        batched.add(name)
    return params, batched


def _per_row(func, params, batched, raw, N):
    """``func`` called per object with Prospector-style values (1-element arrays)."""
    rows = []
    for i in range(N):
        row = {k: (np.atleast_1d(v[i]) if k in batched else raw.get(k, v))
               for k, v in params.items()}
        rows.append(np.atleast_1d(func(**row)))
    out = np.array(rows)
    return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out


def _try_vectorised(func, params, N, want_shape):
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(func(**params), dtype=float)
    except Exception:                  # noqa: BLE001 - any failure means "not vectorised"
        return None
    if out.ndim >= 2 and out.shape[1:] == (1,) and len(want_shape) == 1:
        out = out[:, 0]
    return out if out.shape == tuple(want_shape) else None


def batch_params(model, theta):
    """The sps parameter dictionary for N objects.

    Parameters
    ----------
    model : prospect.models.ProspectorParams
    theta : ndarray (N, D)

    Returns
    -------
    dict
        As ``model.params`` after ``model.set_parameters(theta_i)``, batched:
        scalar fixed parameters stay scalars; free parameters and fixed or
        dependent vector parameters get a leading axis of length N
        (``(N,)`` for length-1 parameters, ``(N, k)`` or ``(N, nbin, 2)``
        otherwise). ``depends_on`` transforms are applied in the model's
        order.
    """
    theta = np.asarray(theta, dtype=float)
    plan = _plan(model)
    params, batched = _base_params(model, theta, plan.free)
    for _ in range(plan.passes):
        _propagate(plan.dependent, params, batched, model.params, len(theta))
    return params


def _propagate(steps, params, batched, raw, N):
    """One round of ``depends_on`` transforms over the batch, in model order."""
    for name, func, vectorised in steps:
        if vectorised:
            with np.errstate(all="ignore"):
                out = np.asarray(func(**params), dtype=float)
            if out.ndim >= 2 and out.shape[1:] == (1,):
                out = out[:, 0]
            if out.ndim == 0 or out.shape[0] != N:
                out = np.broadcast_to(out, (N,) + out.shape)
        else:
            out = _per_row(func, params, batched, raw, N)
        params[name] = out
        batched.add(name)


# ----------------------------------------------------------------------
# photometry
def has_fast_path(sps):
    """Whether ``sps`` has the batched kernels of the fast path."""
    return callable(getattr(sps, "photometry", None))


def predict_batch(model, sps, obs, theta, path="auto"):
    """Noiseless photometry and derived quantities for N objects.

    Parameters
    ----------
    model : prospect.models.SpecModel
    sps : sps object
        With ``get_galaxy_spectrum`` (reference path) and, for the fast path,
        ``photometry(params, filters)`` and ``sfh_properties(params)``, or
        ``photometry_and_properties(params, filters)`` doing both in one pass.
    obs : dict
        Prospector obs dict; ``obs['filters']`` sets the bands.
    theta : ndarray (N, D)
    path : {"auto", "fast", "reference"}
        ``"auto"`` is the fast path when :func:`has_fast_path`.

    Returns
    -------
    phot : ndarray (N, B) float64
        Model photometry, maggies. Non-finite values are returned as they come.
    extras : dict of ndarray (N,)
        The quantities of :func:`extras_for` (``model``'s components).
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    if path == "auto":
        path = "fast" if has_fast_path(sps) else "reference"
    params = batch_params(model, theta)
    with np.errstate(all="ignore"):
        props = None
        if path == "fast" and callable(getattr(sps, "photometry_and_properties", None)):
            phot, props = sps.photometry_and_properties(params, obs["filters"])
            mfrac = props["mfrac"]
        elif path == "fast":
            phot, mfrac = sps.photometry(params, obs["filters"])
        elif path == "reference":
            phot, mfrac = _predict_rows(model, sps, obs, theta)
        else:
            raise ValueError(f"path must be 'auto', 'fast' or 'reference', got {path!r}")
        if props is None:
            props = (sps.sfh_properties(params) if callable(getattr(sps, "sfh_properties", None))
                     else sfh_properties(params))
        mfrac = np.asarray(mfrac, dtype=float).reshape(len(theta))
        extras = {"mfrac": mfrac,
                  "stellar_mass": _stellar_mass(params, mfrac),
                  "sfr100": np.broadcast_to(np.asarray(props["sfr100"], float), mfrac.shape),
                  "mwa": np.broadcast_to(np.asarray(props["mwa"], float), mfrac.shape)}
        for name in extras_for(model, filter_names(obs)):
            if name not in extras:
                extras[name] = (np.asarray(props[name], dtype=float) if name in props
                                else np.full(mfrac.shape, np.nan))
    return np.asarray(phot, dtype=np.float64), extras


def filter_names(obs):
    """The names of ``obs["filters"]`` (sedpy's ``Filter.name``), [] without filters."""
    filters = obs.get("filters")
    return [] if filters is None else [getattr(f, "name", str(f)) for f in filters]


def _predict_rows(model, sps, obs, theta):
    """The reference: Prospector's own ``model.predict`` row by row (never the point path)."""
    from .sps._compat import exact_predict
    nband = len(obs["filters"]) if obs.get("filters") is not None else 0
    phot = np.empty((len(theta), nband))
    mfrac = np.empty(len(theta))
    settle = _plan(model).passes - 1
    with exact_predict():
        for i, row in enumerate(theta):
            for _ in range(settle):        # see _Plan: let depends_on values settle
                model.set_parameters(row)
            _, phot_i, mfrac_i = model.predict(row, obs=obs, sps=sps)
            phot[i] = phot_i
            mfrac[i] = np.asarray(mfrac_i, dtype=float).reshape(-1)[0]
    return phot, mfrac


def _stellar_mass(params, mfrac):
    """Surviving stellar mass (Msun): ``mass`` is formed mass unless ``mass_units="mstar"``."""
    mass = np.asarray(params.get("mass", 1.0), dtype=float)
    if mass.ndim == 2:
        mass = mass.sum(axis=1)
    mass = np.broadcast_to(mass, mfrac.shape)
    if str(params.get("mass_units", "mformed")) == "mstar":
        return mass.astype(float)
    return mass * mfrac


def sfh_properties(params):
    """SFR over the last 100 Myr and mass-weighted age, for sps without kernels.

    Analytic for ``sfh`` 0 (single burst at ``tage``), 1 (tau) and 4
    (delayed tau) and exact for ``sfh`` 3 (``mass`` per ``agebins`` bin).
    Other SFHs give NaN.

    Parameters
    ----------
    params : dict
        Batched parameters (see :func:`batch_params`): ``sfh``, ``mass``
        (Msun formed), ``tage`` and ``tau`` (Gyr), or ``agebins`` (log10 yr).

    Returns
    -------
    dict of ndarray (N,)
        ``sfr100`` (Msun/yr) and ``mwa`` (Gyr, weighted by mass formed).
    """
    from scipy.special import gammainc, gammaincc

    sfh = int(np.asarray(params.get("sfh", 4)).reshape(-1)[0])
    mass = np.asarray(params.get("mass", 1.0), dtype=float)
    window = 0.1                                     # Gyr
    if sfh == 3:
        bins = 10 ** np.asarray(params["agebins"], dtype=float) / 1e9   # Gyr, lookback
        mass = np.atleast_2d(mass)
        width = bins[..., 1] - bins[..., 0]
        overlap = np.clip(np.minimum(bins[..., 1], window) - bins[..., 0], 0, None)
        sfr100 = (mass * overlap / width).sum(axis=-1) / (window * 1e9)
        mwa = (mass * bins.mean(axis=-1)).sum(axis=-1) / mass.sum(axis=-1)
        return {"sfr100": sfr100, "mwa": mwa}
    tage = np.asarray(params.get("tage", 0.0), dtype=float)
    if sfh == 0:
        sfr100 = np.where(tage <= window, mass / (window * 1e9), 0.0)
        return {"sfr100": sfr100 + 0 * tage, "mwa": tage + 0 * mass}
    if sfh not in (1, 4):
        nan = np.full(np.broadcast(mass, tage).shape, np.nan)
        return {"sfr100": nan, "mwa": nan}
    p = 0.0 if sfh == 1 else 1.0
    tau = np.asarray(params.get("tau", 1.0), dtype=float)
    x = tage / tau
    x0 = np.clip(tage - window, 0, None) / tau
    total = gammainc(p + 1, x)
    # mass formed in the window, without cancellation in the old-population tail
    recent = np.where(x0 > p + 1, gammaincc(p + 1, x0) - gammaincc(p + 1, x),
                      total - gammainc(p + 1, x0))
    sfr100 = mass * recent / total / (window * 1e9)
    mean_t = tau * (p + 1) * gammainc(p + 2, x) / total       # mean formation time
    return {"sfr100": sfr100, "mwa": tage - mean_t}
