"""Demo parameter file: a mock DES galaxy, delayed-tau SFH, embedded BC03 SSPs.

Copy this file to start your own. It runs in every mode::

    python param_files/demo_params.py --simulate --n_samples=100000
    python param_files/demo_params.py --dynesty          # or --emcee, --optimize
    mpiexec -n 3 python param_files/demo_params.py --dynesty
    python param_files/demo_params.py --train
    python param_files/demo_params.py --infer

The "observed" galaxy is a mock: ``build_obs`` predicts DES grizY photometry
for known parameters (``--mock_zred`` and ``TRUTH`` below) and adds Gaussian
noise at DES wide-survey depth, so a fit can be checked against the truth.

Units: fluxes in maggies (AB: mag = -2.5 log10 maggies), ``mass`` in Msun
*formed*, ``tage`` and ``tau`` in Gyr, ``dust2`` the optical depth at 5500 AA,
``logzsol`` = log10(Z/Zsun).
"""

import numpy as np

from prospect.models import SpecModel, priors
from prospect.models.templates import TemplateLibrary
from prospect.utils.obsutils import fix_obs
from sedpy.observate import load_filters

from prospect_sim.sps import build_sps as _select_sps

#: DES bands (sedpy names).
FILTERS = ["decam_g", "decam_r", "decam_i", "decam_z", "decam_Y"]

#: Median 10-sigma limiting AB magnitudes of DES DR1 (Abbott et al. 2018, ApJS 239, 18).
DEPTH_10SIGMA = {"decam_g": 23.57, "decam_r": 23.34, "decam_i": 22.78,
                 "decam_z": 22.10, "decam_Y": 20.69}

#: Fractional flux-error floor (photometric calibration).
ERROR_FLOOR = 0.02

#: Redshift prior (TopHat bounds).
ZRED_RANGE = (0.05, 1.5)

#: Parameters of the mock galaxy (zred comes from ``--mock_zred``).
TRUTH = {"mass": 3e10, "logzsol": -0.3, "dust2": 0.3, "tage": 5.0, "tau": 2.0}


def add_arguments(parser):
    """Flags of this parameter file, beside prospect_sim's own."""
    parser.add_argument("--mock_zred", type=float, default=0.4,
                        help="redshift of the mock galaxy built by build_obs")
    parser.add_argument("--mock_seed", type=int, default=101,
                        help="seed of the noise added to the mock photometry")
    parser.add_argument("--nebular", action="store_true",
                        help="add nebular emission (Prospector's TemplateLibrary['nebular'])")
    parser.add_argument("--dust_emission", action="store_true",
                        help="add dust emission with energy balance "
                             "(Prospector's TemplateLibrary['dust_emission'])")
    parser.add_argument("--agn", action="store_true",
                        help="add an AGN (free agn_mass, agn_eb_v, agn_torus_mass, "
                             "inclination, with agnfinder's priors)")


def build_model(**run_params):
    """Delayed-tau model with free redshift, mass, metallicity, dust and SFH.

    With ``--nebular``, Prospector's nebular template is added (lines and
    continuum, ``gas_logz`` tied to ``logzsol``, ``gas_logu = -2``); with
    ``--dust_emission`` its dust-emission template (Draine & Li 2007,
    energy balance; the DES bands do not see it, so it costs time only);
    with ``--agn`` a quasar disc and torus (``param_files/agn_params.py``
    says what the parameters mean).
    """
    params = TemplateLibrary["parametric_sfh"]
    if run_params.get("nebular", False):
        params.update(TemplateLibrary["nebular"])
    if run_params.get("dust_emission", False):
        params.update(TemplateLibrary["dust_emission"])
    if run_params.get("agn", False):
        params.update(_agn_parameters())
    params["zred"]["isfree"] = True
    params["zred"]["init"] = run_params.get("mock_zred", 0.4)
    params["zred"]["prior"] = priors.TopHat(mini=ZRED_RANGE[0], maxi=ZRED_RANGE[1])
    params["mass"]["prior"] = priors.LogUniform(mini=1e8, maxi=1e12)
    params["logzsol"]["prior"] = priors.TopHat(mini=-1.5, maxi=0.19)
    params["dust2"]["prior"] = priors.TopHat(mini=0.0, maxi=2.0)
    params["tage"]["prior"] = priors.TopHat(mini=0.1, maxi=13.0)
    params["tage"]["init"] = 5.0
    params["tau"]["prior"] = priors.LogUniform(mini=0.1, maxi=10.0)
    return SpecModel(params)


