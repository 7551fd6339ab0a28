"""hw.csrp: CSR_P images of conv layers: canonical order (recomputed by explicit loops), round
trips, and rejection messages."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hw.csrp import ConvCSRP, dense_table
from hw.patterns import PeriodTable, period_table
from hw.qmodel import QLayer
from hw.variants import parse_variant

VARIANTS = ["PS4_P4", "PS2_P6", "PS1_P9", "PSD4_P8", "PSD2_P8", "PSD1_P8", "PSD4_P16", "PSD1_P16"]


def _random_layer(rng, table, c_out, c_in):
    mask = table.mask(c_out, c_in)
    return (rng.integers(-128, 128, size=mask.shape) * mask).astype(np.int8)


def _canonical_by_loops(w, table):
    """Independent encoder: explicit loops over f, c and the slot's taps."""
    k = table.k
    rows, taps = [], []
    for f in range(w.shape[0]):
        row, seq = [], []
        for c in range(w.shape[1]):
            for t in table.supports[(f + c) % table.period]:
                row.append(int(w[f, c, t // k, t % k]))
                seq.append((c, t))
        rows.append(row)
        taps.append(seq)
    return rows, taps


@settings(max_examples=60, deadline=None)
@given(variant=st.sampled_from(VARIANTS), c_out=st.integers(1, 20), c_in=st.integers(1, 20),
       seed=st.integers(0, 2**16))
def test_canonical_order_and_round_trip(variant, c_out, c_in, seed):
    rng = np.random.default_rng(seed)
    table = period_table(parse_variant(variant), seed=seed)
    w = _random_layer(rng, table, c_out, c_in)
    img = ConvCSRP.from_dense(w, table, layer="L")
    rows, taps = _canonical_by_loops(w, table)
    for f in range(c_out):
        assert img.data(f).tolist() == rows[f], f"seed={seed}"
        assert img.taps(f) == taps[f]
        cs, ts = img.tap_arrays(f)
        assert list(zip(cs.tolist(), ts.tolist())) == taps[f]
    assert img.nnz_per_filter.tolist() == [len(r) for r in rows]
    assert img.nnz == sum(len(r) for r in rows) == int(table.mask(c_out, c_in).sum())
    assert img.row_ptr[0] == 0 and np.all(np.diff(img.row_ptr) == img.nnz_per_filter)
    assert img.to_dense().dtype == np.int8 and (img.to_dense() == w).all()
    # Rotation: filters f and f + P read the same (c, tap) sequence.
    if c_out > table.period:
        assert img.taps(0) == img.taps(table.period)


def test_hand_worked_small_case():
    # P = 2, slot 0 = taps {0}, slot 1 = taps {4, 8}; 2 filters x 2 channels.
    table = PeriodTable(3, ((0,), (4, 8)))
    w = np.zeros((2, 2, 3, 3), dtype=np.int8)
    w[0, 0, 0, 0] = 1                          # f0 c0 slot 0
    w[0, 1, 1, 1], w[0, 1, 2, 2] = 2, 3        # f0 c1 slot 1
    w[1, 0, 1, 1], w[1, 0, 2, 2] = 4, -5       # f1 c0 slot 1
    w[1, 1, 0, 0] = -6                         # f1 c1 slot 0
    img = ConvCSRP.from_dense(w, table)
    assert img.values.tolist() == [1, 2, 3, 4, -5, -6]
    assert img.row_ptr.tolist() == [0, 3, 6]
    assert img.taps(0) == [(0, 0), (1, 4), (1, 8)]
    assert img.taps(1) == [(0, 4), (0, 8), (1, 0)]


def test_zero_weights_inside_pattern_are_stored():
    table = PeriodTable(3, ((0, 1),))
    img = ConvCSRP.from_dense(np.zeros((3, 2, 3, 3), dtype=np.int8), table)
    assert img.nnz == 3 * 2 * 2 and not img.values.any()


def test_dense_layers():
    rng = np.random.default_rng(3)
    for k in (1, 3):
        t = dense_table(k)
        assert t.period == 1 and t.supports == (tuple(range(k * k)),)
        w = rng.integers(-128, 128, size=(4, 5, k, k)).astype(np.int8)
        img = ConvCSRP.from_dense(w, t)
        assert (img.values == w.reshape(-1)).all()   # dense: plain row-major flattening
        assert (img.to_dense() == w).all()


def test_from_qlayer():
    rng = np.random.default_rng(4)
    table = period_table(parse_variant("PSD2_P8"), seed=4)
    w = _random_layer(rng, table, 6, 5)
    common = dict(kind="conv", c_in=5, c_out=6, k=3, stride=1, h_in=4, w_in=4, relu=True,
                  pool=False, weight=w, bias=np.zeros(6, np.int32),
                  multiplier=np.ones(6, np.int64), shift=np.ones(6, np.int64))
    img = ConvCSRP.from_qlayer(QLayer(name="c", period_table=[list(s) for s in table.supports], **common))
    assert img.table == table and (img.to_dense() == w).all() and img.layer == "c"
    # Without a table the layer is dense, and then a sparse weight is still valid (zeros stored).
    assert ConvCSRP.from_qlayer(QLayer(name="d", **common)).nnz == 6 * 5 * 9
    with pytest.raises(ValueError, match=r"Layer 'e': bad period_table: Slot 0 support"):
        ConvCSRP.from_qlayer(QLayer(name="e", period_table=[[3, 1]], **common))


def test_rejects_weight_outside_pattern():
    table = PeriodTable(3, ((0,), (4, 8)))
    w = np.zeros((2, 3, 3, 3), dtype=np.int8)
    w[1, 2, 0, 2] = -7                         # f1 c2 -> slot 1 = {4, 8}; tap 2 is outside
    with pytest.raises(ValueError, match=r"Layer 'conv2': filter 1, input channel 2, tap 2 "
                                         r"\(row 0, column 2\) holds -7 but is outside the pattern "
                                         r"\(slot 1 support \[4, 8\]\)"):
        ConvCSRP.from_dense(w, table, layer="conv2")


@pytest.mark.parametrize("weight, match", [
    (np.zeros((2, 2, 1, 1), np.int8), r"Layer 'x': weight must have shape \[c_out, c_in, 3, 3\] .* not \[2, 2, 1, 1\]"),
    (np.zeros((2, 2, 3, 3), np.float32), r"Layer 'x': weight must hold integers"),
    (np.full((2, 2, 3, 3), 200), r"Layer 'x': weight 200 is outside the int8 range -128\.\.127"),
    (np.zeros((0, 2, 3, 3), np.int8), r"Layer 'x': weight must have shape"),
])
def test_rejects_bad_weight(weight, match):
    with pytest.raises(ValueError, match=match):
        ConvCSRP.from_dense(weight, dense_table(3), layer="x")


def test_constructor_checks_lengths_and_is_read_only():
    table = PeriodTable(3, ((0,), (4, 8)))
    with pytest.raises(ValueError, match=r"Layer 'y': 5 values given but the period table \(P = 2\) "
                                         r"needs 6 for 2 filters x 2 input channels"):
        ConvCSRP(table=table, c_out=2, c_in=2, values=np.zeros(5, np.int8), layer="y")
    with pytest.raises(ValueError, match=r"c_in must be a positive integer, not 0"):
        ConvCSRP(table=table, c_out=2, c_in=0, values=np.zeros(0, np.int8))
    img = ConvCSRP(table=table, c_out=2, c_in=2, values=np.arange(6))
    with pytest.raises(ValueError):
        img.values[0] = 1
    with pytest.raises(AttributeError):
        img.nnz = 3
    with pytest.raises(ValueError, match=r"filter must be in 0\.\.1, not 2"):
        img.data(2)
