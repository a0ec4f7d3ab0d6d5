"""Loading parameter files and checking what their builders return (prospect_sim.paramfile)."""
import textwrap
from pathlib import Path

import numpy as np
import pytest

from prospect_sim import paramfile
from prospect_sim.errors import ParamFileError

TOY = Path(__file__).resolve().parents[1] / "mpi" / "toy_params.py"
RP = {"toy_delay": 0.0}


def _write(tmp_path, body, name="p.py"):
    path = tmp_path / name
    path.write_text(TOY.read_text().split("if __name__")[0] + textwrap.dedent(body))
    return path


def test_load_and_build_toy():
    ing = paramfile.load(TOY).build(RP)
    assert isinstance(ing, paramfile.Ingredients)
    assert ing.model.theta_labels() == ["mass", "slope"]
    assert ing.noise == (None, None) and ing.obs_noise is None
    assert ing.obs["ndof"] == 3 and ing.obs["phot_mask"].all()      # fix_obs applied
    assert ing.run_params["param_file"] == str(TOY)
    assert ing.paramfile.source.startswith('"""Toy')


def test_load_does_not_run_main_block(tmp_path):
    path = _write(tmp_path, """
        if __name__ == "__main__":
            raise SystemExit("ran the main block")
        """)
    paramfile.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ParamFileError, match="does not exist"):
        paramfile.load(tmp_path / "nope.py")


def test_missing_builder_is_named(tmp_path):
    path = tmp_path / "nomodel.py"
    path.write_text("def build_obs(**k): pass\ndef build_sps(**k): pass\n")
    with pytest.raises(ParamFileError, match=r"nomodel.py: no function build_model found"):
        paramfile.load(path)


def test_builder_that_raises(tmp_path):
    path = _write(tmp_path, """
        def build_sps(**run_params):
            raise KeyError("SPS_HOME")
        """)
    with pytest.raises(ParamFileError,
                       match=r"p.py: build_sps\(\*\*run_params\) raised KeyError: 'SPS_HOME'"):
        paramfile.load(path).build(RP)


@pytest.mark.parametrize("builder, value, expected", [
    ("build_model", "'a string'", "expected a prospect.models.SpecModel"),
    ("build_obs", "42", "expected a Prospector obs dict"),
    ("build_sps", "None", "expected an sps object"),
    ("build_noise", "None, None, None", "expected a 2-tuple"),
])
def test_builder_that_returns_the_wrong_kind(tmp_path, builder, value, expected):
    path = _write(tmp_path, f"""
        def {builder}(**run_params):
            return {value}
        """)
    with pytest.raises(ParamFileError, match=rf"p.py: {builder}\(\*\*run_params\) returned .*{expected}"):
        paramfile.load(path).build(RP)


def test_obs_without_fluxes(tmp_path):
    path = _write(tmp_path, """
        def build_obs(**run_params):
            return {"filters": []}
        """)
    with pytest.raises(ParamFileError, match="neither 'maggies' nor 'spectrum'"):
        paramfile.load(path).build(RP)


def test_prospect_sim_errors_from_builders_keep_their_message(tmp_path):
    path = _write(tmp_path, """
        from prospect_sim.errors import ParamFileError
        def build_obs(objid=0, **run_params):
            raise ParamFileError("--objid 7 is not in the table")
        """)
    with pytest.raises(ParamFileError, match=r"p.py: build_obs\(\): --objid 7 is not in the table"):
        paramfile.load(path).build(RP)


class Photometry:
    """Stand-in for Prospector 2's prospect.observation.Photometry."""

    def __init__(self, filters, flux, uncertainty, mask=None):
        self.filters, self.flux, self.uncertainty, self.mask = filters, flux, uncertainty, mask


def test_list_of_observations_is_converted():
    phot = Photometry(["sdss_g0", "sdss_r0", "sdss_i0"], [1e-9, 2e-9, 3e-9],
                      [1e-10, 1e-10, 1e-10], mask=[True, False, True])
    obs = paramfile.obs_from_list([phot])
    assert [f.name for f in obs["filters"]] == ["sdss_g0", "sdss_r0", "sdss_i0"]
    np.testing.assert_array_equal(obs["maggies"], [1e-9, 2e-9, 3e-9])
    np.testing.assert_array_equal(obs["phot_mask"], [True, False, True])
    assert obs["spectrum"] is None and obs["wavelength"] is None


def test_list_with_a_spectrum_and_bad_items():
    spec = {"wavelength": [4000., 5000.], "flux": [1., 2.], "uncertainty": [.1, .1]}
    obs = paramfile.obs_from_list([spec])
    np.testing.assert_array_equal(obs["spectrum"], [1., 2.])
    assert obs["mask"].all() and obs["maggies"] is None
    with pytest.raises(ValueError, match="neither 'filters'"):
        paramfile.obs_from_list([{"flux": [1.0], "uncertainty": [0.1]}])
    with pytest.raises(ValueError, match="more than one photometry"):
        paramfile.obs_from_list([Photometry(["sdss_g0"], [1.], [.1])] * 2)
    # no uncertainty: refused, not 1 maggie
    with pytest.raises(ValueError, match="item 0 \\(Photometry\\) has no 'uncertainty'"):
        paramfile.obs_from_list([Photometry(["sdss_g0"], [1e-9], None)])


def test_list_without_uncertainties_is_one_line(tmp_path):
    path = _write(tmp_path, """
        def build_obs(**run_params):
            return [{"filters": FILTERS, "flux": 1e-9 * np.ones(3)}]
        """)
    with pytest.raises(ParamFileError, match="has no 'uncertainty'"):
        paramfile.load(path).build(RP)


def test_build_obs_returning_a_list(tmp_path):
    path = _write(tmp_path, """
        def build_obs(**run_params):
            return [{"filters": FILTERS, "flux": 1e-9 * np.ones(3),
                     "uncertainty": 1e-10 * np.ones(3), "mask": None}]
        """)
    ing = paramfile.load(path).build(RP)
    assert ing.obs["maggies"].shape == (3,) and ing.obs["ndof"] == 3


def test_obs_noise_builder_gets_obs(tmp_path):
    path = _write(tmp_path, """
        def build_obs_noise(obs=None, **run_params):
            return ("noise for", len(obs["maggies"]))
        """)
    assert paramfile.load(path).build(RP).obs_noise == ("noise for", 3)
