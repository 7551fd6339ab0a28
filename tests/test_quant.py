"""hw.quant: requantization, multiplier choice and accumulator bounds against hand-worked cases
and exact rational (fractions) recomputation."""

import math
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hw import quant
from hw.quant import (ACC_BITS, MULTIPLIER_BITS, SHIFT_MIN, SHIFT_MAX, requantize,
                      choose_multiplier_shift, accumulator_bound, weight_accumulator_range,
                      check_accumulator, product_bits, acc_limits, effective_scale)


def test_constants():
    assert MULTIPLIER_BITS == 16 and ACC_BITS == 32
    assert (quant.MULTIPLIER_MIN, quant.MULTIPLIER_MAX) == (1, 65535)
    assert (SHIFT_MIN, SHIFT_MAX) == (1, 47)
    assert acc_limits() == (-2**31, 2**31 - 1)
    assert product_bits() == 48 and product_bits(24) == 40


def test_product_width_holds_extreme_products():
    lo, hi = acc_limits()
    for acc in (lo, hi):
        p = acc * quant.MULTIPLIER_MAX
        assert -2**(product_bits() - 1) <= p < 2**(product_bits() - 1)


@pytest.mark.parametrize("acc, m, s, relu, want", [
    # Ties round half up (towards +inf): 5/2 = 2.5 -> 3, -5/2 = -2.5 -> -2.
    (5, 1, 1, False, 3), (-5, 1, 1, False, -2),
    (3, 1, 1, False, 2), (-3, 1, 1, False, -1),
    (-7, 1, 2, False, -2),     # -1.75 -> -2
    (-6, 1, 2, False, -1),     # -1.5 tie -> -1
    (6, 1, 2, False, 2),       # 1.5 tie -> 2
    (1, 1, 1, False, 1),       # 0.5 -> 1
    (-1, 1, 1, False, 0),      # -0.5 -> 0
    # Saturation at both ends.
    (255, 1, 1, False, 127), (256, 1, 1, False, 127), (253, 1, 1, False, 127),
    (-257, 1, 1, False, -128), (-258, 1, 1, False, -128), (-1000, 3, 1, False, -128),
    # ReLU clamps negatives to 0 and leaves positives alone.
    (-5, 1, 1, True, 0), (5, 1, 1, True, 3), (-1, 1, 1, True, 0), (1000, 1, 1, True, 127),
    # Multiplier: 100 * 3 / 8 = 37.5 -> 38; -100 * 3 / 8 = -37.5 -> -37.
    (100, 3, 3, False, 38), (-100, 3, 3, False, -37),
    # Extremes of the widths: int32 accumulators, 16-bit M, shift 47.
    (2**31 - 1, 65535, 47, False, 1), (-2**31, 65535, 47, False, -1),
    (-2**31, 32768, 47, False, 0),   # -2**46 / 2**47 = -0.5 exactly: a tie, rounds up to 0
])
def test_requantize_hand_worked(acc, m, s, relu, want):
    assert int(requantize(np.array([acc]), m, s, relu=relu)[0]) == want


@settings(max_examples=300, deadline=None)
@given(acc=st.integers(-2**31, 2**31 - 1), m=st.integers(1, 2**16 - 1), s=st.integers(1, 47),
       relu=st.booleans())
def test_requantize_matches_exact_rational(acc, m, s, relu):
    # Independent reference: round-half-up of the exact rational, then clamp.
    want = math.floor(Fraction(acc * m, 2**s) + Fraction(1, 2))
    want = min(max(want, 0 if relu else -128), 127)
    assert int(requantize(np.int64(acc), m, s, relu=relu)) == want


def test_requantize_per_channel_and_axis():
    rng = np.random.default_rng(1)
    acc = rng.integers(-2**20, 2**20, size=(3, 4, 5))
    m = np.array([40000, 1, 65535])
    s = np.array([20, 3, 30])
    y = requantize(acc, m, s, relu=False)
    assert y.dtype == np.int8 and y.shape == acc.shape
    for c in range(3):
        assert (y[c] == requantize(acc[c], int(m[c]), int(s[c]), relu=False)).all()
    # Channel axis 1 (batch first).
    yb = requantize(np.moveaxis(acc, 0, 1), m, s, relu=False, axis=1)
    assert (np.moveaxis(yb, 1, 0) == y).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(acc=[2**31], multiplier=1, shift=1), r"acc must be in -2147483648\.\.2147483647, not 2147483648"),
    (dict(acc=[0], multiplier=0, shift=1), r"multiplier must be in 1\.\.65535, not 0"),
    (dict(acc=[0], multiplier=65536, shift=1), r"multiplier must be in 1\.\.65535, not 65536"),
    (dict(acc=[0], multiplier=1, shift=0), r"shift must be in 1\.\.47, not 0"),
    (dict(acc=[0], multiplier=1, shift=48), r"shift must be in 1\.\.47, not 48"),
    (dict(acc=[0, 1], multiplier=[1, 2, 3], shift=1), r"multiplier has 3 values but acc has 2 channels"),
    (dict(acc=[0.5], multiplier=1, shift=1), r"acc must hold integers"),
])
def test_requantize_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        requantize(np.asarray(kwargs.pop("acc")), relu=False, **kwargs)


