"""The filters' isolated outlier points, split off and integrated on a fine lattice.

A filter table value far from the mean of its neighbours (DECam ``i`` at
8480 AA, the telluric A band) is a narrow triangle whose integral against
every SSP is tabulated at fine redshift nodes (:class:`_Spike`) and
interpolated per object (:func:`_outlier_fluxes`); the smooth remainder of
each filter goes on the coarse lattice (:mod:`.lattice`).
"""

import numpy as np

from ._compiled import compiled
from .dust import Attenuation
from .igm import LYMAN_WAVE, igm_transmission
from .lattice import _Lattice

__all__ = []


class _Curve:
    """A transmission curve (Angstrom, observed frame) and its sedpy normalisation."""

    def __init__(self, wave, trans, zero_counts):
        self.wave = np.asarray(wave, dtype=float)
        self.trans = np.asarray(trans, dtype=float)
        self.zero_counts = float(zero_counts)
        nz = np.nonzero(self.trans)[0]
        self.lo = self.wave[max(nz[0] - 1, 0)]
        self.hi = self.wave[min(nz[-1] + 1, len(self.wave) - 1)]


def _split_curves(filters, outlier):
    """Smooth curves (one per filter) and ``(band, curve)`` of isolated outlier points."""
    smooth, spikes = [], []
    for b, f in enumerate(filters):
        w, t = np.asarray(f.wavelength, float), np.asarray(f.transmission, float)
        smooth_t, spike = t.copy(), np.zeros_like(t)
        for _ in range(len(t)):
            # the worst point first: its neighbours then look normal again.  Only a
            # local extremum (a dip or a peak) is an outlier: a point on a steep
            # edge (Bessell B at 3800 AA, tabulated every 100 AA) is curvature, which
            # the coarse lattice integrates exactly, and not a narrow triangle
            mid = smooth_t[1:-1]
            extremum = (mid - smooth_t[:-2]) * (mid - smooth_t[2:]) > 0
            resid = np.where(extremum, mid - 0.5 * (smooth_t[:-2] + smooth_t[2:]), 0.0)
            i = int(np.argmax(np.abs(resid))) if len(resid) else 0
            if not len(resid) or abs(resid[i]) <= outlier * t.max():
                break
            spike[i + 1] += resid[i]
            smooth_t[i + 1] -= resid[i]
        smooth.append(_Curve(w, smooth_t, f.ab_zero_counts))
        # one curve per cluster of neighbouring outliers (each gets its own small lattice)
        nz = np.flatnonzero(spike)
        for cluster in np.split(nz, np.flatnonzero(np.diff(nz) > 2) + 1) if len(nz) else []:
            part = np.zeros_like(spike)
            part[cluster] = spike[cluster]
            spikes.append((b, _Curve(w, part, f.ab_zero_counts)))
    return smooth, spikes


class _Spike:
    """Photometry through one narrow outlier part of a filter curve (see :func:`_split_curves`).

    An outlier is a triangle ~20 AA wide carrying a few 1e-3 of its band's
    flux, but the spectrum it sees has lines on its own scale.  Its
    integral against every SSP is tabulated once, from an exact lattice of
    ``resolution``, at ``n_sub`` redshift nodes per lattice bin (nodes
    every ``1/(resolution n_sub)`` in ln(1+z)), and interpolated linearly in
    ln(1+z) per object: a dot product with the SSP weights instead of a
    spectrum.  Dust, birth-cloud dust and IGM multiply it at the outlier's
    mean rest wavelength (across ~20 AA they change by well under 1%, of a
    term that is itself well under 1% of the band).
    """

    def __init__(self, library, curve, resolution, n_sub, n_moments):
        self.lattice = _Lattice(library, [curve], resolution, 1, n_sub, n_moments)
        self.n_sub = int(n_sub)
        t = np.abs(curve.trans)
        self.center = float(np.sum(curve.wave * t) / np.sum(t))   # observed Angstrom
        self.nodes = np.empty((0,) + library.spectra.shape[:2], dtype=np.float32)

    def _tabulate(self, j_max):
        """SSP integrals at the redshift nodes of shifts ``0 .. j_max - 1``: (j_max M + 1, Z, A).

        Node ``j M + m`` is shift ``j + m/M`` (the last one is ``(j_max - 1, M)``,
        i.e. shift ``j_max``); its integral is
        ``sum_{v, q} c[z, a, v - i_min - j, q] R[v, q, m]``, the SSP moments
        ``c`` correlated along the lattice with the filter's ``V``-bin response
        ``R``: one banded sparse matrix, (nodes, rest columns x K) with ``V K``
        entries per row, applied to the moments of all SSPs at once, in float32.
        """
        from scipy import sparse
        lat, M = self.lattice, self.n_sub
        if j_max >= lat._jmax:
            lat._build_lattice(j_max + 1)
        V, K = lat.n_obs, lat.n_moments
        n_z, n_age, n_col = lat.moments.shape[:3]
        resp = lat.response.reshape(V, K, M + 1)
        j = np.r_[np.repeat(np.arange(j_max), M), j_max - 1]       # shift and offset per node
        m = np.r_[np.tile(np.arange(M), j_max), M]
        v, q = np.arange(V)[:, None], np.arange(K)
        rows = np.broadcast_to(np.arange(len(j))[:, None, None], (len(j), V, K))
        cols = (v - lat.i_min - j[:, None, None]) * K + q            # rest column of bin v, moment q
        op = sparse.csr_matrix((resp[v, q, m[:, None, None]].ravel(), (rows.ravel(), cols.ravel())),
                               shape=(len(j), n_col * K))
        moments = np.ascontiguousarray(lat.moments.reshape(n_z * n_age, n_col * K).T)
        self.nodes = (op @ moments).reshape(len(j), n_z, n_age)
        lat.moments, lat._jmax = None, -1            # rebuilt only if larger redshifts come

    def positions(self, zred):
        """Node coordinate ``ln(1+z) / step`` of each redshift, the table extended to cover them."""
        pos = np.log1p(zred) / self.lattice.delta * self.n_sub
        need = int(np.floor(pos.max(initial=0.0) / self.n_sub)) + 2
        if need * self.n_sub >= len(self.nodes):
            self._tabulate(max(need, int(1.25 * need) + 16))
        return pos


