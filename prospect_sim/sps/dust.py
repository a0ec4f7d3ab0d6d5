"""Dust attenuation curves as FSPS defines them (``attn_curve.f90``, ``add_dust.f90``).

Optical depths tau(lambda) for N objects; the attenuated spectrum is
``young * exp(-tau1 - tau2) + old * exp(-tau2)`` where ``young`` are stars
younger than ``10**dust_tesc`` yr (FSPS default 7.0, i.e. 10 Myr).

- diffuse dust, all stars (``dust2`` = optical depth at 5500 AA):

  - ``dust_type=0``: power law, ``tau2 = dust2 * (lambda/5500)**dust_index``;
  - ``dust_type=2``: Calzetti et al. (2000), ``tau2 = dust2 * k(lambda) / R_V``
    with R_V = 4.05, in FSPS's form of k (coefficients 1.17/0.44 = 2.659 and
    1.78/0.44 = 4.045, so k(5500)/R_V = 0.999; zero from where the curve
    turns negative, in the far infrared);
  - ``dust_type=4``: Kriek & Conroy (2013), ``tau2 = dust2 * (k(lambda) + D(lambda)) / R_V
    * (lambda/5500)**dust_index`` with the 2175 AA Drude bump
    ``D = E_b (lambda dl)**2 / ((lambda**2 - l0**2)**2 + (lambda dl)**2)``,
    l0 = 2175 AA, dl = 350 AA, ``E_b = 0.85 - 1.9 dust_index``.

- birth-cloud dust, young stars only: ``tau1 = dust1 * (lambda/5500)**dust1_index``
  (a power law whatever ``dust_type`` is, as in FSPS).

:class:`Attenuation` is how every path applies them: the per-object
spectrum (on its pixels), the batched lattice (its bins), the filters'
outlier points, the emission lines and the dust-emission energy balance.
"""

import numpy as np

__all__ = ["DUST_TYPES", "Attenuation", "calzetti_k", "drude_bump", "diffuse_tau", "diffuse_tau_at",
           "birth_cloud_tau", "birth_cloud_tau_at"]

#: Supported FSPS dust_type codes.
DUST_TYPES = {0: "power law", 2: "Calzetti (2000)", 4: "Kriek & Conroy (2013)"}

LAMBDA_V = 5500.0
R_V = 4.05


def calzetti_k(wave):
    """Calzetti et al. (2000) k(lambda) in FSPS's form, clipped at 0.

    Parameters
    ----------
    wave : ndarray of shape (W,)
        Rest-frame Angstrom.

    Returns
    -------
    ndarray of shape (W,)
        k(lambda) = A(lambda)/E(B-V); k(5500) ~ R_V = 4.05.
    """
    x = 1e4 / np.asarray(wave, dtype=float)
    # FSPS writes Calzetti's 2.659 and R_V as 1.17/0.44 and 1.78/0.44 (= 4.045)
    blue = (1.17 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + 1.78) / 0.44
    red = (1.17 * (-1.857 + 1.040 * x) + 1.78) / 0.44
    k = np.where(np.asarray(wave) <= 6300.0, blue, red)
    # FSPS zeroes the curve from the first wavelength where it turns negative
    # (31 um); it never turns positive again, so clipping is the same thing
    # and works for unsorted wavelengths too
    return np.maximum(k, 0.0)


def drude_bump(wave, amplitude, center=2175.0, width=350.0):
    """Drude profile of the 2175 AA bump.

    Parameters
    ----------
    wave : ndarray of shape (W,)
        Rest-frame Angstrom.
    amplitude : ndarray of shape (N,)
        E_b.

    Returns
    -------
    ndarray of shape (N, W)
    """
    wave = np.asarray(wave, dtype=float)[None, :]
    return _drude(wave, np.asarray(amplitude, dtype=float)[:, None], center, width)


def _drude(wave, amplitude, center=2175.0, width=350.0):
    return amplitude * (wave * width)**2 / ((wave**2 - center**2)**2 + (wave * width)**2)


def diffuse_tau(dust_type, wave, dust2, dust_index):
    """Optical depth of the diffuse dust.

    Parameters
    ----------
    dust_type : int
        0, 2 or 4.
    wave : ndarray of shape (W,)
        Rest-frame Angstrom.
    dust2, dust_index : ndarray of shape (N,)

    Returns
    -------
    ndarray of shape (N, W)
    """
    return _tau(dust_type, np.asarray(wave, dtype=float)[None, :],
                np.asarray(dust2, dtype=float)[:, None],
                np.asarray(dust_index, dtype=float)[:, None])


def diffuse_tau_at(dust_type, wave, dust2, dust_index):
    """Optical depth of the diffuse dust at one rest wavelength per object.

    Parameters
    ----------
    dust_type : int
    wave, dust2, dust_index : ndarray
        Rest-frame Angstrom and the dust of each object, arrays that
        broadcast together: (N,) for one wavelength per object, or wave
        (N, S) against (N, 1) parameters for several.

    Returns
    -------
    ndarray of the broadcast shape
    """
    return _tau(dust_type, np.asarray(wave, dtype=float), np.asarray(dust2, dtype=float),
                np.asarray(dust_index, dtype=float))


def _tau(dust_type, wave, dust2, index):
    """:func:`diffuse_tau` on arrays that broadcast together."""
    if dust_type == 0:
        return _power_law(wave, dust2, index)
    k = calzetti_k(wave)
    if dust_type == 2:
        return dust2 * (k / R_V)
    if dust_type == 4:
        slope = _power_law(wave, 1.0, index)
        return dust2 * (k + _drude(wave, 0.85 - 1.9 * index)) / R_V * slope
    raise ValueError(f"unsupported dust_type {dust_type}")


