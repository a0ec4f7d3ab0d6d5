"""agnfinder-style parameter file: a galaxy with a quasar disc and a dusty torus.

The free-parameter box of agnfinder (Walmsley et al.): redshift 0-6, log
stellar mass formed 8-12, ``agn_mass`` and ``agn_torus_mass`` LogUniform
1e-7 to 15, ``dust2`` 0-2, ``tage`` 0.001-13.8 Gyr, ``tau`` LogUniform
0.1-30 Gyr, ``agn_eb_v`` 0-0.5, ``inclination`` 0-90 deg; SDSS ugriz,
VISTA YJHKs and WISE W1-W4 photometry.  It runs in every mode::

    python param_files/agn_params.py --simulate --n_samples 100000 --workers 2
    python param_files/agn_params.py --dynesty
    python param_files/agn_params.py --train
    python param_files/agn_params.py --infer

What the AGN parameters mean (``prospect_sim.sps.agn``): ``agn_mass`` is
the intrinsic luminosity of the quasar disc (Shang et al. 2011 median
radio-quiet SED) and ``agn_torus_mass`` that of the CLUMPY torus
(Nenkova et al. 2008), each as a multiple of the intrinsic bolometric
luminosity of the galaxy's stars; ``agn_eb_v`` reddens the disc alone
(SMC curve); ``inclination`` picks the torus's viewing angle (0 face-on).
Dust emission is on (Draine & Li 2007, energy balance), so W3/W4 see the
host's dust as well as the torus.

The "observed" galaxy is a mock at ``--mock_zred`` with a bright AGN.
Units: fluxes in maggies (AB), ``mass`` in Msun formed, ``tage``/``tau``
in Gyr.
"""

import numpy as np

from prospect.models import SpecModel, priors
from prospect.models.templates import TemplateLibrary
from prospect.utils.obsutils import fix_obs
from sedpy.observate import load_filters

from prospect_sim.sps import build_sps as _select_sps

FILTERS = (["sdss_u0", "sdss_g0", "sdss_r0", "sdss_i0", "sdss_z0"]
           + ["vista_vircam_Z", "vista_vircam_J", "vista_vircam_H", "vista_vircam_Ks"]
           + ["wise_w1", "wise_w2", "wise_w3", "wise_w4"])

#: 10-sigma AB depths, roughly SDSS, VIKING and AllWISE.
DEPTH_10SIGMA = {"sdss_u0": 21.3, "sdss_g0": 22.4, "sdss_r0": 22.1, "sdss_i0": 21.6,
                 "sdss_z0": 20.1, "vista_vircam_Z": 22.1, "vista_vircam_J": 21.2,
                 "vista_vircam_H": 20.6, "vista_vircam_Ks": 20.3, "wise_w1": 19.6,
                 "wise_w2": 19.3, "wise_w3": 16.2, "wise_w4": 14.0}

ERROR_FLOOR = 0.03
ZRED_RANGE = (0.01, 6.0)

#: The mock: a 3e10 Msun galaxy with a disc 3x and a torus 2x its stars' luminosity.
TRUTH = {"mass": 3e10, "dust2": 0.4, "tage": 3.0, "tau": 1.0, "agn_mass": 3.0,
         "agn_eb_v": 0.1, "agn_torus_mass": 2.0, "inclination": 40.0}


def add_arguments(parser):
    """Flags of this parameter file, beside prospect_sim's own."""
    parser.add_argument("--mock_zred", type=float, default=1.0,
                        help="redshift of the mock galaxy built by build_obs")
    parser.add_argument("--mock_seed", type=int, default=11,
                        help="seed of the noise added to the mock photometry")


def build_model(**run_params):
    """agnfinder's free parameters on Prospector's delayed-tau template with dust emission."""
    params = TemplateLibrary["parametric_sfh"]
    params.update(TemplateLibrary["dust_emission"])
    params["zred"].update(isfree=True, init=run_params.get("mock_zred", 1.0),
                          prior=priors.TopHat(mini=ZRED_RANGE[0], maxi=ZRED_RANGE[1]))
    params["mass"]["prior"] = priors.LogUniform(mini=1e8, maxi=1e12)
    params["logzsol"].update(isfree=False, init=0.0)
    params["dust2"]["prior"] = priors.TopHat(mini=0.0, maxi=2.0)
    params["tage"].update(init=3.0, prior=priors.TopHat(mini=0.001, maxi=13.8))
    params["tau"].update(init=1.0, prior=priors.LogUniform(mini=0.1, maxi=30.0))
    params["agn_mass"] = {"N": 1, "isfree": True, "init": 1.0, "units": "L_disc / L_stars",
                          "prior": priors.LogUniform(mini=1e-7, maxi=15.0)}
    params["agn_eb_v"] = {"N": 1, "isfree": True, "init": 0.1, "units": "mag",
                          "prior": priors.TopHat(mini=0.0, maxi=0.5)}
    params["agn_torus_mass"] = {"N": 1, "isfree": True, "init": 1.0,
                                "units": "L_torus / L_stars",
                                "prior": priors.LogUniform(mini=1e-7, maxi=15.0)}
    params["inclination"] = {"N": 1, "isfree": True, "init": 40.0, "units": "deg",
                             "prior": priors.TopHat(mini=0.0, maxi=90.0)}
    return SpecModel(params)


def build_sps(sps_library="grid", **run_params):
    """The embedded BC03 grid (AGN, dust emission), trimmed to what the bands see."""
    from prospect_sim.sps import GridSPS
    wave_range = GridSPS.wave_range_for(load_filters(FILTERS), *ZRED_RANGE)
    return _select_sps(sps_library, wave_range=wave_range)


def photometric_sigma(maggies):
    """1-sigma flux uncertainty (maggies) at the depths above, with the floor."""
    limit = np.array([10 ** (-0.4 * DEPTH_10SIGMA[f]) for f in FILTERS]) / 10.0
    return np.hypot(limit, ERROR_FLOOR * np.abs(maggies))


def build_obs(mock_zred=1.0, mock_seed=11, **run_params):
    """Mock photometry of ``TRUTH`` at ``mock_zred``."""
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
