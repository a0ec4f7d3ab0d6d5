"""Toy parameter file for the driver's tests: a SedModel over an analytic "sps".

No SPS_HOME, no grid, a likelihood in microseconds: the tests of the driver
(parsing, pools, fits, MPI) run in seconds and do not depend on GridSPS.
``--toy_delay`` adds a sleep per model call, to stand in for a real SPS.
The data are a power law with mass 2e10 and slope 0.5 (5% errors).
"""
import time

import numpy as np
from prospect.models import SedModel, priors
from sedpy.observate import load_filters

FILTERS = ["sdss_g0", "sdss_r0", "sdss_i0"]
WAVE = np.array([4770., 6231., 7625.])


class ToySPS:
    """phot = mass * 1e-12 * (wave/6000)**slope maggies; mfrac = 1 - 0.1 * slope**2."""
    wavelengths = WAVE

    def __init__(self, delay=0.0):
        self.delay = delay

    def get_spectrum(self, outwave=None, filters=None, **params):
        if self.delay:
            time.sleep(self.delay)
        mass = float(np.squeeze(params["mass"]))
        slope = float(np.squeeze(params["slope"]))
        phot = mass * 1e-12 * (WAVE / 6000.) ** slope
        return np.zeros(1), phot, 1.0 - 0.1 * slope ** 2


def add_arguments(parser):
    parser.add_argument("--toy_delay", type=float, default=0.0,
                        help="seconds of sleep per model call")


def build_model(**run_params):
    return SedModel({
        "mass": {"N": 1, "isfree": True, "init": 1e10,
                 "prior": priors.LogUniform(mini=1e9, maxi=1e11)},
        "slope": {"N": 1, "isfree": True, "init": 0.0,
                  "prior": priors.TopHat(mini=-1.0, maxi=1.0)}})


def build_sps(toy_delay=0.0, **run_params):
    return ToySPS(toy_delay)


def build_obs(**run_params):
    phot = 2e10 * 1e-12 * (WAVE / 6000.) ** 0.5
    return {"filters": load_filters(FILTERS), "maggies": phot, "maggies_unc": 0.05 * phot,
            "phot_mask": np.ones(3, bool), "wavelength": None, "spectrum": None}


if __name__ == "__main__":
    from prospect_sim import main
    main()
