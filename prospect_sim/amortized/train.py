r"""``--train``: fit the amortised posterior to the simulation file.

Neural posterior estimation: minimise over the flow :math:`q`

.. math:: \mathcal{L} = -\mathbb{E}_{\theta \sim p(\theta),\, x \sim p(x \mid \theta)}
          \log q(u(\theta) \mid x)

where :math:`\theta` and the noiseless photometry come from the simulation
file and the noisy observation :math:`x` is drawn afresh every epoch from the
noise model; its minimiser is the posterior :math:`p(\theta \mid x)`.

Reproducible and resumable by construction: the network is initialised from
``--train_seed``; epoch ``e`` orders the data and draws its noise with
``numpy.random.default_rng([seed, e])``; the validation noise is drawn once
with a fixed generator. The checkpoint written after every epoch holds the
weights, the optimizer and scheduler state, the history and the early-stopping
counter, so ``--resume`` continues exactly where it stopped (same weights as
an uninterrupted run: it keeps the checkpoint's ``--train_seed`` and
architecture, whatever the flags say). The best weights are kept in the same checkpoint and
in ``<checkpoint>_best.pt`` beside it.
"""

import csv
import logging
import os
import time

import numpy as np
import torch

from ..errors import TrainingError, UsageError
from ..interrupt import interruptible
from ..outputs import atomic_path
from . import options, spec
from ._compile import compiled
from ._paths import check_writable, path_for
from .data import SimulationData
from .noise import default_noise
from .posterior import AmortizedPosterior, load_checkpoint, resolve_device, save_checkpoint

__all__ = ["run", "train", "log_path", "best_path"]

log = logging.getLogger(__name__)

_VAL_STREAM = 2 ** 31 - 1   # numpy SeedSequence word for the fixed validation noise
_STATS_STREAM = 2 ** 31 - 2  # ... and for the normalisation statistics
_ARCH = ("flow", "hidden", "transforms", "bins", "embedding", "embed_dim", "lr_schedule")
_KEPT = _ARCH + ("train_seed",)  # what --resume takes from the checkpoint, not the flags


def log_path(checkpoint):
    return os.path.splitext(checkpoint)[0] + "_log.csv"


def best_path(checkpoint):
    return os.path.splitext(checkpoint)[0] + "_best.pt"


def _options(run_params):
    opts = {k: options.get(run_params, k) for k in options.DEFAULTS}
    if opts["epochs"] < 1 or opts["batch_size"] < 1 or opts["lr"] <= 0:
        raise UsageError(f"--epochs {opts['epochs']}, --batch_size {opts['batch_size']}, --lr "
                         f"{opts['lr']}: each must be positive")
    if not 0 < opts["val_fraction"] < 0.9:
        raise UsageError(f"--val_fraction {opts['val_fraction']}: expected a value in (0, 0.9)")
    return opts


def run(ingredients, pool=None):
    """The ``--train`` mode: returns the checkpoint path written."""
    rp = ingredients.run_params
    opts = _options(rp)
    simfile = path_for(rp, "sims")
    checkpoint = path_for(rp, "flow")
    problem = spec.model_problem(ingredients.model, ingredients.obs, ingredients.sps)
    noise = ingredients.obs_noise
    if noise is None:
        try:
            noise = default_noise(ingredients.obs)
        except ValueError as err:
            raise TrainingError(str(err)) from None
    path = train(simfile, problem, noise, checkpoint, opts, resume=bool(rp.get("resume")),
                 overwrite=bool(rp.get("overwrite")), quiet=bool(rp.get("quiet")),
                 paramfile=str(rp.get("param_file", "")))
    if opts["validate_after_train"]:
        from . import validate
        validate.validate(checkpoint, simfile, opts, quiet=bool(rp.get("quiet")))
    return path


def _check_problem(problem, data, noise, conditions):
    diff = spec.differences(problem, data.problem, what=f"simulation file {data.path!r}")
    if diff:
        raise TrainingError("the simulation file does not match the param file: " + "; ".join(diff)
                            + ". Re-run --simulate with this param file, or name the right "
                            "file with --simfile")
    if noise.n_bands != len(problem["filter_names"]):
        raise TrainingError(f"the noise model has {noise.n_bands} bands but the obs has "
                            f"{len(problem['filter_names'])} filters; build_obs_noise must "
                            "return one value per filter")
    try:
        spec.split_labels(problem["theta_labels"], conditions)
    except ValueError as err:
        raise UsageError(str(err)) from None


