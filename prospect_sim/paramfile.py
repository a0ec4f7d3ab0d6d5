"""Load a parameter file, find its ``build_*`` functions and check what they return.

A parameter file defines (DESIGN.md section 2)::

    build_obs(**run_params)   -> Prospector 1.4 obs dict (or a list of observations)
    build_model(**run_params) -> prospect.models.SpecModel / SedModel
    build_sps(**run_params)   -> anything with Prospector's sps interface
    build_noise(**run_params) -> (spec_noise, phot_noise)          [optional]
    build_obs_noise(obs=..., **run_params) -> noise model for training [optional]
    add_arguments(parser)     -> adds the file's own flags          [optional]

:func:`load` reads a file by path (without running its ``__main__`` block);
:meth:`ParamFile.from_namespace` wraps a module that is already running (the
calling file of :func:`prospect_sim.main`). :meth:`ParamFile.build` calls the
builders with the whole ``run_params`` and returns :class:`Ingredients`; a
builder that is missing, raises or returns the wrong kind of object raises
:class:`~prospect_sim.errors.ParamFileError` naming the file, the function,
what it returned and what was expected.
"""

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np

from .errors import ParamFileError, ProspectSimError

__all__ = ["ParamFile", "Ingredients", "load", "obs_from_list"]

REQUIRED = ("build_obs", "build_model", "build_sps")
OPTIONAL = ("build_noise", "build_obs_noise", "add_arguments")


@dataclasses.dataclass
class Ingredients:
    """Everything one process needs to compute: built once per process, never pickled into tasks.

    Attributes
    ----------
    obs : dict
        Prospector 1.4 obs dict, passed through ``prospect.utils.obsutils.fix_obs``.
    model : prospect.models.ProspectorParams
        The model from ``build_model``.
    sps : object
        Stellar populations from ``build_sps`` (``get_galaxy_spectrum`` interface).
    noise : tuple
        ``(spec_noise, phot_noise)`` from ``build_noise``; ``(None, None)`` if absent.
    obs_noise : object or None
        Observational noise model for training data from ``build_obs_noise``.
    run_params : dict
        The parsed command line the builders received.
    paramfile : ParamFile
        The parameter file they came from.
    """

    obs: dict
    model: object
    sps: object
    noise: tuple
    obs_noise: object
    run_params: dict
    paramfile: "ParamFile"


