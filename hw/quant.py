"""The engine's integer arithmetic: widths, requantization and accumulator bounds.

Every number the engine handles is defined here once (ARCHITECTURE.md, "Numbers"):

- activations and weights are int8 (weights symmetric per output channel, normally -127..127,
  but -128 is accepted: the MAC is a full signed 8 x 8 multiplier);
- products are summed in a signed :data:`ACC_BITS`-bit accumulator, bias (int32, accumulator units)
  included;
- the output path requantizes each output channel with an unsigned integer multiplier ``M``
  (:data:`MULTIPLIER_BITS` bits) and a right shift ``s``::

      y = clamp((acc * M + 2**(s - 1)) >> s, lo, hi)      lo = 0 if relu else -128, hi = 127

  ``>>`` is an arithmetic shift (floor division by ``2**s``), so the rounding is half up
  (towards +infinity) for positive and negative accumulators alike.

The hardware multiplies a signed ``acc_bits`` accumulator by an unsigned ``MULTIPLIER_BITS`` ``M``:
since ``M < 2**MULTIPLIER_BITS``, ``|acc * M| < 2**(acc_bits + MULTIPLIER_BITS - 1)`` and the
signed product fits :func:`product_bits` ``= acc_bits + MULTIPLIER_BITS`` bits. Adding the rounding
constant ``2**(s-1)`` may need one bit more; a datapath that keeps the product width can compute
the identical result as ``((acc * M) >> (s - 1)) + 1) >> 1`` instead (floor of nested divisions).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ACT_BITS", "ACT_MIN", "ACT_MAX", "WEIGHT_MIN", "WEIGHT_MAX",
    "ACC_BITS", "MULTIPLIER_BITS", "MULTIPLIER_MIN", "MULTIPLIER_MAX", "SHIFT_MIN", "SHIFT_MAX",
    "acc_limits", "product_bits", "requantize", "choose_multiplier_shift", "effective_scale",
    "accumulator_bound", "weight_accumulator_range", "check_accumulator",
]

#: Activation width: int8 in and out of every layer.
ACT_BITS = 8
ACT_MIN = -(1 << (ACT_BITS - 1))
ACT_MAX = (1 << (ACT_BITS - 1)) - 1
#: Weight range stored in the weight buffer (int8).
WEIGHT_MIN = -128
WEIGHT_MAX = 127
#: Signed accumulator width of the MAC array (bias included).
ACC_BITS = 32
#: Width of the unsigned requantization multiplier ``M``.
MULTIPLIER_BITS = 16
MULTIPLIER_MIN = 1
MULTIPLIER_MAX = (1 << MULTIPLIER_BITS) - 1
#: Allowed requantization shifts ``s`` (``s >= 1`` so that the rounding constant ``2**(s-1)`` exists).
SHIFT_MIN = 1
SHIFT_MAX = 47


def _check_acc_bits(acc_bits):
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)) or not 2 <= acc_bits <= 62:
        raise ValueError(f"acc_bits must be an integer in 2..62, not {acc_bits!r}")
    return int(acc_bits)


def acc_limits(acc_bits: int = ACC_BITS) -> tuple[int, int]:
    """``(lo, hi)``: the range of a signed ``acc_bits``-bit accumulator."""
    acc_bits = _check_acc_bits(acc_bits)
    return -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1


def product_bits(acc_bits: int = ACC_BITS) -> int:
    """Signed width of ``acc * M`` for a signed ``acc_bits`` accumulator and an unsigned ``M``.

    ``|acc| <= 2**(acc_bits-1)`` and ``M <= 2**MULTIPLIER_BITS - 1`` give
    ``|acc * M| < 2**(acc_bits + MULTIPLIER_BITS - 1)``: ``acc_bits + MULTIPLIER_BITS`` bits signed
    (48 for the default 32-bit accumulator).
    """
    return _check_acc_bits(acc_bits) + MULTIPLIER_BITS


def _as_int_array(value, field):
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{field} must hold integers, not dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_range(arr, field, lo, hi, where=""):
    if arr.size and (arr.min() < lo or arr.max() > hi):
        bad = arr.min() if arr.min() < lo else arr.max()
        raise ValueError(f"{where}{field} must be in {lo}..{hi}, not {int(bad)}")


def requantize(acc, multiplier, shift, *, relu: bool, axis: int = 0) -> np.ndarray:
    """Requantize accumulators to int8: ``clamp((acc * M + 2**(s-1)) >> s, lo, hi)``.

    Parameters
    ----------
    acc : array_like of int
        Accumulators (bias already added); every value must fit a signed :data:`ACC_BITS` integer.
    multiplier, shift : int or array_like of int
        ``M`` in ``MULTIPLIER_MIN..MULTIPLIER_MAX`` and ``s`` in ``SHIFT_MIN..SHIFT_MAX``: scalars, or
        one per output channel (length ``acc.shape[axis]``).
    relu : bool
        Clamp at 0 instead of -128.
    axis : int
        The output-channel axis of ``acc`` that per-channel ``multiplier`` / ``shift`` run along.

    Returns
    -------
    numpy.ndarray
        int8, the shape of ``acc``.
    """
    if not isinstance(relu, (bool, np.bool_)):
        raise ValueError(f"relu must be a bool, not {relu!r}")
    acc = _as_int_array(acc, "acc")
    m = _as_int_array(multiplier, "multiplier")
    s = _as_int_array(shift, "shift")
    lo_acc, hi_acc = acc_limits(ACC_BITS)
    _check_range(acc, "acc", lo_acc, hi_acc)
    _check_range(m, "multiplier", MULTIPLIER_MIN, MULTIPLIER_MAX)
    _check_range(s, "shift", SHIFT_MIN, SHIFT_MAX)
    shape = [1] * acc.ndim
    for name, arr in (("multiplier", m), ("shift", s)):
        if arr.ndim > 1:
            raise ValueError(f"{name} must be a scalar or one value per channel, not shape {arr.shape}")
        if arr.ndim == 1:
            if acc.ndim == 0 or arr.shape[0] != acc.shape[axis]:
                raise ValueError(f"{name} has {arr.shape[0]} values but acc has "
                                 f"{acc.shape[axis] if acc.ndim else 0} channels along axis {axis}")
    if acc.ndim:
        shape[axis] = -1
    m = m.reshape(shape) if m.ndim else m
    s = s.reshape(shape) if s.ndim else s
    # |acc * M| < 2**47 and the rounding constant <= 2**46: int64 holds both exactly.
    y = (acc * m + (np.int64(1) << (s - 1))) >> s
    return np.clip(y, 0 if relu else ACT_MIN, ACT_MAX).astype(np.int8)


def choose_multiplier_shift(real_scale):
    """The ``(M, s)`` with ``M / 2**s`` closest to ``real_scale`` and ``M`` in ``[2**15, 2**16)``.

    ``M`` is normalised to use all :data:`MULTIPLIER_BITS` bits (the best relative precision,
    at most ``2**-16``); ``s`` follows. Works element-wise on arrays (one scale per channel).

    Parameters
    ----------
    real_scale : float or array_like of float
        ``in_scale * weight_scale / out_scale`` of each output channel; must be finite and in
        ``[2**-32, (2**16 - 1) / 2]`` (so that ``s`` stays in ``SHIFT_MIN..SHIFT_MAX``).

    Returns
    -------
    (int, int) or (numpy.ndarray, numpy.ndarray)
        Python ints for a scalar scale, int64 arrays for an array.
    """
    scales = np.asarray(real_scale, dtype=np.float64)
    ms = np.empty(scales.shape, dtype=np.int64)
    ss = np.empty(scales.shape, dtype=np.int64)
    lo, hi = 2.0 ** (MULTIPLIER_BITS - 1 - SHIFT_MAX), MULTIPLIER_MAX / 2.0 ** SHIFT_MIN
    for i, scale in np.ndenumerate(scales):
        if not np.isfinite(scale) or not scale > 0:
            raise ValueError(f"real_scale must be a finite positive number, not {scale!r}"
                             + (f" (at index {i})" if scales.ndim else ""))
        mant, exp = math.frexp(float(scale))          # scale = mant * 2**exp, mant in [0.5, 1)
        m = math.floor(mant * (1 << MULTIPLIER_BITS) + 0.5)
        s = MULTIPLIER_BITS - exp
        if m == 1 << MULTIPLIER_BITS:                  # mantissa rounded up to 1.0
            m, s = m >> 1, s - 1
        if not SHIFT_MIN <= s <= SHIFT_MAX:
            raise ValueError(f"real_scale {scale!r} is outside the representable range "
                             f"[{lo!r}, {hi!r}] of M / 2**s with M in "
                             f"{1 << (MULTIPLIER_BITS - 1)}..{MULTIPLIER_MAX} and s in "
                             f"{SHIFT_MIN}..{SHIFT_MAX}" + (f" (at index {i})" if scales.ndim else ""))
        ms[i], ss[i] = m, s
    if scales.ndim == 0:
        return int(ms), int(ss)
    return ms, ss


def effective_scale(multiplier, shift):
    """The real scale ``M / 2**s`` that ``(multiplier, shift)`` implements (float64)."""
    return np.asarray(multiplier, dtype=np.float64) / np.exp2(np.asarray(shift, dtype=np.float64))


def accumulator_bound(nnz_per_filter, bias=0, *, weight_abs_max: int = 127) -> np.ndarray:
    """Worst-case ``|acc|`` per filter from its non-zero count alone: ``128 * 127 * nnz + |bias|``.

    This is the bound the hardware can be sized for before the weights are known (inputs reach
    -128; symmetric weights stay within ``weight_abs_max``). It covers every partial sum in any
    order, with or without the bias. :func:`weight_accumulator_range` is the exact bound from the
    actual weights.
    """
    nnz = _as_int_array(nnz_per_filter, "nnz_per_filter")
    b = _as_int_array(bias, "bias")
    if nnz.size and nnz.min() < 0:
        raise ValueError(f"nnz_per_filter must be non-negative, not {int(nnz.min())}")
    if isinstance(weight_abs_max, bool) or not isinstance(weight_abs_max, (int, np.integer)) \
            or not 0 <= weight_abs_max <= -WEIGHT_MIN:
        raise ValueError(f"weight_abs_max must be an integer in 0..{-WEIGHT_MIN}, not {weight_abs_max!r}")
    return -ACT_MIN * int(weight_abs_max) * nnz + np.abs(b)


def weight_accumulator_range(weight, bias=0) -> tuple[np.ndarray, np.ndarray]:
    """Exact extreme accumulator values per filter, over all int8 inputs and partial sums.

    For filter ``f`` with weights ``w`` the sum ``sum(w * x)`` with ``x`` in ``-128..127`` reaches
    at most ``127 * sum(w+) + 128 * sum(w-)`` and at least ``-(128 * sum(w+) + 127 * sum(w-))``
    (``w+``, ``w-`` the magnitudes of the positive and negative weights); the bias adds its
    own sign. Any partial sum of a subset of the terms, with or without the bias, lies in
    ``[lo, hi]`` too, so the range is independent of summation order. The extremes are reached
    at any output pixel whose window lies inside the image.

    Parameters
    ----------
    weight : array_like of int
        ``[c_out, ...]`` weights (dense or just the non-zeros of each filter).
    bias : int or array_like of int
        One per filter, or a scalar.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``lo``, ``hi`` per filter (int64, or Python-int object arrays if int64 would overflow).
    """
    w = np.asarray(weight)
    if w.dtype == bool or not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"weight must hold integers, not dtype {w.dtype}")
    if w.ndim == 0:
        raise ValueError("weight must have a filter axis")
    w = w.reshape(w.shape[0], -1)
    b = np.broadcast_to(_as_int_array(bias, "bias"), (w.shape[0],))
    # Sums in int64 straight from the (usually int8) weights: no int64 copy of the tensor.
    pos = np.maximum(w, 0).sum(axis=1, dtype=np.int64)
    neg = pos - w.sum(axis=1, dtype=np.int64)
    hi = ACT_MAX * pos + (-ACT_MIN) * neg + np.maximum(b, 0)
    lo = -((-ACT_MIN) * pos + ACT_MAX * neg) + np.minimum(b, 0)
    return lo, hi


def check_accumulator(layer, acc_bits: int = ACC_BITS) -> int:
    """Refuse a layer whose accumulator could overflow; return its worst-case ``|acc|``.

    Parameters
    ----------
    layer : object
        Anything with ``name``, ``weight`` ``[c_out, ...]`` (int) and ``bias`` ``[c_out]``
        (e.g. :class:`hw.qmodel.QLayer`).
    acc_bits : int
        Signed accumulator width.

    Raises
    ------
    ValueError
        Naming the layer, the filter, its worst-case ``|acc|`` (exact, from its weights and bias,
        see :func:`weight_accumulator_range`), the count bound ``128 * 127 * nnz + |bias|`` and the
        limit.
    """
    lo_lim, hi_lim = acc_limits(acc_bits)
    name = getattr(layer, "name", "?")
    try:
        lo, hi = weight_accumulator_range(layer.weight, layer.bias)
    except ValueError as e:
        raise ValueError(f"Layer {name!r}: {e}") from None
    over = (hi > hi_lim) | (lo < lo_lim)
    worst = np.maximum(hi, -lo)
    if over.any():
        f = int(np.argmax(np.where(over, worst, -1)))
        w = np.asarray(layer.weight).reshape(len(worst), -1)
        nnz = int(np.count_nonzero(w[f]))
        count = int(accumulator_bound(nnz, np.asarray(layer.bias).reshape(-1)[f]))
        raise ValueError(f"Layer {name!r}: the accumulator could overflow {acc_bits} bits: filter {f} "
                         f"reaches |acc| = {int(worst[f])} (range {int(lo[f])}..{int(hi[f])} from its "
                         f"weights and bias; 128*127*nnz + |bias| = {count} with nnz = {nnz}), beyond "
                         f"the signed {acc_bits}-bit range {lo_lim}..{hi_lim}")
    return int(worst.max()) if worst.size else 0