def birth_cloud_tau(wave, dust1, dust1_index):
    """Extra optical depth for young stars, ``dust1 * (lambda/5500)**dust1_index``.

    Returns
    -------
    ndarray of shape (N, W)
    """
    return _power_law(np.asarray(wave, dtype=float)[None, :],
                      np.asarray(dust1, dtype=float)[:, None],
                      np.asarray(dust1_index, dtype=float)[:, None])


def birth_cloud_tau_at(wave, dust1, dust1_index):
    """:func:`birth_cloud_tau` at wavelengths of each object (arrays as :func:`diffuse_tau_at`)."""
    return _power_law(np.asarray(wave, dtype=float), np.asarray(dust1, dtype=float),
                      np.asarray(dust1_index, dtype=float))


def _power_law(wave, amplitude, index):
    """``amplitude * (wave/5500)**index`` on arrays that broadcast together."""
    return amplitude * np.exp(index * np.log(wave / LAMBDA_V))


class Attenuation:
    """The dust of N objects, as every path applies it.

    Light of all stars sees the diffuse dust, ``exp(-tau2)``; light of
    stars younger than ``10**dust_tesc`` yr, and the nebular light they
    ionise, also the birth clouds, ``exp(-tau1)``.  Light is given as a
    ``total`` and the ``young`` part of it (None when no object has
    ``dust1 > 0``), at wavelengths shared by the N objects or one per object.

    Parameters
    ----------
    batch : Batch
        ``dust_type`` and (N,) ``dust2``, ``dust_index``, ``dust1``, ``dust1_index``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> one = np.ones(1)
    >>> calzetti = SimpleNamespace(dust_type=2, dust2=one, dust_index=0 * one,
    ...                            dust1=0 * one, dust1_index=0 * one)
    >>> float(Attenuation(calzetti).apply(np.array([5500.0]), np.ones((1, 1)), None)[0, 0])
    ... # doctest: +ELLIPSIS
    0.368...
    """

    def __init__(self, batch):
        self.dust_type = batch.dust_type
        self.dust2 = np.asarray(batch.dust2, dtype=float)
        self.dust_index = np.asarray(batch.dust_index, dtype=float)
        self.dust1 = np.asarray(batch.dust1, dtype=float)
        self.dust1_index = np.asarray(batch.dust1_index, dtype=float)
        self.birth = bool(np.any(self.dust1 > 0))
        #: one curve times dust2 (Calzetti has no slope, or every object has the same one)
        self.shared = self.dust_type == 2 or bool(np.all(self.dust_index == self.dust_index[:1]))

    def unit_tau(self, wave, cache=None):
        """The diffuse optical depth at ``dust2 = 1``, (W,), when it is :attr:`shared`; else None.

        ``cache`` (a dict) keeps it per (dust_type, dust_index) for a
        wavelength array that does not change.
        """
        if not self.shared:
            return None
        index = 0.0 if self.dust_type == 2 else float(self.dust_index[0])
        key = (self.dust_type, index, id(wave))
        curve = None if cache is None else cache.get(key)
        if curve is None:
            curve = diffuse_tau(self.dust_type, wave, np.ones(1), np.full(1, index))[0]
            if cache is not None:
                if len(cache) > 16:
                    cache.clear()
                cache[key] = curve
        return curve

    def diffuse_tau(self, wave, cache=None):
        """``tau2`` (N, W) at wavelengths ``wave`` (W,)."""
        curve = self.unit_tau(wave, cache)
        if curve is not None:
            return self.dust2[:, None] * curve[None, :]
        return diffuse_tau(self.dust_type, wave, self.dust2, self.dust_index)

    def birth_tau(self, wave):
        """``tau1`` (N, W), or None when no object has ``dust1 > 0``."""
        if not self.birth:
            return None
        return birth_cloud_tau(wave, self.dust1, self.dust1_index)

    def transmissions(self, wave, cache=None):
        """``exp(-tau2)`` (N, W) and ``exp(-tau1)`` (N, W) or None."""
        tau1 = self.birth_tau(wave)
        return (np.exp(-self.diffuse_tau(wave, cache)),
                None if tau1 is None else np.exp(-tau1))

    def apply(self, wave, total, young):
        """Attenuated light (N, X) at wavelengths ``wave`` (X,): ``T2 (total - young (1 - T1))``."""
        if young is not None and self.birth:
            total = total + young * np.expm1(-self.birth_tau(wave))
        return total * np.exp(-self.diffuse_tau(wave))

    def absorbed(self, wave, total, young):
        """Light the dust absorbs, summed over ``wave`` (X,): (N,).

        ``total (1 - T2) + young T2 (1 - T1)``, each term positive (no
        cancellation when little is absorbed).
        """
        trans = np.exp(-self.diffuse_tau(wave))
        out = np.einsum("nx,nx->n", total, 1.0 - trans)
        if young is not None and self.birth:
            out += np.einsum("nx,nx->n", young, trans * -np.expm1(-self.birth_tau(wave)))
        return out

    def apply_at(self, wave, total, young):
        """:meth:`apply` at wavelengths of each object: ``wave``, ``total``, ``young`` (N,) or (N, S)."""
        column = (slice(None),) + (None,) * (np.ndim(wave) - 1)     # params against (N, S)
        if young is not None and self.birth:
            total = total + young * np.expm1(-birth_cloud_tau_at(
                wave, self.dust1[column], self.dust1_index[column]))
        return total * np.exp(-diffuse_tau_at(self.dust_type, wave, self.dust2[column],
                                              self.dust_index[column]))
