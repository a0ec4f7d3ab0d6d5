"""The component seam: a new component is one class, and every path picks it up.

A toy component defined only here (a power-law continuum added after the
dust, with one parameter) is put into the registry; with no other change,
``SpecModel.predict`` (per-object spectrum) and ``GridSPS.photometry``
(batched lattice) both include it, agree to 1e-3 mag, ``info`` describes
it, simulations store its extra and the no-op check knows its parameter.
"""

import numpy as np
import pytest

import prospect_sim.sps  # noqa: F401  (SpecModel without SPS_HOME)
from prospect_sim import effects, forward
from prospect_sim.errors import SPSError
from prospect_sim.sps import GridSPS, components
from prospect_sim.sps.checks import check_range
from prospect_sim.sps.component import Bands, Component, pair_table
from prospect_sim.sps.templates import TemplatePhotometry

SLOPE = -1.5           # L_nu ~ nu**-1.5 ... rest wavelength ** 1.5
FILTERS = ["galex_NUV", "sdss_u0", "sdss_g0", "sdss_r0", "sdss_z0", "wise_w1", "wise_w2"]


def _template(wave):
    """Lsun/Hz per unit amplitude: a power law between 900 AA and 10 um, zero outside."""
    wave = np.asarray(wave, dtype=float)
    return np.where((wave > 900) & (wave < 1e5), 1e-5 * (wave / 5500.0)**-SLOPE, 0.0)


class PowerLaw(Component):
    """``toy_amp`` times a power law per Msun formed, not attenuated by dust; the IGM applies."""

    name = "toy power law"
    parameters = {"toy_amp": 0.0}
    uses = {"toy_amp": "the toy power law"}

    def read(self, params, batch, library):
        check_range("toy_amp", batch.toy_amp, 0.0, 10.0)

    def on(self, batch):
        return bool(np.any(batch.toy_amp > 0))

    def ranges(self, library):
        return {"toy_amp": (0.0, 10.0)}

    def emitted(self, kernel, batch, parts, spec):
        spec += batch.toy_amp[:, None] * _template(kernel.wave)[None, :]

    def shared(self, batch):
        return ("igm_factor",) if batch.igm else ()      # tabulated with the IGM

    def bands_key(self, batch):
        return float(batch.igm_factor[0]) if batch.igm else None

    def bands(self, kernel, library, filters, batch):
        return PowerLawBands(library, filters, float(batch.igm_factor[0]) if batch.igm else None)

    def describe(self, value, on, free):
        return "toy power law" if on("toy_amp") else None

    def extras(self, flag, params, filter_names=()):
        return {"toy_sum": "toy amplitude times the surviving fraction"} if "toy_amp" in params else {}


class PowerLawBands(Bands):
    summaries = ("toy_sum",)

    def __init__(self, library, filters, igm_factor):
        self.photometry = TemplatePhotometry(library.wavelengths, _template(library.wavelengths),
                                             filters, igm_factor=igm_factor)
        self.mfrac = library.mfrac[..., None]

    def add(self, batch, w32, y32, zlo, out, summary):
        out += batch.toy_amp[:, None] * self.photometry(batch.zred)
        summary["toy_sum"][:] = batch.toy_amp * pair_table(w32, zlo, self.mfrac, w32.shape[2])[:, 0]

    def properties(self, summary, batch, scale):
        return {"toy_sum": summary["toy_sum"]}


@pytest.fixture
def with_toy(monkeypatch):
    monkeypatch.setattr(components, "COMPONENTS", components.COMPONENTS + (PowerLaw(),))


def _model():
    from prospect.models import SpecModel, priors
    from prospect.models.templates import TemplateLibrary
    cfg = TemplateLibrary["parametric_sfh"]
    cfg["toy_amp"] = dict(N=1, isfree=True, init=1.0, prior=priors.TopHat(mini=0, maxi=2))
    cfg["zred"] = dict(N=1, isfree=True, init=0.5, prior=priors.TopHat(mini=0.01, maxi=2))
    return SpecModel(cfg)


def test_a_new_component_reaches_both_paths_and_they_agree(with_toy):
    from sedpy.observate import load_filters
    filters = load_filters(FILTERS)
    model = _model()
    rng = np.random.default_rng(5)
    n = 20
    draws = dict(zred=rng.uniform(0.01, 2, n), tage=10**rng.uniform(-1.5, 1, n),
                 tau=rng.uniform(0.1, 3, n), logzsol=rng.uniform(-1, 0.2, n),
                 dust2=rng.uniform(0, 1, n), mass=np.full(n, 1e10),
                 toy_amp=rng.uniform(0.2, 2, n))
    obs = dict(filters=filters, wavelength=None, spectrum=None)
    sps = GridSPS()
    ref = np.array([model.predict(np.array([draws[k][i] for k in model.theta_labels()]),
                                  obs=obs, sps=sps)[1] for i in range(n)])
    fast, props = sps.photometry_and_properties(dict(draws, sfh=4), filters)
    dmag = np.abs(2.5 * np.log10(fast / ref))
    assert dmag.max() < 1e-3
    bare = sps.photometry(dict(draws, sfh=4, toy_amp=0.0), filters)[0]
    assert np.abs(2.5 * np.log10(fast / bare)).max() > 0.1      # it does something
    assert np.allclose(props["toy_sum"], draws["toy_amp"] * props["mfrac"], rtol=1e-5)


def test_a_new_component_is_described_checked_and_stored(with_toy):
    model = _model()
    sps = GridSPS()
    assert "toy power law" in sps.components(model.params, free=model.free_params)
    assert "toy_sum" in forward.extras_for(model)
    assert effects.what_uses("toy_amp") == "the toy power law"
    from prospect_sim.sps.params import grid_ranges
    assert grid_ranges(sps.library)["toy_amp"] == (0.0, 10.0)
    with pytest.raises(SPSError, match="toy_amp"):
        sps.get_galaxy_spectrum(sfh=4, tage=1.0, toy_amp=11.0)


def test_the_registry_lists_each_component_once():
    names = [c.name for c in components.COMPONENTS]
    assert names == ["nebular emission", "dust emission", "AGN"]
    owned = [p for c in components.COMPONENTS for p in c.parameters]
    assert len(owned) == len(set(owned))
