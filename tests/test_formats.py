"""Tests of hw.formats: hand-worked encodings, scipy.sparse as reference, round trips, rejection."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from hw.formats import (FORMATS, BitWidths, encode, encode_coo, encode_csc, encode_csc_p,
                        encode_csr, encode_csr_p, flatten_weights)
from hw.patterns import period_table
from hw.variants import Variant

W = BitWidths(b_v=8, b_r=2, b_c=3, b_i=5, b_P=4)

# Hand-worked example: 3 x 4, 4 non-zeros.
M = np.array([[0, 5, 0, 0],
              [1, 0, 0, 2],
              [0, 0, 3, 0]])


def test_hand_worked_coo_csr_csc():
    coo = encode_coo(M)
    assert coo.rows.tolist() == [0, 1, 1, 2] and coo.cols.tolist() == [1, 0, 3, 2]
    assert coo.values.tolist() == [5, 1, 2, 3]
    assert coo.bits(W) == 4 * (8 + 2 + 3)  # 52

    csr = encode_csr(M)
    assert csr.values.tolist() == [5, 1, 2, 3]
    assert csr.col_idx.tolist() == [1, 0, 3, 2]
    assert csr.row_ptr.tolist() == [0, 1, 3, 4]
    assert csr.bits(W) == 4 * (8 + 3) + (3 + 1) * 5  # 64

    csc = encode_csc(M)
    assert csc.values.tolist() == [1, 5, 3, 2]
    assert csc.row_idx.tolist() == [1, 0, 2, 1]
    assert csc.col_ptr.tolist() == [0, 1, 2, 3, 4]
    assert csc.bits(W) == 4 * (8 + 2) + (4 + 1) * 5  # 65

    assert encode("Dense", M).bits(W) == 12 * 8
    for e in (coo, csr, csc):
        np.testing.assert_array_equal(e.decode(), M)


# Rows repeat with period 2, columns repeat with period 2 (column 2 has column 0's rows).
MP = np.array([[1, 0, 2],
               [0, 3, 0],
               [4, 0, 5],
               [0, 6, 0]])


def test_hand_worked_periodic():
    csr_p = encode_csr_p(MP, period=2)
    assert csr_p.col_idx.tolist() == [0, 2, 1]  # rows 0 and 1 only
    assert csr_p.row_ptr.tolist() == [0, 2, 3, 5, 6]
    assert csr_p.values.tolist() == [1, 2, 3, 4, 5, 6]
    assert csr_p.bits(W) == 6 * 8 + 3 * 3 + 5 * 5 + 4  # 86
    np.testing.assert_array_equal(csr_p.decode(), MP)

    csc_p = encode_csc_p(MP, period=2)
    assert csc_p.row_idx.tolist() == [0, 2, 1, 3]  # columns 0 and 1 only
    assert csc_p.col_ptr.tolist() == [0, 2, 4, 6]
    assert csc_p.values.tolist() == [1, 4, 3, 6, 2, 5]
    assert csc_p.bits(W) == 6 * 8 + 4 * 2 + 4 * 5 + 4  # 80
    np.testing.assert_array_equal(csc_p.decode(), MP)


def test_period_longer_than_matrix_stores_every_line():
    e = encode_csr_p(MP, period=7)
    assert e.col_idx.size == 6 and e.bits(W) == 6 * 8 + 6 * 3 + 5 * 5 + 4
    np.testing.assert_array_equal(e.decode(), MP)


def test_rejects_non_periodic_naming_row_and_column():
    bad = MP.copy()
    bad[3, 0] = 9  # row 3 should repeat row 1; column 0 is then not repeated by column 2
    with pytest.raises(ValueError, match=r"row 3 does not repeat row 1 .* differ at column 0$"):
        encode_csr_p(bad, period=2)
    with pytest.raises(ValueError, match=r"column 2 does not repeat column 0 .* differ at row 3$"):
        encode_csc_p(bad, period=2)


def test_mask_keeps_zero_weights_inside_the_support():
    vals = MP.copy()
    vals[2, 0] = 0  # a trained weight that happens to be zero inside its pattern
    with pytest.raises(ValueError, match="row 2 does not repeat row 0"):
        encode_csr_p(vals, period=2)
    e = encode_csr_p(vals, period=2, mask=MP != 0)
    assert e.nnz == 6
    np.testing.assert_array_equal(e.decode(), vals)
    with pytest.raises(ValueError, match=r"entry \(1, 0\) = 7 is non-zero outside the mask"):
        encode_csr(np.where(np.arange(3) == 0, 7, vals), mask=MP != 0)


def test_validation_messages():
    with pytest.raises(ValueError, match="Bit width b_i must be a positive integer, not 0"):
        BitWidths(b_i=0)
    with pytest.raises(ValueError, match="CSR_P: the period must be a positive integer, not 0"):
        encode_csr_p(M, period=0)
    with pytest.raises(ValueError, match=r"must be 2D and non-empty, not of shape \(4,\)"):
        encode_csr(np.ones(4))
    with pytest.raises(ValueError, match="Unknown storage format 'ELL'"):
        encode("ELL", M)
    with pytest.raises(ValueError, match="CSC_P needs a period"):
        encode("CSC_P", M)
    with pytest.raises(TypeError):
        encode_csr(M).bits({"b_v": 8})


def test_arrays_are_read_only():
    e = encode_csr(M)
    with pytest.raises(ValueError):
        e.values[0] = 1


def test_flatten_column_convention():
    rng = np.random.default_rng(1)
    w = rng.integers(-9, 9, size=(4, 3, 3, 3))
    flat = flatten_weights(w)
    assert flat.shape == (4, 27)
    for f in range(4):
        for c in range(3):
            for ky in range(3):
                for kx in range(3):
                    assert flat[f, c * 9 + ky * 3 + kx] == w[f, c, ky, kx]


PERIODIC = [Variant("PS", 4, 4), Variant("PS", 2, 6), Variant("PS", 1, 9), Variant("PSD", 4, 8),
            Variant("PSD", 2, 8), Variant("PSD", 1, 16), Variant("PSD", 2, 3)]


@settings(max_examples=40, deadline=None)
@given(v=st.sampled_from(PERIODIC), c_out=st.integers(1, 24), c_in=st.integers(1, 20),
       seed=st.integers(0, 2**16))
def test_periodic_layers_round_trip_and_match_scipy(v, c_out, c_in, seed):
    note = f"variant={v} c_out={c_out} c_in={c_in} seed={seed}"
    rng = np.random.default_rng(seed)
    mask = flatten_weights(period_table(v, seed=seed).mask(c_out, c_in))
    m = np.where(mask, rng.integers(1, 128, size=mask.shape), 0)
    P = v.period
    H, Wd = m.shape
    nnz = int(mask.sum())
    ref_csr, ref_csc = sp.csr_matrix(m), sp.csc_matrix(m)
    ref_csr.sort_indices(), ref_csc.sort_indices()
    w = BitWidths(b_v=int(rng.integers(1, 17)), b_r=int(rng.integers(1, 9)),
                  b_c=int(rng.integers(1, 13)), b_i=int(rng.integers(1, 17)),
                  b_P=int(rng.integers(1, 9)))
    for fmt in FORMATS:
        period = {"CSR_P": P, "CSC_P": P * 9}.get(fmt)
        e = encode(fmt, m, period=period)
        np.testing.assert_array_equal(e.decode(), m, err_msg=f"{fmt} {note}")
    csr, csc = encode_csr(m), encode_csc(m)
    assert csr.row_ptr.tolist() == ref_csr.indptr.tolist(), note
    assert csr.col_idx.tolist() == ref_csr.indices.tolist(), note
    assert csr.values.tolist() == ref_csr.data.tolist(), note
    assert csc.col_ptr.tolist() == ref_csc.indptr.tolist(), note
    assert csc.row_idx.tolist() == ref_csc.indices.tolist(), note
    csr_p, csc_p = encode_csr_p(m, period=P), encode_csc_p(m, period=9 * P)
    assert csr_p.col_idx.tolist() == ref_csr.indices[:ref_csr.indptr[min(P, H)]].tolist(), note
    assert csc_p.row_idx.tolist() == ref_csc.indices[:ref_csc.indptr[min(9 * P, Wd)]].tolist(), note
    # Bit counts recomputed from the mask, entry by entry as METHOD.md's table lists them.
    assert encode_coo(m).bits(w) == nnz * (w.b_v + w.b_r + w.b_c), note
    assert csr.bits(w) == nnz * (w.b_v + w.b_c) + (H + 1) * w.b_i, note
    assert csc.bits(w) == nnz * (w.b_v + w.b_r) + (Wd + 1) * w.b_i, note
    assert csr_p.bits(w) == (nnz * w.b_v + int(mask[:P].sum()) * w.b_c + (H + 1) * w.b_i
                             + w.b_P), note
    assert csc_p.bits(w) == (nnz * w.b_v + int(mask[:, :9 * P].sum()) * w.b_r
                             + (Wd + 1) * w.b_i + w.b_P), note


@settings(max_examples=30, deadline=None)
@given(v=st.sampled_from(PERIODIC), c_out=st.integers(2, 24), c_in=st.integers(2, 12),
       seed=st.integers(0, 2**16))
def test_broken_periodicity_names_first_offending_line(v, c_out, c_in, seed):
    rng = np.random.default_rng(seed)
    mask = flatten_weights(period_table(v, seed=seed).mask(c_out, c_in))
    H, Wd = mask.shape
    P = v.period
    if H > P:
        i, j = int(rng.integers(P, H)), int(rng.integers(0, Wd))
        bad = mask.copy()
        bad[i, j] = not bad[i, j]
        with pytest.raises(ValueError, match=rf"row {i} does not repeat row {i % P} "):
            encode_csr_p(bad.astype(int), period=P)
    if Wd > 9 * P:
        j, i = int(rng.integers(9 * P, Wd)), int(rng.integers(0, H))
        bad = mask.copy()
        bad[i, j] = not bad[i, j]
        with pytest.raises(ValueError, match=rf"column {j} does not repeat column {j % (9 * P)} "):
            encode_csc_p(bad.astype(int), period=9 * P)
