"""SpecModel.predict of photometry through the batched kernel at N = 1 (the point path).

Every check compares against Prospector's own ``SpecModel.predict`` and
``lnprobfn`` (inside ``exact_predict``), on prior draws of every
parameter file, and counts the calls of ``GridSPS.point_photometry`` so
that a path silently not taken fails.
"""

import inspect
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from prospect_sim import forward
from prospect_sim.likelihood import lnlike_tolerance
from prospect_sim.paramfile import load
from prospect_sim.sps import _compat

FILES = Path(__file__).resolve().parents[2] / "param_files"
PARAM_FILES = ["demo_params.py", "starforming_params.py", "agn_params.py"]


@pytest.fixture(scope="module", params=PARAM_FILES)
def ingredients(request):
    return load(FILES / request.param).build({"sps_library": "grid"})


class _Counting:
    """Counts the calls of ``sps.point_photometry`` (set on the instance, read by getattr)."""

    def __init__(self, sps):
        self.sps, self.calls = sps, 0
        self.method = sps.point_photometry

    def __enter__(self):
        def counted(*args, **kwargs):
            self.calls += 1
            return self.method(*args, **kwargs)
        self.sps.point_photometry = counted
        return self

    def __exit__(self, *exc):
        del self.sps.point_photometry


def _draws(model, n, seed):
    u = np.random.default_rng(seed).uniform(size=(n, model.ndim))
    return forward.prior_transform(model, u)


def _tolerance(obs, theta, model):
    """1e-3 mag per band, 0.1 mag for bands in the Lyman forest (as the batched kernel)."""
    zred = np.broadcast_to(np.asarray(forward.batch_params(model, theta)["zred"],
                                      dtype=float).reshape(-1), (len(theta),))
    blue = np.array([f.wavelength[f.transmission > 0].min() for f in obs["filters"]])
    return np.where(blue[None, :] < 1216.0 * (1 + zred[:, None]), 0.1, 1e-3)


def test_point_path_equals_prospectors_predict(ingredients):
    ing = ingredients
    model, obs, sps = ing.model, ing.obs, ing.sps
    theta = _draws(model, 30, seed=21)
    with _compat.exact_predict():
        want = [model.predict(t, obs=obs, sps=sps) for t in theta]
    assert _compat.set_photometry_only(model, obs) is True
    try:
        with _Counting(sps) as count:
            got = [model.predict(t, obs=obs, sps=sps) for t in theta]
    finally:
        _compat.set_photometry_only(model, obs, on=False)
    assert count.calls == len(theta)
    assert all(spec.shape == (0,) for spec, _, _ in got)
    fast = np.array([phot for _, phot, _ in got])
    ref = np.array([phot for _, phot, _ in want])
    dmag = np.abs(2.5 * np.log10(fast / ref))
    assert np.all(dmag <= _tolerance(obs, theta, model)), dmag.max()
    np.testing.assert_allclose([m for _, _, m in got], [m for _, _, m in want], rtol=1e-6)


def test_prospectors_lnprobfn_takes_the_point_path(ingredients):
    """Any caller of Prospector's posterior gets it; model.predict itself keeps the spectrum."""
    from prospect.fitting import lnprobfn
    ing = ingredients
    model, obs, sps = ing.model, ing.obs, ing.sps
    theta = _draws(model, 12, seed=22)
    with _compat.exact_predict():
        want = np.array([lnprobfn(t, model=model, obs=obs, sps=sps, noise=ing.noise)
                         for t in theta])
        phot = np.array([model.predict(t, obs=obs, sps=sps)[1] for t in theta])
    with _Counting(sps) as count:
        got = np.array([lnprobfn(t, model=model, obs=obs, sps=sps, noise=ing.noise)
                        for t in theta])
    assert count.calls == len(theta)
    zred = forward.batch_params(model, theta)["zred"]
    allowed = lnlike_tolerance(obs, phot, zred) * 1.01 + 1e-9 * np.abs(want)
    assert np.all(np.abs(got - want) <= allowed), np.abs(got - want) / allowed
    assert not getattr(model, _compat.PHOTOMETRY_ONLY, False)
    spec, _, _ = model.predict(theta[0], obs=obs, sps=sps)
    assert spec.shape == sps.wavelengths.shape


