"""No silent no-ops: a free parameter that changes no band stops the run (exit 2, one line)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import prospect_sim.sps  # noqa: F401
from prospect_sim.effects import ineffective_parameters, what_uses

PARAM_FILE = textwrap.dedent("""
    from prospect.models import SpecModel, priors
    from prospect.models.templates import TemplateLibrary
    from sedpy.observate import load_filters
    import numpy as np

    def build_obs(**rp):
        f = load_filters(["decam_g", "decam_r", "decam_i"])
        return dict(filters=f, maggies=np.ones(3) * 1e-9, maggies_unc=np.ones(3) * 1e-10,
                    phot_mask=np.ones(3, bool), wavelength=None, spectrum=None)

    def build_model(**rp):
        p = TemplateLibrary["parametric_sfh"]
        p["inclination"] = dict(N=1, isfree=True, init=30.0,
                                prior=priors.TopHat(mini=0.0, maxi=90.0))
        return SpecModel(p)

    def build_sps(**rp):
        from prospect_sim.sps import GridSPS
        return GridSPS()

    if __name__ == "__main__":
        from prospect_sim import main
        main()
""")


def _model(extra=None):
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    cfg = TemplateLibrary["parametric_sfh"]
    cfg.update(extra or {})
    return SpecModel(cfg)


@pytest.fixture(scope="module")
def sps_obs():
    from sedpy.observate import load_filters
    from prospect_sim.sps import GridSPS
    return GridSPS(), dict(filters=load_filters(["decam_g", "decam_r", "wise_w3"]),
                           wavelength=None, spectrum=None)


def test_every_parameter_of_the_template_matters(sps_obs):
    assert ineffective_parameters(_model(), *sps_obs) == []


def test_ignored_and_unseen_parameters_are_found(sps_obs):
    from prospect.models import priors
    from prospect.models.templates import TemplateLibrary
    extra = {"fake_knob": dict(N=1, isfree=True, init=1.0,
                               prior=priors.TopHat(mini=0.0, maxi=2.0)),
             "gas_logu": dict(N=1, isfree=True, init=-2.0,
                              prior=priors.TopHat(mini=-4.0, maxi=-1.0))}
    assert ineffective_parameters(_model(extra), *sps_obs) == ["fake_knob", "gas_logu"]
    # with dust emission on and WISE W3 among the bands, duste_umin matters
    dusty = dict(TemplateLibrary["dust_emission"])
    dusty["duste_umin"] = dict(dusty["duste_umin"], isfree=True,
                               prior=priors.TopHat(mini=0.1, maxi=20.0))
    assert ineffective_parameters(_model(dusty), *sps_obs) == []


def test_priors_beyond_the_grids_are_refused(tmp_path):
    from prospect.models.templates import TemplateLibrary
    from prospect_sim.errors import ParamFileError
    from prospect_sim.effects import check_prior_ranges
    from prospect_sim.sps import GridSPS

    class Ingredients:
        paramfile = None
        sps = GridSPS()
    dusty = dict(TemplateLibrary["dust_emission"])
    dusty["duste_umin"] = dict(dusty["duste_umin"], isfree=True)   # Prospector's 0.1-25
    ing = Ingredients()
    ing.model = _model(dusty)
    with pytest.raises(ParamFileError, match=r"duste_umin prior \[0.1, 25\] \(grid \[0.1, 20\]\)"):
        check_prior_ranges(ing)


def test_what_uses():
    assert "agn_torus_mass > 0" in what_uses("inclination")
    assert "add_dust_emission" in what_uses("duste_gamma")
    assert what_uses("banana") == "nothing in the model or the sps reads it"


def test_simulate_refuses_with_one_line(tmp_path):
    path = tmp_path / "torus_ignored.py"
    path.write_text(PARAM_FILE)
    proc = subprocess.run([sys.executable, str(path), "--simulate", "--n_samples", "100",
                           "--outfile", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "'inclination'" in errors[0] and "agn_torus_mass" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("out*"))
