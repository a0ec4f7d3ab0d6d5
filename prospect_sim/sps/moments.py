"""SSP spectra as Legendre moments on a ln(lambda) lattice, and their low-rank form.

The tables behind :mod:`prospect_sim.sps.photometry`:

- :func:`_bin_moments`: each spectrum, linear in ln(lambda) between its
  native wavelengths, reduced in every lattice bin to its first K Legendre
  coefficients (exact integrals, one sparse operator for all spectra);
- :class:`_GroupTable`: the moments over one redshift group's window at one
  metallicity, young and old SSPs each through a low-rank basis
  (:func:`_age_basis`), ready for the kernel's GEMMs.
"""

import numpy as np

__all__ = []


def _legendre(q, x):
    """Legendre polynomial P_q(x), q <= 3."""
    return (np.ones_like(x), x, 1.5 * x * x - 0.5, 2.5 * x**3 - 1.5 * x)[q]


def _bin_moments(wave, spectra, edges, n_moments=3):
    """Legendre coefficients of each spectrum within ln-lambda bins.

    The spectra are linear in ln(lambda) between native wavelengths (constant
    beyond the ends); the bin integrals are exact for that (Simpson's rule on
    every native segment, exact for the cubic integrands with n_moments <= 3).
    The coefficients are linear in the spectrum, so one sparse operator
    (:func:`_moment_operator`) is applied to all spectra, in float64.

    Parameters
    ----------
    wave : ndarray of shape (W,)
        Native rest-frame Angstrom.
    spectra : ndarray of shape (Z, A, W)
    edges : ndarray of shape (R + 1,)
        ln(lambda) bin edges, uniform spacing ``delta``.
    n_moments : int
        K, at most 3.

    Returns
    -------
    ndarray of shape (Z, A, R, K), float32
        ``c_q = (2q + 1)/delta * int_bin L(y) P_q(2 t/delta) dy`` (``t`` from
        the bin centre), so within the bin ``L ~ sum_q c_q P_q(2 t/delta)``;
        ``c_0`` is the bin mean.
    """
    if not 1 <= n_moments <= 3:
        raise ValueError(f"n_moments={n_moments}: expected 1, 2 or 3")
    op, lo, hi = _moment_operator(wave, edges, n_moments)
    n_z, n_age = spectra.shape[:2]
    out = np.empty((n_z, n_age, len(edges) - 1, n_moments), dtype=np.float32)
    for k in range(n_z):                    # one metallicity at a time: small temporaries
        native = np.ascontiguousarray(spectra[k, :, lo:hi].T, dtype=float)   # (hi - lo, A)
        out[k] = (op @ native).T.reshape(out.shape[1:])
    return out


