"""Active galactic nuclei: a quasar disc and a dusty torus (agnfinder), and FSPS's ``fagn``.

The physics of this component (:class:`AGN`, a :class:`~.component.Component`),
used alike by the per-object spectrum
(:meth:`.kernel.SpectralKernel.spectra`) and the batched photometry
(:mod:`.photometry`).  The templates are published tables shipped with the
package (``prospect_sim/sps/data/agn/``, citations in its README).

The agnfinder model (Walmsley et al.)
-------------------------------------
- **disc**: the median radio-quiet quasar SED of Shang et al. (2011),
  interpolated in log-log, damped above 1 um by ``(lambda / 1 um)**-5``
  (the torus takes over there), reddened by the SMC curve of Prevot et al.
  (1984): ``10**(-0.4 agn_eb_v k(lambda))``;
- **torus**: CLUMPY (Nenkova et al. 2008; N0 = 5, sigma = 30 deg, q = 2,
  Y = 30, tau_V = 60) at ``inclination`` (0-90 deg, linear in flux between
  the tabulated 0, 10, ..., 90 deg), damped below 1 um by
  ``(lambda / 1 um)**5`` (the CLUMPY SED includes the direct AGN light,
  which the disc template gives);
- **amplitudes**, defined physically (agnfinder added the templates per Msun
  formed and took nu F_nu for F_nu; both are fixed here): ``agn_mass`` is
  the disc's intrinsic (unreddened) luminosity and ``agn_torus_mass`` the
  torus luminosity, each as a multiple of the intrinsic bolometric
  luminosity of the galaxy's stars (before dust; agnfinder's LogUniform
  1e-7 to 15 prior thus runs from no AGN to a quasar 15 times brighter
  than its host).  Each template is normalised to unit luminosity over
  100 AA - 1e7 AA.

The AGN light is not attenuated by the host's dust (``agn_eb_v`` is the
disc's own reddening; the light it removes is not re-emitted) but sees the
IGM like the rest of the spectrum.

FSPS's ``fagn``
---------------
With ``add_agn_dust=True``, a torus of luminosity ``fagn`` times the
stars' intrinsic bolometric luminosity, as FSPS defines it, using the one
CLUMPY template agnfinder selected (damped below 1 um as above).  FSPS's
``agn_tau`` chooses the clouds' optical depth among the Nenkova templates;
only tau_V = 60 is available here, and other values are refused.

Units: templates in Lsun/Hz per Lsun of luminosity; amplitudes
dimensionless.
"""

import functools
import os

import numpy as np

from ..errors import NotBatchedError, SPSError
from .checks import check_range, scalar_option
from .component import Bands, Component, pair_table

__all__ = ["AGN", "AGNTemplates", "load_templates", "inclination_weights", "bolometric",
           "agn_spectra", "DATA_DIR", "CLUMPY_TAU", "INCLINATIONS"]

DATA_DIR = os.path.join(os.path.dirname(__file__), "data", "agn")
#: The optical depth of the CLUMPY clouds of the shipped templates (FSPS ``agn_tau``).
CLUMPY_TAU = 60.0
#: Inclinations (deg) of the CLUMPY templates.
INCLINATIONS = np.arange(0.0, 91.0, 10.0)
_LIGHTSPEED_AA = 2.998e18
_RANGE = (100.0, 1e7)          # Angstrom: the interval of unit luminosity
_KNEE = 1e4                    # Angstrom: where disc and torus hand over


def _read(name, **kwargs):
    path = os.path.join(DATA_DIR, name)
    try:
        return np.loadtxt(path, **kwargs)
    except (OSError, ValueError) as err:
        raise SPSError(f"Cannot read the AGN template {path!r} ({err}); it ships with "
                       "prospect_sim: reinstall it (`pip install --force-reinstall "
                       "prospect_sim`).") from err


