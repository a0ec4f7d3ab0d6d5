"""No silent no-ops: every free parameter must change the model photometry.

A free parameter that nothing reads (``inclination`` without a torus, a
name no component knows), or whose effect no band sees (``duste_qpah`` with only optical
bands), would be sampled, fitted and learnt for nothing.  Before
``--simulate`` and the fits, :func:`check_free_parameters` moves each
free parameter alone, on a few prior draws, and stops the run with one
line naming those that leave every band unchanged, and what would use
them.

Example
-------
>>> from prospect_sim.effects import what_uses
>>> what_uses("inclination")
'the AGN torus (agn_torus_mass > 0)'
"""

import numpy as np

from .errors import ParamFileError

__all__ = ["ineffective_parameters", "check_free_parameters", "check_prior_ranges",
           "what_uses"]

_N_PROBE = 4
_SEED = 20261206
_RTOL = 1e-6

#: What would make a stellar, dust or IGM parameter matter (the components
#: say it for theirs: :attr:`prospect_sim.sps.component.Component.uses`).
_USES = {
    "dust1": "stars younger than dust_tesc (an SFH with young stars) and dust1 > 0",
    "dust1_index": "stars younger than dust_tesc (an SFH with young stars) and dust1 > 0",
    "dust_tesc": "stars younger than dust_tesc (an SFH with young stars) and dust1 > 0",
    "dust_index": "dust_type 0 or 4 (Calzetti, dust_type=2, has no slope)",
    "tau": "a tau or delayed-tau SFH (sfh=1 or 4)",
    "igm_factor": "add_igm_absorption=True and bands blueward of Ly-alpha",
}


def what_uses(name):
    """A few words on what would give parameter ``name`` an effect."""
    from .sps.components import uses
    table = {**_USES, **uses()}
    if name in table:
        return table[name]
    for prefix, use in table.items():
        if prefix.endswith("_") and name.startswith(prefix):
            return use
    return "nothing in the model or the sps reads it"


def ineffective_parameters(model, sps, obs, n_probe=_N_PROBE, seed=_SEED):
    """Free parameters whose change alone leaves every band's photometry unchanged.

    Parameters
    ----------
    model : prospect.models.SpecModel
    sps : sps object
    obs : dict
        With ``filters``.
    n_probe : int
        Prior draws at which each parameter is moved (to the mirror image
        of its unit-cube value); a parameter counts as effective if any
        draw changes any band.

    Returns
    -------
    list of str
    """
    from . import forward
    if obs.get("filters") is None or not len(obs["filters"]):
        return []
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.15, 0.85, size=(n_probe, model.ndim))
    rows = [u]
    names = []
    for name in model.free_params:
        inds = model.theta_index[name]
        moved = u.copy()
        moved[:, inds] = 1.0 - moved[:, inds] + 0.07      # a different value, still inside
        rows.append(np.clip(moved, 0.0, 1.0))
        names.append(name)
    from .errors import SPSError
    theta = forward.prior_transform(model, np.concatenate(rows))
    with np.errstate(all="ignore"):
        try:
            phot, _ = forward.predict_batch(model, sps, obs, theta)
        except SPSError:     # not batchable (e.g. a free duste_umin): the per-object path
            phot, _ = forward.predict_batch(model, sps, obs, theta, path="reference")
    phot = phot.reshape(len(rows), n_probe, -1)
    base = phot[0]
    # float32 sums in the batched kernel depend on a row's place in the batch
    # (grouping by redshift and age): equal means equal to 1e-6
    # rows with non-finite photometry (flagged by --simulate) say nothing either way
    idle = []
    for name, moved in zip(names, phot[1:]):
        both = np.isfinite(moved).all(axis=1) & np.isfinite(base).all(axis=1)
        if both.any() and np.allclose(moved[both], base[both], rtol=_RTOL, atol=0.0):
            idle.append(name)
    return idle


def check_prior_ranges(ingredients):
    """Raise :class:`ParamFileError` for priors that reach outside the embedded grids.

    Prospector's templates allow e.g. ``duste_umin`` up to 25 and
    ``duste_qpah`` up to 7, beyond the DL07 grids (20, 4.58): a draw there
    would stop a simulation or a fit half way.  Only for a ``GridSPS``.
    """
    from . import forward
    from .sps import GridSPS
    from .sps.params import grid_ranges
    model, sps = ingredients.model, ingredients.sps
    if not isinstance(sps, GridSPS):
        return
    ranges = grid_ranges(sps.library)
    bad = []
    for name in model.free_params:
        if name not in ranges:
            continue
        n = len(np.atleast_1d(model.params[name]))
        lo, hi = forward._prior_bounds(model.config_dict[name]["prior"], n)
        glo, ghi = ranges[name]
        if np.any(lo < glo - 1e-9) or np.any(hi > ghi + 1e-9):
            bad.append(f"{name} prior [{np.min(lo):.4g}, {np.max(hi):.4g}] (grid "
                       f"[{glo:.4g}, {ghi:.4g}])")
    if bad:
        name = getattr(ingredients.paramfile, "name", "the parameter file")
        raise ParamFileError(f"{name}: the prior of {'; '.join(bad)} reaches outside what "
                             "the embedded grids cover, and draws there would be refused; "
                             "narrow the prior to the grid.")


def check_free_parameters(ingredients):
    """Raise :class:`ParamFileError` naming the free parameters that change nothing.

    The priors are checked against the grids first (:func:`check_prior_ranges`).
    """
    check_prior_ranges(ingredients)
    model, sps, obs = ingredients.model, ingredients.sps, ingredients.obs
    idle = ineffective_parameters(model, sps, obs)
    if not idle:
        return
    name = getattr(ingredients.paramfile, "name", "the parameter file")
    details = "; ".join(f"{p!r} would need {what_uses(p)}" for p in idle)
    raise ParamFileError(
        f"{name}: free parameter{'s' if len(idle) > 1 else ''} "
        f"{', '.join(map(repr, idle))} {'have' if len(idle) > 1 else 'has'} no effect on the "
        f"model photometry through {len(obs['filters'])} bands ({details}); fix "
        f"{'them' if len(idle) > 1 else 'it'} (isfree=False) or add what "
        f"{'they need' if len(idle) > 1 else 'it needs'}.")
