"""Command-line flags of ``--train``, ``--infer`` and ``--validate``.

This module imports nothing heavy (no torch, no numpy), so ``--help`` stays
instant. The driver calls :func:`add_arguments` on its parser; ``--simfile``,
``--checkpoint``, ``--outfile``, ``--overwrite``, ``--resume`` and ``--quiet``
belong to the driver and are read here from ``run_params`` only.

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_arguments(p)
>>> a = p.parse_args(["--condition", "zred", "--epochs", "3"])
>>> a.condition, a.epochs, a.flow
(['zred'], 3, 'rqs_coupling')
"""

__all__ = ["add_arguments", "DEFAULTS", "FLOWS", "get"]

#: Flow families that :mod:`prospect_sim.amortized.flows` can build.
FLOWS = ("rqs_coupling", "nsf", "nsf_coupling", "maf", "naf")

#: Defaults of every flag; also used when ``run_params`` lacks one (a param
#: file run in Prospector's own style, or a test calling ``run`` directly).
DEFAULTS = dict(
    # training
    epochs=200, batch_size=512, lr=1e-3, lr_schedule="plateau", patience=20, val_fraction=0.1,
    n_test=2000, flow="rqs_coupling", hidden=None, transforms=None, bins=8,
    embedding="128,128", embed_dim=64, weight_decay=0.0, train_seed=0,
    device="auto", condition=[], block_rows=4096, shuffle_blocks=16,
    validate_after_train=True, compile=False, bfloat16=False,
    # inference
    catalog=None, n_draws=1000, infer_batch=256, importance=False,
    min_ess=50.0, summary_only=False, infer_seed=0, proposal_scale=1.0,
    summary=None, keep_columns=None, columns=None,
    id_column=None,  # the flag is prospect_sim.catalog_fit's (--infer reads it too)
    # validation
    n_validate=2000, validate_draws=500,
)


def get(run_params, name):
    """``run_params[name]``, or its default when absent or ``None``."""
    value = run_params.get(name) if run_params is not None else None
    return DEFAULTS[name] if value is None else value


def _add(group, flag, **kw):
    # a parameter file may already define a flag of the same name; keep theirs
    try:
        group.add_argument(flag, **kw)
    except Exception:  # argparse.ArgumentError: conflicting option string
        pass


