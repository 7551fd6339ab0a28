"""Tests of hw.storage: formulas vs real encoders, exact break-even, tiled network storage."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hw.formats import FORMATS, BitWidths, encode, flatten_weights
from hw.networks import layer_masks, parse_model
from hw.patterns import period_table
from hw.storage import (PAPER_WIDTHS, SPARSE_FORMATS, break_even, break_even_all, format_bits,
                        layer_periods, network_storage, network_storage_bits, tile_storage_bits)
from hw.variants import Variant

PERIODIC = [Variant("PS", 4, 4), Variant("PS", 2, 6), Variant("PS", 1, 9), Variant("PSD", 4, 8),
            Variant("PSD", 2, 8), Variant("PSD", 1, 8), Variant("PSD", 4, 16), Variant("PSD", 2, 3)]

widths_st = st.builds(BitWidths, b_v=st.integers(1, 16), b_r=st.integers(1, 10),
                      b_c=st.integers(1, 14), b_i=st.integers(1, 20), b_P=st.integers(1, 8))


def test_paper_example_by_hand():
    # 32 x 12 tile, b_v = 8, b_c = b_r = 4, b_i = 7, b_P = 6, P = 8 (rows and columns).
    w = PAPER_WIDTHS
    dense = 32 * 12 * 8
    assert format_bits("Dense", rows=32, cols=12, rho=Fraction(1, 3), widths=w) == 3072 == dense
    assert format_bits("COO", rows=32, cols=12, rho=Fraction(1, 2), widths=w) == 384 * 16 / 2
    be = break_even_all(rows=32, cols=12, widths=w, period=8)
    assert be["COO"] == Fraction(3072, 384 * 16) == Fraction(1, 2)
    assert be["CSR"] == Fraction(3072 - 33 * 7, 384 * 12)
    assert be["CSC"] == Fraction(3072 - 13 * 7, 384 * 12)
    assert be["CSR_P"] == Fraction(3072 - 33 * 7 - 6, 384 * 8 + 8 * 12 * 4) == Fraction(105, 128)
    assert be["CSC_P"] == Fraction(3072 - 13 * 7 - 6, 384 * 8 + 8 * 32 * 4)


def test_float_density_gives_float():
    b = format_bits("CSR", rows=4, cols=4, rho=0.25, widths=PAPER_WIDTHS)
    assert isinstance(b, float) and b == 0.25 * 16 * 12 + 5 * 7


@settings(max_examples=40, deadline=None)
@given(v=st.sampled_from(PERIODIC), c_out=st.integers(1, 40), periods=st.integers(1, 3),
       w=widths_st, seed=st.integers(0, 2**16))
def test_formula_equals_encoder_when_rows_are_uniform(v, c_out, periods, w, seed):
    """PS/PSD layer with C_i a multiple of P: every row has the same non-zero count."""
    P = v.period
    c_in = P * periods
    mask = flatten_weights(period_table(v, seed=seed).mask(c_out, c_in))
    assert len(set(mask.sum(axis=1))) == 1
    m = np.where(mask, np.random.default_rng(seed).integers(1, 9, size=mask.shape), 0)
    H, Wd = m.shape
    rho = Fraction(int(mask.sum()), H * Wd)
    for fmt in FORMATS:
        period = {"CSR_P": P, "CSC_P": 9 * P}.get(fmt)
        real = encode(fmt, m, period=period).bits(w)
        assert format_bits(fmt, rows=H, cols=Wd, rho=rho, widths=w, period=period) == real, \
            f"{fmt} variant={v} c_out={c_out} c_in={c_in} seed={seed} widths={w}"


def test_formula_differs_from_encoder_when_rows_are_not_uniform():
    # Period 2. With whole periods the first P rows hold the average; with 5 rows they do not,
    # and the formula (average row) and the encoder (actual first P rows) differ.
    m = np.array([[1, 1], [1, 0], [1, 1], [1, 0]])  # rows 0, 2 and rows 1, 3 equal
    real = encode("CSR_P", m, period=2).bits(PAPER_WIDTHS)
    rho = Fraction(int((m != 0).sum()), m.size)
    formula = format_bits("CSR_P", rows=4, cols=2, rho=rho, widths=PAPER_WIDTHS, period=2)
    assert real == 6 * 8 + 3 * 4 + 5 * 7 + 6
    assert formula == rho * 8 * 8 + rho * 2 * 2 * 4 + 5 * 7 + 6 == real  # whole periods: equal
    m2 = np.array([[1, 1], [1, 0], [1, 1], [1, 0], [1, 1]])  # 5 rows: first period is denser
    real2 = encode("CSR_P", m2, period=2).bits(PAPER_WIDTHS)
    rho2 = Fraction(8, 10)
    f2 = format_bits("CSR_P", rows=5, cols=2, rho=rho2, widths=PAPER_WIDTHS, period=2)
    assert real2 == 8 * 8 + 3 * 4 + 6 * 7 + 6
    assert f2 == rho2 * 10 * 8 + rho2 * 2 * 2 * 4 + 6 * 7 + 6 != real2


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(SPARSE_FORMATS), rows=st.integers(1, 64), cols=st.integers(1, 64),
       period=st.integers(1, 80), w=widths_st)
def test_break_even_against_grid_and_exact_at_boundary(fmt, rows, cols, period, w):
    be = break_even(fmt, rows=rows, cols=cols, widths=w, period=period)
    dense = rows * cols * w.b_v
    bits = lambda r: format_bits(fmt, rows=rows, cols=cols, rho=r, widths=w, period=period)
    N = 4000
    grid_best = max((Fraction(i, N) for i in range(N + 1) if bits(Fraction(i, N)) <= dense),
                    default=None)
    if grid_best is None:
        assert be == 0 and bits(Fraction(0)) > dense
        return
    assert grid_best <= be < grid_best + Fraction(1, N) or be == 1
    assert bits(be) <= dense
    if be < 1:
        assert bits(be) == dense  # exactly on the boundary: the formula is linear, not a grid
        assert bits(be + Fraction(1, 10**12)) > dense


def test_break_even_clipped():
    # A 1 x 1 matrix: CSR's two pointers cost more than the dense value, even when empty.
    w = BitWidths(b_v=2, b_r=1, b_c=1, b_i=8, b_P=1)
    assert break_even("CSR", rows=1, cols=1, widths=w) == 0
    assert format_bits("CSR", rows=1, cols=1, rho=0, widths=w) > 2
    # Every index costs at least one bit, so no format reaches dense at rho = 1: by hand 16/18.
    w2 = BitWidths(b_v=16, b_r=1, b_c=1, b_i=1, b_P=1)
    assert break_even("COO", rows=4, cols=4, widths=w2) == Fraction(16 * 16, 16 * 18)


def test_validation_messages():
    with pytest.raises(ValueError, match=r"Density rho must be a number in \[0, 1\], not 1.5"):
        format_bits("COO", rows=2, cols=2, rho=1.5, widths=PAPER_WIDTHS)
    with pytest.raises(ValueError, match="Unknown storage format 'BSR'"):
        format_bits("BSR", rows=2, cols=2, rho=0, widths=PAPER_WIDTHS)
    with pytest.raises(ValueError, match="CSR_P needs a period"):
        format_bits("CSR_P", rows=2, cols=2, rho=0, widths=PAPER_WIDTHS)
    with pytest.raises(ValueError, match="rows must be a positive integer, not 0"):
        break_even("COO", rows=0, cols=2, widths=PAPER_WIDTHS)
    with pytest.raises(ValueError, match="tile cols must be a positive integer, not 0"):
        tile_storage_bits(np.ones((2, 2), bool), tile=(2, 0))
    with pytest.raises(ValueError, match="method must be one of formula, exact, not 'guess'"):
        tile_storage_bits(np.ones((2, 2), bool), method="guess")


def test_layer_periods():
    net, v = parse_model("VGG16_PSD2_P8")
    first, second = net.convs[0], net.convs[1]
    assert layer_periods(first, v) == (1, 1)  # dense first layer
    assert layer_periods(second, v) == (8, 72)
    assert layer_periods(second, Variant("pSC", 4)) == (None, None)
    assert layer_periods(second, Variant("pSC", 9)) == (1, 1)


def _brute_force_tiles(mask, tile, rp, cp, w, method):
    """Cut every tile by hand and count it with the real encoders (exact) or the formula."""
    R, C = tile
    total = {f: 0 for f in FORMATS}
    for r0 in range(0, mask.shape[0], R):
        for c0 in range(0, mask.shape[1], C):
            t = mask[r0:r0 + R, c0:c0 + C]
            h, wd = t.shape
            prow = h if rp is None else rp
            pcol = wd if cp is None else cp
            for f in FORMATS:
                period = {"CSR_P": prow, "CSC_P": pcol}.get(f)
                if method == "exact":
                    total[f] += encode(f, t.astype(np.int8), period=period).bits(w)
                else:
                    rho = Fraction(int(t.sum()), t.size)
                    total[f] += format_bits(f, rows=h, cols=wd, rho=rho, widths=w, period=period)
    return total


@pytest.mark.parametrize("model", ["DigitsNet_PSD2_P8", "DigitsNet_PS2_P6", "DigitsNet_pSC2",
                                   "FashionNet_PSD1_P16", "DigitsNet"])
@pytest.mark.parametrize("tile", [(32, 12), (5, 7), (3, 100)])
@pytest.mark.parametrize("method", ["exact", "formula"])
def test_network_tiles_match_brute_force(model, tile, method):
    w = BitWidths(b_v=8, b_r=5, b_c=4, b_i=7, b_P=6)
    got = network_storage_bits(model, tile=tile, widths=w, method=method, seed=3)
    net, v = parse_model(model)
    masks = layer_masks(net, v, seed=3)
    assert list(got) == [c.name for c in net.convs]
    for conv in net.convs:
        m = masks[conv.name].reshape(conv.c_out, -1)
        rp, cp = layer_periods(conv, v)
        assert got[conv.name] == _brute_force_tiles(m, tile, rp, cp, w, method), \
            f"{model} {conv.name} tile={tile} {method}"


def test_network_storage_relative_values():
    # COO's formula is exact per tile, so the total is nnz (b_v + b_r + b_c) over all conv weights.
    net, v = parse_model("VGG16_PSD2_P8")
    masks = layer_masks(net, v)
    nnz = sum(int(m.sum()) for m in masks.values())
    size = sum(m.size for m in masks.values())
    res = network_storage("VGG16_PSD2_P8")
    assert res["Dense"] == 1.0
    assert res["COO"] == pytest.approx(nnz * 16 / (size * 8), rel=1e-12)
    dense = network_storage("VGG16")
    assert dense["COO"] == 2.0  # (8 + 4 + 4) / 8
    # CSR on full 32-row tiles: (8 + 4) / 8 plus 33 pointers of 7 bits per 32 x 12 x 8 bits.
    assert dense["CSR"] == pytest.approx(1.5 + 33 * 7 / 3072, rel=2e-3)
    assert set(res) == set(FORMATS)
    assert res["CSR_P"] < res["CSR"]  # periodicity pays