def _outlier_fluxes(spikes, batch, w32, y32, zlo):
    """Band fluxes before ``flux_norm`` of every outlier, (N, len(spikes)).

    All outliers share the redshift nodes (same lattice step and ``n_sub``).
    Each object's weights are dotted with every outlier's table at its two
    bracketing nodes, interpolated linearly in ln(1+z) (:func:`_node_dots`).
    A low-rank age basis, as for the young SSPs, does not serve here: in
    the ultraviolet the old SSPs' entries are 1e-6 of a row's peak and need
    a rank near 128 to stay within 1%.
    """
    for spike in spikes:                 # extends each table; the positions are shared
        pos = spike.positions(batch.zred)
    node = np.floor(pos).astype(np.int64)
    phi = pos - node
    order = np.argsort(node, kind="stable") if batch.n > 1 else np.zeros(1, dtype=np.int64)
    zlo = np.asarray(zlo, dtype=np.int64)
    stellar = np.empty((len(spikes), batch.n))
    young = None if y32 is None else np.empty((len(spikes), batch.n))
    for s, spike in enumerate(spikes):       # walk each table in order of node
        _node_dots(spike.nodes, node, phi, zlo, w32, order, stellar[s])
        if young is not None:
            _node_dots(spike.nodes, node, phi, zlo, y32, order, young[s])
    # dust and IGM at each outlier's mean rest wavelength, (N, S)
    lam = np.array([spike.center for spike in spikes])[None, :] / (1.0 + batch.zred)[:, None]
    flux = Attenuation(batch).apply_at(lam, stellar.T, None if young is None else young.T)
    if batch.igm:
        for i, s in zip(*np.nonzero((lam < LYMAN_WAVE[0]) & (batch.zred > 0)[:, None])):
            flux[i, s] *= igm_transmission(lam[i, s:s + 1], batch.zred[i:i + 1],
                                           batch.igm_factor[i:i + 1])[0, 0]
    return flux


@compiled
def _node_dots(nodes, node, phi, zlo, weights, order, out):
    """``out[n]``: weights (N, 2, A) dotted with an outlier's table (nodes, Z, A).

    The table at metallicities ``zlo[n]`` and ``zlo[n] + 1`` and nodes
    ``node[n]`` and ``node[n] + 1``, interpolated with ``phi[n]``; the
    objects in ``order`` (of node) so that the table is read in order.
    """
    n_age = weights.shape[2]
    for n in order:
        j, k = node[n], zlo[n]
        lo, hi = 0.0, 0.0
        for z in range(2):
            w, a, b = weights[n, z], nodes[j, k + z], nodes[j + 1, k + z]
            part_lo, part_hi = np.float32(0.0), np.float32(0.0)
            for i in range(n_age):
                part_lo += w[i] * a[i]
                part_hi += w[i] * b[i]
            lo += part_lo
            hi += part_hi
        out[n] = lo + phi[n] * (hi - lo)