def add_arguments(parser):
    """Add the amortised-posterior flags to an ``argparse`` parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    d = DEFAULTS
    g = parser.add_argument_group("amortised posterior (--train / --infer / --validate)")
    _add(g, "--condition", action="append", default=None, metavar="PARAM",
         help="free parameter given as an input instead of inferred (repeatable), "
              "e.g. --condition zred when spectroscopic redshifts are known")
    _add(g, "--epochs", type=int, default=d["epochs"], help="maximum training epochs")
    _add(g, "--batch_size", type=int, default=d["batch_size"], help="training batch size")
    _add(g, "--lr", type=float, default=d["lr"], help="initial Adam learning rate")
    _add(g, "--lr_schedule", choices=("plateau", "cosine"), default=d["lr_schedule"],
         help="plateau: halve the learning rate when the validation loss stalls; cosine: "
              "anneal it from --lr to 1%% of --lr over exactly --epochs epochs (for a fixed "
              "training budget)")
    _add(g, "--weight_decay", type=float, default=d["weight_decay"], help="Adam weight decay")
    _add(g, "--patience", type=int, default=d["patience"],
         help="stop after this many epochs without a better validation loss")
    _add(g, "--val_fraction", type=float, default=d["val_fraction"],
         help="fraction of the simulations used for validation (early stopping)")
    _add(g, "--n_test", type=int, default=d["n_test"],
         help="simulations held out of training and validation for --validate "
              "(at most 10%% of the file)")
    _add(g, "--flow", choices=FLOWS, default=d["flow"],
         help="flow family: rqs_coupling (spline coupling layers, fast to sample), zuko's "
              "neural spline flow (nsf: autoregressive, D+1 network passes per transform to "
              "sample; nsf_coupling), MAF, NAF")
    _add(g, "--hidden", type=int, default=d["hidden"],
         help="hidden units of the flow's networks (default: 64 for rqs_coupling, 128 for "
              "the zuko flows)")
    _add(g, "--transforms", type=int, default=d["transforms"],
         help="number of flow transforms (default: 6 for rqs_coupling, 5 for the zuko flows)")
    _add(g, "--bins", type=int, default=d["bins"], help="spline bins (nsf)")
    _add(g, "--embedding", default=d["embedding"],
         help="hidden layer sizes of the observation embedding MLP, comma separated")
    _add(g, "--embed_dim", type=int, default=d["embed_dim"], help="size of the embedding")
    _add(g, "--train_seed", type=int, default=d["train_seed"],
         help="seed of network initialisation, data order and training noise")
    _add(g, "--device", default=d["device"],
         help="torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:1")
    _add(g, "--block_rows", type=int, default=d["block_rows"],
         help="rows read from the simulation file at a time")
    _add(g, "--shuffle_blocks", type=int, default=d["shuffle_blocks"],
         help="blocks held in memory and shuffled together")
    _add(g, "--compile", action="store_true", default=False,
         help="run the flow through torch.compile (needs a C++ compiler on a CPU): the "
              "training step (--train) and the sampling of whole --infer_batch blocks "
              "(--infer, rqs_coupling flow); 30-80 s to compile (cached on disk by torch), "
              "then faster: for long trainings and large catalogues")
    _add(g, "--bfloat16", action="store_true", default=False,
         help="--infer and --validate: sample with the flow's matrix products in bfloat16 "
              "(rqs_coupling flow; not with --importance): faster on CPUs with AMX or "
              "AVX512-BF16 (1.5x the compiled sampling here) and on GPUs; the draws move "
              "by ~0.4%% of a posterior width (README.rst)")
    _add(g, "--no_validate_after_train", dest="validate_after_train",
         action="store_false", default=True,
         help="skip the validation that otherwise runs at the end of --train")
    _add(g, "--catalog", default=d["catalog"], metavar="FILE",
         help="catalogue (CSV, HDF5 or FITS) with columns <filter>_flux and "
              "<filter>_unc in maggies, or <filter>_mag and <filter>_magerr (AB), per "
              "filter; default: the param file's obs")
    _add(g, "--columns", default=d["columns"], metavar="MAP.json",
         help="--infer --catalog: JSON object naming the catalogue's columns, e.g. "
              '{"des_g_flux": "FLUX_G", "des_g_unc": "FLUXERR_G", "zred": "z_spec"}')
    _add(g, "--keep_columns", default=d["keep_columns"], metavar="A,B",
         help="--infer --catalog: catalogue columns carried into the posterior file and its "
              "summary table (e.g. ra,dec)")
    _add(g, "--summary", default=d["summary"], metavar="FILE",
         help="--infer: also write the summary table (one row per object: id, median and "
              "2.5/16/84/97.5 percentiles, ESS, flags) to FILE (.fits, .csv, .ecsv, .h5); "
              "it is always in the posterior file as /summary")
    _add(g, "--n_draws", type=int, default=d["n_draws"], help="posterior draws per object")
    _add(g, "--infer_batch", type=int, default=d["infer_batch"],
         help="objects per inference batch (one write per batch)")
    _add(g, "--importance", action="store_true", default=False,
         help="reweight draws with the exact likelihood of the param file's model")
    _add(g, "--min_ess", type=float, default=d["min_ess"],
         help="flag objects whose importance-sampling ESS is below this")
    _add(g, "--proposal_scale", type=float, default=d["proposal_scale"],
         help="with --importance: half the draws from the flow with its Gaussian base "
              "this much wider, weighted against the equal mixture (2 raises the ESS of "
              "bright objects the flow makes too narrow; 1: the flow alone)")
    _add(g, "--summary_only", action="store_true", default=False,
         help="write the summaries only (percentiles, flags, the summary table), not the "
              "samples")
    _add(g, "--infer_seed", type=int, default=d["infer_seed"], help="seed of posterior draws")
    _add(g, "--n_validate", type=int, default=d["n_validate"],
         help="held-out simulations used by --validate")
    _add(g, "--validate_draws", type=int, default=d["validate_draws"],
         help="posterior draws per held-out simulation in --validate")
