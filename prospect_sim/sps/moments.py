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
    population's band fluxes move by at most ``tol`` (measured on the demo:
    3e-7 mag for ``tol=1e-4``).  A weight vector then costs ``w @ C``
    (r numbers) instead of one GEMM row per age.  The young ages (the first
    ``n_young``) and the older ones get a basis each (BC03 in the demo's
    windows: ranks 37-42 of 115 and 53-71 of 106); one basis for all ages
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
    """

    def __init__(self, moments, n_young, tol):
        n_age = moments.shape[0]
        flat = np.swapaxes(moments, 1, 2).reshape(n_age, -1)          # moment-major
        self.n_young = n_young
        self.young = _age_basis(moments[:n_young], tol) if n_young else None
        self.old = _age_basis(moments[n_young:], tol) if 0 < n_young < n_age else None
        young_rows = flat[:n_young] if self.young is None else self.young[1]
        self.rank = len(young_rows) if self.young is not None else 0
        self._n_lead = len(young_rows)          # table rows before the old ages
        self.old_rank = 0 if self.old is None else len(self.old[1])
        # old ages as they are, and (where it pays) through their basis
        self.table = np.concatenate([young_rows, flat[n_young:]]).astype(np.float32)
        self.table_old = (None if self.old is None else
                          np.concatenate([young_rows, self.old[1]]).astype(np.float32))

    def apply(self, w, n_age):
        """``w[:, :n_age] @ moments[:n_age]`` as (n, K w), moment-major, float32."""
        n_young = min(self.n_young, n_age)
        n_old = n_age - n_young
        if self.young is None and n_old == 0:
            return w[:, :n_age] @ self.table[:n_age]
        through_basis = n_old > self.old_rank > 0
        width = self.old_rank if through_basis else n_old
        lead = self._n_lead
        x = np.empty((len(w), lead + width), dtype=np.float32)
        if self.young is None:
            x[:, :lead] = w[:, :lead]
        else:
            np.matmul(w[:, :n_young], self.young[0][:n_young], out=x[:, :lead])
        if through_basis:
            np.matmul(w[:, self.n_young:n_age], self.old[0][:n_old], out=x[:, lead:])
            return x @ self.table_old
        x[:, lead:] = w[:, self.n_young:n_age]
        return x @ self.table[:lead + n_old]


def _age_basis(moments, tol):
    """``(C, basis)`` with ``moments ~ C @ basis`` to ``tol`` per bin, or None (see :class:`_GroupTable`).

    Parameters
    ----------
    moments : ndarray of shape (A_b, w, K)

    Returns
    -------
    C : ndarray of shape (A_b, r), float32
    basis : ndarray of shape (r, K w), float32
        Moment-major, as :class:`_GroupTable` stores its rows.
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
    limit = tol * np.repeat(scale, K, axis=1)

    def fits(r):
        return bool(np.all(np.abs(u[:, :r] @ coords[:r] * row[:, None] * col - x) <= limit))

    lo, hi = 0, n                            # smallest r that fits, by bisection
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    if hi >= 0.8 * n or not fits(hi):
        return None
    basis = (coords[:hi] * col).reshape(hi, w, K)
    return ((u[:, :hi] * row[:, None]).astype(np.float32),
            np.swapaxes(basis, 1, 2).reshape(hi, -1).astype(np.float32))