def _moment_operator(wave, edges, n_moments):
    """The sparse map from native spectrum values to bin moments (see :func:`_bin_moments`).

    The breakpoints are the native ln(lambda) inside the bins and the bin
    edges; the spectrum at breakpoint ``p`` is ``(1 - f_p) L[i_p] + f_p L[i_p + 1]``.
    Simpson's rule on segment ``[p, p + 1]`` of bin ``r`` gives
    ``c_rq += (2q + 1)/delta * h/6 * [(P_q(x0) + 2 P_q(xm)) L_p + (P_q(x1) + 2 P_q(xm)) L_p+1]``
    with ``h`` its width in ln(lambda) and ``x0, xm, x1`` its ends and middle in
    bin units ``2 t/delta``.

    Returns
    -------
    op : scipy.sparse.csr_matrix of shape (R K, hi - lo), float64
        Row ``K r + q``, column ``w - lo`` for native wavelength ``w``.
    lo, hi : int
        The native columns the operator reads.
    """
    from scipy import sparse
    lnw = np.log(wave)
    delta = edges[1] - edges[0]
    inner = lnw[(lnw > edges[0]) & (lnw < edges[-1])]
    pts = np.union1d(inner, edges)
    pos = np.interp(pts, lnw, np.arange(len(lnw), dtype=float))
    i0 = np.clip(np.floor(pos).astype(int), 0, len(lnw) - 2)
    frac = pos - i0
    seg_bin = np.clip(np.searchsorted(edges, pts[:-1], side="right") - 1, 0, len(edges) - 2)
    yc = 0.5 * (edges[seg_bin] + edges[seg_bin + 1])
    x0, x1 = 2 * (pts[:-1] - yc) / delta, 2 * (pts[1:] - yc) / delta
    h = (pts[1:] - pts[:-1]) / 6.0
    lo, hi = int(i0.min()), int(i0.max()) + 2
    rows, cols, vals = [], [], []
    for q in range(n_moments):
        mid = 2 * _legendre(q, 0.5 * (x0 + x1))
        scale = h * ((2 * q + 1) / delta)
        # the segment's weight on the spectrum at its left and right breakpoints
        for weight, p in ((scale * (_legendre(q, x0) + mid), slice(None, -1)),
                          (scale * (_legendre(q, x1) + mid), slice(1, None))):
            for col, share in ((i0[p], 1 - frac[p]), (i0[p] + 1, frac[p])):
                rows.append(seg_bin * n_moments + q)
                cols.append(col - lo)
                vals.append(weight * share)
    shape = ((len(edges) - 1) * n_moments, hi - lo)
    op = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=shape).tocsr()               # duplicates are summed
    return op, lo, hi


class _GroupTable:
    """SSP moments over one group's window, the ages in two low-rank blocks.

    The SSPs change shape with age but span few independent spectra within
    an age range: with rows scaled to their peak and columns to the range's
    mean shape, a truncated SVD (from the eigenvectors of the age-age Gram
    matrix) keeps the moments ``M ~ C @ basis`` with every moment of every
    bin within ``tol`` of that bin's mean (``c_0``), for each age, so a
    population's band fluxes move by at most ``tol`` (measured on 20,000
    demo draws with both bases at ``tol=1e-4``: 4.5e-6 mag at most).  A weight vector then costs ``w @ C``
    (r numbers) instead of one GEMM row per age.  The young ages (the first
    ``n_young``) and the older ones get a basis each (BC03 in the demo's
    windows: ranks 27-45 of 115 and 37-71 of 106); one basis for all ages
    needs rank 111-153, as the young ultraviolet and the old red light
    share little.  A block's basis is used only where it is smaller than
    the ages it replaces (a population younger than the old block's rank
    takes its old ages as they are); no basis when it saves little, and
    none at all for ``n_young=0``.

    Parameters
    ----------
    moments : ndarray of shape (A, w, K)
        Bin moments of every age at one metallicity, over the window.
    n_young : int
    tol : float
    hint : (int or None, int or None)
        Ranks to start the search for the young and old bases from (those
        of a neighbouring table: they differ by a few).
    """

    def __init__(self, moments, n_young, tol, hint=(None, None)):
        n_age = moments.shape[0]
        flat = moments.reshape(n_age, -1)                             # bin-major
        self.n_young = n_young
        young = _age_basis(moments[:n_young], tol, hint[0]) if n_young else None
        old = _age_basis(moments[n_young:], tol, hint[1]) if 0 < n_young < n_age else None
        # only the coefficients are kept: the bases live in the rows below
        self.young = None if young is None else young[0]
        self.old = None if old is None else old[0]
        young_rows = flat[:n_young] if young is None else young[1]
        self.rank = len(young_rows) if young is not None else 0
        self._n_lead = len(young_rows)          # table rows before the old ages
        self.old_rank = 0 if old is None else len(old[1])
        # old ages as they are, as far as a population too young for the old basis
        # reaches (:meth:`through_basis`); their basis rows are in basis_rows
        n_raw = n_age - n_young if old is None else self.old_rank
        self.table = np.concatenate([young_rows, flat[n_young:n_young + n_raw]]).astype(np.float32)
        self.basis_rows = (None if old is None else
                           np.concatenate([young_rows, old[1]]).astype(np.float32))

    def through_basis(self, n_age):
        """Whether populations up to age ``n_age`` are cheaper through the old basis."""
        return n_age - self.n_young > self.old_rank > 0

    def coefficients(self, w, n_age, out):
        """Write ``w[:, :n_age]`` in the coordinates of :attr:`basis_rows` into ``out``.

        For ``n_age`` with :meth:`through_basis`; ``out`` is (n, len(basis_rows)).
        """
        lead = self._n_lead
        if self.young is None:
            out[:, :lead] = w[:, :lead]
        else:
            np.matmul(w[:, :self.n_young], self.young, out=out[:, :lead])
        np.matmul(w[:, self.n_young:n_age], self.old[:n_age - self.n_young],
                  out=out[:, lead:])
        return out

    def apply(self, w, n_age, first=0):
        """``w[:, :n_age] @ moments[:n_age]`` as (n, w K), bin-major, float32.

        ``first``: ages before it have no weight (skipped where the rows are
        the ages themselves, without a young basis).
        """
        if self.through_basis(n_age):
            x = np.empty((len(w), len(self.basis_rows)), dtype=np.float32)
            return self.coefficients(w, n_age, x) @ self.basis_rows
        n_young = min(self.n_young, n_age)
        n_old = n_age - n_young
        if self.young is None:
            return w[:, first:n_age] @ self.table[first:n_age]
        lead = self._n_lead
        x = np.empty((len(w), lead + n_old), dtype=np.float32)
        np.matmul(w[:, :n_young], self.young[:n_young], out=x[:, :lead])
        x[:, lead:] = w[:, self.n_young:n_age]
        return x @ self.table[:lead + n_old]