class AGNTemplates:
    """The published tables, on their own wavelengths, as unit-luminosity L_lambda shapes.

    Evaluated on any wavelengths by :meth:`disc_lnu` and :meth:`torus_lnu`,
    each normalised to unit luminosity over 100 AA - 1e7 AA.
    """

    def __init__(self):
        name = "shang2011_radio_quiet_median_sed.txt"
        shang = _read(name, usecols=(0, 1), ndmin=2, **_skip_header(name))
        wave = _LIGHTSPEED_AA / 10**shang[:, 0]
        order = np.argsort(wave)
        self.disc_wave = wave[order]
        # nu F_nu = lambda F_lambda: log10(lambda L_lambda), interpolated in log lambda
        self._disc_log = shang[order, 1]
        table = _read("clumpy_torus_by_inclination.csv", delimiter=",", skiprows=1, ndmin=2)
        self.torus_wave = 10**table[:, 0]
        self._torus_log = table[:, 1:].T                                   # (I, T)
        sel = _read("clumpy_torus_incl_selected.csv", delimiter=",", skiprows=1, ndmin=2)
        self._selected_log = np.log10(np.interp(self.torus_wave, sel[:, 0], sel[:, 1]))
        smc = _read("smc_extinction_prevot1984.dat", skiprows=1, ndmin=2)
        self.smc_wave, self.smc_k = smc[:, 0], smc[:, 1]
        if len(self._torus_log) != len(INCLINATIONS) or not (
                np.all(np.isfinite(self._torus_log)) and np.all(np.isfinite(self._disc_log))):
            raise SPSError(f"The AGN templates in {DATA_DIR!r} are damaged: reinstall "
                           "prospect_sim.")
        # each normalised to unit luminosity over 100 AA - 1e7 AA (fine log grid)
        self._disc_norm = _luminosity(self._disc_llam)
        self._torus_norm = [_luminosity(lambda w, i=i: self._torus_llam(w, i))
                            for i in range(len(INCLINATIONS))]
        self._selected_norm = _luminosity(lambda w: self._torus_llam(w, "selected"))

    def _disc_llam(self, wave):
        """Disc L_lambda (unnormalised), damped beyond 1 um, zero outside 100 AA - 1e7 AA."""
        wave = np.asarray(wave, dtype=float)
        log = np.interp(np.log10(wave), np.log10(self.disc_wave), self._disc_log)
        out = 10**log / wave * np.minimum(1.0, (wave / _KNEE)**-5)
        return np.where((wave >= _RANGE[0]) & (wave <= _RANGE[1]), out, 0.0)

    def _torus_llam(self, wave, which):
        """Torus L_lambda (unnormalised), damped below 1 um, log-log between table points."""
        wave = np.asarray(wave, dtype=float)
        log = self._selected_log if which == "selected" else self._torus_log[which]
        out = 10**np.interp(np.log10(wave), np.log10(self.torus_wave), log) / wave
        out = out * np.minimum(1.0, (wave / _KNEE)**5)
        return np.where((wave >= _RANGE[0]) & (wave <= _RANGE[1]), out, 0.0)

    def disc_lnu(self, wave):
        """Intrinsic disc, Lsun/Hz per Lsun, on rest ``wave`` (Angstrom)."""
        wave = np.asarray(wave, dtype=float)
        return self._disc_llam(wave) / self._disc_norm * wave**2 / _LIGHTSPEED_AA

    def torus_lnu(self, wave, which):
        """Torus ``which`` (index into :data:`INCLINATIONS`, or ``"selected"``), Lsun/Hz per Lsun."""
        wave = np.asarray(wave, dtype=float)
        norm = self._selected_norm if which == "selected" else self._torus_norm[which]
        return self._torus_llam(wave, which) / norm * wave**2 / _LIGHTSPEED_AA

    def smc(self, wave):
        """SMC k(lambda) = A_lambda / E(B-V) on ``wave`` (Angstrom)."""
        return np.interp(wave, self.smc_wave, self.smc_k)


