"""The embedded SPS's components, one on top of the other, for one galaxy.

A 300 Myr old, star-forming galaxy (delayed tau, tau = 1 Gyr, dust2 = 0.5,
dust1 = 0.5 on stars younger than 10 Myr) seen as

1. stars only (attenuated);
2. + nebular lines and continuum (Cloudy grids, gas_logu = -2);
3. + dust emission (Draine & Li 2007, energy balance);
4. + a quasar disc (agn_mass = 1, agn_eb_v = 0.1) and a torus
   (agn_torus_mass = 0.5, inclination 40 deg).

It writes ``components_sed.png`` (lambda L_lambda against rest wavelength)
and prints the luminosity each component adds.  Run from the repository
root::

    python examples/components_sed.py --out out/components
"""

import argparse
import os

import numpy as np

LSUN_AA = 2.998e18      # Angstrom/s: L_nu (Lsun/Hz) * c / lambda^2 = L_lambda (Lsun/AA)

GALAXY = dict(sfh=4, tage=0.3, tau=1.0, logzsol=-0.3, gas_logz=-0.3, gas_logu=-2.0,
              dust_type=0, dust2=0.5, dust1=0.5, nebemlineinspec=True,
              duste_umin=2.0, duste_qpah=2.5, duste_gamma=0.05)
STEPS = [("stars", dict(add_neb_emission=False, add_dust_emission=False, agn_mass=0.0,
                        agn_torus_mass=0.0)),
         ("+ nebular", dict(add_neb_emission=True, add_dust_emission=False, agn_mass=0.0,
                            agn_torus_mass=0.0)),
         ("+ dust emission", dict(add_neb_emission=True, add_dust_emission=True,
                                  agn_mass=0.0, agn_torus_mass=0.0)),
         ("+ AGN disc and torus", dict(add_neb_emission=True, add_dust_emission=True,
                                       agn_mass=1.0, agn_eb_v=0.1, agn_torus_mass=0.5,
                                       inclination=40.0))]


def spectra():
    """Rest wavelengths (AA) and lambda L_lambda (Lsun per Msun formed) of each step."""
    from prospect_sim.sps import GridSPS
    sps = GridSPS()
    out = []
    for label, extra in STEPS:
        wave, lnu, _ = sps.get_galaxy_spectrum(**GALAXY, **extra)
        out.append((label, wave, lnu * LSUN_AA / wave))
    return out


def luminosity(wave, lam_llam):
    return np.trapezoid(lam_llam / wave, wave)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out/components", help="output folder")
    opts = parser.parse_args(argv)
    os.makedirs(opts.out, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = spectra()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    previous = None
    for (label, wave, lam_llam), color in zip(steps, ["k", "tab:blue", "tab:red", "tab:purple"]):
        keep = (wave > 900) & (wave < 1e7)
        ax.loglog(wave[keep] / 1e4, lam_llam[keep], color=color, lw=0.8, label=label)
        total = luminosity(wave, lam_llam)
        added = "" if previous is None else f" ({total - previous:+.3g} Lsun/Msun)"
        print(f"{label:22s} L = {total:.4g} Lsun per Msun formed{added}")
        previous = total
    peak = max(s[2][(s[1] > 900) & (s[1] < 1e7)].max() for s in steps)
    ax.set_ylim(peak * 1e-5, peak * 3)
    ax.set_xlabel(r"rest wavelength ($\mu$m)")
    ax.set_ylabel(r"$\lambda L_\lambda$ (L$_\odot$ per M$_\odot$ formed)")
    ax.set_title("GridSPS components: 300 Myr star-forming galaxy")
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    path = os.path.join(opts.out, "components_sed.png")
    fig.savefig(path, dpi=110)
    print(path)
    return path


if __name__ == "__main__":
    main()
