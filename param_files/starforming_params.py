"""A star-forming galaxy with nebular and dust emission: LSST ugrizy + WISE, photometric redshift.

Copy this file for emission-line galaxies. It runs in every mode::

    python param_files/starforming_params.py --simulate --n_samples=100000 --workers 2
    python param_files/starforming_params.py --dynesty
    python param_files/starforming_params.py --train
    python param_files/starforming_params.py --infer

The model is Prospector's delayed-tau template plus ``TemplateLibrary["nebular"]``
(lines and nebular continuum from the Cloudy grids of the embedded BC03
SSPs, ``gas_logz`` tied to ``logzsol``, the ionisation parameter
``gas_logu`` free in [-4, -1]) and ``TemplateLibrary["dust_emission"]``
(Draine & Li 2007 with energy balance; ``duste_umin``, ``duste_qpah`` and
``duste_gamma`` free, with Prospector-alpha's priors cut to the grid),
with birth-cloud dust on stars younger than 10 Myr (``dust1 = dust2``, so
lines and young stars see twice the optical depth of older stars).  Young,
low-mass galaxies are allowed (``tage`` from 10 Myr), where the lines move
the LSST bands by up to a magnitude or more; WISE W3 and W4 see the warm
dust and PAH emission at low redshift.

The "observed" galaxy is a mock: ``build_obs`` predicts the photometry for
``TRUTH`` at ``--mock_zred`` and adds Gaussian noise at LSST 10-year and
WISE (AllWISE) depths.

Units: fluxes in maggies (AB), ``mass`` in Msun *formed*, ``tage`` and
``tau`` in Gyr, ``dust2`` the optical depth at 5500 AA, ``logzsol`` =
log10(Z/Zsun).
"""

import numpy as np

from prospect.models import SpecModel, priors
from prospect.models.templates import TemplateLibrary
from prospect.utils.obsutils import fix_obs
from sedpy.observate import load_filters

from prospect_sim.sps import build_sps as _select_sps

#: LSST and WISE bands (sedpy names).
FILTERS = ["lsst_baseline_u", "lsst_baseline_g", "lsst_baseline_r", "lsst_baseline_i",
           "lsst_baseline_z", "lsst_baseline_y", "wise_w1", "wise_w2", "wise_w3", "wise_w4"]

#: 10-sigma AB depths: LSST 10-year 5-sigma (Ivezic et al. 2019, ApJ 873, 111,
#: table 1) less 0.75 mag; AllWISE W1-W4 (Cutri et al. 2013), roughly.
DEPTH_10SIGMA = {"lsst_baseline_u": 25.1, "lsst_baseline_g": 26.1, "lsst_baseline_r": 26.2,
                 "lsst_baseline_i": 25.6, "lsst_baseline_z": 24.9, "lsst_baseline_y": 24.1,
                 "wise_w1": 19.6, "wise_w2": 19.3, "wise_w3": 16.4, "wise_w4": 14.5}

#: Fractional flux-error floor (photometric calibration).
ERROR_FLOOR = 0.02

#: Redshift prior (TopHat bounds).
ZRED_RANGE = (0.05, 3.0)

#: Parameters of the mock galaxy (zred comes from ``--mock_zred``).
TRUTH = {"mass": 2e9, "logzsol": -0.5, "dust2": 0.2, "tage": 0.3, "tau": 1.0,
         "gas_logu": -2.5, "duste_umin": 2.0, "duste_qpah": 2.5, "duste_gamma": 0.01}


def add_arguments(parser):
    """Flags of this parameter file, beside prospect_sim's own."""
    parser.add_argument("--mock_zred", type=float, default=0.8,
                        help="redshift of the mock galaxy built by build_obs")
    parser.add_argument("--mock_seed", type=int, default=7,
                        help="seed of the noise added to the mock photometry")


def dust1_from_dust2(dust2=0.0, **extras):
    """Birth-cloud optical depth equal to the diffuse one (young stars see both)."""
    return dust2


def build_model(**run_params):
    """Delayed tau + nebular and dust emission; free redshift, mass, metallicity, dust, SFH, gas."""
    params = TemplateLibrary["parametric_sfh"]
    params.update(TemplateLibrary["nebular"])
    params.update(TemplateLibrary["dust_emission"])
    params["gas_logu"].update(isfree=True, prior=priors.TopHat(mini=-4.0, maxi=-1.0))
    # Prospector-alpha's dust-emission priors (Leja et al. 2017), cut to the DL07 grid
    params["duste_umin"].update(isfree=True, init=2.0, prior=priors.TopHat(mini=0.1, maxi=20.0))
    params["duste_qpah"].update(isfree=True, init=2.5, prior=priors.TopHat(mini=0.5, maxi=4.58))
    params["duste_gamma"].update(isfree=True, init=0.01,
                                 prior=priors.LogUniform(mini=1e-3, maxi=0.15))
    params["zred"]["isfree"] = True
    params["zred"]["init"] = run_params.get("mock_zred", 0.8)
    params["zred"]["prior"] = priors.TopHat(mini=ZRED_RANGE[0], maxi=ZRED_RANGE[1])
    params["mass"]["prior"] = priors.LogUniform(mini=1e7, maxi=1e12)
    params["logzsol"]["prior"] = priors.TopHat(mini=-1.9, maxi=0.19)
    params["dust2"]["prior"] = priors.TopHat(mini=0.0, maxi=1.5)
    params["tage"]["prior"] = priors.LogUniform(mini=0.01, maxi=11.0)
    params["tage"]["init"] = 1.0
    params["tau"]["prior"] = priors.LogUniform(mini=0.1, maxi=10.0)
    params["dust1"] = {"N": 1, "isfree": False, "init": 0.0, "depends_on": dust1_from_dust2}
    return SpecModel(params)


def build_sps(sps_library="grid", **run_params):
    """The embedded BC03 grid, trimmed to what the bands see at the prior's redshifts."""
    from prospect_sim.sps import GridSPS
    wave_range = GridSPS.wave_range_for(load_filters(FILTERS), *ZRED_RANGE)
    return _select_sps(sps_library, wave_range=wave_range)


def photometric_sigma(maggies):
    """1-sigma flux uncertainty (maggies) at the depths above, with the floor."""
    limit = np.array([10 ** (-0.4 * DEPTH_10SIGMA[f]) for f in FILTERS]) / 10.0
    return np.hypot(limit, ERROR_FLOOR * np.abs(maggies))


def build_obs(mock_zred=0.8, mock_seed=7, **run_params):
    """Mock photometry of a galaxy with parameters ``TRUTH`` at ``mock_zred``."""
    model = build_model(mock_zred=mock_zred)
    sps = build_sps(**run_params)
    truth = dict(TRUTH, zred=mock_zred)
    theta = np.array([truth[name] for name in model.free_params], dtype=float)
    filters = load_filters(FILTERS)
    _, true_maggies, _ = model.predict(theta, obs={"filters": filters, "wavelength": None,
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
    """Noise for training data: the depths above (scattered by 0.2 mag) + floor."""
    from prospect_sim.amortized.noise import DepthNoise
    return DepthNoise(depths=[DEPTH_10SIGMA[f] for f in FILTERS], nsigma=10,
                      floor=ERROR_FLOOR, depth_scatter=0.2)


if __name__ == "__main__":
    from prospect_sim import main
    main()
