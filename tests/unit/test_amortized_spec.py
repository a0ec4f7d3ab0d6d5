"""What a simulation file and a checkpoint record of the model, and how a mismatch reads."""

import copy
import json
import logging
import types

import numpy as np
import pytest

import prospect_sim.sps  # noqa: F401  (SpecModel without $SPS_HOME)
from prospect.models import SpecModel, priors, transforms
from prospect.models.templates import TemplateLibrary
from prospect_sim import pool, simulate
from prospect_sim.amortized import spec

WHAT = "checkpoint 'old.pt'"


def _dust1(dust2=None, **extras):
    return 0.5 * dust2


_dust1.__module__ = "_prospect_sim_paramfile_demo"   # as a param file loaded by path has it


class _Thing:
    """An object as a fixed value (its repr has an address)."""


def _model(**fixed):
    params = TemplateLibrary["parametric_sfh"]
    params["zred"].update(isfree=True, init=0.5, prior=priors.TopHat(mini=0.1, maxi=2.0))
    params["dust1"] = {"N": 1, "isfree": False, "init": 0.0, "depends_on": _dust1}
    params["gas_logz"] = {"N": 1, "isfree": False, "init": 0.0,
                          "depends_on": transforms.stellar_logzsol}
    params["agebins"] = {"N": 3, "isfree": False, "init": np.array([[0, 8], [8, 9], [9, 10]])}
    params["thing"] = {"N": 1, "isfree": False, "init": _Thing()}
    params["library"] = {"N": 1, "isfree": False, "init": "miles"}
    for name, value in fixed.items():
        params[name]["init"] = value
    return SpecModel(params)


OBS = {"filters": ["decam_g", "decam_r"]}


def test_model_config_records_every_fixed_parameter_by_value_or_name():
    sps = types.SimpleNamespace(library_name="bc03",
                                ssp=types.SimpleNamespace(libraries=[b"bc03", b"miles"]))
    config = spec.model_config(_model(), sps)
    fixed = config["fixed"]
    assert config["model"] == "SpecModel"
    assert {"sfh": 4, "imf_type": 2, "dust_type": 0, "library": "miles"}.items() <= fixed.items()
    assert fixed["agebins"] == [[0, 8], [8, 9], [9, 10]]
    assert fixed["dust1"] == {"depends_on": "_dust1"}          # no module: a param file's
    assert fixed["gas_logz"] == {"depends_on": "prospect.models.transforms.stellar_logzsol"}
    assert fixed["thing"] == {"object": "_Thing"}
    assert not {"zred", "mass", "tage"} & set(fixed)           # free: in the prior
    assert config["sps"] == {"class": "SimpleNamespace", "library": "bc03",
                             "libraries": ["bc03", "miles"]}
    text = json.dumps(config)
    assert "0x" not in text and json.loads(text) == config     # plain data, no addresses


def test_a_simulation_files_model_config_gives_the_same_record():
    """``legacy_config`` reads what files made before ``fixed_config`` hold."""
    model = _model()
    old = json.dumps(simulate._model_config(model), sort_keys=True)
    new = spec.model_config(model)
    legacy = spec.legacy_config(old)
    assert legacy["model"] == new["model"]
    assert legacy["fixed"] == {k: v for k, v in new["fixed"].items() if k != "thing"}
    assert legacy["unchecked"] == ["thing"]        # its repr has an address: not compared
    problem = _problem(model)
    assert spec.differences(problem, dict(problem, config=legacy), WHAT) == []
    changed = spec.legacy_config(json.dumps(simulate._model_config(_model(dust_type=2))))
    assert spec.differences(problem, dict(problem, config=changed), WHAT) == [
        f"fixed parameter dust_type: 0 in the param file, 2 in the {WHAT}"]
    assert spec.legacy_config("not json") is None


def _problem(model, sps=None):
    return spec.model_problem(model, OBS, sps)