def _agn_parameters():
    """agnfinder's AGN parameters (TRUTH has no AGN: the mock keeps their init, 1e-7)."""
    def free(init, prior, units):
        return {"N": 1, "isfree": True, "init": init, "prior": prior, "units": units}
    return {"agn_mass": free(1e-7, priors.LogUniform(mini=1e-7, maxi=15.0), "L_disc / L_stars"),
            "agn_eb_v": free(0.1, priors.TopHat(mini=0.0, maxi=0.5), "mag"),
            "agn_torus_mass": free(1e-7, priors.LogUniform(mini=1e-7, maxi=15.0),
                                   "L_torus / L_stars"),
            "inclination": free(40.0, priors.TopHat(mini=0.0, maxi=90.0), "deg")}


def build_sps(sps_library="grid", **run_params):
    """The embedded BC03 grid by default; ``--sps fsps`` needs $SPS_HOME.

    The grid keeps only the rest-frame wavelengths the DES bands see at the
    prior's redshifts: the same photometry, a third less spectrum to sum in
    every likelihood call.
    """
    from prospect_sim.sps import GridSPS
    wave_range = GridSPS.wave_range_for(load_filters(FILTERS), *ZRED_RANGE)
    return _select_sps(sps_library, wave_range=wave_range)


def photometric_sigma(maggies):
    """DES-depth 1-sigma flux uncertainty, in maggies, for fluxes in maggies."""
    limit = np.array([10 ** (-0.4 * DEPTH_10SIGMA[f]) for f in FILTERS]) / 10.0
    return np.hypot(limit, ERROR_FLOOR * np.abs(maggies))


def build_obs(mock_zred=0.4, mock_seed=101, **run_params):
    """Mock DES photometry of a galaxy with parameters ``TRUTH`` at ``mock_zred``."""
    model = build_model(mock_zred=mock_zred, nebular=run_params.get("nebular", False),
                        dust_emission=run_params.get("dust_emission", False),
                        agn=run_params.get("agn", False))
    sps = build_sps(**run_params)
    truth = dict({k: model.params[k][0] for k in model.free_params}, **TRUTH, zred=mock_zred)
    theta = np.array([truth[name] for name in model.free_params], dtype=float)
    filters = load_filters(FILTERS)
    _, true_maggies, _ = model.predict(theta, obs={"filters": filters,
                                                  "wavelength": None,
                                                  "spectrum": None}, sps=sps)
    sigma = photometric_sigma(true_maggies)
    noisy = true_maggies + np.random.default_rng(mock_seed).normal(0.0, sigma)
    obs = {"filters": filters, "maggies": noisy, "maggies_unc": sigma,
           "phot_mask": np.ones(len(FILTERS), dtype=bool),
           "wavelength": None, "spectrum": None, "unc": None,
           "true_maggies": true_maggies, "true_theta": theta}
    return fix_obs(obs)


def build_noise(**run_params):
    """Chi-square likelihood with the uncertainties in ``obs['maggies_unc']``."""
    return None, None


def build_obs_noise(obs=None, **run_params):
    """Noise for training data: DES depths (scattered by 0.2 mag between fields) + floor."""
    from prospect_sim.amortized.noise import DepthNoise
    return DepthNoise(depths=[DEPTH_10SIGMA[f] for f in FILTERS], nsigma=10,
                      floor=ERROR_FLOOR, depth_scatter=0.2)


if __name__ == "__main__":
    from prospect_sim import main
    main()