class ParamFile:
    """The builders of one parameter file.

    Parameters
    ----------
    path : str or pathlib.Path
        The parameter file (used in messages, outputs and provenance).
    namespace : dict
        Its module globals, where the ``build_*`` functions live.
    """

    def __init__(self, path, namespace):
        self.path = str(Path(path).resolve()) if path else "<unknown>"
        self.name = Path(self.path).name
        self.namespace = namespace
        missing = [fn for fn in REQUIRED if not callable(namespace.get(fn))]
        if missing:
            found = sorted(k for k, v in namespace.items()
                           if k.startswith("build_") and callable(v))
            raise ParamFileError(
                f"{self.name}: no function {', '.join(missing)} found "
                f"(found: {', '.join(found) or 'no build_* functions'}); "
                f"a parameter file must define build_obs, build_model and build_sps "
                f"(build_noise is optional)")

    @classmethod
    def from_namespace(cls, namespace):
        """Wrap an already-running module's globals (e.g. ``__main__``)."""
        return cls(namespace.get("__file__"), namespace)

    def __repr__(self):
        return f"ParamFile({self.path!r})"

    def __reduce__(self):
        # Pickled as its path: the receiving process loads the file itself.
        return (load, (self.path,))

    @property
    def source(self):
        """The file's text, for provenance (never executed from storage)."""
        try:
            return Path(self.path).read_text()
        except OSError:
            return ""

    def add_arguments(self, parser):
        """Let the file add its own flags, if it defines ``add_arguments(parser)``."""
        hook = self.namespace.get("add_arguments")
        if callable(hook):
            try:
                hook(parser)
            except Exception as err:
                raise ParamFileError(
                    f"{self.name}: add_arguments(parser) raised "
                    f"{type(err).__name__}: {err}") from err

    # --- building ----------------------------------------------------------

    def _call(self, fname, expected, *args, **kwargs):
        func = self.namespace.get(fname)
        try:
            return func(*args, **kwargs)
        except ProspectSimError as err:
            msg = str(err)
            if self.name not in msg:
                msg = f"{self.name}: {fname}(): {msg}"
            raise type(err)(msg) from err
        except Exception as err:
            raise ParamFileError(
                f"{self.name}: {fname}(**run_params) raised {type(err).__name__}: {err} "
                f"(expected it to return {expected}; run with --traceback for details)"
            ) from err

    def _wrong(self, fname, value, expected):
        return ParamFileError(
            f"{self.name}: {fname}(**run_params) returned {_describe(value)}; "
            f"expected {expected}")

    def build(self, run_params):
        """Call every builder with ``run_params`` and check what they return.

        Parameters
        ----------
        run_params : dict
            The parsed command line; every builder receives all of it as keywords.

        Returns
        -------
        Ingredients
        """
        run_params = dict(run_params)
        run_params.setdefault("param_file", self.path)

        expected = "a Prospector obs dict (filters, maggies, maggies_unc, ...) or a list of observations"
        raw = self._call("build_obs", expected, **run_params)
        obs = _check_obs(self, raw, expected)

        expected = "a prospect.models.SpecModel (or SedModel)"
        model = self._call("build_model", expected, **run_params)
        if not _is_model(model):
            raise self._wrong("build_model", model, expected)

        expected = "an sps object with get_galaxy_spectrum() (e.g. prospect_sim.sps.GridSPS or CSPSpecBasis)"
        sps = self._call("build_sps", expected, **run_params)
        if not (hasattr(sps, "get_galaxy_spectrum") or hasattr(sps, "get_spectrum")):
            raise self._wrong("build_sps", sps, expected)

        noise = (None, None)
        if callable(self.namespace.get("build_noise")):
            expected = "a 2-tuple (spec_noise, phot_noise), e.g. (None, None)"
            noise = self._call("build_noise", expected, **run_params)
            if noise is None:
                noise = (None, None)
            if not (isinstance(noise, (tuple, list)) and len(noise) == 2):
                raise self._wrong("build_noise", noise, expected)
            noise = tuple(noise)

        obs_noise = None
        if callable(self.namespace.get("build_obs_noise")):
            kwargs = dict(run_params, obs=obs)
            obs_noise = self._call("build_obs_noise", "a noise model for training data",
                                   **kwargs)

        libraries = _libraries(sps)
        if libraries is not None:
            run_params.setdefault("sps_libraries", libraries)

        return Ingredients(obs=obs, model=model, sps=sps, noise=noise,
                           obs_noise=obs_noise, run_params=run_params, paramfile=self)