@pytest.mark.parametrize("change, fragment", [
    (dict(dust_type=2), "fixed parameter dust_type: 0 in the param file, 2 in the "),
    (dict(imf_type=1), "fixed parameter imf_type: 2 in the param file, 1 in the "),
    (dict(sfh=1.0 + 1e-3), "fixed parameter sfh: 4 in the param file, 1.001 in the "),
    (dict(agebins=np.array([[0, 8], [8, 9.5], [9.5, 10]])),
     "fixed parameter agebins: [[0, 8], [8, 9], [9, 10]] in the param file, "
     "[[0.0, 8.0], [8.0, 9.5], [9.5, 10.0]] in the "),
    (dict(library="MILES"), "fixed parameter library: 'miles' in the param file, 'MILES' in"),
    (dict(agebins=np.array([[0, 8], [8, 9.0001], [9.0001, 10]])),   # 1e-5 relative
     "fixed parameter agebins: [[0, 8], [8, 9], [9, 10]] in the param file, "
     "[[0.0, 8.0], [8.0, 9.0001], [9.0001, 10.0]] in the "),
])
def test_a_changed_fixed_parameter_is_named_with_both_values(change, fragment):
    diff = spec.differences(_problem(_model()), _problem(_model(**change)), WHAT)
    assert len(diff) == 1 and diff[0].startswith(fragment) and diff[0].endswith(WHAT), diff


def test_numbers_compare_within_a_tolerance_arrays_elementwise():
    base = _problem(_model())
    close = _problem(_model(agebins=np.array([[0, 8], [8, 9], [9, 10]]) * (1 + 1e-12),
                            dust_type=0.0))
    assert spec.differences(base, close, WHAT) == []
    assert spec.differences(base, copy.deepcopy(base), WHAT) == []


def test_functions_sps_and_model_class_are_compared_by_name():
    base, other = _problem(_model()), _problem(_model())
    other["config"]["fixed"]["dust1"] = {"depends_on": "other_dust1"}
    other["config"]["model"] = "PolySpecModel"
    base["config"]["sps"] = {"class": "GridSPS", "library": "bc03"}
    other["config"]["sps"] = {"class": "GridSPS", "library": "fsps"}
    assert spec.differences(base, other, WHAT) == [
        f"model class: SpecModel in the param file, PolySpecModel in the {WHAT}",
        "fixed parameter dust1: depends_on=_dust1 in the param file, depends_on=other_dust1 "
        f"in the {WHAT}",
        f"sps library: 'bc03' in the param file, 'fsps' in the {WHAT}"]
    del other["config"]["fixed"]["dust_type"]
    assert f"fixed parameter dust_type: 0 in the param file, not in the {WHAT}" \
        in spec.differences(base, other, WHAT)


def test_a_record_without_the_configuration_warns_once_per_file(caplog):
    found = _problem(_model(dust_type=2))
    del found["config"]
    with caplog.at_level(logging.WARNING, logger="prospect_sim"):
        for _ in range(2):
            assert spec.differences(_problem(_model()), found, "checkpoint 'a.pt'") == []
        spec.differences(_problem(_model()), found, "checkpoint 'b.pt'")
    warned = [r.getMessage() for r in caplog.records if "could not be checked" in r.getMessage()]
    assert len(warned) == 2 and "'a.pt'" in warned[0] and "'b.pt'" in warned[1], warned
    # nothing to compare (a checkpoint made before the record, as expected): no warning
    caplog.clear()
    assert spec.differences(found, found, "checkpoint 'c.pt'") == []
    assert not caplog.records


def test_the_sps_built_with_the_model_is_found_in_a_run():
    """``--infer`` calls ``model_problem(model, obs)``: the sps comes from the run."""
    model = _model()
    sps = types.SimpleNamespace(library_name="bc03")
    assert "sps" not in spec.model_problem(model, OBS)["config"]
    ing = types.SimpleNamespace(model=model, obs=OBS, sps=sps, noise=None, obs_noise=None)
    with pool.substituted(ing):
        assert spec.model_problem(model, OBS)["config"]["sps"]["library"] == "bc03"
        assert "sps" not in spec.model_problem(_model(), OBS)["config"]   # another model
