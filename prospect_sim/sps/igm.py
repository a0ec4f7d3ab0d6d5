"""Intergalactic-medium absorption, Madau (1995), as FSPS's ``igm_absorb.f90``.

Lyman-series line blanketing (17 lines, Madau 1995 eq. 15 coefficients and
the Ly-alpha metal term), the Lyman-continuum approximation of Madau's
footnote 3, the optical depth capped at its maximum towards short
wavelengths, all scaled by ``igm_factor``::

    T(lambda_rest; z) = exp(-igm_factor * tau(lambda_rest * (1 + z)))

Applied for ``zred > 0`` when ``add_igm_absorption`` is true, to the rest
wavelengths shortward of Ly-alpha (:func:`batch_transmission`): by the
per-object spectrum on its pixels, the batched lattice at its bin
centres, the emission lines in the spectrum at their pixels and the
tabulated template photometry (dust emission, AGN) at each node.
"""

import numpy as np

__all__ = ["LYMAN_WAVE", "LYMAN_COEFF", "LYMAN_LIMIT", "igm_tau", "igm_transmission",
           "batch_transmission",
           "line_coefficients"]

LYMAN_WAVE = np.array([1215.67, 1025.72, 972.537, 949.743, 937.803,
                       930.748, 926.226, 923.150, 920.963, 919.352,
                       918.129, 917.181, 916.429, 915.824, 915.329,
                       914.919, 914.576])
LYMAN_COEFF = np.array([0.0036, 0.0017, 0.0011846, 0.0009410, 0.0007960,
                        0.0006967, 0.0006236, 0.0005665, 0.0005200, 0.0004817,
                        0.0004487, 0.0004200, 0.0003947, 0.000372, 0.000352,
                        0.0003334, 0.00031644])
LYMAN_LIMIT = 911.75
METAL_COEFF = 0.0017


def line_coefficients(wave):
    """Per-wavelength sums over the Lyman lines redder than ``wave`` (rest Angstrom).

    Returns ``(lines, metal)``, each of shape (W,); depends on ``wave`` only,
    so callers evaluating many redshifts on one grid compute it once.
    """
    wave = np.asarray(wave, dtype=float)
    below = wave[None, :] <= LYMAN_WAVE[:, None]                      # (17, W)
    lines = (LYMAN_COEFF * LYMAN_WAVE**-3.46) @ below
    metal = METAL_COEFF * LYMAN_WAVE[0]**-1.68 * below[0]
    return lines, metal


def igm_tau(wave, zred, lines=None):
    """IGM optical depth at rest-frame ``wave`` for sources at ``zred``.

    Parameters
    ----------
    wave : ndarray of shape (W,)
        Rest-frame Angstrom, increasing.
    zred : ndarray of shape (N,)
    lines : tuple of ndarray or None
        :func:`line_coefficients` of ``wave``, if already computed.

    Returns
    -------
    ndarray of shape (N, W)
        Zero redward of Ly-alpha.

    Notes
    -----
    Each line contributes ``A_i (lambda_obs / lambda_i)**3.46`` blueward of
    ``lambda_i`` (rest), so the line sum is ``C(lambda) * lambda_obs**3.46``
    with a step function ``C`` computed once: two exponentials per pixel
    instead of seventeen powers.
    """
    wave = np.asarray(wave, dtype=float)
    z1 = 1.0 + np.asarray(zred, dtype=float)[:, None]
    lnobs = np.log(wave)[None, :] + np.log(z1)
    lines, metal = line_coefficients(wave) if lines is None else lines
    tau = lines * np.exp(3.46 * lnobs) + metal * np.exp(1.68 * lnobs)
    sel = wave <= LYMAN_LIMIT
    if sel.any():
        lnxc = lnobs[:, sel] - np.log(LYMAN_LIMIT)
        xc3, xc15, xc168 = np.exp(3.0 * lnxc), np.exp(1.5 * lnxc), np.exp(1.68 * lnxc)
        tau[:, sel] += (0.25 * xc3 * z1**0.46 - 0.25 * np.exp(3.46 * lnxc)
                        + 9.4 * xc15 * z1**0.18 - 9.4 * xc168
                        - 0.7 * xc168 + 0.7 * xc3 * z1**-1.32
                        - 0.023 * z1**1.68 + 0.023 * xc168)
        # the continuum fit falls apart far blueward: cap tau at its maximum
        imax = np.argmax(tau, axis=1)
        cap = tau[np.arange(len(tau)), imax]
        blue = np.arange(tau.shape[1])[None, :] <= imax[:, None]
        tau = np.where(blue, cap[:, None], tau)
    return tau


def igm_transmission(wave, zred, igm_factor=1.0, lines=None):
    """exp(-igm_factor * tau); ones where ``zred <= 0``.

    Returns
    -------
    ndarray of shape (N, W)
    """
    zred = np.asarray(zred, dtype=float)
    tau = igm_tau(wave, np.maximum(zred, 0.0), lines=lines)
    factor = np.broadcast_to(np.asarray(igm_factor, dtype=float), zred.shape)
    return np.exp(-(factor * (zred > 0))[:, None] * tau)


def batch_transmission(wave, batch, lines=None):
    """The IGM of a batch at the increasing rest wavelengths ``wave`` that it touches.

    Returns
    -------
    ndarray of shape (N, n) or None
        The transmission at ``wave[:n]``, the wavelengths shortward of
        Ly-alpha; None when the batch has no IGM there (``add_igm_absorption``
        off, every ``zred`` 0, or no such wavelength).  ``lines`` are
        :func:`line_coefficients` of ``wave[:n]``, if computed once already.
    """
    n = int(np.searchsorted(wave, LYMAN_WAVE[0], side="right"))
    if not (batch.igm and n and np.any(batch.zred > 0)):
        return None
    return igm_transmission(wave[:n], batch.zred, batch.igm_factor, lines=lines)