def _skip_header(name):
    """``skiprows`` past the CDS header (comment lines) and the column-name line."""
    with open(os.path.join(DATA_DIR, name)) as handle:
        for i, line in enumerate(handle):
            if line.startswith("log_freq"):
                return {"skiprows": i + 1}
    return {}


_FINE = np.geomspace(_RANGE[0], _RANGE[1], 40001)


def _luminosity(llam):
    """Integral over 100 AA - 1e7 AA of the function ``llam(wave)`` (fine log grid)."""
    return float(np.trapezoid(llam(_FINE), _FINE))


@functools.lru_cache(maxsize=1)
def load_templates():
    """The AGN templates, read once per process."""
    return AGNTemplates()


def inclination_weights(inclination):
    """Lower template index (N,) and weight of the upper one (N,), linear in inclination."""
    x = np.asarray(inclination, dtype=float)
    lo = np.clip(np.searchsorted(INCLINATIONS, x, side="right") - 1, 0, len(INCLINATIONS) - 2)
    return lo, np.clip((x - INCLINATIONS[lo]) / 10.0, 0.0, 1.0)


def bolometric(library_name, fallback=None):
    """Intrinsic bolometric luminosity of each SSP, (Z, A) Lsun per Msun formed.

    The trapezoid integral of L_lambda over the whole library (``library_name``
    untrimmed), from the same bins as the dust absorption.
    """
    from .dust_emission import absorption_tables
    return absorption_tables(library_name, None, fallback=fallback).stars.sum(axis=-1,
                                                                               dtype=float)


def agn_spectra(templates, batch):
    """AGN light per unit stellar bolometric luminosity, (N, W) Lsun/Hz, on ``templates``' wave.

    Parameters
    ----------
    templates : dict
        ``"disc"`` (W,), ``"smc"`` (W,), ``"torus"`` (I, W), ``"selected"`` (W,):
        :class:`AGNTemplates` evaluated on the spectrum's wavelengths.
    batch : Batch
        ``agn_mass``, ``agn_eb_v``, ``agn_torus_mass``, ``inclination``, ``fagn`` (N,).
    """
    red = 10**(-0.4 * batch.agn_eb_v[:, None] * templates["smc"][None, :])
    out = batch.agn_mass[:, None] * templates["disc"][None, :] * red
    lo, frac = inclination_weights(batch.inclination)
    torus = templates["torus"]
    out += batch.agn_torus_mass[:, None] * ((1 - frac)[:, None] * torus[lo]
                                            + frac[:, None] * torus[lo + 1])
    if np.any(batch.fagn > 0):
        out += batch.fagn[:, None] * templates["selected"][None, :]
    return out


def evaluated(wave):
    """:class:`AGNTemplates` on ``wave`` as the dict :func:`agn_spectra` takes."""
    t = load_templates()
    return {"disc": t.disc_lnu(wave), "smc": t.smc(wave),
            "torus": np.array([t.torus_lnu(wave, i) for i in range(len(INCLINATIONS))]),
            "selected": t.torus_lnu(wave, "selected")}