def test_fit_model_defaults_to_the_wrapped_lnprobfn():
    import prospect.fitting
    from prospect.fitting import fitting
    assert fitting.lnprobfn._prospect_sim_patched
    assert prospect.fitting.lnprobfn is fitting.lnprobfn
    for function in (fitting.fit_model, fitting.run_dynesty, fitting.run_emcee):
        assert inspect.signature(function).parameters["lnprobfn"].default is fitting.lnprobfn


def test_import_order_decides_which_lnprobfn_a_name_holds():
    code = ("from prospect.fitting import lnprobfn as before\n"
            "import prospect_sim\n"
            "from prospect.fitting import lnprobfn as after\n"
            "import prospect.fitting.fitting as f\n"
            "assert not hasattr(before, '_prospect_sim_patched')\n"
            "assert after._prospect_sim_patched and f.lnprobfn is after\n"
            "assert f.fit_model.__defaults__[1] is after\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    first = ("import prospect_sim\n"
             "from prospect.fitting import fit_model, lnprobfn\n"
             "assert lnprobfn._prospect_sim_patched\n")
    subprocess.run([sys.executable, "-c", first], check=True)


def _nebular_model(free_logu):
    from prospect.models import SpecModel, priors
    from prospect.models.templates import TemplateLibrary
    params = TemplateLibrary["parametric_sfh"]
    params.update(TemplateLibrary["nebular"])
    params["zred"]["init"] = 0.3
    params["tage"]["prior"] = priors.TopHat(mini=0.1, maxi=5.0)
    if free_logu:
        params["gas_logu"].update(isfree=True, prior=priors.TopHat(mini=-3.5, maxi=-1.0))
    return SpecModel(params)


def test_a_varying_gas_logu_takes_the_point_path(caplog):
    """A free gas_logu (node tables of the nebular grid) no longer falls back to Prospector's code."""
    from sedpy.observate import load_filters
    from prospect_sim.sps import GridSPS
    sps = GridSPS()
    obs = {"filters": load_filters(["sdss_g0", "sdss_r0"]), "wavelength": None,
           "spectrum": None}
    model = _nebular_model(free_logu=True)
    theta = _draws(model, 4, seed=23)
    with _compat.exact_predict():
        want = [model.predict(t, obs=obs, sps=sps)[1].copy() for t in theta]
    _compat.set_photometry_only(model, obs)
    with caplog.at_level("INFO", logger="prospect_sim.sps._compat"), _Counting(sps) as count:
        got = [model.predict(t, obs=obs, sps=sps)[1] for t in theta]
    assert count.calls == len(theta)
    np.testing.assert_allclose(got, want, rtol=1e-3)
    assert not np.array_equal(got, want)             # the kernel's, not Prospector's numbers
    assert "per object" not in caplog.text and "varies" not in caplog.text


def test_an_obs_with_a_spectrum_never_takes_the_point_path():
    from prospect.fitting import lnprobfn
    from sedpy.observate import load_filters
    from prospect_sim.sps import GridSPS
    sps = GridSPS()
    wave = np.linspace(4000.0, 8000.0, 40)
    model = _nebular_model(free_logu=False)
    obs = {"filters": load_filters(["sdss_g0", "sdss_r0"]), "wavelength": wave,
           "spectrum": np.ones(40), "unc": np.ones(40), "mask": np.ones(40, dtype=bool),
           "maggies": np.ones(2), "maggies_unc": np.ones(2)}
    assert _compat.set_photometry_only(model, obs) is False
    with _Counting(sps) as count:
        spec, _, _ = model.predict(model.theta, obs=obs, sps=sps)
        lnprobfn(model.theta, model=model, obs=obs, sps=sps)
    assert count.calls == 0 and spec.shape == wave.shape


def test_point_path_is_several_times_faster():
    """Same run, same galaxy: bench/bench_point.py measures the full ratio."""
    ing = load(FILES / "demo_params.py").build({"sps_library": "grid"})
    model, obs, sps = ing.model, ing.obs, ing.sps
    theta = model.theta.copy()

    def per_call(n=150):
        model.predict(theta, obs=obs, sps=sps)
        start = time.process_time()
        for _ in range(n):
            model.predict(theta, obs=obs, sps=sps)
        return (time.process_time() - start) / n

    with _compat.exact_predict():
        exact = min(per_call() for _ in range(3))
    _compat.set_photometry_only(model, obs)
    try:
        point = min(per_call() for _ in range(3))
    finally:
        _compat.set_photometry_only(model, obs, on=False)
    assert exact / point > 3.0, (exact, point)
