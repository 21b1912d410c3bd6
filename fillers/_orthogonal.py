"""The orthogonal filler: the orthogonal factor of a gaussian matrix, by CholeskyQR or Householder QR.

The blob is a ``(rows, cols)`` matrix.  Its values are ``gain`` times the factor ``Q`` of ``B = Q R``, ``B``
(``m x n``, ``m >= n``) the gaussian draw of the tall side (the draw itself when rows >= cols, its transpose
otherwise, as torch's ``orthogonal_``), with ``R``'s diagonal positive (the sign correction that makes ``Q``
Haar-distributed).  That factorisation is unique, so both methods below compute the same matrix up to
rounding:

- **Mixed-precision CholeskyQR** for float32 (and half) blobs whose matrix is clearly tall (``m >= 2 n``,
  ``n >= 32``): ``G = BᵀB`` in float64 (exact products of the float32 draw), ``R = chol(G)`` and ``S = R⁻¹`` in
  float64, then ``Q = B S`` with ``S`` rounded to float32, one matrix product in float32.  Cholesky's ``R`` has a
  positive diagonal, so no sign correction is needed.  The float64 Gram matrix leaves ``QᵀQ − I`` of order
  ``κ(B)² · 1e-16`` before the last product; rounding ``S`` and the float32 product add about ``κ(B)`` float32
  ulps.  A gaussian ``m x n`` matrix with ``m >= 2 n`` has ``κ(B)`` near ``(√m + √n) / (√m − √n) <= 5.9``
  (Marchenko–Pastur); ``κ`` is estimated from ``G`` and ``S`` (power iteration) and a draw above
  :data:`CHOLESKY_KAPPA_MAX` falls back to Householder QR.
- **Householder QR** (numpy's LAPACK, in float64) otherwise: float64 blobs (whose precision a float64
  CholeskyQR could not reach in one pass) and square-ish matrices, whose ``κ ≈ 4 n`` is too large for it.
"""
from __future__ import annotations

import numpy as np

from fillers import _kernels

#: Mixed-precision CholeskyQR is used for matrices with at least this many columns (``n``) ...
CHOLESKY_MIN_COLUMNS = 32
#: ... and a tall side at least this many times longer (``m >= 2 n``: ``κ(B)`` about 6 or less).
CHOLESKY_ASPECT = 2
#: The largest estimated condition number of ``B`` for which ``B R⁻¹`` in float32 is orthogonal to float32
#: precision (about ``κ`` ulps); a larger one (a rare draw) falls back to Householder QR.
CHOLESKY_KAPPA_MAX = 20.0
#: Power iterations of the condition estimate: the estimate is a lower bound that converges fastest when a
#: singular value is far from the others, which is the case the estimate must catch.
_POWER_ITERATIONS = 8
#: Triangular blocks of at most this order are inverted by LAPACK directly.
_TRIANGULAR_BLOCK = 128


def fill_orthogonal(out: np.ndarray, rows: int, cols: int, gain: float, dtype: np.dtype, seed: int, stream: int,
                    threads: int) -> None:
    """Write ``gain * Q`` (C order, ``rows x cols``) into the contiguous 1-D ``out``.

    ``dtype`` (float32 or float64) is the type the matrix is drawn in: elements ``0 .. rows * cols - 1`` of
    the stream's standard gaussian.  A half-precision ``out`` gets the float32 values, rounded once.
    """
    dtype = np.dtype(dtype)
    draw = np.empty((rows, cols), dtype)
    _kernels.gaussian(draw.reshape(-1), seed, stream, 0, 0.0, 1.0, -1.0, threads)
    wide = rows < cols
    b = draw.T if wide else draw  # the tall m x n matrix B, a view of the draw
    target = out.reshape(rows, cols)
    m, n = b.shape
    s = None
    if dtype == np.float32 and n >= CHOLESKY_MIN_COLUMNS and m >= CHOLESKY_ASPECT * n:
        s = cholesky_inverse_factor(b)
    if s is not None:
        product = target if out.dtype == dtype else np.empty((rows, cols), dtype)
        np.matmul(b, (s * gain).astype(dtype), out=product.T if wide else product)
        if product is not target:
            target[...] = product
        return
    q = householder_q(b) * gain
    q = q.T if wide else q
    target[...] = q if out.dtype == dtype else q.astype(dtype)  # half: rounded to float32, then once more


def cholesky_inverse_factor(b: np.ndarray) -> np.ndarray | None:
    """``S = R⁻¹`` in float64, ``R`` the upper-triangular Cholesky factor (positive diagonal) of the float64
    Gram matrix ``BᵀB``, or None when ``B``'s estimated condition number exceeds :data:`CHOLESKY_KAPPA_MAX`
    (or ``BᵀB`` is not numerically positive definite)."""
    b64 = b.astype(np.float64)
    gram = b64.T @ b64
    try:
        s = _upper_triangular_inverse(np.ascontiguousarray(np.linalg.cholesky(gram).T))
    except np.linalg.LinAlgError:
        return None
    # κ(B)² = ‖G‖ · ‖G⁻¹‖, G⁻¹ = S Sᵀ
    largest = _power_norm(lambda x: gram @ x, len(gram))
    inverse = _power_norm(lambda x: s @ (s.T @ x), len(gram))
    return s if largest * inverse <= CHOLESKY_KAPPA_MAX**2 else None


def _power_norm(apply, n: int) -> float:
    """An estimate (from below) of the largest eigenvalue of the symmetric positive definite operator."""
    x = np.ones(n) / np.sqrt(n)
    value = 0.0
    for _ in range(_POWER_ITERATIONS):
        y = apply(x)
        value = float(np.linalg.norm(y))
        if value == 0.0:
            break
        x = y / value
    return value


def _upper_triangular_inverse(r: np.ndarray) -> np.ndarray:
    """The inverse of the upper-triangular ``r``, by blocks: ``[[A, B], [0, D]]⁻¹ = [[A⁻¹, −A⁻¹ B D⁻¹], [0, D⁻¹]]``
    (matrix products, where numpy's ``inv`` would run an LU factorisation of the whole matrix)."""
    n = len(r)
    if n <= _TRIANGULAR_BLOCK:
        return np.triu(np.linalg.inv(r))
    h = n // 2
    a_inv = _upper_triangular_inverse(r[:h, :h])
    d_inv = _upper_triangular_inverse(r[h:, h:])
    out = np.zeros_like(r)
    out[:h, :h] = a_inv
    out[h:, h:] = d_inv
    out[:h, h:] = -(a_inv @ r[:h, h:]) @ d_inv
    return out


def householder_q(b: np.ndarray) -> np.ndarray:
    """The float64 orthogonal factor of the tall ``b`` by Householder QR, columns' signs made those of
    ``R``'s diagonal (so that ``R``'s diagonal is positive)."""
    q, r = np.linalg.qr(b.astype(np.float64))
    q *= np.where(np.diagonal(r) < 0, -1.0, 1.0)
    return q
