"""Flags of the amortised modes; importing them (and the noise models) is cheap."""

import argparse
import subprocess
import sys

import pytest

from prospect_sim.amortized import options


def test_options_and_noise_import_no_torch():
    code = ("import sys, prospect_sim.amortized.options, prospect_sim.amortized.noise; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flags_parse_with_defaults():
    p = argparse.ArgumentParser()
    options.add_arguments(p)
    a = vars(p.parse_args(["--condition", "zred", "--condition", "logzsol", "--importance",
                           "--flow", "maf", "--n_draws", "10"]))
    assert a["condition"] == ["zred", "logzsol"] and a["importance"] and a["flow"] == "maf"
    assert a["n_draws"] == 10 and a["epochs"] == options.DEFAULTS["epochs"]
    assert options.get(a, "catalog") is None and options.get({}, "lr") == options.DEFAULTS["lr"]
    with pytest.raises(SystemExit):
        p.parse_args(["--flow", "glow"])


def test_existing_flag_of_a_param_file_is_kept():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=str, default="mine")
    options.add_arguments(p)
    assert p.parse_args([]).epochs == "mine"
