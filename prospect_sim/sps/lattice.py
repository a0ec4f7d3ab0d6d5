"""The coarse ln(lambda) lattice of :mod:`prospect_sim.sps.photometry`.

:class:`_Lattice` holds, for one set of (smooth) filter curves, the
filters' Legendre moments over lattice bins at sub-bin offsets and the
SSPs' moments over the rest-frame lattice (:mod:`.moments`), and turns SSP
weights into band fluxes: the stellar GEMMs per redshift group, dust and
IGM in Legendre space (:func:`_times_linear`), and the projection at each
object's shift.  See the photometry module's docstring for the method and
its accuracy.
"""

import numpy as np

from ._compiled import compiled
from .dust import Attenuation
from .igm import LYMAN_WAVE, batch_transmission
from .moments import _GroupTable, _bin_moments, _legendre

__all__ = []

_JY_AB = 3631e-23          # erg/s/cm^2/Hz


class _Lattice:
    """Photometry through ``curves`` on one ln-lambda lattice (see :mod:`.photometry`)."""

    def __init__(self, library, curves, resolution, group, n_sub, n_moments,
                 young_age=0.0, young_tol=1e-4):
        self.library = library
        self.curves = curves
        self.delta = 1.0 / float(resolution)
        self.group = int(group)
        self.n_sub = int(n_sub)
        self.n_moments = int(n_moments)
        self.n_young = int(np.searchsorted(library.ages, young_age))
        self.young_tol = float(young_tol)
        lo = min(c.lo for c in curves)
        hi = max(c.hi for c in curves)
        # lattice: centre of bin v at y0 + v * delta, a bin edge at ln(Ly-alpha)
        lya = np.log(LYMAN_WAVE[0])
        k0 = np.floor((np.log(lo) - lya) / self.delta - 1.0)
        self.y0 = lya + (k0 + 0.5) * self.delta
        self.n_obs = int(np.ceil((np.log(hi) - self.y0) / self.delta)) + 2
        self.response = self._filter_table()               # (K V, (M+1) B) float32
        # the same transposed, ((M+1) B, V K): one contiguous row per offset and band
        self._response_t = np.ascontiguousarray(self.response.T)
        self._jmax = -1                # the rest-frame side is built for the redshifts asked

    def _filter_table(self, sub=64):
        """Filter moments over lattice bins at M+1 sub-bin offsets, (K V, (M+1) B) float32.

        Row ``K v + q``, column ``m B + b``: the sedpy-normalised integral of
        filter ``b`` times the Legendre polynomial ``P_q(2 t/delta)`` over
        ln(lambda_obs) in the bin centred on ``y0 + (v + m/M) delta`` (``t``
        from that centre).  The filter is linear between ``sub`` points per
        bin, so Simpson's rule on each of them is exact.
        """
        M, V, B, K = self.n_sub, self.n_obs, len(self.curves), self.n_moments
        if sub % M:
            raise ValueError(f"sub={sub} must be a multiple of n_sub={M}")
        step = sub // M
        u = np.arange((V + 1) * sub + 1) / sub - 0.5        # lattice units
        umid = u[:-1] + 0.5 / sub
        lam, lam_mid = np.exp(self.y0 + u * self.delta), np.exp(self.y0 + umid * self.delta)
        starts = np.arange(V)[:, None] * sub + (np.arange(M + 1) * step)[None, :]
        table = np.empty((V, K, M + 1, B))
        # position of every fine point within its bin, in [-1, 1], per sub-offset
        local = np.arange(sub + 1) / sub * 2.0 - 1.0
        local_mid = (np.arange(sub) + 0.5) / sub * 2.0 - 1.0
        leg = [_legendre(q, local) for q in range(K)]
        leg_mid = [_legendre(q, local_mid) for q in range(K)]
        for b, f in enumerate(self.curves):
            trans = np.interp(lam, f.wave, f.trans, left=0.0, right=0.0)
            tmid = np.interp(lam_mid, f.wave, f.trans, left=0.0, right=0.0)
            # (V, M+1, sub+1) fine values per bin and offset
            win = trans[starts[..., None] + np.arange(sub + 1)]
            wmid = tmid[starts[..., None] + np.arange(sub)]
            # sedpy: maggies = int lambda T f_lambda dlambda / ab_zero_counts
            norm = self.delta * 2.998e18 * _JY_AB / f.zero_counts / (6.0 * sub)
            for q in range(K):
                g = win * leg[q]
                table[:, q, :, b] = norm * (g[..., :-1] + g[..., 1:]
                                            + 4.0 * wmid * leg_mid[q]).sum(axis=-1)
        return table.reshape(K * V, -1).astype(np.float32)

    def _build_lattice(self, jmax):
        jmax = self.group * (jmax // self.group + 1)
        self._jmax = jmax
        self.i_min = -(jmax + 2)                   # lowest rest lattice index
        idx = np.arange(self.i_min, self.n_obs)
        centers = self.y0 + idx * self.delta
        edges = np.concatenate([centers - 0.5 * self.delta, [centers[-1] + 0.5 * self.delta]])
        lib = self.library
        self.moments = _bin_moments(lib.wavelengths, lib.spectra, edges, self.n_moments)
        self.rest_wave = np.exp(centers)
        self.rest_edges = np.exp(edges)
        self._tables = {}                          # (group, metallicity) -> _GroupTable
        self._pairs = {}                           # (group, metallicity) -> stacked rows
        self._dust_curves = {}                     # group -> dust law -> unit curves
        self._last_ranks = (None, None)            # where the next table's rank search starts

    def _window(self, g):
        """Columns ``lo:hi`` of the rest-frame lattice arrays seen by shift group ``g``."""
        return -(g + 1) * self.group - 1 - self.i_min, self.n_obs - self.group * g - self.i_min

    def _table(self, g, k):
        """The GEMM table of shift group ``g`` at metallicity ``k`` (built on first use)."""
        table = self._tables.get((g, k))
        if table is None:
            lo, hi = self._window(g)
            table = self._tables[g, k] = _GroupTable(self.moments[k, :, lo:hi],
                                                      self.n_young, self.young_tol,
                                                      self._last_ranks)
            self._last_ranks = (table.rank or None, table.old_rank or None)
        return table

    def _pair(self, g, k):
        """Basis rows of metallicities ``k`` and ``k + 1`` stacked, or None.

        One GEMM with both (twice the inner dimension) runs ~1.5x faster
        than two GEMMs and a sum.  The first pair asked for in a group
        builds every metallicity's table of the group and stacks all their
        basis rows in one array, each table's rows and each pair a view
        of it: no row is stored twice.
        """
        key = (g, k)
        if key not in self._pairs:
            if self._table(g, k).basis_rows is None or self._table(g, k + 1).basis_rows is None:
                self._pairs[key] = None
                return None
            tables = [self._table(g, z) for z in range(self.moments.shape[0])]
            if all(t.basis_rows is not None for t in tables):
                stack = np.concatenate([t.basis_rows for t in tables])
                ends = np.cumsum([0] + [len(t.basis_rows) for t in tables])
                for z, t in enumerate(tables):
                    t.basis_rows = stack[ends[z]:ends[z + 1]]
                for z in range(len(tables) - 1):
                    self._pairs[g, z] = stack[ends[z]:ends[z + 2]]
            else:
                self._pairs[key] = np.concatenate([tables[k].basis_rows,
                                                   tables[k + 1].basis_rows])
        return self._pairs[key]

    def fluxes(self, batch, w32, y32, zlo):
        """Band fluxes before ``flux_norm``, (N, len(curves))."""
        n = batch.n
        shift = np.log1p(batch.zred) / self.delta
        j = np.floor(shift).astype(int)
        if j.max(initial=0) >= self._jmax:
            self._build_lattice(max(int(j.max()) + 1,
                                    int(np.ceil(np.log(2.0 * float(batch.zred.max()) + 1.0)
                                                / self.delta))))
        f = (shift - j).astype(np.float32)
        out = np.empty((n, len(self.curves)))
        # by shift group, and within a group by metallicity interval (contiguous GEMM blocks)
        order = np.lexsort((zlo, j // self.group)) if n > 1 else np.zeros(1, dtype=np.intp)
        gid = j[order] // self.group
        for a, b in _runs(gid):
            rows = order[a:b]
            out[rows] = self._group(batch, rows, int(gid[a]), j[rows], f[rows], w32, y32, zlo)
        return out

    def _group(self, batch, rows, g, j, f, w32, y32, zlo):
        """Fluxes of the objects ``rows`` (by metallicity interval) of shift group ``g``."""
        lo, hi = self._window(g)
        spec = self._stellar(w32, rows, zlo, g)                      # (n, w, K)
        sub = batch if batch.n == 1 else _Sub(batch, rows)
        dust = Attenuation(sub)
        wave = self.rest_wave[lo:hi]
        edges = self.rest_edges[lo:hi + 1]
        if y32 is not None and dust.birth:
            ys = self._stellar(y32, rows, zlo, g)
            # young stars get (exp(-tau1) - 1) more, linear across each bin
            extra = np.expm1(-dust.birth_tau(wave))
            half1 = _half_step(dust.birth_tau(edges))
            spec += _times_linear(ys, extra.astype(np.float32),
                                  (-half1 * (extra + 1.0)).astype(np.float32))
        igm = batch_transmission(wave, sub)
        _attenuate(spec, dust, wave, edges, None if igm is None else igm.astype(np.float32),
                   cache=self._dust_curves.setdefault(g, {}))
        # each spectrum at its integer shift, projected at the two sub-bin offsets
        # that bracket its fraction and interpolated linearly between them
        out = np.empty((len(j), len(self.curves)))
        _project(spec, -j - (lo + self.i_min), f * np.float32(self.n_sub), self._response_t, out)
        return out

    def _stellar(self, weights, rows, zlo, g):
        """Legendre moments (n, w, K) of sum_a w_a [(1-f) L_lo,a + f L_hi,a] in group ``g``.

        ``weights`` (N, 2, A) of the whole batch, of which the objects
        ``rows`` are taken.  Per metallicity interval one GEMM: the basis
        coefficients of both metallicities against their stacked rows
        (:meth:`_pair`), or, for populations younger than the old basis
        pays for, the ages up to the oldest one with weight as they are.
        (Splitting the objects into two blocks by age, so that young ones
        skip the old rows, paid before the old basis; with it one block,
        larger GEMMs, is 2.5-5% faster.)
        """
        lo, hi = self._window(g)
        out = np.empty((len(rows), (hi - lo) * self.n_moments), dtype=np.float32)
        zlo = zlo[rows]                          # sorted: each interval a slice
        for start, stop in _runs(zlo):
            k, block = int(zlo[start]), slice(start, stop)
            ww = weights[rows[block]]
            used = np.nonzero(ww.any(axis=(0, 1)))[0]
            n_age = int(np.max(used, initial=0)) + 1
            lower, upper = self._table(g, k), self._table(g, k + 1)
            pair = self._pair(g, k)
            if pair is not None and lower.through_basis(n_age) and upper.through_basis(n_age):
                split = len(lower.basis_rows)
                x = np.empty((stop - start, len(pair)), dtype=np.float32)
                lower.coefficients(ww[:, 0], n_age, x[:, :split])
                upper.coefficients(ww[:, 1], n_age, x[:, split:])
                np.matmul(x, pair, out=out[block])
            else:
                first = int(used[0]) if len(used) else 0
                part = lower.apply(ww[:, 0], n_age, first)
                part += upper.apply(ww[:, 1], n_age, first)
                out[block] = part
        return out.reshape(len(rows), hi - lo, self.n_moments)


def _runs(keys):
    """(start, stop) of every run of equal consecutive values of ``keys`` (1-d), in order.

    >>> _runs(np.array([3, 3, 5, 3]))
    [(0, 2), (2, 3), (3, 4)]
    """
    if len(keys) == 1:
        return [(0, 1)]
    bounds = [0, *(np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist(), len(keys)]
    return list(zip(bounds[:-1], bounds[1:]))


def _attenuate(spec, dust, wave, edges, igm=None, cache=None):
    """Apply the diffuse dust (and IGM) to ``spec`` (n, w, K) in place.

    Within each bin the transmission is ``T0 + T1 x`` (``x`` from -1 to 1):
    ``T0`` at the bin centre and ``T1 = -T0 (tau(hi) - tau(lo)) / 2`` its
    first-order change (the optical depth is close to linear in ln(lambda)
    across a bin; neglecting the slope cost up to 8e-4 mag in the rest UV of
    old, dusty populations).  When ``dust_index`` is shared, the optical
    depth is ``dust2`` times one curve and the slope is formed inside the
    product (:func:`_times_dust`); ``igm`` (n, n_blue) multiplies both terms
    of the bluest bins.  ``dust`` is the :class:`~.dust.Attenuation` of the
    objects; ``cache`` (a dict owned by the caller for this ``wave``) keeps
    the shared curve per dust law.
    """
    if dust.shared:
        base, half = _unit_curves(dust, wave, edges, cache)
        dust2 = dust.dust2.astype(np.float32)
        trans = np.exp(-dust2[:, None] * base[None, :])
        if igm is None:
            return _times_dust(spec, trans, dust2, half)
        slope = trans * (-dust2[:, None] * half[None, :])
    else:
        tau = dust.diffuse_tau(wave)
        half = _half_step(dust.diffuse_tau(edges))
        trans = np.exp(-tau)
        slope = (-half * trans).astype(np.float32)
        trans = trans.astype(np.float32)
    if igm is not None:
        n_blue = igm.shape[1]
        trans[:, :n_blue] *= igm
        slope[:, :n_blue] *= igm
    return _times_linear(spec, trans, slope)


def _unit_curves(dust, wave, edges, cache=None):
    """float32 optical depth at ``dust2 = 1`` at the bin centres, and half its change across each bin.

    For a :attr:`~.dust.Attenuation.shared` dust law; kept in ``cache``
    (when given) per law: its ``wave`` and ``edges`` must not change.
    """
    key = (dust.dust_type, 0.0 if dust.dust_type == 2 else float(dust.dust_index[0]))
    curves = None if cache is None else cache.get(key)
    if curves is None:
        curves = (dust.unit_tau(wave).astype(np.float32),
                  _half_step(dust.unit_tau(edges)).astype(np.float32))
        if cache is not None:
            if len(cache) > 16:
                cache.clear()
            cache[key] = curves
    return curves


def _half_step(values_at_edges):
    """Half the change of a quantity across each bin, from its values at the W + 1 edges."""
    return 0.5 * (values_at_edges[..., 1:] - values_at_edges[..., :-1])


@compiled
def _project(spec, offset, pos, response_t, out):
    """Band fluxes of spectra placed at their shifts: ``out`` (n, B).

    Object ``n``'s observed bins are window columns ``offset[n]`` on of
    ``spec[n]`` (w, K); its flux in band ``b`` is the product of those
    ``V K`` numbers with the filter rows (``response_t``, ((M+1) B, V K))
    at the two sub-bin offsets ``m`` and ``m + 1`` that bracket ``pos[n]``
    (the fractional shift times M), interpolated linearly.  Two dot
    products per band instead of a GEMM over all M + 1 offsets (4.5x the
    arithmetic), and the rows need no sorting by shift.
    """
    n_bands = out.shape[1]
    n_sub = response_t.shape[0] // n_bands - 1
    width = response_t.shape[1]
    n_mom = spec.shape[2]
    for n in range(spec.shape[0]):
        window = spec[n].reshape(-1)[offset[n] * n_mom:offset[n] * n_mom + width]
        m = min(int(pos[n]), n_sub - 1)
        phi = pos[n] - m
        for b in range(n_bands):
            lo_row, hi_row = response_t[m * n_bands + b], response_t[(m + 1) * n_bands + b]
            lo, hi = np.float32(0.0), np.float32(0.0)
            for i in range(width):
                lo += window[i] * lo_row[i]
                hi += window[i] * hi_row[i]
            out[n, b] = lo + phi * (hi - lo)


@compiled(inline="always")
def _product(c, i, a, b):
    """Bin ``i`` of ``c`` (w, K) times ``a + b x``, in place (see :func:`_times_linear`)."""
    n_mom = c.shape[1]
    if n_mom == 1:
        c[i, 0] *= a
    elif n_mom == 2:
        x0, x1 = c[i, 0], c[i, 1]
        c[i, 0] = a * x0 + b * x1 * np.float32(1 / 3)
        c[i, 1] = a * x1 + b * x0
    else:
        x0, x1, x2 = c[i, 0], c[i, 1], c[i, 2]
        c[i, 0] = a * x0 + b * x1 * np.float32(1 / 3)
        c[i, 1] = a * x1 + b * (x0 + np.float32(2 / 5) * x2)
        c[i, 2] = a * x2 + b * x1 * np.float32(2 / 3)


@compiled
def _times_linear(spec, t0, t1):
    """Legendre moments of ``spec`` times ``t0 + t1 x`` within each bin, in place.

    ``spec`` (n, W, K) holds ``sum_q c_q P_q(x)`` per bin; with
    ``x P0 = P1``, ``x P1 = (P0 + 2 P2)/3`` and ``x P2 = (2 P1 + 3 P3)/5``
    the product's first K coefficients follow (the P3 part is dropped; for
    K = 1 the slope has nothing to act on and only ``t0`` is applied).
    ``t0`` and ``t1`` are (n, W) float32.  Returns ``spec``.
    """
    for n in range(spec.shape[0]):
        c, a, b = spec[n], t0[n], t1[n]
        for i in range(spec.shape[1]):
            _product(c, i, a[i], b[i])
    return spec


@compiled
def _times_dust(spec, trans, dust2, half):
    """:func:`_times_linear` with ``t0 = trans`` and ``t1 = -trans dust2 half`` formed here.

    ``trans`` (n, W), ``dust2`` (n,), ``half`` (W,): half the change of the
    unit optical depth across each bin, all float32.
    """
    for n in range(spec.shape[0]):
        c, a, d = spec[n], trans[n], -dust2[n]
        for i in range(spec.shape[1]):
            _product(c, i, a[i], a[i] * d * half[i])
    return spec


class _Sub:
    """The per-object arrays of a batch restricted to ``rows``."""

    def __init__(self, batch, rows):
        self.dust_type, self.igm = batch.dust_type, batch.igm
        for key in ("zred", "dust2", "dust_index", "dust1", "dust1_index", "igm_factor"):
            setattr(self, key, getattr(batch, key)[rows])