class AGN(Component):
    """The agnfinder disc and torus and FSPS's ``fagn`` torus (this module)."""

    name = "AGN"
    parameters = {"agn_mass": 0.0, "agn_eb_v": 0.0, "agn_torus_mass": 0.0, "inclination": 0.0,
                  "fagn": 0.0, "agn_tau": 10.0}
    uses = {"agn_eb_v": "the AGN disc (agn_mass > 0)",
            "inclination": "the AGN torus (agn_torus_mass > 0)",
            "agn_tau": "FSPS's AGN torus (add_agn_dust=True, fagn > 0)",
            "fagn": "FSPS's AGN torus (add_agn_dust=True, fagn > 0)",
            "agn_mass": "an sps with an AGN component (GridSPS has one)",
            "agn_torus_mass": "an sps with an AGN component (GridSPS has one)"}
    AMPLITUDES = ("agn_mass", "agn_torus_mass", "fagn")

    def read(self, params, batch, library):
        if not bool(scalar_option(params, "add_agn_dust", True)):
            batch.fagn = np.zeros(batch.n)
        for key in self.AMPLITUDES + ("agn_eb_v",):
            check_range(key, getattr(batch, key), 0.0, np.inf)
        check_range("inclination", batch.inclination, 0.0, 90.0, unit=" deg")
        if np.any(batch.fagn > 0) and not np.all(batch.agn_tau == CLUMPY_TAU):
            raise SPSError(f"agn_tau={batch.agn_tau[batch.fagn > 0][0]!r}: GridSPS has the "
                           f"CLUMPY torus of tau_V = {CLUMPY_TAU:g} only (templates for other "
                           f"optical depths are not shipped); set agn_tau={CLUMPY_TAU:g}.")
        batch.agn = bool(max(getattr(batch, key).max(initial=0.0) for key in self.AMPLITUDES) > 0)

    def on(self, batch):
        return batch.agn

    def ranges(self, library):
        return {"inclination": (0.0, 90.0), "agn_eb_v": (0.0, np.inf),
                **{key: (0.0, np.inf) for key in self.AMPLITUDES}}

    def shared(self, batch):
        # the photometry is tabulated with the IGM of one igm_factor
        return ("igm_factor",) if batch.agn and batch.igm else ()

    @staticmethod
    def bolometric_table(kernel):
        """Intrinsic bolometric luminosity of each SSP of ``kernel``'s library, (Z, A, 1)."""
        return kernel.cached("bolometric", lambda: bolometric(
            kernel.library.name, fallback=kernel.library)[..., None])

    @staticmethod
    def templates(kernel):
        """The templates on ``kernel``'s wavelengths (:func:`evaluated`)."""
        return kernel.cached("agn", lambda: evaluated(kernel.wave))

    def emitted(self, kernel, batch, parts, spec):
        """Not attenuated by the host's dust; the IGM applies afterwards."""
        lbol = kernel.sum_ssps(parts.weights, parts.zlo, parts.zfrac,
                               table=self.bolometric_table(kernel), dtype=np.float64)
        spec += lbol * agn_spectra(self.templates(kernel), batch)

    def bands_key(self, batch):
        return float(batch.igm_factor[0]) if batch.igm else None

    def bands(self, kernel, library, filters, batch):
        igm = float(batch.igm_factor[0]) if batch.igm else None
        return AGNBands(library.wavelengths, filters, self.bolometric_table(kernel)[..., 0],
                        self.templates(kernel), igm)

    def describe(self, value, on, free):
        parts = [n for n, k in (("quasar disc", "agn_mass"), ("clumpy torus", "agn_torus_mass"))
                 if on(k)]
        if bool(value("add_agn_dust", True)) and on("fagn"):
            parts.append("FSPS fagn torus")
        return "AGN: " + " + ".join(parts) if parts else None

    def extras(self, flag, params, filter_names=()):
        if any(k in params for k in ("agn_mass", "agn_torus_mass")) or (
                flag("add_agn_dust") and "fagn" in params):
            out = {"l_agn": "intrinsic AGN luminosity (disc + torus), Lsun"}
            for name in filter_names:
                out[agn_fraction_name(name)] = (f"fraction of the model flux in band {name} "
                                                "that the AGN gives (disc + torus, observed "
                                                "frame, IGM included), 0-1")
            return out
        return {}