def _age_basis(moments, tol, start=None):
    """``(C, basis)`` with ``moments ~ C @ basis`` to ``tol`` per bin, or None (see :class:`_GroupTable`).

    The rank is the smallest that fits, found by bisection; from ``start``
    (a guess) the bracket is found by galloping first, in 2-4 checks when
    the guess is close instead of ~8.

    Parameters
    ----------
    moments : ndarray of shape (A_b, w, K)

    Returns
    -------
    C : ndarray of shape (A_b, r), float32
    basis : ndarray of shape (r, w K), float32
        Bin-major, as :class:`_GroupTable` stores its rows.
    """
    n, w, K = moments.shape
    x = moments.reshape(n, -1).astype(float)
    c0 = np.abs(moments[..., 0]).astype(float)                     # (A_b, w)
    scale = np.maximum(c0, 1e-12 * c0.max(axis=1, keepdims=True))   # the error's yardstick
    row = scale.max(axis=1)
    col = np.repeat(np.mean(scale / row[:, None], axis=0), K)       # the block's mean shape
    scaled = x / row[:, None] / col
    # left singular vectors from the (A_b, A_b) Gram matrix: cheaper than an SVD
    _, u = np.linalg.eigh(scaled @ scaled.T)
    u = u[:, ::-1]                                                  # leading first
    coords = u.T @ scaled                                           # (A_b, w K)
    limit = tol * np.repeat(scale, K, axis=1) / row[:, None] / col    # in scaled units

    def fits(r):
        return bool(np.all(np.abs(scaled - u[:, :r] @ coords[:r]) <= limit))

    lo, hi = 0, n                            # lo does not fit (or 0); hi fits (or n)
    if start is not None and 0 < start < n:
        step = 1
        if fits(start):
            hi = start
            while hi - step > 0 and fits(hi - step):
                hi, step = hi - step, 2 * step
            lo = max(hi - step, 0)
        else:
            lo = start
            while lo + step < n and not fits(lo + step):
                lo, step = lo + step, 2 * step
            hi = min(lo + step, n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    if hi >= 0.8 * n:                        # (any hi < n has been seen to fit)
        return None
    return ((u[:, :hi] * row[:, None]).astype(np.float32),
            (coords[:hi] * col).astype(np.float32))
