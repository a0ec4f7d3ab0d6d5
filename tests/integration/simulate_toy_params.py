"""Toy parameter file for the ``--simulate`` tests (a helper, not a test module).

Used by ``tests/integration/test_simulate.py`` and
``tests/mpi/test_simulate_mpi.py``: the demo's model (free zred, mass,
logzsol, dust2, tage, tau) with an analytic sps whose batched kernel costs
nothing, so the tests exercise the chunking, the pool, the store and resume,
not the physics. Flags: ``--toy_delay S`` sleeps S seconds per chunk (to
interrupt a run), ``--toy_nan_above T`` returns NaN photometry for tage > T.

    python tests/integration/simulate_toy_params.py --simulate --n_samples 1000
"""

import time

import numpy as np

import prospect_sim.sps  # noqa: F401  (SpecModel without $SPS_HOME)
from prospect.models import SpecModel, priors
from prospect.models.templates import TemplateLibrary
from sedpy.observate import load_filters

FILTERS = ["decam_g", "decam_r", "decam_i"]


def add_arguments(parser):
    parser.add_argument("--toy_delay", type=float, default=0.0,
                        help="seconds of sleep per chunk")
    parser.add_argument("--toy_nan_above", type=float, default=None,
                        help="NaN photometry for tage above this (Gyr)")


class ToySPS:
    """Analytic spectrum per Msun formed, evaluated at the filters' effective wavelengths."""

    def __init__(self, delay=0.0, nan_above=None):
        self.delay = delay
        self.nan_above = nan_above
        self.wave = np.geomspace(1000.0, 30000.0, 300)

    def _lnu(self, wave, tage, logzsol, dust2, tau):
        x = wave / 5500.0
        slope = 1.0 + 0.4 * np.log10(tage) + 0.2 * logzsol + 0.1 * np.log10(tau)
        lnu = 1e-5 * x ** slope * np.exp(-dust2 * x ** -0.7)
        if self.nan_above is not None:
            lnu = np.where(tage > self.nan_above, np.nan, lnu)
        return lnu

    def get_galaxy_spectrum(self, **params):
        tage, logzsol, dust2, tau = (float(np.squeeze(params[k]))
                                     for k in ("tage", "logzsol", "dust2", "tau"))
        return self.wave, self._lnu(self.wave, tage, logzsol, dust2, tau), 0.7

    def get_galaxy_elines(self):
        return np.zeros(0), np.zeros(0)

    def photometry(self, params, filters):
        if self.delay:
            time.sleep(self.delay)
        zred = np.asarray(params["zred"])[:, None]
        weff = np.array([f.wave_effective for f in filters])[None, :]
        col = {k: np.asarray(params[k])[:, None]
               for k in ("tage", "logzsol", "dust2", "mass", "tau")}
        lnu = self._lnu(weff / (1 + zred), col["tage"], col["logzsol"], col["dust2"], col["tau"])
        maggies = lnu * col["mass"] * 1e-10 / (1 + zred) ** 2
        return maggies, np.full(len(zred), 0.7)

    def sfh_properties(self, params):
        tage = np.asarray(params["tage"])
        return {"mfrac": np.full(tage.shape, 0.7), "sfr100": np.asarray(params["mass"]) / 1e10,
                "mwa": tage / 2}


def build_model(**run_params):
    params = TemplateLibrary["parametric_sfh"]
    params["zred"].update(isfree=True, init=0.5, prior=priors.TopHat(mini=0.05, maxi=1.5))
    params["mass"]["prior"] = priors.LogUniform(mini=1e8, maxi=1e12)
    params["logzsol"]["prior"] = priors.TopHat(mini=-1.5, maxi=0.19)
    params["dust2"]["prior"] = priors.TopHat(mini=0.0, maxi=2.0)
    params["tage"]["prior"] = priors.TopHat(mini=0.1, maxi=13.0)
    params["tau"]["prior"] = priors.LogUniform(mini=0.1, maxi=10.0)
    return SpecModel(params)


def build_sps(toy_delay=0.0, toy_nan_above=None, **run_params):
    return ToySPS(delay=toy_delay, nan_above=toy_nan_above)


def build_obs(**run_params):
    filters = load_filters(FILTERS)
    return {"filters": filters, "maggies": np.ones(len(filters)) * 1e-9,
            "maggies_unc": np.ones(len(filters)) * 1e-10,
            "phot_mask": np.ones(len(filters), dtype=bool),
            "wavelength": None, "spectrum": None}


if __name__ == "__main__":
    from prospect_sim import main
    main()
