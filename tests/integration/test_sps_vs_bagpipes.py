"""GridSPS photometry against an independent SPS code on the same BC03 grids: bagpipes.

bagpipes (``model_galaxy``) shares only the raw BC03 2016 MILES grid file with
GridSPS; its SFH integration, age binning, wavelength resampling, dust,
IGM, distances and filter integration are its own code.  The two must give
the same DES grizY magnitudes to 0.03 mag over a spread of parameters
(delayed tau, Calzetti dust, z = 0.1-1.5, four grid metallicities).

Conventions reconciled (each is a documented difference, not a fudge):

- **model**: bagpipes ``"delayed"`` component with ``age`` = ``tage``,
  ``tau`` = ``tau`` (Gyr), ``massformed`` = log10(``mass``) (mass formed in
  both); no ``nebular`` component (GridSPS is stellar light only); dust
  ``"Calzetti"`` with ``Av = 1.086 * dust2`` (A_V = 2.5 log10(e) tau_V)
  against GridSPS ``dust_type=2``; no birth-cloud dust in either
  (``dust1=0``, no ``eta``).
- **metallicity**: bagpipes interpolates linearly in Z, GridSPS linearly in
  log Z; both are exact at grid points, so only grid metallicities are
  used (Z/Zsun = 0.2, 0.4, 1, 2.5 as ``logzsol = log10`` of those).
- **ages**: bagpipes rebins the SSP ages into 0.1 dex bins, which matters
  for short SFHs (up to 0.04 mag for tau < 0.3 Gyr): tau >= 0.5 Gyr and
  tage >= 0.8 Gyr here, and tage below the age of the universe at z in
  bagpipes' cosmology (it refuses older models).
- **spectral sampling**: bagpipes samples the photometric range at
  ``config.R_phot = 100`` by default (aliasing up to 0.08 mag in the rest
  UV); it is raised to 2000 in the subprocess before the model is built.
- **cosmology and distance**: bagpipes uses flat LCDM H0=70, Om0=0.3 and
  1 Mpc = 3.086e24 cm; Prospector WMAP9 and ``prospect.sources.constants.pc``.
  The luminosity distance bagpipes used (``utils.ldist_at_z`` interpolated
  at z, rescaled to Prospector's parsec) is passed to GridSPS as ``lumdist``.
- **solar luminosity**: bagpipes 3.826e33 erg/s, Prospector 3.846e33: GridSPS
  maggies are multiplied by 3.826/3.846 (0.0057 mag).
- **IGM**: bagpipes Inoue et al. (2014), GridSPS Madau (1995).  At z <= 1.5
  the DES g band (>= 3940 AA) starts redward of Ly-alpha (1216 * 2.5 =
  3040 AA), so neither touches the photometry.
- **units**: bagpipes ``phot_units="ergscma"`` is the photon-weighted mean
  f_lambda, int T f_lambda lambda dlambda / int T lambda dlambda; times
  lambda_pivot**2 / c (lambda_pivot**2 = int T lambda dlambda /
  int T dlambda / lambda, from the same filter table) it is exactly sedpy's
  AB f_nu, divided by 3631 Jy for maggies.  Both codes get the same DECam
  curves (sedpy's tables are written out for bagpipes).

Residuals measured (GridSPS - bagpipes, mag): -0.0003 to -0.0085, nearly
the same in all five bands of a case; colours agree to 2 mmag.  They are
reproduced by :func:`test_residuals_are_bagpipes_age_binning`: bagpipes'
0.1-dex age binning (up to -0.006 for tage 10, tau 1, whose first Gyr of
star formation falls in the 8.9-11.2 Gyr bin and is given that bin's older,
fainter SSP mix), Calzetti's R_V (FSPS writes 1.78/0.44 = 4.045, bagpipes
4.05: -1.34e-3 * dust2), and a grey -0.002 common to every case that is not
traced yet.  All well inside 0.03 mag.

bagpipes' first import writes an IGM table into its own package folder, so
it runs in a subprocess whose ``PYTHONPATH`` points at a copy of the
package in a temporary folder (the large grid files are symlinked, the
code copied); site-packages is never written.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest


BANDS = [f"decam_{b}" for b in "grizY"]
LSUN_RATIO = 3.826 / 3.846
# (zred, tage Gyr, tau Gyr, Z/Zsun, dust2, log10 mass formed)
CASES = [
    (0.1, 10.0, 1.0, 1.0, 0.0, 10.0),
    (0.1, 3.0, 0.5, 0.4, 0.3, 9.5),
    (0.3, 8.0, 3.0, 2.5, 0.6, 10.5),
    (0.5, 1.0, 0.5, 0.2, 0.2, 9.0),
    (0.5, 6.0, 2.0, 1.0, 1.0, 11.0),
    (0.8, 0.8, 1.0, 0.4, 0.5, 10.0),
    (1.0, 4.0, 0.7, 2.5, 0.1, 10.8),
    (1.0, 2.0, 3.0, 0.2, 0.8, 10.2),
    (1.5, 1.5, 0.5, 1.0, 0.4, 11.0),
    (1.5, 3.5, 1.5, 0.4, 1.2, 10.5),
]

_BAGPIPES_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import bagpipes
    from bagpipes import config, utils
    assert bagpipes.__file__.startswith(sys.argv[3]), bagpipes.__file__
    config.R_phot = 2000.
    filt_list = json.loads(sys.argv[2])
    out = []
    for z, tage, tau, zmet, dust2, logm in json.loads(sys.argv[1]):
        comp = {"redshift": z,
                "delayed": {"age": tage, "tau": tau, "massformed": logm,
                            "metallicity": zmet},
                "dust": {"type": "Calzetti", "Av": 1.086 * dust2}}
        model = bagpipes.model_galaxy(comp, filt_list=filt_list, phot_units="ergscma")
        ldist = float(np.interp(z, utils.z_array, utils.ldist_at_z))
        out.append({"flam": list(map(float, model.photometry)), "ldist_mpc": ldist})
    print("RESULT" + json.dumps({"cases": out, "age_bins": list(map(float, config.age_bins))}))
""")


