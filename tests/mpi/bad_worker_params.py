"""Toy parameter file that fails on MPI ranks other than 0 only.

``--fail_at build``: ``build_model`` raises on the workers;
``--fail_at predict``: the sps raises in every likelihood call on the workers.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toy_params import ToySPS, build_obs  # noqa: E402,F401
from toy_params import build_model as _toy_model  # noqa: E402

RANK = int(os.environ.get("PMI_RANK", "0"))


class FailingSPS(ToySPS):
    def get_spectrum(self, **params):
        if RANK != 0:
            raise RuntimeError(f"sps exploded on rank {RANK}")
        return super().get_spectrum(**params)


def add_arguments(parser):
    parser.add_argument("--fail_at", choices=["build", "predict"], default="predict")


def build_model(fail_at="predict", **run_params):
    if fail_at == "build" and RANK != 0:
        raise RuntimeError(f"model cannot be built on rank {RANK}")
    return _toy_model()


def build_sps(**run_params):
    return FailingSPS()


if __name__ == "__main__":
    from prospect_sim import main
    main()