class AGNBands(Bands):
    """Band fluxes of the AGN for N objects, before ``flux_norm``.

    Each template's photometry is tabulated in redshift
    (:class:`.templates.TemplatePhotometry`, IGM included): the torus at
    the ten tabulated inclinations (the model is linear in flux between
    them, so this is exact), the disc at reddenings ``agn_eb_v`` every
    0.025 mag up to 1, interpolated linearly in log flux (the reddening factor
    ``10**(-0.4 E k)`` is log-linear in E at each wavelength; within a band
    the remainder is under 3e-4 mag).  The amplitudes are multiples of the
    stars' intrinsic bolometric luminosity, one dot product of the SSP
    weights.
    """

    summaries = ("agn_luminosity",)
    band_summaries = ("agn_band_flux",)
    E_STEP = 0.025
    E_MAX = 1.0

    def __init__(self, wave, filters, bolometric, templates, igm_factor):
        from .templates import TemplatePhotometry
        self.bolometric = bolometric.astype(np.float32)[..., None]
        n_e = int(round(self.E_MAX / self.E_STEP)) + 1
        discs = [templates["disc"] * 10**(-0.4 * j * self.E_STEP * templates["smc"])
                 for j in range(n_e)]
        stack = np.vstack(discs + list(templates["torus"]) + [templates["selected"]])
        self.n_e, self.n_torus = n_e, len(templates["torus"])
        # smooth templates over 100 AA - 1e7 AA: R = 1000 and 1e-3 in ln(1+z) suffice
        self.table = TemplatePhotometry(wave, stack, filters, step=1e-3, igm_factor=igm_factor,
                                        resolution=1000.0)
        self.n_bands = len(filters)

    def add(self, batch, w32, y32, zlo, out, summary):
        flux, summary["agn_luminosity"][:] = self.fluxes(batch, w32, zlo)
        summary["agn_band_flux"][:] = flux
        out += flux

    def fluxes(self, batch, w32, zlo):
        """(N, B): bolometric x (agn_mass disc + agn_torus_mass torus + fagn torus), and (N,) L_AGN."""
        lbol = pair_table(w32, zlo, self.bolometric, self.bolometric.shape[1])[:, 0]
        out = np.zeros((batch.n, self.n_bands))
        rows = np.flatnonzero(batch.agn_mass > 0)
        if len(rows):
            if batch.agn_eb_v[rows].max() > self.E_MAX:
                raise NotBatchedError(f"agn_eb_v={batch.agn_eb_v[rows].max():.3g}: the batched "
                               f"photometry covers agn_eb_v up to {self.E_MAX}; narrow the "
                               "prior or predict per object (model.predict).")
            x = batch.agn_eb_v[rows] / self.E_STEP
            j = np.minimum(np.floor(x).astype(int), self.n_e - 2)
            g = (x - j)[:, None]
            z = batch.zred[rows]
            lo, hi = self.table(z, j), self.table(z, j + 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                # log-linear in E between the tabulated reddenings
                mix = np.where((lo > 0) & (hi > 0), lo * (hi / np.where(lo > 0, lo, 1.0))**g,
                               (1 - g) * lo + g * hi)
            out[rows] += batch.agn_mass[rows, None] * mix
        rows = np.flatnonzero(batch.agn_torus_mass > 0)
        if len(rows):
            lo, frac = inclination_weights(batch.inclination[rows])
            z, f = batch.zred[rows], frac[:, None]
            out[rows] += batch.agn_torus_mass[rows, None] * (
                (1 - f) * self.table(z, self.n_e + lo) + f * self.table(z, self.n_e + lo + 1))
        rows = np.flatnonzero(batch.fagn > 0)
        if len(rows):
            out[rows] += batch.fagn[rows, None] * self.table(batch.zred[rows],
                                                             self.n_e + self.n_torus)
        amplitude = batch.agn_mass + batch.agn_torus_mass + batch.fagn
        return out * lbol[:, None], amplitude * lbol

    def properties(self, summary, batch, scale):
        out = {"l_agn": summary["agn_luminosity"] * scale.mass_formed}
        with np.errstate(divide="ignore", invalid="ignore"):
            share = summary["agn_band_flux"] * scale.flux[:, None] / scale.maggies
        for b, name in enumerate(scale.filter_names):
            out[agn_fraction_name(name)] = share[:, b]
        return out


def agn_fraction_name(filter_name):
    """The simulation extra holding the AGN's share of band ``filter_name``.

    >>> agn_fraction_name("wise_w1")
    'agn_fraction_wise_w1'
    """
    return "agn_fraction_" + filter_name