@settings(max_examples=200, deadline=None)
@given(scale=st.floats(2.0**-32, 32767.0, allow_nan=False, allow_infinity=False))
def test_choose_multiplier_shift_accuracy(scale):
    m, s = choose_multiplier_shift(scale)
    assert 2**15 <= m < 2**16 and SHIFT_MIN <= s <= SHIFT_MAX
    # Best precision: the rounding error of a normalised 16-bit mantissa, half an LSB at most.
    assert abs(Fraction(m, 2**s) - Fraction(scale)) <= Fraction(1, 2**(s + 1))
    assert abs(m / 2**s - scale) / scale <= 2.0**-16
    # And no neighbouring multiplier with the same shift is closer.
    for m2 in (m - 1, m + 1):
        assert abs(Fraction(m2, 2**s) - Fraction(scale)) >= abs(Fraction(m, 2**s) - Fraction(scale))


def test_choose_multiplier_shift_hand_worked_and_vector():
    assert choose_multiplier_shift(1.0) == (32768, 15)
    assert choose_multiplier_shift(0.5) == (32768, 16)
    assert choose_multiplier_shift(0.75) == (49152, 16)
    # 1 - 2**-18 rounds its 16-bit mantissa up to 1.0: renormalised to 2**15, one shift less.
    assert choose_multiplier_shift(1 - 2**-18) == (32768, 15)
    ms, ss = choose_multiplier_shift(np.array([1.0, 0.75]))
    assert list(ms) == [32768, 49152] and list(ss) == [15, 16]
    assert np.allclose(effective_scale(ms, ss), [1.0, 0.75])


@pytest.mark.parametrize("scale, match", [
    (0.0, "finite positive"), (-1.0, "finite positive"), (float("nan"), "finite positive"),
    (float("inf"), "finite positive"), (2.0**-40, "outside the representable range"),
    (40000.0, "outside the representable range"),
])
def test_choose_multiplier_shift_rejects(scale, match):
    with pytest.raises(ValueError, match=match):
        choose_multiplier_shift(scale)


def test_choose_multiplier_shift_names_bad_index():
    with pytest.raises(ValueError, match=r"at index \(1,\)"):
        choose_multiplier_shift([1.0, 0.0])


def test_accumulator_bound_formula():
    assert list(accumulator_bound([0, 1, 10], [5, -7, 0])) == [5, 128 * 127 + 7, 1280 * 127]
    with pytest.raises(ValueError, match="non-negative"):
        accumulator_bound([-1])


def test_weight_accumulator_range_is_exact_by_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(20):
        w = rng.integers(-128, 128, size=(1, 3))
        b = int(rng.integers(-1000, 1000))
        lo, hi = weight_accumulator_range(w, [b])
        xs = np.array(np.meshgrid(*[[-128, 0, 127]] * 3)).reshape(3, -1)
        sums = w[0] @ xs
        # Extreme of the full sum (corners suffice: it is linear in x) plus the bias.
        assert hi[0] == max(sums.max() + b, sums.max())
        assert lo[0] == min(sums.min() + b, sums.min())


def _layer(name, weight, bias):
    return SimpleNamespace(name=name, weight=np.asarray(weight), bias=np.asarray(bias))


def test_check_accumulator_accepts_and_refuses():
    w = np.full((2, 4, 3, 3), -128, dtype=np.int64)
    assert check_accumulator(_layer("ok", w, [0, 0])) == 128 * 128 * 36
    # 128 * 127 * nnz just below / just above 2**31 - 1.
    nnz = (2**31 - 1) // (128 * 127)
    w = np.full((1, nnz), 127)
    check_accumulator(_layer("edge", w, [0]))
    worst = 128 * 127 * (nnz + 1)
    with pytest.raises(ValueError, match=rf"Layer 'big': the accumulator could overflow 32 bits: "
                                         rf"filter 0 reaches \|acc\| = {worst} .*"
                                         rf"128\*127\*nnz \+ \|bias\| = {worst} with nnz = {nnz + 1}.*"
                                         rf"-2147483648\.\.2147483647"):
        check_accumulator(_layer("big", np.full((1, nnz + 1), 127), [0]))
    # The bias alone can push it over, in either sign.
    with pytest.raises(ValueError, match="Layer 'b'"):
        check_accumulator(_layer("b", np.ones((1, 1), dtype=np.int8), [-2**31]))
    # A narrower accumulator refuses earlier.
    with pytest.raises(ValueError, match="overflow 16 bits"):
        check_accumulator(_layer("n", np.full((1, 3), 127), [0]), acc_bits=16)
    with pytest.raises(ValueError, match="Layer 'f': weight must hold integers"):
        check_accumulator(_layer("f", np.ones((1, 1)), [0]))
