"""Star clusters: Prospector's own demo photometry, fitted on the embedded SSPs.

The data (``data/prospector_demo_photometry.dat``, from Prospector's demo,
MIT licence) are *absolute* AB magnitudes of three star clusters: GALEX
FUV/NUV, five optical bands (Johnson/Cousins or SDSS, per the ``filterset``
column) and Spitzer/IRAC 1-4. As in Prospector's demo: ``zred = 0`` (so the
model is placed at 10 pc), 7% flux uncertainties, a delayed-tau SFH with free
mass, metallicity, age, tau and dust.

Difference from the FSPS demo: the embedded BC03 grid has no dust emission,
which dominates IRAC channels 3 and 4 (5.8 and 8.0 micron, PAH features); they
are masked unless ``--use_irac34`` is given.

    python param_files/clusters_params.py --dynesty --objid 0
"""

from pathlib import Path

import numpy as np

from prospect.models import SpecModel, priors
from prospect.models.templates import TemplateLibrary
from prospect.utils.obsutils import fix_obs
from sedpy.observate import load_filters

from prospect_sim.errors import ParamFileError
from prospect_sim.sps import build_sps as _select_sps

PHOTTABLE = Path(__file__).resolve().parent / "data" / "prospector_demo_photometry.dat"

GALEX = ["galex_FUV", "galex_NUV"]
IRAC = ["spitzer_irac_ch1", "spitzer_irac_ch2", "spitzer_irac_ch3", "spitzer_irac_ch4"]
OPTICAL = (["bessell_U", "bessell_B", "bessell_V", "bessell_R", "bessell_I"],   # filterset 0
           ["sdss_u0", "sdss_g0", "sdss_r0", "sdss_i0", "sdss_z0"])              # filterset 1

#: Fractional flux uncertainty assumed by Prospector's demo.
FRACTIONAL_UNC = 0.07


def add_arguments(parser):
    parser.add_argument("--objid", type=int, default=0,
                        help="row of the photometry table to fit (0, 1 or 2)")
    parser.add_argument("--phottable", type=str, default=str(PHOTTABLE),
                        help="photometry table (objid, filterset, 11 AB magnitudes)")
    parser.add_argument("--use_irac34", action="store_true",
                        help="also fit IRAC 5.8 and 8.0 micron (dust emission is not modelled)")


def build_obs(objid=0, phottable=str(PHOTTABLE), use_irac34=False, **run_params):
    """Absolute AB magnitudes of one cluster, as maggies at 10 pc."""
    table = np.genfromtxt(phottable, comments="#")
    rows = np.flatnonzero(table[:, 0] == objid)
    if rows.size != 1:
        raise ParamFileError(f"--objid {objid} is not in {phottable}: "
                             f"choose one of {table[:, 0].astype(int).tolist()}")
    row = table[rows[0]]
    filternames = GALEX + OPTICAL[int(row[1])] + IRAC
    mags = row[2:2 + len(filternames)]
    maggies = 10 ** (-0.4 * mags)
    mask = np.isfinite(mags)
    if not use_irac34:
        mask &= ~np.isin(filternames, IRAC[2:])
    obs = {"filters": load_filters(filternames),
           "maggies": np.where(mask, maggies, 0.0),
           "maggies_unc": np.where(mask, FRACTIONAL_UNC * maggies, 1.0),
           "phot_mask": mask, "wavelength": None, "spectrum": None,
           "unc": None, "objid": objid}
    return fix_obs(obs)


def build_model(**run_params):
    """Delayed tau at 10 pc (zred = 0), as in Prospector's demo."""
    params = TemplateLibrary["parametric_sfh"]
    params["zred"]["init"] = 0.0
    params["mass"]["prior"] = priors.LogUniform(mini=1e5, maxi=1e10)
    params["mass"]["init"] = 1e7
    params["logzsol"]["prior"] = priors.TopHat(mini=-1.0, maxi=0.19)
    params["logzsol"]["init"] = -0.3
    params["tage"]["prior"] = priors.TopHat(mini=0.101, maxi=14.0)
    params["tage"]["init"] = 5.0
    params["tau"]["prior"] = priors.LogUniform(mini=0.1, maxi=100.0)
    params["dust2"]["prior"] = priors.TopHat(mini=0.0, maxi=2.0)
    params["dust2"]["init"] = 0.35
    return SpecModel(params)


def build_sps(sps_library="grid", **run_params):
    return _select_sps(sps_library)


def build_noise(**run_params):
    return None, None


if __name__ == "__main__":
    from prospect_sim import main
    main()