def load(path):
    """Import a parameter file by path without running its ``__main__`` block.

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    ParamFile

    Raises
    ------
    ParamFileError
        When the file does not exist, fails to import, or lacks a builder.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamFileError(f"parameter file {path} does not exist")
    name = "_prospect_sim_paramfile_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(name, None)
        raise ParamFileError(f"{path.name}: importing the parameter file raised "
                             f"{type(err).__name__}: {err}") from err
    return ParamFile(path, vars(module))


# --- checks and conversions -------------------------------------------------

def _describe(value):
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _is_model(model):
    try:
        from prospect.models import ProspectorParams
        if isinstance(model, ProspectorParams):
            return True
    except ImportError:  # pragma: no cover - prospect is a dependency
        pass
    return all(hasattr(model, a) for a in ("predict", "prior_transform", "prior_product",
                                           "theta", "theta_labels"))


def _libraries(sps):
    """``sps.ssp.libraries`` as JSON-friendly strings, or None."""
    try:
        libs = sps.ssp.libraries
    except AttributeError:
        return None
    try:
        return [lib.decode() if isinstance(lib, bytes) else str(lib) for lib in libs]
    except TypeError:
        return None


def _check_obs(pfile, raw, expected):
    from prospect.utils.obsutils import fix_obs
    if isinstance(raw, (list, tuple)):
        try:
            obs = obs_from_list(raw)
        except ValueError as err:
            raise ParamFileError(f"{pfile.name}: build_obs(**run_params) returned a list "
                                 f"that cannot be converted: {err}") from err
    elif isinstance(raw, dict):
        obs = raw
    else:
        raise pfile._wrong("build_obs", raw, expected)
    has_phot = obs.get("maggies") is not None
    has_spec = obs.get("spectrum") is not None
    if not (has_phot or has_spec):
        raise ParamFileError(f"{pfile.name}: build_obs(**run_params) returned a dict with "
                             f"keys {sorted(obs)} but neither 'maggies' nor 'spectrum'; "
                             f"expected {expected}")
    if has_phot:
        for key in ("filters", "maggies_unc"):
            if obs.get(key) is None:
                raise ParamFileError(f"{pfile.name}: build_obs(**run_params) returned "
                                     f"'maggies' without '{key}'; expected {expected}")
        if len(obs["filters"]) != len(obs["maggies"]):
            raise ParamFileError(f"{pfile.name}: build_obs(**run_params) returned "
                                 f"{len(obs['filters'])} filters but {len(obs['maggies'])} "
                                 f"maggies; expected one flux per filter")
    obs.setdefault("wavelength", None)
    try:
        return fix_obs(obs)
    except (AssertionError, KeyError, TypeError, ValueError) as err:
        raise ParamFileError(f"{pfile.name}: the obs dict from build_obs(**run_params) "
                             f"is inconsistent ({type(err).__name__}: {err}); "
                             f"expected {expected}") from err


def _get(item, name):
    if isinstance(item, dict):
        return item.get(name)
    return getattr(item, name, None)


def obs_from_list(observations):
    """Convert Prospector's newer list-of-observations into the 1.4 obs dict.

    Parameters
    ----------
    observations : list
        Objects (or dicts) as in Prospector 2's ``prospect.observation``:
        photometry has ``filters`` (sedpy ``Filter`` objects or names),
        ``flux`` and ``uncertainty`` in maggies and an optional boolean
        ``mask`` (True = use); a spectrum has ``wavelength`` (Angstrom,
        observed frame), ``flux``, ``uncertainty`` and ``mask``.

    Returns
    -------
    dict
        ``filters``, ``maggies``, ``maggies_unc``, ``phot_mask``,
        ``wavelength``, ``spectrum``, ``unc``, ``mask``.

    Raises
    ------
    ValueError
        For more than one photometry or spectrum (Prospector 1.4 fits one of each),
        an item that is neither, or one without ``uncertainty``.

    Examples
    --------
    >>> obs = obs_from_list([{"filters": ["sdss_g0", "sdss_r0"], "flux": [1e-9, 2e-9],
    ...                       "uncertainty": [1e-10, 1e-10]}])
    >>> obs["maggies"], [f.name for f in obs["filters"]]
    (array([1.e-09, 2.e-09]), ['sdss_g0', 'sdss_r0'])
    """
    obs = {"filters": None, "maggies": None, "maggies_unc": None, "phot_mask": None,
           "wavelength": None, "spectrum": None, "unc": None, "mask": None}
    for i, item in enumerate(observations):
        flux = _get(item, "flux")
        if flux is None:
            raise ValueError(f"item {i} ({type(item).__name__}) has no 'flux'")
        flux = np.asarray(flux, dtype=float)
        unc = _get(item, "uncertainty")
        if unc is None:
            raise ValueError(f"item {i} ({type(item).__name__}) has no 'uncertainty' (1-sigma, "
                             "in the units of 'flux'): give one per value")
        unc = np.asarray(unc, dtype=float)
        mask = _get(item, "mask")
        mask = np.ones(flux.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        filters = _get(item, "filters")
        if filters is not None:
            if obs["maggies"] is not None:
                raise ValueError("more than one photometry; Prospector 1.4 fits one")
            filters = list(filters)
            if filters and isinstance(filters[0], str):
                from sedpy.observate import load_filters
                filters = load_filters(filters)
            obs.update(filters=filters, maggies=flux, maggies_unc=unc, phot_mask=mask)
        elif _get(item, "wavelength") is not None:
            if obs["spectrum"] is not None:
                raise ValueError("more than one spectrum; Prospector 1.4 fits one")
            obs.update(wavelength=np.asarray(_get(item, "wavelength"), dtype=float),
                       spectrum=flux, unc=unc, mask=mask)
        else:
            raise ValueError(f"item {i} ({type(item).__name__}) has neither 'filters' "
                             f"(photometry) nor 'wavelength' (spectrum)")
    if obs["mask"] is None:
        del obs["mask"]
    return obs