class _Trainer:
    """The state of one training run; :meth:`epoch` advances it by one epoch."""

    def __init__(self, data, post, opts, device):
        self.data, self.post, self.opts, self.device = data, post, opts, device
        self.net = post.net.to(device)
        # fused: one kernel for all parameters (3 ms a step less on this CPU, of 40)
        self.optim = torch.optim.Adam(self.net.parameters(), lr=opts["lr"],
                                      weight_decay=opts["weight_decay"], fused=True)
        self.cosine = opts["lr_schedule"] == "cosine"
        if self.cosine:   # a fixed budget of epochs: anneal to 1% of --lr at the last one
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optim, T_max=opts["epochs"], eta_min=opts["lr"] * 1e-2)
        else:
            self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optim, factor=0.5, patience=max(1, opts["patience"] // 3))
        self.epoch_done, self.bad_epochs, self.best_val = 0, 0, float("inf")
        self.best_state, self.history = None, []
        self.compiled = compiled(self.net.loss, "training") if opts["compile"] else None

    def _loss(self, u, x):
        """The batch loss; compiled for full batches under ``--compile`` (a partial last
        batch runs eagerly rather than compiling a second graph for its shape)."""
        if self.compiled is None or len(u) != self.opts["batch_size"]:
            return self.net.loss(u, x)
        return self.compiled(u, x)

    def _batch(self, theta, phot, rng):
        flux, unc, missing = self.post.noise.sample(phot, rng)
        cond = theta[:, self.post.condition_index] if self.post.conditions else None
        x = self.post.features(flux, unc, missing, cond)
        u = self.post.bijection(torch.from_numpy(theta[:, self.post.inferred_index]))
        return u.float().to(self.device), x

    def fit_normalisation(self, seed):
        rng = np.random.default_rng([seed, _STATS_STREAM])
        theta, phot = self.data.sample_rows("train", 20000, rng)
        self.post.bijection.fit(theta[:, self.post.inferred_index])
        flux, unc, missing = self.post.noise.sample(phot, rng)
        cond = theta[:, self.post.condition_index] if self.post.conditions else None
        self.post.scaler.fit(self.post.scaler.raw(flux, unc, missing, cond))

    def val_loss(self, seed):
        self.net.eval()
        rng = np.random.default_rng([seed, _VAL_STREAM])
        total, n = 0.0, 0
        with torch.no_grad():
            for theta, phot in self.data.batches("val", 4096):
                u, x = self._batch(theta, phot, rng)
                total += float(-self.net.log_prob(u, x).sum())
                n += len(u)
        return total / max(n, 1)

    def epoch(self, seed, bar=None):
        e = self.epoch_done
        rng = np.random.default_rng([seed, e])
        self.net.train()
        t0, total, n = time.time(), 0.0, 0
        inner = _epoch_bar(bar, self.data.counts["train"], e + 1)
        for theta, phot in self.data.batches("train", self.opts["batch_size"], rng,
                                             self.opts["shuffle_blocks"]):
            u, x = self._batch(theta, phot, rng)
            loss = self._loss(u, x)
            if not torch.isfinite(loss):
                raise TrainingError(f"the training loss became {float(loss)} in epoch {e + 1}; "
                                    "lower --lr or check the simulation file")
            self.optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
            self.optim.step()
            total += float(loss.detach()) * len(u)
            n += len(u)
            if bar is not None:
                bar.set_postfix(train=f"{total / n:.3f}", refresh=False)
            if inner is not None:
                inner.update(len(u))
                inner.set_postfix(train=f"{total / n:.3f}", refresh=False)
        if inner is not None:
            inner.close()
        val = self.val_loss(seed)
        if self.cosine:
            if self.sched.last_epoch < self.sched.T_max:   # then stay at the floor
                self.sched.step()
        else:
            self.sched.step(val)
        self.epoch_done = e + 1
        if val < self.best_val:
            self.best_val, self.bad_epochs = val, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
        else:
            self.bad_epochs += 1
        row = {"epoch": e + 1, "train_loss": total / max(n, 1), "val_loss": val,
               "lr": self.optim.param_groups[0]["lr"], "seconds": time.time() - t0}
        self.history.append(row)
        return row

    def state(self, extra):
        ckpt = self.post.state()
        ckpt.update(extra)
        ckpt.update({
            "model_state": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "best_model_state": self.best_state,
            "optimizer_state": self.optim.state_dict(),
            "scheduler_state": self.sched.state_dict(),
            "torch_rng_state": torch.get_rng_state(),
            "epoch": self.epoch_done, "bad_epochs": self.bad_epochs,
            "best_val_loss": self.best_val, "history": self.history})
        return ckpt

    def load(self, ckpt):
        self.net.load_state_dict(ckpt["model_state"])
        self.optim.load_state_dict(ckpt["optimizer_state"])
        self.sched.load_state_dict(ckpt["scheduler_state"])
        torch.set_rng_state(ckpt["torch_rng_state"])
        self.epoch_done, self.bad_epochs = ckpt["epoch"], ckpt["bad_epochs"]
        self.best_val, self.best_state = ckpt["best_val_loss"], ckpt["best_model_state"]
        self.history = list(ckpt["history"])


def _write_log(path, history):
    with atomic_path(path, TrainingError, "training log") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["epoch", "train_loss", "val_loss", "lr",
                                               "seconds"])
            w.writeheader()
            w.writerows(history)


def _tensorboard(checkpoint):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: the CSV log is the record
        return None
    return SummaryWriter(os.path.splitext(checkpoint)[0] + "_tensorboard")