def _bagpipes_dir():
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bagpipes is not installed")
    return list(spec.submodule_search_locations)[0]


def _copy_package(src, dst):
    """Copy the bagpipes code to ``dst``; symlink its data files (read-only use)."""
    def copy(s, d):
        if s.endswith((".fits", ".hdf5", ".h5")):
            os.symlink(os.path.realpath(s), d)
        else:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, copy_function=copy,
                    ignore=shutil.ignore_patterns("__pycache__", "d_igm_grid_inoue14.fits"))


def _igm_table_state(package_dir):
    path = os.path.join(package_dir, "models", "grids", "d_igm_grid_inoue14.fits")
    return os.path.getmtime(path) if os.path.exists(path) else None


def _run_bagpipes(tmp_path_factory, script, cases, bands, *extra):
    """Run ``script`` under a copy of bagpipes; returns its RESULT JSON and the bands' pivots.

    The script gets ``cases`` (JSON), the filter files (JSON list), the
    copy's folder and ``extra``.  The installed package is checked untouched.
    """
    src = _bagpipes_dir()
    installed_state = _igm_table_state(src)
    root = tmp_path_factory.mktemp("bagpipes_copy")
    _copy_package(src, str(root / "bagpipes"))
    from sedpy.observate import load_filters
    filt_dir = tmp_path_factory.mktemp("filters")
    filt_list, pivots = [], []
    for f in load_filters(bands):
        path = str(filt_dir / f"{f.name}.dat")
        np.savetxt(path, np.column_stack([f.wavelength, f.transmission]))
        filt_list.append(path)
        t, w = f.transmission, f.wavelength
        pivots.append(np.sqrt(np.trapezoid(t * w, w) / np.trapezoid(t / w, w)))
    env = dict(os.environ, PYTHONPATH=str(root), MPLBACKEND="Agg",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(cases),
                           json.dumps(filt_list), str(root)] + list(extra),
                          env=env, capture_output=True, text=True, timeout=900,
                          cwd=str(root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    # the installed package was not touched
    assert _igm_table_state(src) == installed_state
    return json.loads(line[len("RESULT"):]), np.array(pivots)


def _maggies(cases, pivots):
    """bagpipes' photon-weighted mean f_lambda (ergscma) of each case -> maggies."""
    flam = np.array([r["flam"] for r in cases])             # erg/s/cm^2/AA
    return flam * pivots**2 / 2.998e18 / 3631e-23


@pytest.fixture(scope="module")
def bagpipes_photometry(tmp_path_factory):
    result, pivots = _run_bagpipes(tmp_path_factory, _BAGPIPES_SCRIPT, CASES, BANDS)
    age_bins = np.array(result["age_bins"])                    # yr, bagpipes' 0.1-dex bins
    result = result["cases"]
    maggies = _maggies(result, pivots)
    ldist = np.array([r["ldist_mpc"] for r in result])
    return maggies, ldist, age_bins


def test_des_photometry_matches_bagpipes(bagpipes_photometry):
    from sedpy.observate import load_filters
    from prospect_sim.sps import GridSPS
    from prospect.sources.constants import pc
    ref, ldist_bp, _ = bagpipes_photometry
    cases = np.array(CASES)
    # bagpipes' Mpc is 3.086e24 cm; Prospector's lumdist is in its own Mpc (pc * 1e6)
    lumdist = ldist_bp * 3.086e24 / (pc * 1e6)
    params = dict(sfh=4, dust_type=2, zred=cases[:, 0], tage=cases[:, 1], tau=cases[:, 2],
                  logzsol=np.log10(cases[:, 3]), dust2=cases[:, 4], mass=10**cases[:, 5],
                  lumdist=lumdist, dust1=0.0, add_igm_absorption=True)
    filters = load_filters(BANDS)
    sps = GridSPS()
    # the per-object (native-resolution) path is the reference side
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    cfg = TemplateLibrary["parametric_sfh"]
    cfg["dust_type"]["init"] = 2
    cfg["lumdist"] = dict(N=1, isfree=False, init=1.0)
    model = SpecModel(cfg)
    obs = dict(filters=filters, wavelength=None, spectrum=None)
    ours = []
    for i, (z, tage, tau, zmet, dust2, logm) in enumerate(CASES):
        model.params["zred"] = np.atleast_1d(z)
        model.params["lumdist"] = np.atleast_1d(lumdist[i])
        values = dict(mass=10**logm, logzsol=np.log10(zmet), dust2=dust2, tage=tage, tau=tau)
        theta = np.array([values[k] for k in model.theta_labels()])
        ours.append(model.predict(theta, obs=obs, sps=sps)[1])
    ours = np.array(ours) * LSUN_RATIO
    dmag = -2.5 * np.log10(ours / ref)
    # the batched kernel agrees with the per-object path (1e-3 mag, unit tests)
    batched, _ = sps.photometry(params, filters)
    np.testing.assert_allclose(batched * LSUN_RATIO, ours, rtol=2e-3)
    table = "\n".join(f"{c} {np.round(d, 4)}" for c, d in zip(CASES, dmag))
    assert np.abs(dmag).max() < 0.03, "GridSPS - bagpipes (mag):\n" + table


def test_residuals_are_bagpipes_age_binning(bagpipes_photometry):
    """The residuals above, reproduced: bagpipes' 0.1-dex age binning and Calzetti's R_V.

    bagpipes gives the mass formed in each 0.1-dex lookback bin the SSP mix
    of a constant SFR across that bin.  That is GridSPS's ``sfh=3`` with
    bagpipes' bin edges and the delayed-tau mass per bin.  bagpipes' Calzetti
    curve uses R_V = 4.05 where FSPS writes 1.78/0.44 = 4.045: tau differs by
    0.005/4.05 * dust2 at every wavelength (both branches of the curve), a
    grey 1.34e-3 * dust2 mag.  With both reproduced, what remains is a grey
    offset common to all cases (median -0.0020 mag: GridSPS brighter by
    0.2%, independent of age, redshift, metallicity and dust) and a tilt of
    at most 1.0 mmag about it (g brighter than Y).  Neither is traced yet
    (bagpipes' sampling is converged: R_phot 2000 -> 5000 changes it by
    2e-5); they are asserted to stay at their measured size so a change shows.
    """
    from sedpy.observate import load_filters
    from prospect_sim.sps import GridSPS
    from prospect_sim.sps.sfh import cumulative_fraction
    from prospect.sources.constants import pc
    ref, ldist_bp, age_bins = bagpipes_photometry
    cases = np.array(CASES)
    edges = age_bins.copy()
    edges[0] = 1.0                                   # 1 yr: log10 needs a positive edge
    cum = cumulative_fraction(4, edges[None, :].repeat(len(cases), 0), tage=cases[:, 1],
                              tau=cases[:, 2])
    mass = np.diff(cum, axis=1) * 10**cases[:, 5][:, None]
    agebins = np.log10(np.stack([edges[:-1], edges[1:]], axis=-1))
    lumdist = ldist_bp * 3.086e24 / (pc * 1e6)
    # the per-object (native-resolution) path, projected as SpecModel.predict_phot does
    from sedpy.observate import getSED
    from prospect.models.sedmodel import to_cgs
    sps, filters = GridSPS(), load_filters(BANDS)
    binned = []
    for i, (z, _, _, zmet, dust2, _) in enumerate(CASES):
        wave, spec, _ = sps.get_galaxy_spectrum(sfh=3, dust_type=2, zred=z, agebins=agebins,
                                                mass=mass[i], logzsol=np.log10(zmet),
                                                dust2=dust2, dust1=0.0)
        fnu = spec * mass[i].sum() * to_cgs / 3631e-23 * (1 + z) / (lumdist[i] * 1e5)**2
        wobs = wave * (1 + z)
        binned.append(getSED(wobs, fnu * 2.998e18 / wobs**2 * 3631e-23, filters,
                             linear_flux=True))
    binned = np.array(binned)
    rv = np.exp(-0.005 / 4.05 * cases[:, 4])[:, None]        # bagpipes' R_V = 4.05
    dmag = -2.5 * np.log10(binned * rv * LSUN_RATIO / ref)
    table = "\n".join(f"{c} {np.round(d, 4)}" for c, d in zip(CASES, dmag))
    grey = np.median(dmag)
    # measured: 1.0 mmag (g band of the oldest case); 1.5 mmag so that rounding does not flip it
    assert np.abs(dmag - grey).max() < 0.0015, "GridSPS (bagpipes' bins) - bagpipes:\n" + table
    assert abs(grey) < 0.005, f"grey offset {grey:.4f} mag:\n" + table


# --------------------------------------------------------------------------
# nebular emission: young, line-dominated galaxies
#
# Conventions reconciled, beyond those above:
# - **model**: bagpipes ``"constant"`` from ``age_min=0`` to ``age_max``
#   against GridSPS ``sfh=3`` with one bin of constant SFR (1 yr to
#   ``age_max``); ``"nebular": {"logU": gas_logu}`` against
#   ``add_neb_emission`` with ``gas_logz = logzsol`` (bagpipes' default:
#   the gas has the stars' metallicity); no dust in either.
# - **which stars ionise**: bagpipes lets stars younger than ``t_bc`` emit,
#   GridSPS all those younger than the grid's oldest age (25.1 Myr).  With
#   ``t_bc = 0.025`` Gyr and no star older than 20 Myr both count every
#   ionising star.
# - **lines in the spectrum**: bagpipes adds each line to its nearest pixel
#   of its own grid, GridSPS shares it between the two pixels around it
#   (``nebemlineinspec=True``); both conserve the line's luminosity.
# - **line luminosities**: bagpipes' ``line_fluxes`` (erg/s/cm^2) times its
#   own ``4 pi d_L^2`` and divided by its Lsun give Lsun, compared with
#   ``get_galaxy_elines`` times the mass formed.
# Measured (2026-12-06): photometry within 0.017 mag (DECam r of the 5 Myr
# case, where H-alpha sits at 7220 AA; 0.010 otherwise), the four line
# luminosities within 0.65%.
NEB_CASES = [
    # (zred, age_max Myr, Z/Zsun, logU, log10 mass formed)
    (0.1, 5.0, 1.0, -2.0, 8.0),
    (0.3, 10.0, 0.2, -2.0, 8.5),
    (0.5, 3.0, 0.4, -3.0, 8.0),
    (0.7, 20.0, 1.0, -1.0, 9.0),
    (1.0, 8.0, 2.5, -2.5, 9.0),
]
NEB_LINES = {"H-alpha": ["H  1  6562.80A"], "H-beta": ["H  1  4861.32A"],
             "[OIII]5007": ["O  3  5006.84A"], "[OII]3727": ["O  2  3726.03A", "O  2  3728.81A"]}

_BAGPIPES_NEB_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import bagpipes
    from bagpipes import config, utils
    assert bagpipes.__file__.startswith(sys.argv[3]), bagpipes.__file__
    config.R_phot = 2000.
    filt_list = json.loads(sys.argv[2])
    names = json.loads(sys.argv[4])
    out = []
    for z, age_max, zmet, logu, logm in json.loads(sys.argv[1]):
        comp = {"redshift": z, "t_bc": 0.025,
                "constant": {"age_max": age_max / 1e3, "age_min": 0.0, "massformed": logm,
                             "metallicity": zmet},
                "nebular": {"logU": logu}}
        model = bagpipes.model_galaxy(comp, filt_list=filt_list, phot_units="ergscma")
        ldist = float(np.interp(z, utils.z_array, utils.ldist_at_z))
        lines = {n: float(model.line_fluxes[n] * model.lum_flux / 3.826e33) for n in names}
        out.append({"flam": list(map(float, model.photometry)), "ldist_mpc": ldist,
                    "lines_lsun": lines})
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def bagpipes_nebular(tmp_path_factory):
    names = sorted({n for group in NEB_LINES.values() for n in group})
    result, pivots = _run_bagpipes(tmp_path_factory, _BAGPIPES_NEB_SCRIPT, NEB_CASES, BANDS,
                                   json.dumps(names))
    ldist = np.array([r["ldist_mpc"] for r in result])
    return _maggies(result, pivots), ldist, [r["lines_lsun"] for r in result]


def _gridsps_nebular(case, lumdist):
    from sedpy.observate import getSED, load_filters
    from prospect.models.sedmodel import to_cgs
    from prospect_sim.sps import GridSPS
    z, age_max, zmet, logu, logm = case
    sps = GridSPS()
    mass = 10**logm
    # constant SFR from 1 yr to age_max, in two bins (masses in proportion to their widths)
    edges = np.array([1.0, 0.5 * age_max * 1e6, age_max * 1e6])
    bin_mass = mass * np.diff(edges) / (edges[-1] - edges[0])
    agebins = np.log10(np.stack([edges[:-1], edges[1:]], axis=1))
    wave, spec, _ = sps.get_galaxy_spectrum(
        sfh=3, agebins=agebins, mass=bin_mass,
        logzsol=np.log10(zmet), gas_logz=np.log10(zmet), gas_logu=logu, zred=z, dust2=0.0,
        dust1=0.0, add_neb_emission=True, add_neb_continuum=True, nebemlineinspec=True)
    lwave, lum = sps.get_galaxy_elines()
    fnu = spec * mass * to_cgs / 3631e-23 * (1 + z) / (lumdist * 1e5)**2
    wobs = wave * (1 + z)
    maggies = getSED(wobs, fnu * 2.998e18 / wobs**2 * 3631e-23, load_filters(BANDS),
                     linear_flux=True)
    names = list(sps_line_names())
    lines = {key: sum(lum[names.index(n)] for n in group) * mass
             for key, group in NEB_LINES.items()}
    return maggies, lines


def sps_line_names():
    from prospect_sim.sps.cloudy import line_list
    return line_list()[1]


def test_nebular_photometry_and_lines_match_bagpipes(bagpipes_nebular):
    from prospect.sources.constants import pc
    ref, ldist_bp, ref_lines = bagpipes_nebular
    lumdist = ldist_bp * 3.086e24 / (pc * 1e6)
    rows, line_rows = [], []
    for i, case in enumerate(NEB_CASES):
        maggies, lines = _gridsps_nebular(case, lumdist[i])
        rows.append(-2.5 * np.log10(maggies * LSUN_RATIO / ref[i]))
        bp = {key: sum(ref_lines[i][n] for n in group) for key, group in NEB_LINES.items()}
        line_rows.append({key: lines[key] / bp[key] - 1 for key in NEB_LINES})
    dmag = np.array(rows)
    table = "\n".join(f"{c} {np.round(d, 4)} {({k: round(v, 4) for k, v in lr.items()})}"
                      for c, d, lr in zip(NEB_CASES, dmag, line_rows))
    assert np.abs(dmag).max() < 0.03, "GridSPS - bagpipes (mag), line ratios - 1:\n" + table
    worst = max(abs(v) for lr in line_rows for v in lr.values())
    assert worst < 0.05, "GridSPS / bagpipes line luminosity - 1:\n" + table


# --------------------------------------------------------------------------
# dust emission with energy balance (Draine & Li 2007, the same grids)
#
# Conventions reconciled, beyond those of the first test:
# - **model**: bagpipes ``"dust": {"type": "Calzetti", "Av": 1.086 dust2,
#   "qpah", "umin", "gamma"}`` against GridSPS ``dust_type=2``,
#   ``add_dust_emission`` with ``duste_qpah``, ``duste_umin``,
#   ``duste_gamma``; both scale the template to the luminosity absorbed and
#   leave the emission unattenuated.
# - **sampling**: bagpipes integrates the absorbed energy on its own grid,
#   ``config.R_other = 20`` outside the bands' range by default (a few per
#   cent off in energy); raised to 1000 in the subprocess, like R_phot.
# - **the curve below 1200 AA**: bagpipes continues Calzetti's curve there
#   as a power law, k(1200) (lambda/1200)**-0.77; FSPS (and GridSPS) continue
#   the polynomial, which is steeper.  Where the ultraviolet is optically thin
#   (dust2 0.3-0.5) the two absorb different energies: a delayed-tau
#   population still forming stars absorbs 35-40% of its energy below 1200 AA
#   (measured with GridSPS), so bagpipes re-emits 1.3% (3 Gyr, dust2 0.5) and
#   3.3% (6 Gyr, dust2 0.3) less.  The test scales GridSPS's dust emission by
#   the ratio of the energies the two curves absorb from the same spectrum.
# Measured: before that scaling the dust bands were off by -0.017 (3 Gyr)
# and -0.044 mag (6 Gyr); the scaling accounts for 0.014 and 0.035 of it,
# and leaves every band of every case within 0.009 mag (the 6 Gyr dust
# bands -0.0087, the others within 0.0055, beside the grey -0.002 to -0.003
# of the first test).  The test holds them to 0.012.
DUST_BANDS = ["decam_r", "wise_w1", "wise_w2", "wise_w3", "wise_w4", "spitzer_mips_24",
              "herschel_pacs_70", "herschel_pacs_100", "herschel_pacs_160"]
DUST_CASES = [
    # (zred, tage Gyr, tau Gyr, Z/Zsun, dust2, log mass, qpah, umin, gamma)
    (0.05, 3.0, 1.0, 1.0, 0.5, 10.0, 2.50, 1.0, 0.01),
    (0.1, 1.0, 0.5, 0.4, 1.0, 10.0, 3.90, 3.0, 0.05),
    (0.2, 6.0, 3.0, 2.5, 0.3, 10.5, 0.47, 0.5, 0.0),
    (0.3, 2.0, 2.0, 0.2, 1.5, 10.0, 4.58, 10.0, 0.2),
    (0.5, 1.5, 0.7, 1.0, 0.8, 11.0, 1.77, 2.0, 0.1),
]

_BAGPIPES_DUST_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import bagpipes
    from bagpipes import config, utils
    assert bagpipes.__file__.startswith(sys.argv[3]), bagpipes.__file__
    config.R_phot = 2000.
    config.R_other = 1000.
    filt_list = json.loads(sys.argv[2])
    out = []
    for z, tage, tau, zmet, dust2, logm, qpah, umin, gamma in json.loads(sys.argv[1]):
        comp = {"redshift": z,
                "delayed": {"age": tage, "tau": tau, "massformed": logm, "metallicity": zmet},
                "dust": {"type": "Calzetti", "Av": 1.086 * dust2, "qpah": qpah,
                         "umin": umin, "gamma": gamma}}
        model = bagpipes.model_galaxy(comp, filt_list=filt_list, phot_units="ergscma")
        ldist = float(np.interp(z, utils.z_array, utils.ldist_at_z))
        out.append({"flam": list(map(float, model.photometry)), "ldist_mpc": ldist})
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def bagpipes_dust(tmp_path_factory):
    result, pivots = _run_bagpipes(tmp_path_factory, _BAGPIPES_DUST_SCRIPT, DUST_CASES,
                                   DUST_BANDS)
    return _maggies(result, pivots), np.array([r["ldist_mpc"] for r in result])


def test_dust_emission_matches_bagpipes(bagpipes_dust):
    from sedpy.observate import getSED, load_filters
    from prospect.models.sedmodel import to_cgs
    from prospect.sources.constants import pc
    from prospect_sim.sps import GridSPS
    from prospect_sim.sps.dust import R_V, calzetti_k
    ref, ldist_bp = bagpipes_dust
    lumdist = ldist_bp * 3.086e24 / (pc * 1e6)
    filters = load_filters(DUST_BANDS)
    rows = []
    for i, (z, tage, tau, zmet, dust2, logm, qpah, umin, gamma) in enumerate(DUST_CASES):
        sps = GridSPS()
        kw = dict(sfh=4, tage=tage, tau=tau, logzsol=np.log10(zmet), dust_type=2, dust1=0.0,
                  zred=z)
        wave, spec, _ = sps.get_galaxy_spectrum(
            **kw, dust2=dust2, add_dust_emission=True, duste_qpah=qpah, duste_umin=umin,
            duste_gamma=gamma)
        _, stars, _ = sps.get_galaxy_spectrum(**kw, dust2=dust2, add_dust_emission=False)
        _, bare, _ = sps.get_galaxy_spectrum(**kw, dust2=0.0, add_dust_emission=False)
        # the energy bagpipes' curve would absorb from the same spectrum, over ours
        k_bp = np.where(wave < 1200.0, calzetti_k(np.array([1200.0]))[0] * (wave / 1200.0)**-0.77,
                        calzetti_k(wave))
        per_aa = 1.0 / wave**2            # L_nu to L_lambda (constants cancel in the ratio)
        ours_abs = np.trapezoid((bare - stars) * per_aa, wave)
        bp_abs = np.trapezoid(bare * (1.0 - np.exp(-dust2 * k_bp / R_V)) * per_aa, wave)
        assert ours_abs == pytest.approx(np.trapezoid((spec - stars) * per_aa, wave), rel=5e-3)
        spec = stars + (spec - stars) * (bp_abs / ours_abs)
        fnu = spec * 10**logm * to_cgs / 3631e-23 * (1 + z) / (lumdist[i] * 1e5)**2
        wobs = wave * (1 + z)
        ours = getSED(wobs, fnu * 2.998e18 / wobs**2 * 3631e-23, filters, linear_flux=True)
        rows.append(-2.5 * np.log10(ours * LSUN_RATIO / ref[i]))
    dmag = np.array(rows)
    table = "\n".join(f"{c} {np.round(d, 4)}" for c, d in zip(DUST_CASES, dmag))
    assert np.abs(dmag).max() < 0.012, "GridSPS - bagpipes (mag):\n" + table