def train(simfile, problem, noise, checkpoint, opts, resume=False, overwrite=False, quiet=False,
          paramfile=""):
    """Train (or resume training) and write the checkpoint.

    Parameters
    ----------
    simfile : str
        Simulation HDF5 (DESIGN.md section 4).
    problem : dict
        ``theta_labels``, ``filter_names``, ``prior`` and (optionally) ``config``
        expected of the file (:func:`prospect_sim.amortized.spec.model_problem`);
        the checkpoint records it.
    noise : prospect_sim.amortized.noise.NoiseModel
    checkpoint : str
        Output ``.pt``; ``<stem>_best.pt`` and ``<stem>_log.csv`` are written beside it.
    opts : dict
        Options (:data:`prospect_sim.amortized.options.DEFAULTS` keys).
    resume, overwrite, quiet : bool

    Returns
    -------
    str
        ``checkpoint``.
    """
    opts = {**options.DEFAULTS, **opts}
    check_writable(checkpoint, {"resume": resume, "overwrite": overwrite}, "checkpoint")
    conditions = list(opts["condition"] or [])
    device = resolve_device(opts["device"])
    seed = int(opts["train_seed"])
    with SimulationData(simfile, opts["val_fraction"], opts["n_test"], opts["block_rows"]) as data:
        _check_problem(problem, data, noise, conditions)
        if data.n_dropped:
            log.info("%s: using %d of %d rows (%d dropped: invalid, unfinished or non-finite)",
                     simfile, data.n_good, data.n_rows, data.n_dropped)
        ckpt = None
        if resume and os.path.exists(checkpoint):
            ckpt = load_checkpoint(checkpoint, TrainingError)
            if ckpt["simfile"]["identity"] != data.identity:
                raise TrainingError(f"--resume: {checkpoint!r} was trained on a different "
                                    f"simulation file ({ckpt['simfile']['path']!r}); use "
                                    "--overwrite to start again")
            post = AmortizedPosterior.from_checkpoint(ckpt, best=False)
            kept = {k: ckpt["options"].get(k, options.DEFAULTS[k]) for k in _KEPT}
            changed = [k for k in _KEPT if str(opts[k]) != str(kept[k])]
            if changed:
                log.warning("--resume keeps the checkpoint's %s", ", ".join(changed))
            # the epochs after the interruption draw from the run's own seed
            opts = {**opts, "lr_schedule": kept["lr_schedule"], "train_seed": kept["train_seed"]}
            seed = int(kept["train_seed"])
        else:
            post = AmortizedPosterior.new(problem, conditions, noise, opts, seed=seed)
        trainer = _Trainer(data, post, opts, device)
        if ckpt is not None:
            trainer.load(ckpt)
        else:
            trainer.fit_normalisation(seed)
        extra = {"options": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                             for k, v in opts.items()},
                 "simfile": {"path": os.path.abspath(simfile), "identity": data.identity,
                             "n_rows": data.n_rows, "n_good": data.n_good,
                             "n_dropped": data.n_dropped, "split": data.split,
                             "counts": data.counts},
                 "paramfile": paramfile}
        if ckpt is not None:  # keep the original run's data options
            extra["options"] = {**ckpt["options"], "epochs": opts["epochs"],
                                "patience": opts["patience"]}
        _loop(trainer, seed, opts, checkpoint, extra, quiet)
    return checkpoint


#: Seconds an epoch runs before its own progress bar (rows done) appears.
EPOCH_BAR_DELAY = 3.0


def _epoch_bar(bar, rows, epoch):
    """A bar over the rows of one epoch, shown once it has run EPOCH_BAR_DELAY s; or None."""
    if bar is None or bar.disable:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=rows, unit="row", unit_scale=True, leave=False, desc=f"epoch {epoch}",
                delay=EPOCH_BAR_DELAY, mininterval=1.0)


def _loop(trainer, seed, opts, checkpoint, extra, quiet):
    from tqdm.auto import tqdm
    tb = _tensorboard(checkpoint)
    bar = tqdm(total=opts["epochs"], initial=trainer.epoch_done, disable=quiet, unit="epoch",
               desc="train")
    try:
        with interruptible() as check_interrupt:
            while trainer.epoch_done < opts["epochs"] and trainer.bad_epochs < opts["patience"]:
                row = trainer.epoch(seed, bar)
                bar.update(1)
                bar.set_postfix(train=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}",
                                best=f"{trainer.best_val:.3f}")
                state = trainer.state(extra)
                save_checkpoint(state, checkpoint, TrainingError)
                if trainer.bad_epochs == 0:
                    best = dict(state, model_state=state["best_model_state"])
                    save_checkpoint(best, best_path(checkpoint), TrainingError)
                _write_log(log_path(checkpoint), trainer.history)
                if tb is not None:
                    for key in ("train_loss", "val_loss", "lr"):
                        tb.add_scalar(key, row[key], row["epoch"])
                check_interrupt()  # a Ctrl-C swallowed by a finaliser stops us here
        if trainer.bad_epochs >= opts["patience"]:
            log.info("early stopping after epoch %d: no better validation loss in %d epochs",
                     trainer.epoch_done, opts["patience"])
    finally:
        bar.close()
        if tb is not None:
            tb.close()
